package refine

import (
	"fmt"

	"github.com/wanda-go/wanda/pipeline"
)

// Accumulator gathers Stats for one linear input from the dense forward pass, whole
// sequences at a time (the pipeline's taps see whole sequences: its chunks are multiples of
// seqlen). Everything is accumulated in float64 and rounded to float32 once, in Stats; the
// per-sequence variance is computed in two passes over the sequence (its mean first), so it
// does not suffer from cancellation.
//
// DSnoT accumulates the same quantities in float32 as running averages, one sequence at a
// time (lib/layerwrapper.py add_batch); the float64 values here are what those running
// averages approximate.
type Accumulator struct {
	cols, seqlen int
	need         StatsKind
	sumsq, sum   []float64
	centered     []float64 // Σ_seq Σ_tok (x − mean_seq)²
	mean         []float64 // scratch: one sequence's mean
	n, tokens    int
}

// NewAccumulator returns an accumulator for inputs of cols channels in sequences of seqlen
// tokens, gathering the statistics in need (NeedVar implies the per-sequence sums it needs).
func NewAccumulator(cols, seqlen int, need StatsKind) *Accumulator {
	if cols < 0 || seqlen <= 0 {
		panic(fmt.Sprintf("refine: NewAccumulator(%d, %d)", cols, seqlen))
	}
	a := &Accumulator{cols: cols, seqlen: seqlen, need: need}
	if need.Has(NeedSumSq) {
		a.sumsq = make([]float64, cols)
	}
	if need.Has(NeedSum) {
		a.sum = make([]float64, cols)
	}
	if need.Has(NeedVar) {
		a.centered = make([]float64, cols)
		a.mean = make([]float64, cols)
	}
	return a
}

// Add adds nseq whole sequences: x is [nseq·seqlen, cols] row-major, token rows of one
// sequence after another.
func (a *Accumulator) Add(x []float32, nseq int) error {
	T, C := a.seqlen, a.cols
	if nseq < 0 || len(x) != nseq*T*C {
		return fmt.Errorf("refine: accumulator: %d values for %d sequences of %d×%d: %w", len(x), nseq, T, C, pipeline.ErrShape)
	}
	for s := range nseq {
		seq := x[s*T*C : (s+1)*T*C]
		if a.sumsq != nil {
			acc := a.sumsq
			for t := range T {
				for j, v := range seq[t*C : (t+1)*C] {
					acc[j] += float64(v) * float64(v)
				}
			}
		}
		if a.sum != nil {
			acc := a.sum
			for t := range T {
				for j, v := range seq[t*C : (t+1)*C] {
					acc[j] += float64(v)
				}
			}
		}
		if a.centered != nil {
			mean := a.mean
			clear(mean)
			for t := range T {
				for j, v := range seq[t*C : (t+1)*C] {
					mean[j] += float64(v)
				}
			}
			for j := range mean {
				mean[j] /= float64(T)
			}
			acc := a.centered
			for t := range T {
				for j, v := range seq[t*C : (t+1)*C] {
					dv := float64(v) - mean[j]
					acc[j] += dv * dv
				}
			}
		}
	}
	a.n += nseq
	a.tokens += nseq * T
	return nil
}

// Merge adds the sequences b has seen (b must have the same shape and statistics).
func (a *Accumulator) Merge(b *Accumulator) error {
	if a.cols != b.cols || a.seqlen != b.seqlen || a.need != b.need {
		return fmt.Errorf("refine: merging accumulators of different shapes: %w", pipeline.ErrShape)
	}
	for _, p := range [][2][]float64{{a.sumsq, b.sumsq}, {a.sum, b.sum}, {a.centered, b.centered}} {
		for j, v := range p[1] {
			p[0][j] += v
		}
	}
	a.n += b.n
	a.tokens += b.tokens
	return nil
}

// Stats returns the statistics of the sequences added so far (nil slices for those not
// gathered): SumSq = Σx²/N, Sum = Σx/N, Var = Σ(x − mean_seq)²/Tokens, each rounded to
// float32.
func (a *Accumulator) Stats() *Stats {
	st := &Stats{N: a.n, Tokens: a.tokens}
	if a.n == 0 {
		return st
	}
	div := func(v []float64, by int) []float32 {
		if v == nil {
			return nil
		}
		out := make([]float32, len(v))
		for j, x := range v {
			out[j] = float32(x / float64(by))
		}
		return out
	}
	st.SumSq = div(a.sumsq, a.n)
	st.Sum = div(a.sum, a.n)
	st.Var = div(a.centered, a.tokens)
	return st
}
