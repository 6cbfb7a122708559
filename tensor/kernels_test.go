package tensor

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestDotAxpy(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, n := range []int{0, 1, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 64, 100, 1000, 4097} {
		a, b := randSlice(r, n), randSlice(r, n+3) // b may be longer
		var want, mag float64
		for i := 0; i < n; i++ {
			want += float64(a[i]) * float64(b[i])
			mag += math.Abs(float64(a[i]) * float64(b[i]))
		}
		got := Dot(a, b)
		if d := math.Abs(float64(got) - want); d > 1e-6*mag+1e-7 {
			t.Errorf("Dot n=%d: got %g, want %g (diff %g)", n, got, want, d)
		}
		y := randSlice(r, n+2)
		y0 := append([]float32(nil), y...)
		alpha := float32(r.Float64()*4 - 2)
		Axpy(alpha, a, y)
		for i := range y {
			w := float64(y0[i])
			if i < n {
				w += float64(alpha) * float64(a[i])
			}
			if d := math.Abs(float64(y[i]) - w); d > 1e-6*(math.Abs(w)+2) {
				t.Fatalf("Axpy n=%d: y[%d] = %g, want %g", n, i, y[i], w)
			}
		}
	}
}

// rmsRef is an independent float64 evaluation of LlamaRMSNorm.
func rmsRef(x, w []float64, eps float64) []float64 {
	var ss float64
	for _, v := range x {
		ss += v * v
	}
	inv := 1 / math.Sqrt(ss/float64(len(x))+eps)
	out := make([]float64, len(x))
	for i, v := range x {
		out[i] = w[i] * v * inv
	}
	return out
}

func TestRMSNorm(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	rows, dim := 5, 384
	x := randSlice(r, rows*dim)
	for i := range x {
		x[i] *= float32(1 + i/dim*10) // rows of different scale
	}
	w := randSlice(r, dim)
	dst := make([]float32, rows*dim)
	RMSNorm(dst, x, w, rows, dim, 1e-6)
	x64, w64 := make([]float64, len(x)), make([]float64, dim)
	for i, v := range x {
		x64[i] = float64(v)
	}
	for i, v := range w {
		w64[i] = float64(v)
	}
	for rr := 0; rr < rows; rr++ {
		want := rmsRef(x64[rr*dim:(rr+1)*dim], w64, 1e-6)
		for i, wv := range want {
			got := float64(dst[rr*dim+i])
			if math.Abs(got-wv) > 3e-7*math.Abs(wv)+1e-30 {
				t.Fatalf("row %d col %d: got %g want %g", rr, i, got, wv)
			}
		}
	}
	// In place, and eps dominating an all-zero row gives zeros.
	z := make([]float32, dim)
	RMSNorm(z, z, w, 1, dim, 1e-5)
	for _, v := range z {
		if v != 0 {
			t.Fatalf("zero row gave %g", v)
		}
	}
	cp := append([]float32(nil), x...)
	RMSNorm(cp, cp, w, rows, dim, 1e-6)
	for i := range cp {
		if cp[i] != dst[i] {
			t.Fatalf("in-place result differs at %d", i)
		}
	}
}
