//go:build !linux

package safetensors

import "os"

// preallocate sizes f to n bytes.
func preallocate(f *os.File, n int64) error { return f.Truncate(n) }
