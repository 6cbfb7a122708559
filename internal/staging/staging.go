package staging

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
)

// Sentinel errors.
var (
	// ErrExists: the output exists and replacing it was not asked for.
	ErrExists = errors.New("staging: output directory already exists")
	// ErrBusy: another process holds the lock of the output or directory.
	ErrBusy = errors.New("staging: in use by another process")
	// ErrUnsafeTarget: writing or replacing the output would destroy what the
	// user did not ask to replace (an input, the working directory, an
	// unrecognised directory), or no output was named.
	ErrUnsafeTarget = errors.New("staging: refusing to write the output there")
	// ErrNotDir: something that is not a directory has the output's name.
	ErrNotDir = errors.New("staging: not a directory")

	errUnsupported = errors.New("staging: not supported by this file system")
)

// Dir is a staging directory for one output, with its owner lock held (and,
// for New, the output's lock).
type Dir struct {
	// Path is the staging directory.
	Path string
	lock *os.File // the owner lock, Path+".lock"
	out  *lockedFile
}

// stagingPrefix is the name prefix of out's staging directories.
func stagingPrefix(out string) string { return "." + filepath.Base(out) + ".tmp-" }

// outLockPath is the lock file that a run writing out holds from New to
// Commit, Replace or Remove.
func outLockPath(out string) string {
	return filepath.Join(filepath.Dir(out), "."+filepath.Base(out)+".lock")
}

// New takes the lock of out, removes stale staging directories of out (see
// the package comment) and creates a fresh one beside out, whose parent must
// exist. When another process is writing out, New fails at once with ErrBusy
// naming its pid.
func New(out string) (*Dir, error) {
	out, err := filepath.Abs(out)
	if err != nil {
		return nil, err
	}
	ol, err := acquire(outLockPath(out), "writing "+out)
	if err != nil {
		return nil, err
	}
	Sweep(out)
	d, err := create(filepath.Dir(out), stagingPrefix(out), "staging directory for "+out)
	if err != nil {
		ol.release()
		return nil, err
	}
	d.out = ol
	return d, nil
}

// Temp creates a fresh owner-locked directory parent/prefix-XXXXXXXX (with
// its lock file beside it), first removing those of the same prefix whose
// owner is dead. It is for scratch space that must not outlive a killed
// process for longer than the next run; Remove deletes it.
func Temp(parent, prefix string) (*Dir, error) {
	prefix += "-"
	sweep(parent, prefix, "")
	return create(parent, prefix, "scratch directory in "+parent)
}

// create makes parent/prefixXXXXXXXX and its owner lock.
func create(parent, prefix, what string) (*Dir, error) {
	var b [4]byte
	for try := 0; ; try++ {
		rand.Read(b[:])
		path := filepath.Join(parent, prefix+hex.EncodeToString(b[:]))
		lf, err := os.OpenFile(path+".lock", os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
		if errors.Is(err, fs.ErrExist) && try < 100 {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("create %s: %w", what, err)
		}
		if err := lock(lf); err != nil {
			lf.Close()
			os.Remove(lf.Name())
			return nil, fmt.Errorf("lock %s: %w", lf.Name(), err)
		}
		if err := os.Mkdir(path, 0o755); err != nil {
			os.Remove(lf.Name())
			lf.Close()
			if errors.Is(err, fs.ErrExist) && try < 100 {
				continue
			}
			return nil, fmt.Errorf("create %s: %w", what, err)
		}
		return &Dir{Path: path, lock: lf}, nil
	}
}

// Commit renames the staging directory to out, which must not exist (an
// existing out gives ErrExists and changes nothing), and drops the locks.
func (d *Dir) Commit(out string) error {
	if d.lock == nil {
		return fmt.Errorf("staging: commit %s: already committed or removed", d.Path)
	}
	err := renameNoReplace(d.Path, out)
	if errors.Is(err, errUnsupported) {
		if _, lerr := os.Lstat(out); lerr == nil {
			err = fs.ErrExist
		} else {
			err = os.Rename(d.Path, out)
		}
	}
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%w: %s (it appeared while the output was written)", ErrExists, out)
	}
	if err != nil {
		return err
	}
	syncDir(filepath.Dir(out))
	d.unlock(true)
	return nil
}

