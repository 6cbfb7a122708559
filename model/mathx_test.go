package model

import (
	"math"
	"math/rand/v2"
	"testing"
)

// ulps is the distance between two float32 values in units in the last place.
func ulps(a, b float32) int64 {
	ia, ib := int64(math.Float32bits(a)), int64(math.Float32bits(b))
	if ia < 0x80000000 != (ib < 0x80000000) {
		return math.MaxInt64
	}
	d := ia - ib
	if d < 0 {
		d = -d
	}
	return d
}

func TestExpKernels(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 5))
	for n := 0; n <= 70; n++ {
		x := make([]float32, n)
		for i := range x {
			x[i] = float32(r.Float64()*170 - 87)
		}
		if n > 3 {
			x[0], x[1], x[2] = 0, -87, 80
		}
		shift := float32(0)
		if n%3 == 1 {
			shift = 3.5
		}
		y := append([]float32(nil), x...)
		got := expSubSum(y, shift)
		var want float64
		for i, v := range x {
			e := float32(math.Exp(float64(v - shift)))
			want += float64(y[i])
			if e < 1.1754944e-38 { // subnormal results may flush to 0 or clamp to exp(-87.33)
				if y[i] > 1.3e-38 || expf(v-shift) > 1.3e-38 {
					t.Fatalf("exp(%g) = %g / %g, want ≈ %g", v-shift, y[i], expf(v-shift), e)
				}
				continue
			}
			if u := ulps(y[i], e); u > 2 {
				t.Fatalf("n=%d: exp(%g) = %g, want %g (%d ulps)", n, v-shift, y[i], e, u)
			}
			if s := expf(v - shift); ulps(s, e) > 2 {
				t.Fatalf("expf(%g) = %g, want %g", v-shift, s, e)
			}
		}
		if math.Abs(got-want) > 1e-12*math.Abs(want) {
			t.Fatalf("n=%d: sum %g, want %g", n, got, want)
		}
		if n > 0 {
			m := float32(math.Inf(-1))
			for _, v := range x {
				m = max(m, v)
			}
			if g := maxf(x); g != m {
				t.Fatalf("n=%d: max %g, want %g", n, g, m)
			}
		}
		g := make([]float32, n)
		u := make([]float32, n)
		for i := range g {
			g[i] = float32(r.NormFloat64() * 6)
			u[i] = float32(r.NormFloat64())
		}
		dst := make([]float32, n)
		siluMul(dst, g, u)
		for i := range g {
			w := float64(g[i]) / (1 + math.Exp(-float64(g[i]))) * float64(u[i])
			if math.Abs(float64(dst[i])-w) > 1e-6*math.Max(1e-3, math.Abs(w)) {
				t.Fatalf("silu(%g)*%g = %g, want %g", g[i], u[i], dst[i], w)
			}
		}
	}
	if v := expf(float32(math.NaN())); v == v {
		t.Error("expf(NaN) is not NaN")
	}
	if v := expf(-200); v != 0 {
		t.Errorf("expf(-200) = %g", v)
	}
	if v := expf(100); !math.IsInf(float64(v), 1) {
		t.Errorf("expf(100) = %g", v)
	}
	nan := []float32{1, 2, float32(math.NaN()), 3, 4, 5, 6, 7}
	if s := expSubSum(nan, 0); s == s {
		t.Errorf("expSubSum with a NaN = %g", s)
	}
}
