//go:build !unix

package tensor

// processCPUSeconds is not available here; the per-CPU-second metric reads 0.
func processCPUSeconds() float64 { return 0 }
