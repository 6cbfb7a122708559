package model

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/wanda-go/wanda/format/config"
	"github.com/wanda-go/wanda/format/safetensors"
	"github.com/wanda-go/wanda/internal/modelgen"
	"github.com/wanda-go/wanda/model/arch"
	"github.com/wanda-go/wanda/tensor"
)

// TestThreadsDoNotChangeOutputs: the GEMMs and every row-parallel pass (attention tiles,
// norms, activations, routing, expert sums, the head) run on tensor.ParallelFor and the
// GEMM pool, so tensor.SetThreads decides how many goroutines run; the hidden states and
// the NLLs must be the same bits whatever it says. A mixture of experts with a shared
// expert, sequences longer than one attention tile (128 rows).
func TestThreadsDoNotChangeOutputs(t *testing.T) {
	defer tensor.SetThreads(tensor.SetThreads(1))
	for i, opt := range []modelgen.Options{
		{Arch: config.TypeMistral, SlidingWindow: 100, Seed: 11},
		{Arch: "qwen2_moe", Experts: 4, Intermediate: 64, Seed: 12},
	} {
		dir := t.TempDir()
		if err := modelgen.Write(dir, opt); err != nil {
			t.Fatal(err)
		}
		cfg, _, err := arch.LoadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		set, err := safetensors.OpenDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		const nseq, T = 2, 150
		ids := randIDs(rand.New(rand.NewPCG(uint64(i), 5)), nseq*T, cfg.VocabSize)
		var outs [][]uint64
		for _, n := range []int{1, 3, 8} {
			tensor.SetThreads(n)
			mod, h := runModel(t, set, cfg, ids, nseq, T)
			head, err := mod.Head()
			if err != nil {
				t.Fatal(err)
			}
			var bits []uint64
			for _, v := range h {
				bits = append(bits, uint64(math.Float32bits(v)))
			}
			for _, v := range head.NLL(h, ids, nseq, T) {
				bits = append(bits, math.Float64bits(v))
			}
			outs = append(outs, bits)
		}
		set.Close()
		if !slices.Equal(outs[0], outs[1]) || !slices.Equal(outs[0], outs[2]) {
			t.Errorf("%s: the outputs depend on the number of threads", cfg.ModelType)
		}
	}
}
