package tensor

import "math"

// Dot returns the float32 dot product of a and b (len(a) elements; b must be
// at least as long). The sum is accumulated in float32: with AVX2, in 32
// interleaved partial sums (fused multiply-add) that are added pairwise at
// the end, then the remaining len(a)%32 products in order; so the result
// can differ from a strictly sequential float32 sum by rounding.
func Dot(a, b []float32) float32 {
	b = b[:len(a)]
	s, i0 := dotBlocks(a, b)
	for i := i0; i < len(a); i++ {
		s += a[i] * b[i]
	}
	return s
}

// Axpy computes y += alpha*x over len(x) elements (y must be at least as
// long). With AVX2 each element is one fused multiply-add.
func Axpy(alpha float32, x, y []float32) {
	y = y[:len(x)]
	for i := axpyBlocks(alpha, x, y); i < len(x); i++ {
		y[i] += alpha * x[i]
	}
}

// RMSNorm normalises each of rows rows of x (row-major rows×dim) into dst as
// Hugging Face LlamaRMSNorm does in fp32:
//
//	variance = mean(x²) ; dst = weight * (x * rsqrt(variance + eps))
//
// The sum of squares is accumulated in float64 and rounded to float32 once
// (torch's fp32 reduction is pairwise, so this is at least as accurate);
// rsqrt is computed in float64 and rounded to float32; the two products are
// float32 multiplications in torch's order. dst may alias x.
func RMSNorm(dst, x, weight []float32, rows, dim int, eps float32) {
	if rows == 0 || dim == 0 {
		return
	}
	_ = dst[rows*dim-1]
	_ = x[rows*dim-1]
	w := weight[:dim]
	for r := 0; r < rows; r++ {
		xr := x[r*dim : (r+1)*dim]
		dr := dst[r*dim : (r+1)*dim]
		var ss float64
		for _, v := range xr {
			ss += float64(v) * float64(v)
		}
		variance := float32(ss / float64(dim))
		inv := float32(1 / math.Sqrt(float64(variance+eps)))
		for i, v := range xr {
			dr[i] = w[i] * (v * inv)
		}
	}
}
