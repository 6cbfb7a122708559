//go:build amd64 && !purego

package tensor

import "golang.org/x/sys/cpu"

//go:noescape
func dotAVX2(a, b *float32, n int) float32

//go:noescape
func axpyAVX2(alpha float32, x, y *float32, n int)

var haveAVX2FMA = cpu.X86.HasAVX2 && cpu.X86.HasFMA

// dotBlocks returns the dot product of the first n&^31 elements and how
// many it covered (0 when no vector unit is available).
func dotBlocks(a, b []float32) (float32, int) {
	n := len(a) &^ 31
	if !haveAVX2FMA || n == 0 {
		return 0, 0
	}
	_ = b[n-1]
	return dotAVX2(&a[0], &b[0], n), n
}

// axpyBlocks does y += alpha*x on the first n&^31 elements and returns how
// many it covered.
func axpyBlocks(alpha float32, x, y []float32) int {
	n := len(x) &^ 31
	if !haveAVX2FMA || n == 0 {
		return 0
	}
	_ = y[n-1]
	axpyAVX2(alpha, &x[0], &y[0], n)
	return n
}
