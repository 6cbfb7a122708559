package refine

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/wanda-go/wanda/pipeline"
	"github.com/wanda-go/wanda/stages/metric"
	"github.com/wanda-go/wanda/stages/pattern"
)

// BenchmarkRefine compares, per tensor, the Wanda mask (metric.Wanda scores and the
// unstructured pattern) with DSnoT's refinement of that mask, on tiny-llama-a's attention
// shape and on a LLaMA-7B-wide one (fewer rows, same row width). Compare the two sub-benchmarks
// of one shape within one run.
func BenchmarkRefine(b *testing.B) {
	ctx := context.Background()
	for _, sh := range [][2]int{{384, 384}, {512, 4096}} {
		r := rand.New(rand.NewPCG(17, 18))
		w, st := randomCase(r, sh[0], sh[1], false)
		pst := &pipeline.Stats{SumSq: st.SumSq, N: st.N, Tokens: st.Tokens}
		tgt := pipeline.Target{Sparsity: 0.5}
		info := attnInfo
		scores, err := metric.Wanda{}.Score(ctx, w, pst, info)
		if err != nil {
			b.Fatal(err)
		}
		mask, err := pattern.ForTarget(tgt).Select(ctx, scores, tgt, info)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("wanda-mask/%dx%d", sh[0], sh[1]), func(b *testing.B) {
			for b.Loop() {
				s, _ := metric.Wanda{}.Score(ctx, w, pst, info)
				if _, err := pattern.ForTarget(tgt).Select(ctx, s, tgt, info); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("dsnot-refine/%dx%d", sh[0], sh[1]), func(b *testing.B) {
			m := &pipeline.Mask{Rows: mask.Rows, Cols: mask.Cols}
			for b.Loop() {
				m.Bits = slices.Clone(mask.Bits)
				if err := DefaultDSnoT().Refine(ctx, w, m, st, tgt, info); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkAccumulator compares the two accumulators on one calibration chunk (16 sequences
// of 512 tokens, 384 channels, all three statistics).
func BenchmarkAccumulator(b *testing.B) {
	r := rand.New(rand.NewPCG(19, 20))
	const nseq, T, C = 16, 512, 384
	x := calibInputs(r, nseq, T, C)
	for _, c := range []struct {
		name string
		mk   func() *Accumulator
	}{
		{"float64", func() *Accumulator { return NewAccumulator(C, T, NeedSumSq|NeedSum|NeedVar) }},
		{"float32-running", func() *Accumulator { return NewRunningAccumulator(C, T, NeedSumSq|NeedSum|NeedVar) }},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(x) * 4))
			for b.Loop() {
				if err := c.mk().Add(x, nseq); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
