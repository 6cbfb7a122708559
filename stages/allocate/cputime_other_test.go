//go:build !unix

package allocate

import "time"

// processCPU returns 0: the benchmarks report CPU time on unix only.
func processCPU() time.Duration { return 0 }
