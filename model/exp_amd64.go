//go:build amd64 && !purego

package model

import "golang.org/x/sys/cpu"

//go:noescape
func expSubSumAVX2(x *float32, n int, shift float32) float64

//go:noescape
func siluMulAVX2(dst, gate, up *float32, n int)

//go:noescape
func maxAVX2(x *float32, n int) float32

var haveAVX2 = cpu.X86.HasAVX2 && cpu.X86.HasFMA

// expSubSum sets x[i] = exp(x[i] - shift) and returns Σ x[i] (float64).
func expSubSum(x []float32, shift float32) float64 {
	n8 := 0
	var s float64
	if haveAVX2 {
		n8 = len(x) &^ 7
		if n8 > 0 {
			s = expSubSumAVX2(&x[0], n8, shift)
		}
	}
	for i := n8; i < len(x); i++ {
		e := expf(x[i] - shift)
		x[i] = e
		s += float64(e)
	}
	return s
}

// siluMul sets dst[i] = silu(g[i]) * u[i]; dst may alias g.
func siluMul(dst, g, u []float32) {
	n8 := 0
	if haveAVX2 {
		n8 = len(g) &^ 7
		if n8 > 0 {
			_, _ = dst[n8-1], u[n8-1]
			siluMulAVX2(&dst[0], &g[0], &u[0], n8)
		}
	}
	siluMulRow(dst[n8:len(g)], g[n8:], u[n8:len(g)])
}

// maxf returns the maximum of x (-Inf for an empty x).
func maxf(x []float32) float32 {
	if haveAVX2 && len(x) >= 8 {
		n8 := len(x) &^ 7
		m := maxAVX2(&x[0], n8)
		for _, v := range x[n8:] {
			m = max(m, v)
		}
		return m
	}
	return maxGo(x)
}
