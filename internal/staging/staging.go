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

// Dir is a staging directory for one output, with its owner lock held.
type Dir struct {
	// Path is the staging directory.
	Path string
	lock *os.File
}

// New removes stale staging directories of out (see the package comment)
// and creates a fresh one beside out, whose parent must exist.
func New(out string) (*Dir, error) {
	out = filepath.Clean(out)
	Sweep(out)
	var b [4]byte
	for try := 0; ; try++ {
		rand.Read(b[:])
		path := filepath.Join(filepath.Dir(out), "."+filepath.Base(out)+".tmp-"+hex.EncodeToString(b[:]))
		lf, err := os.OpenFile(path+".lock", os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
		if errors.Is(err, fs.ErrExist) && try < 100 {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("create staging directory for %s: %w", out, err)
		}
		if err := lock(lf); err != nil {
			lf.Close()
			os.Remove(lf.Name())
			return nil, fmt.Errorf("lock %s: %w", lf.Name(), err)
		}
		if err := os.Mkdir(path, 0o755); err != nil {
			lf.Close()
			os.Remove(lf.Name())
			if errors.Is(err, fs.ErrExist) && try < 100 {
				continue
			}
			return nil, fmt.Errorf("create staging directory for %s: %w", out, err)
		}
		return &Dir{Path: path, lock: lf}, nil
	}
}

// Commit renames the staging directory to out (which must not exist) and
// drops the owner lock.
func (d *Dir) Commit(out string) error {
	if err := os.Rename(d.Path, out); err != nil {
		return err
	}
	d.unlock()
	return nil
}

// Remove deletes the staging directory and drops the owner lock; it is a
// no-op after Commit or Remove.
func (d *Dir) Remove() error {
	if d.lock == nil {
		return nil
	}
	err := os.RemoveAll(d.Path)
	d.unlock()
	return err
}

func (d *Dir) unlock() {
	if d.lock == nil {
		return
	}
	os.Remove(d.lock.Name()) // before Close: no one may lock a file we still name
	d.lock.Close()
	d.lock = nil
}

// Sweep removes the staging directories of out whose owner is dead and
// returns their paths. Errors are logged, not returned: sweeping is
// housekeeping and must not stop the run.
func Sweep(out string) []string {
	out = filepath.Clean(out)
	prefix := "." + filepath.Base(out) + ".tmp-"
	ents, err := os.ReadDir(filepath.Dir(out))
	if err != nil {
		return nil
	}
	var removed []string
	for _, e := range ents {
		name := e.Name()
		if !strings.HasPrefix(name, prefix) || !strings.HasSuffix(name, ".lock") {
			continue
		}
		lockPath := filepath.Join(filepath.Dir(out), name)
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
		if err := os.RemoveAll(dir); err != nil {
			slog.Warn("could not remove the staging directory of an interrupted run", "dir", dir, "err", err)
			lf.Close()
			continue
		}
		os.Remove(lockPath)
		lf.Close()
		slog.Info("removed the staging directory of an interrupted run", "dir", dir)
		removed = append(removed, dir)
	}
	return removed
}
