package pattern

import (
	"context"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/wanda-go/wanda/pipeline"
	"github.com/wanda-go/wanda/tensor"
)

// TestThreadsDoNotChangeMasks: Select hands chunks of rows (or columns) to
// tensor.ParallelFor, so tensor.SetThreads decides how many goroutines run; the masks
// must not depend on it. 203×72 bf16-quantised scores: many ties, a row count that is
// not a multiple of any chunk, and rows whose bits share mask words.
func TestThreadsDoNotChangeMasks(t *testing.T) {
	defer tensor.SetThreads(tensor.SetThreads(1))
	sc := randScores(rand.New(rand.NewPCG(7, 8)), 203, 72, true)
	targets := []pipeline.Target{
		{Sparsity: 0.5}, {Sparsity: 0.3, Group: pipeline.GroupColumn}, {Sparsity: 0.7, Group: pipeline.GroupMatrix},
		{Sparsity: 0.5, Variant: true}, {N: 2, M: 4}, {N: 4, M: 8},
	}
	for _, tg := range targets {
		var masks [][]bool
		for _, n := range []int{1, 3, 8} {
			tensor.SetThreads(n)
			m, err := ForTarget(tg).Select(context.Background(), sc, tg, info)
			if err != nil {
				t.Fatalf("%v, %d threads: %v", tg, n, err)
			}
			masks = append(masks, maskBools(m))
		}
		if !slices.Equal(masks[0], masks[1]) || !slices.Equal(masks[0], masks[2]) {
			t.Errorf("%v: the mask depends on the number of threads", tg)
		}
	}
}