// Replace puts the staging directory in place of out. An existing out must be
// a directory (check it with CheckTarget first); it is replaced without ever
// being absent: the two directories are exchanged atomically where the file
// system can (renameat2 RENAME_EXCHANGE, renamex_np RENAME_SWAP), else out is
// renamed aside (the staging directory's path plus ".old"), the staging
// directory renamed in, and only then is the old output removed. A process
// killed in between leaves the old or the new output under the name; the
// next Sweep of out restores an aside old output if out is missing and
// removes what is left. Without an existing out, Replace is Commit.
func (d *Dir) Replace(out string) error {
	if d.lock == nil {
		return fmt.Errorf("staging: replace %s: already committed or removed", out)
	}
	fi, err := os.Lstat(out)
	if errors.Is(err, fs.ErrNotExist) {
		return d.Commit(out)
	}
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%w: %s is %s; it is never replaced", ErrNotDir, out, describe(fi))
	}
	parent := filepath.Dir(out)
	err = exchangeFn(d.Path, out)
	if err == nil {
		crashHook("exchanged")
		syncDir(parent)
		// d.Path now holds the old output.
		d.unlock(removeOld(d.Path))
		return nil
	}
	if !errors.Is(err, errUnsupported) {
		return err
	}
	aside := d.Path + ".old"
	if err := os.Rename(out, aside); err != nil {
		return err
	}
	crashHook("aside")
	if err := os.Rename(d.Path, out); err != nil {
		if rerr := os.Rename(aside, out); rerr != nil {
			return fmt.Errorf("%w; the old output is at %s (restoring it failed: %w)", err, aside, rerr)
		}
		return err
	}
	syncDir(parent)
	crashHook("renamed-in")
	d.unlock(removeOld(aside))
	return nil
}

// Test hooks: exchangeFn is exchange unless a test forces the fallback, and
// crashHook, when set, is called at the named points of Replace (a test makes
// it kill the process there).
var (
	exchangeFn = exchange
	crashHook  = func(point string) {}
)

// removeOld removes a replaced output and says whether it is gone.
func removeOld(dir string) bool {
	if err := os.RemoveAll(dir); err != nil {
		slog.Warn("could not remove the replaced output; the next run writing it removes it", "dir", dir, "err", err)
		return false
	}
	return true
}

// Remove deletes the staging directory and drops the locks; it is a no-op
// after Commit, Replace or Remove.
func (d *Dir) Remove() error {
	if d.lock == nil {
		return nil
	}
	err := os.RemoveAll(d.Path)
	d.unlock(err == nil)
	return err
}

// unlock drops the owner lock, removing its file when gone is true (when the
// directory is not gone, the lock file stays so that a later sweep finds a
// dead owner and finishes the job), and releases the output's lock.
func (d *Dir) unlock(gone bool) {
	if d.lock != nil {
		if gone {
			os.Remove(d.lock.Name()) // before Close: no one may lock a file we still name
		}
		d.lock.Close()
		d.lock = nil
	}
	d.out.release()
	d.out = nil
}

// Sweep removes the staging directories of out whose owner is dead and
// returns their paths. An old output that a killed Replace had renamed aside
// is renamed back to out when out is missing, and removed otherwise. Errors
// are logged, not returned: sweeping is housekeeping and must not stop the run.
func Sweep(out string) []string {
	out = filepath.Clean(out)
	return sweep(filepath.Dir(out), stagingPrefix(out), out)
}

// sweep removes parent/prefixXXXXXXXX directories whose lock can be taken;
// out, when not empty, is the output whose aside directories are restored.
func sweep(parent, prefix, out string) []string {
	ents, err := os.ReadDir(parent)
	if err != nil || !haveFlock {
		return nil
	}
	var removed []string
	for _, e := range ents {
		name := e.Name()
		if !strings.HasPrefix(name, prefix) || !strings.HasSuffix(name, ".lock") {
			continue
		}
		lockPath := filepath.Join(parent, name)
		dir := strings.TrimSuffix(lockPath, ".lock")
		if strings.Contains(strings.TrimPrefix(filepath.Base(dir), prefix), ".") {
			continue // not one of ours
		}
		lf, err := os.OpenFile(lockPath, os.O_RDWR, 0)
		if err != nil {
			continue
		}
		ok, err := tryLock(lf)
		if err != nil || !ok {
			lf.Close() // a living owner, or no way to tell
			continue
		}
		aside := dir + ".old"
		if _, err := os.Lstat(aside); err == nil && out != "" {
			if _, err := os.Lstat(out); errors.Is(err, fs.ErrNotExist) {
				if err := os.Rename(aside, out); err == nil {
					slog.Warn("restored the output that an interrupted run had moved aside", "out", out)
				}
			}
		}
		// The staging directory, and what its owner derived from its name
		// (DIR.old, DIR.packed, ...).
		victims := []string{dir}
		for _, e2 := range ents {
			if n := e2.Name(); strings.HasPrefix(n, filepath.Base(dir)+".") && n != name {
				victims = append(victims, filepath.Join(parent, n))
			}
		}
		failed := false
		for _, d := range victims {
			if _, err := os.Lstat(d); err != nil {
				continue
			}
			if err := os.RemoveAll(d); err != nil {
				slog.Warn("could not remove the staging directory of an interrupted run", "dir", d, "err", err)
				failed = true
				continue
			}
			slog.Info("removed the staging directory of an interrupted run", "dir", d)
			removed = append(removed, d)
		}
		if !failed {
			os.Remove(lockPath)
		}
		lf.Close()
	}
	return removed
}

// syncDir makes a rename in dir durable (best effort).
func syncDir(dir string) {
	if f, err := os.Open(dir); err == nil {
		f.Sync()
		f.Close()
	}
}
