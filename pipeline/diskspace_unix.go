//go:build unix

package pipeline

import (
	"fmt"

	"golang.org/x/sys/unix"
)

func requireFree(dir string, need int64) error {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return nil // unknown: let the writes report it
	}
	free := int64(st.Bavail) * int64(st.Bsize)
	if free < need {
		return fmt.Errorf("%w in %s: need %.2f GiB, %.2f GiB free", ErrNoSpace, dir, float64(need)/(1<<30), float64(free)/(1<<30))
	}
	return nil
}
