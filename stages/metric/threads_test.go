package metric

import (
	"context"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/wanda-go/wanda/pipeline"
	"github.com/wanda-go/wanda/tensor"
)

// TestThreadsDoNotChangeScores: rows (and RIA's column sums) are handed to
// tensor.ParallelFor, so tensor.SetThreads decides how many goroutines run; the scores
// must be the same bits whatever it says. 333 rows and 130 columns: several ranges of
// rowGrain, the last one short.
func TestThreadsDoNotChangeScores(t *testing.T) {
	defer tensor.SetThreads(tensor.SetThreads(1))
	r := rand.New(rand.NewPCG(3, 4))
	w := pipeline.NewMatrix(333, 130)
	for k := range w.Data {
		w.Data[k] = float32(r.NormFloat64() * 0.03)
	}
	st := &pipeline.Stats{SumSq: make([]float32, w.Cols), N: 4}
	for j := range st.SumSq {
		st.SumSq[j] = float32(math.Exp(r.NormFloat64()))
	}
	for _, m := range []pipeline.Metric{Magnitude{}, Wanda{}, DefaultRIA()} {
		var scores [][]uint32
		for _, n := range []int{1, 3, 8} {
			tensor.SetThreads(n)
			s, err := m.Score(context.Background(), w, st, info)
			if err != nil {
				t.Fatalf("%s, %d threads: %v", m.Name(), n, err)
			}
			u := make([]uint32, len(s.Data))
			for k, v := range s.Data {
				u[k] = math.Float32bits(v)
			}
			scores = append(scores, u)
		}
		if !slices.Equal(scores[0], scores[1]) || !slices.Equal(scores[0], scores[2]) {
			t.Errorf("%s: the scores depend on the number of threads", m.Name())
		}
	}
}
