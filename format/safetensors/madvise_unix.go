//go:build unix

package safetensors

import "golang.org/x/sys/unix"

// dontNeed drops the page-aligned mapping range b (best effort).
func dontNeed(b []byte) {
	if len(b) > 0 {
		_ = unix.Madvise(b, unix.MADV_DONTNEED)
	}
}
