package pipeline

import (
	"fmt"
	"math"
	"slices"
)

// ChannelAccumulator gathers Stats for one linear input from the dense forward pass, whole
// sequences at a time (the pipeline's taps see whole sequences: its chunks are multiples of
// seqlen). It has two modes:
//
//   - NewRunningAccumulator reproduces the reference's float32 running averages
//     (WrappedGPT.add_batch) operation by operation. Use it to match reference masks: with it
//     every mask of the five tiny-llama-a reference runs (DSnoT 50%, 70%, 2:4; OWL 50%, 70%)
//     is reproduced bit for bit.
//   - NewChannelAccumulator accumulates in float64 and rounds to float32 once (the per-sequence
//     variance in two passes over the sequence, free of cancellation): the values the
//     running averages approximate, independent of sequence order, mergeable across workers.
//     Its last-bit differences from the reference's statistics can decide Wanda near-ties the
//     other way, and DSnoT's refinement amplifies such a flip into a different row.
type ChannelAccumulator struct {
	cols, seqlen int
	need         StatsKind
	sumsq, sum   []float64
	centered     []float64 // Σ_seq Σ_tok (x − mean_seq)²
	mean         []float64 // scratch: one sequence's mean
	n, tokens    int

	// Float32 running mode (NewRunningAccumulator).
	running          bool
	sumsq32, sum32   []float32
	var32, acc32     []float32
	seqSum, seqCentr []float64
}

// NewAccumulator returns an accumulator for inputs of cols channels in sequences of seqlen
// tokens, gathering the statistics in need (StatsVar implies the per-sequence sums it needs).
func NewChannelAccumulator(cols, seqlen int, need StatsKind) *ChannelAccumulator {
	if cols < 0 || seqlen <= 0 {
		panic(fmt.Sprintf("pipeline: NewChannelAccumulator(%d, %d)", cols, seqlen))
	}
	a := &ChannelAccumulator{cols: cols, seqlen: seqlen, need: need}
	if need.Has(StatsSumSq) {
		a.sumsq = make([]float64, cols)
	}
	if need.Has(StatsSum) {
		a.sum = make([]float64, cols)
	}
	if need.Has(StatsVar) {
		a.centered = make([]float64, cols)
		a.mean = make([]float64, cols)
	}
	return a
}

// NewRunningAccumulator returns an accumulator that reproduces DSnoT's (and Wanda's)
// WrappedGPT.add_batch in float32, one sequence per step, instead of accumulating in float64:
//
//	scaler_row ← scaler_row·f + (‖x_j‖₂)² / n      f = float32((n−1)/n), n = sequences so far
//	sum        ← sum·f + Σ_tok x_j / n
//	var        ← var_seq if first, else (var·ntok + var_seq·T) / (ntok + T)
//
// every operation rounded to float32 as torch does it, with ‖x_j‖₂ the float32 square root of
// a float32 sum of squares accumulated token by token (torch's strided norm reduction), and
// Σ_tok x_j and var_seq (torch.var, unbiased=False) computed in float64 and rounded to float32.
// The reference runs accumulate this way; its rounding can decide near-ties in the masks, so
// this mode follows the reference more closely than the float64 one. Sequences must be added
// in calibration order; Merge is not available.
func NewRunningAccumulator(cols, seqlen int, need StatsKind) *ChannelAccumulator {
	if cols < 0 || seqlen <= 0 {
		panic(fmt.Sprintf("pipeline: NewRunningAccumulator(%d, %d)", cols, seqlen))
	}
	a := &ChannelAccumulator{cols: cols, seqlen: seqlen, need: need, running: true}
	if need.Has(StatsSumSq) {
		a.sumsq32 = make([]float32, cols)
		a.acc32 = make([]float32, cols)
	}
	if need.Has(StatsSum) || need.Has(StatsVar) {
		a.seqSum = make([]float64, cols)
	}
	if need.Has(StatsSum) {
		a.sum32 = make([]float32, cols)
	}
	if need.Has(StatsVar) {
		a.var32 = make([]float32, cols)
		a.seqCentr = make([]float64, cols)
	}
	return a
}

// addRunning is Add for the float32 running mode: one sequence.
func (a *ChannelAccumulator) addRunning(seq []float32) {
	T, C := a.seqlen, a.cols
	n := a.n + 1
	f := float32(float64(a.n) / float64(n))
	div := float32(n)
	if a.sumsq32 != nil {
		acc := a.acc32
		clear(acc)
		for t := range T {
			for j, v := range seq[t*C : (t+1)*C] {
				acc[j] += float32(v * v)
			}
		}
		for j, q := range acc {
			nr := float32(math.Sqrt(float64(q)))
			a.sumsq32[j] = float32(a.sumsq32[j]*f) + float32(nr*nr)/div
		}
	}
	if a.seqSum != nil {
		s := a.seqSum
		clear(s)
		for t := range T {
			for j, v := range seq[t*C : (t+1)*C] {
				s[j] += float64(v)
			}
		}
		if a.sum32 != nil {
			for j, v := range s {
				a.sum32[j] = float32(a.sum32[j]*f) + float32(v)/div
			}
		}
		if a.var32 != nil {
			c := a.seqCentr
			clear(c)
			for t := range T {
				for j, v := range seq[t*C : (t+1)*C] {
					dv := float64(v) - s[j]/float64(T)
					c[j] += dv * dv
				}
			}
			ntok := float32(a.tokens)
			for j, v := range c {
				vs := float32(v / float64(T))
				if a.tokens == 0 {
					a.var32[j] = vs
				} else {
					a.var32[j] = (float32(a.var32[j]*ntok) + float32(vs*float32(T))) / float32(a.tokens+T)
				}
			}
		}
	}
	a.n = n
	a.tokens += T
}

// Add adds nseq whole sequences: x is [nseq·seqlen, cols] row-major, token rows of one
// sequence after another.
func (a *ChannelAccumulator) Add(x []float32, nseq int) error {
	T, C := a.seqlen, a.cols
	if nseq < 0 || len(x) != nseq*T*C {
		return fmt.Errorf("pipeline: channel accumulator: %d values for %d sequences of %d×%d: %w", len(x), nseq, T, C, ErrShape)
	}
	for s := range nseq {
		seq := x[s*T*C : (s+1)*T*C]
		if a.running {
			a.addRunning(seq)
			continue
		}
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
	if !a.running {
		a.n += nseq
		a.tokens += nseq * T
	}
	return nil
}

// Merge adds the sequences b has seen (b must have the same shape and statistics).
func (a *ChannelAccumulator) Merge(b *ChannelAccumulator) error {
	if a.running || b.running {
		return fmt.Errorf("pipeline: float32 running accumulators cannot be merged: %w", ErrShape)
	}
	if a.cols != b.cols || a.seqlen != b.seqlen || a.need != b.need {
		return fmt.Errorf("pipeline: merging accumulators of different shapes: %w", ErrShape)
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
func (a *ChannelAccumulator) Stats() *Stats {
	st := &Stats{N: a.n, Tokens: a.tokens}
	if a.n == 0 {
		return st
	}
	if a.running {
		st.SumSq = slices.Clone(a.sumsq32)
		st.Sum = slices.Clone(a.sum32)
		st.Var = slices.Clone(a.var32)
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
