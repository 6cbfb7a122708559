//go:build darwin

package staging

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// exchange swaps the directory entries a and b atomically (renamex_np
// RENAME_SWAP). It returns errUnsupported where the file system cannot.
func exchange(a, b string) error { return renamex(a, b, unix.RENAME_SWAP) }

// renameNoReplace renames from to to, failing with fs.ErrExist if to exists
// (renamex_np RENAME_EXCL).
func renameNoReplace(from, to string) error { return renamex(from, to, unix.RENAME_EXCL) }

func renamex(a, b string, flags uint32) error {
	err := unix.RenamexNp(a, b, flags)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.ENOTSUP), errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOSYS):
		return errUnsupported
	}
	return &os.LinkError{Op: "rename", Old: a, New: b, Err: err}
}
