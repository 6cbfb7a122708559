//go:build amd64 && !purego

package tensor

import "golang.org/x/sys/cpu"

//go:noescape
func sgemmKernel6x16AVX2(k int, a, b, c *float32, ldc int, alpha, beta float32)

func init() {
	if cpu.X86.HasAVX2 && cpu.X86.HasFMA {
		microKernel = kernelAVX2
		kernelName = "avx2-fma-6x16"
	}
}

func kernelAVX2(k int, a, b, c []float32, ldc int, alpha, beta float32) {
	sgemmKernel6x16AVX2(k, &a[0], &b[0], &c[0], ldc, alpha, beta)
}
