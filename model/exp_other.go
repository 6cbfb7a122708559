//go:build !amd64 || purego

package model

// expSubSum sets x[i] = exp(x[i] - shift) and returns Σ x[i] (float64).
func expSubSum(x []float32, shift float32) float64 {
	var s float64
	for i, v := range x {
		e := expf(v - shift)
		x[i] = e
		s += float64(e)
	}
	return s
}

// siluMul sets dst[i] = silu(g[i]) * u[i]; dst may alias g.
func siluMul(dst, g, u []float32) { siluMulRow(dst, g, u) }

// maxf returns the maximum of x (-Inf for an empty x).
func maxf(x []float32) float32 { return maxGo(x) }
