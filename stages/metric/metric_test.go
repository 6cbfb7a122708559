package metric

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/wanda-go/wanda/pipeline"
	"github.com/wanda-go/wanda/stages/stagetest"
)

var info = pipeline.LayerInfo{Layer: 5, Tensor: "model.layers.5.self_attn.o_proj.weight", Part: "o_proj"}

func TestConformance(t *testing.T) {
	for _, name := range []string{"magnitude", "wanda"} {
		m, err := pipeline.BuiltinMetric(name, nil) // as registered (register.go)
		if err != nil {
			t.Fatal(err)
		}
		t.Run(name, func(t *testing.T) { stagetest.TestMetric(t, m, stagetest.StrictErrors()) })
	}
}

// TestWandaExact checks |W_ij|·sqrt(S_j) bit for bit: sqrt must be the correctly rounded
// float32 square root (verified here by comparing squares of the neighbours, exact in
// float64) and the product a single float32 rounding of the exact product (float64 holds
// the product of two float32 exactly).
func TestWandaExact(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	rows, cols := 200, 257 // enough rows for the parallel path
	w := pipeline.NewMatrix(rows, cols)
	for k := range w.Data {
		w.Data[k] = float32(r.NormFloat64() * 0.03)
	}
	w.Data[3] = float32(math.Copysign(0, -1))
	st := &pipeline.Stats{SumSq: make([]float32, cols), N: 4}
	for j := range st.SumSq {
		st.SumSq[j] = float32(math.Exp(r.NormFloat64() * 3))
	}
	st.SumSq[7] = 0
	got, err := Wanda{}.Score(context.Background(), w, st, info)
	if err != nil {
		t.Fatal(err)
	}
	for j, s := range st.SumSq {
		root := float32(math.Sqrt(float64(s)))
		if !closestRoot(root, s) {
			t.Fatalf("sqrt(%g) = %g is not the closest float32", s, root)
		}
		for i := range rows {
			wv := math.Abs(float64(w.Data[i*cols+j]))
			want := float32(wv * float64(root))
			if g := got.Data[i*cols+j]; math.Float32bits(g) != math.Float32bits(want) {
				t.Fatalf("[%d,%d]: %g, want %g", i, j, g, want)
			}
		}
	}
}

func closestRoot(root, s float32) bool {
	d := func(x float32) float64 { return math.Abs(float64(x)*float64(x) - float64(s)) }
	up, down := math.Nextafter32(root, float32(math.Inf(1))), math.Nextafter32(root, 0)
	return d(root) <= d(up) && (root == 0 || d(root) <= d(down))
}

func TestMagnitude(t *testing.T) {
	w := pipeline.Matrix{Rows: 2, Cols: 3, Data: []float32{-1.5, 0, float32(math.Copysign(0, -1)), 2, -3e-8, 7}}
	got, err := Magnitude{}.Score(context.Background(), w, nil, info)
	if err != nil {
		t.Fatal(err)
	}
	want := []float32{1.5, 0, 0, 2, 3e-8, 7}
	for k := range want {
		if math.Float32bits(got.Data[k]) != math.Float32bits(want[k]) {
			t.Errorf("%d: |%g| = %g, want %g", k, w.Data[k], got.Data[k], want[k])
		}
	}
}

func TestErrorsNameTheLayer(t *testing.T) {
	w := pipeline.Matrix{Rows: 1, Cols: 2, Data: []float32{1, float32(math.NaN())}}
	for _, m := range []pipeline.Metric{Magnitude{}, Wanda{}} {
		_, err := m.Score(context.Background(), w, &pipeline.Stats{SumSq: []float32{1, 1}}, info)
		if !errors.Is(err, pipeline.ErrNonFinite) || !strings.Contains(err.Error(), info.Tensor) {
			t.Errorf("%s: %v", m.Name(), err)
		}
	}
	w.Data[1] = 1
	_, err := Wanda{}.Score(context.Background(), w, &pipeline.Stats{SumSq: []float32{1, -1}}, info)
	if !errors.Is(err, pipeline.ErrNonFinite) {
		t.Errorf("negative statistic: %v", err)
	}
	_, err = Wanda{}.Score(context.Background(), w, &pipeline.Stats{SumSq: []float32{1}}, info)
	if !errors.Is(err, pipeline.ErrShape) || !strings.Contains(err.Error(), info.Tensor) {
		t.Errorf("short statistics: %v", err)
	}
}
