//go:build linux

package safetensors

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// preallocate sizes f to n bytes, reserving the disk blocks when the file system
// supports it so that running out of space shows up now rather than mid-write.
func preallocate(f *os.File, n int64) error {
	if n > 0 {
		err := unix.Fallocate(int(f.Fd()), 0, 0, n)
		if err == nil {
			return nil
		}
		if !errors.Is(err, unix.EOPNOTSUPP) && !errors.Is(err, unix.ENOSYS) {
			return err
		}
	}
	return f.Truncate(n)
}
