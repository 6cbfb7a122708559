//go:build unix

package pipeline

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// FreeSpace returns the bytes available to an unprivileged user on the file
// system holding dir; ok is false when it cannot be measured.
func FreeSpace(dir string) (free int64, ok bool) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, false
	}
	return int64(st.Bavail) * int64(st.Bsize), true
}

func requireFree(dir string, need int64) error {
	free, ok := FreeSpace(dir)
	if !ok {
		return nil // unknown: let the writes report it
	}
	if free < need {
		return fmt.Errorf("%w in %s: need %s, %s free", ErrNoSpace, dir, FormatBytes(need), FormatBytes(free))
	}
	return nil
}
