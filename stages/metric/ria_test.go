package metric

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/wanda-go/wanda/pipeline"
	"github.com/wanda-go/wanda/stages/stagetest"
)

func TestRIAConformance(t *testing.T) {
	stagetest.TestMetric(t, DefaultRIA(), stagetest.StrictErrors())
	stagetest.TestMetric(t, RIA{A: 1.3}, stagetest.StrictErrors())
}

// riaPlugin is the example plugin's formula (plugins/examples/ria), written out again here:
// float64 row sums (in column order) and column sums (in row order) of |W|, each share
// added only when its sum is positive, times SumSq^(a/2), rounded once to float32.
func riaPlugin(w pipeline.Matrix, sumsq []float32, a float64) []float32 {
	rs := make([]float64, w.Rows)
	cs := make([]float64, w.Cols)
	for i := 0; i < w.Rows; i++ {
		for j := 0; j < w.Cols; j++ {
			x := math.Abs(float64(w.Data[i*w.Cols+j]))
			rs[i] += x
			cs[j] += x
		}
	}
	out := make([]float32, len(w.Data))
	for i := 0; i < w.Rows; i++ {
		for j := 0; j < w.Cols; j++ {
			x := math.Abs(float64(w.Data[i*w.Cols+j]))
			s := 0.0
			if rs[i] > 0 {
				s += x / rs[i]
			}
			if cs[j] > 0 {
				s += x / cs[j]
			}
			out[i*w.Cols+j] = float32(s * math.Pow(float64(sumsq[j]), a/2))
		}
	}
	return out
}

// TestRIAHand: W = [[1, −2], [0, 2]], SumSq = [4, 9], a = 0.5: row sums 3 and 2, column
// sums 1 and 4, activation factors 4^¼ = √2 and 9^¼ = √3.
func TestRIAHand(t *testing.T) {
	w := pipeline.Matrix{Rows: 2, Cols: 2, Data: []float32{1, -2, 0, 2}}
	st := &pipeline.Stats{SumSq: []float32{4, 9}, N: 1}
	got, err := DefaultRIA().Score(context.Background(), w, st, info)
	if err != nil {
		t.Fatal(err)
	}
	want := []float64{(1.0/3 + 1) * math.Sqrt2, (2.0/3 + 2.0/4) * math.Sqrt(3), 0, (2.0/2 + 2.0/4) * math.Sqrt(3)}
	for k := range want {
		if math.Abs(float64(got.Data[k])-want[k]) > 1e-6*want[k] {
			t.Errorf("score %d: %v, want %v", k, got.Data[k], want[k])
		}
	}
}

// TestRIAEqualsPlugin compares the built-in with the plugin's formula bit for bit on random
// layers (big enough for the parallel paths, with all-zero rows and columns, exact zero
// statistics and several exponents).
func TestRIAEqualsPlugin(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	for trial, sh := range [][2]int{{1, 1}, {3, 7}, {64, 48}, {300, 257}, {1024, 384}, {130, 1100}} {
		rows, cols := sh[0], sh[1]
		w := pipeline.NewMatrix(rows, cols)
		for k := range w.Data {
			w.Data[k] = float32(r.NormFloat64() * 0.02 * math.Exp(r.NormFloat64()))
		}
		if rows > 2 && cols > 2 {
			for j := range cols {
				w.Data[1*cols+j] = 0 // an all-zero row
			}
			for i := range rows {
				w.Data[i*cols+2] = 0 // an all-zero column
			}
		}
		st := &pipeline.Stats{SumSq: make([]float32, cols), N: 8}
		for j := range st.SumSq {
			st.SumSq[j] = float32(math.Exp(r.NormFloat64() * 2))
		}
		st.SumSq[0] = 0
		for _, a := range []float64{0.5, 0, 1, 2, 0.37} {
			got, err := RIA{A: a}.Score(context.Background(), w, st, info)
			if err != nil {
				t.Fatal(err)
			}
			want := riaPlugin(w, st.SumSq, a)
			for k := range want {
				if math.Float32bits(got.Data[k]) != math.Float32bits(want[k]) {
					t.Fatalf("trial %d a=%v: score [%d,%d] = %v, plugin formula %v", trial, a, k/cols, k%cols, got.Data[k], want[k])
				}
			}
		}
	}
}

func TestRIAErrors(t *testing.T) {
	w := pipeline.Matrix{Rows: 2, Cols: 2, Data: []float32{1, -2, 0, 2}}
	st := &pipeline.Stats{SumSq: []float32{4, 9}, N: 1}
	for _, a := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
		if _, err := (RIA{A: a}).Score(context.Background(), w, st, info); !errors.Is(err, ErrBadArg) {
			t.Errorf("a = %v: %v", a, err)
		}
	}
	neg := &pipeline.Stats{SumSq: []float32{4, -1}, N: 1}
	if _, err := DefaultRIA().Score(context.Background(), w, neg, info); !errors.Is(err, pipeline.ErrNonFinite) {
		t.Errorf("negative statistic: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := DefaultRIA().Score(ctx, w, st, info); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}
