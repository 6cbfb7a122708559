//go:build linux

package staging

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// exchange swaps the directory entries a and b atomically (renameat2
// RENAME_EXCHANGE). It returns errUnsupported where the file system cannot.
func exchange(a, b string) error {
	return renameat2(a, b, unix.RENAME_EXCHANGE)
}

// renameNoReplace renames from to to, failing with fs.ErrExist if to exists
// (renameat2 RENAME_NOREPLACE). It returns errUnsupported where the file
// system cannot.
func renameNoReplace(from, to string) error {
	return renameat2(from, to, unix.RENAME_NOREPLACE)
}

func renameat2(a, b string, flags uint) error {
	err := unix.Renameat2(unix.AT_FDCWD, a, unix.AT_FDCWD, b, flags)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.ENOSYS), errors.Is(err, unix.EINVAL), errors.Is(err, unix.EOPNOTSUPP):
		return errUnsupported
	}
	return &os.LinkError{Op: "rename", Old: a, New: b, Err: err}
}
