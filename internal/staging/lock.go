package staging

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// LockFile is the name of the lock file LockDir keeps inside a directory.
const LockFile = ".wanda.lock"

// lockedFile is a file held with an exclusive flock whose content is the
// holder's pid. Its path is removed (before the lock is dropped) on release.
type lockedFile struct {
	f    *os.File
	path string
}

// acquire takes the lock file at path without waiting. When another process
// holds it, it returns ErrBusy naming that process's pid when known; what
// says what is locked ("writing OUT", "using DIR").
func acquire(path, what string) (*lockedFile, error) {
	if !haveFlock {
		return &lockedFile{path: path}, nil
	}
	for try := 0; ; try++ {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			return nil, fmt.Errorf("staging: lock %s: %w", path, err)
		}
		ok, err := tryLock(f)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("staging: lock %s: %w", path, err)
		}
		if !ok {
			b, _ := io.ReadAll(io.LimitReader(f, 64))
			f.Close()
			holder := "another process"
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 {
				holder = fmt.Sprintf("process %d", pid)
			}
			return nil, fmt.Errorf("%w: %s is %s (lock file %s)", ErrBusy, holder, what, path)
		}
		// The previous holder removes the file before it unlocks; if it did so
		// between our open and our lock, we hold a lock on a file no one else
		// can find. Start again on the file the path names now.
		fi, err1 := f.Stat()
		pi, err2 := os.Stat(path)
		if err1 != nil || err2 != nil || !os.SameFile(fi, pi) {
			f.Close()
			if try < 100 {
				continue
			}
			return nil, fmt.Errorf("staging: lock %s: the lock file keeps being replaced", path)
		}
		if err := f.Truncate(0); err == nil {
			f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
		}
		return &lockedFile{f: f, path: path}, nil
	}
}

// release removes the lock file and drops the lock; a no-op when repeated.
func (l *lockedFile) release() {
	if l == nil || l.f == nil {
		return
	}
	os.Remove(l.path) // before Close: no one may lock a file we still name
	l.f.Close()
	l.f = nil
}

// LockDir takes an exclusive lock on the directory dir (which must exist) for
// as long as the process lives or until release is called: the lock file
// dir/.wanda.lock, held with flock(2), holds this process's pid. A second
// LockDir of the same directory, from this process or another, fails at once
// with ErrBusy naming the holder's pid. The kernel drops the lock when the
// process dies, however it dies; a lock file left by a killed process is
// simply locked again. release removes the lock file, so call it before
// removing dir.
func LockDir(dir string) (release func(), err error) {
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("staging: lock directory: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("lock directory %s: %w", dir, ErrNotDir)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	l, err := acquire(filepath.Join(abs, LockFile), "using "+abs)
	if err != nil {
		return nil, err
	}
	return l.release, nil
}
