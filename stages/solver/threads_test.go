package solver

import (
	"context"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/wanda-go/wanda/pipeline"
	"github.com/wanda-go/wanda/tensor"
)

// TestThreadsDoNotChangeResult: the rows of a block are handed to tensor.ParallelFor and
// the lazy update is a tensor GEMM, so tensor.SetThreads decides how many goroutines run;
// the mask and the updated weights must be the same bits whatever it says.
func TestThreadsDoNotChangeResult(t *testing.T) {
	defer tensor.SetThreads(tensor.SetThreads(1))
	w0, _, st := problem(rand.New(rand.NewPCG(9, 9)), 61, 96, 192, 2)
	for _, tg := range []pipeline.Target{{Sparsity: 0.5}, {Sparsity: 0.6, Group: pipeline.GroupMatrix}, {N: 2, M: 4}} {
		var bits [][]uint64
		var weights [][]uint32
		for _, n := range []int{1, 3, 8} {
			tensor.SetThreads(n)
			w := pipeline.Matrix{Rows: w0.Rows, Cols: w0.Cols, Data: slices.Clone(w0.Data)}
			m, err := NewSparseGPT(Options{BlockSize: 32}).Solve(context.Background(), w, st, tg, info)
			if err != nil {
				t.Fatalf("%v, %d threads: %v", tg, n, err)
			}
			u := make([]uint32, len(w.Data))
			for k, v := range w.Data {
				u[k] = math.Float32bits(v)
			}
			bits, weights = append(bits, m.Bits), append(weights, u)
		}
		for k := 1; k < len(bits); k++ {
			if !slices.Equal(bits[0], bits[k]) || !slices.Equal(weights[0], weights[k]) {
				t.Errorf("%v: the result depends on the number of threads", tg)
			}
		}
	}
}
