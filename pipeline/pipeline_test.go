package pipeline

import (
	"math"
	"math/rand/v2"
	"os"
	"testing"
)

func TestStoreRAMAndDisk(t *testing.T) {
	for _, budget := range []int64{0, 1 << 30, 100} {
		s, err := NewStore(3, 4, 5, budget, t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		wantDisk := budget > 0 && budget < 3*4*5*4
		if s.OnDisk() != wantDisk {
			t.Fatalf("budget %d: OnDisk %v", budget, s.OnDisk())
		}
		x := s.Samples(1, 3)
		if len(x) != 2*4*5 {
			t.Fatalf("Samples(1,3) has %d floats", len(x))
		}
		for i := range x {
			x[i] = float32(i)
		}
		if got := s.Samples(2, 3)[0]; got != 20 {
			t.Fatalf("sample 2 starts with %v, want 20", got)
		}
		path := s.Path()
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if path != "" {
			if _, err := os.Stat(path); !os.IsNotExist(err) {
				t.Fatalf("scratch file %s not removed", path)
			}
		}
	}
}

// TestAccumulator checks S_j = (1/N)·Σ x² and H = (2/N)·Σ x xᵀ against a direct computation,
// with the rows arriving in several chunks as they do from a chunked forward pass.
func TestAccumulator(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	const rows, cols, nseq = 12, 7, 3
	x := make([]float32, rows*cols)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	a := newAccumulator(2, true)
	a.tap(1, x[:5*cols], 5, cols)
	a.tap(1, x[5*cols:], rows-5, cols)
	a.n = nseq
	st := a.stats(1, cols)
	if st.N != nseq || st.Tokens != rows {
		t.Fatalf("N %d tokens %d", st.N, st.Tokens)
	}
	for j := 0; j < cols; j++ {
		var s float64
		for r := 0; r < rows; r++ {
			v := float64(x[r*cols+j])
			s += v * v
		}
		if want := float32(s / nseq); math.Abs(float64(st.SumSq[j]-want)) > 1e-6*math.Abs(float64(want)) {
			t.Errorf("SumSq[%d] = %v, want %v", j, st.SumSq[j], want)
		}
		for k := 0; k < cols; k++ {
			var h float64
			for r := 0; r < rows; r++ {
				h += float64(x[r*cols+j]) * float64(x[r*cols+k])
			}
			h *= 2.0 / nseq
			if got := st.Hessian[j*cols+k]; math.Abs(got-h) > 1e-5*(1+math.Abs(h)) {
				t.Errorf("H[%d,%d] = %v, want %v", j, k, got, h)
			}
		}
	}
	// An input that saw no token (an expert no calibration token reached) has zero statistics.
	if z := a.stats(0, cols); z.Tokens != 0 || len(z.SumSq) != cols || z.SumSq[0] != 0 || len(z.Hessian) != cols*cols {
		t.Errorf("unseen input: %+v", z)
	}
}

func TestMaskAndTarget(t *testing.T) {
	m := NewMask(3, 70)
	m.Set(0, 0)
	m.Set(2, 69)
	m.Set(1, 5)
	if !m.Get(2, 69) || m.Get(2, 68) || m.Count() != 3 {
		t.Fatalf("mask bits wrong: count %d", m.Count())
	}
	w := NewMatrix(3, 70)
	for i := range w.Data {
		w.Data[i] = -1
	}
	ApplyMask(m, w)
	if w.Data[0] != 0 || math.Signbit(float64(w.Data[0])) || w.Data[2*70+69] != 0 || w.Data[1] != -1 {
		t.Fatalf("Apply wrong")
	}
	bad := []Target{{Sparsity: 1}, {Sparsity: -0.1}, {Sparsity: math.NaN()}, {N: 4, M: 4}, {N: 0, M: 4}, {N: 2, M: 3}}
	for _, tg := range bad {
		if err := tg.Validate(64); err == nil {
			t.Errorf("%+v accepted for 64 columns", tg)
		}
	}
	for _, tg := range []Target{{Sparsity: 0}, {Sparsity: 0.5}, {N: 2, M: 4}, {N: 4, M: 8}} {
		if err := tg.Validate(64); err != nil {
			t.Errorf("%+v: %v", tg, err)
		}
	}
}
