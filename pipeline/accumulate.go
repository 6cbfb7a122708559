package pipeline

import (
	"fmt"

	"github.com/wanda-go/wanda/tensor"
)

// accumulator gathers the statistics of each distinct linear input (tap) of one decoder
// layer during its dense forward pass: per input channel j the sum of x_j² (float64), with
// hessian the sum of x xᵀ (float64, [cols, cols]), and for the inputs a stage asked more of
// (channel[input] != 0) a ChannelAccumulator (sums and per-sequence variances, or the
// reference's float32 running averages when running).
type accumulator struct {
	inputs  []inputAcc
	gram    []float32 // scratch for one chunk's xᵀx
	n       int       // calibration sequences seen
	hessian bool
	seqlen  int
	channel []StatsKind // per input; nil when no stage asked for more than SumSq
	running bool        // SumSq of the channel inputs from the float32 running averages
	err     error       // the first tap a channel accumulator could not take
}

type inputAcc struct {
	sumsq  []float64
	hess   []float64
	tokens int
	ch     *ChannelAccumulator
}

func newAccumulator(inputs int, hessian bool) *accumulator {
	return &accumulator{inputs: make([]inputAcc, inputs), hessian: hessian}
}

// tap is a Tap.
func (a *accumulator) tap(input int, x []float32, rows, cols int) {
	in := &a.inputs[input]
	if in.sumsq == nil {
		in.sumsq = make([]float64, cols)
	}
	s := in.sumsq[:cols]
	for r := 0; r < rows; r++ {
		row := x[r*cols : (r+1)*cols]
		for j, v := range row {
			s[j] += float64(v) * float64(v)
		}
	}
	in.tokens += rows
	if a.channel != nil && a.channel[input] != 0 && a.err == nil {
		a.addChannel(input, x, rows, cols)
	}
	if a.hessian && rows > 0 {
		if in.hess == nil {
			in.hess = make([]float64, cols*cols)
		}
		if cap(a.gram) < cols*cols {
			a.gram = make([]float32, cols*cols)
		}
		g := a.gram[:cols*cols]
		tensor.Sgemm(true, false, cols, cols, rows, 1, x, cols, x, cols, 0, g, cols)
		for k, v := range g {
			in.hess[k] += float64(v)
		}
	}
}

// addChannel feeds whole sequences to the input's channel accumulator: per-sequence
// variances need the tap to see whole sequences (a dense layer's taps do; the routed rows
// of a mixture-of-experts expert do not).
func (a *accumulator) addChannel(input int, x []float32, rows, cols int) {
	in := &a.inputs[input]
	if rows%a.seqlen != 0 {
		a.err = fmt.Errorf("%w: input %d got %d rows, not whole sequences of %d tokens: per-sequence statistics (%v) need whole sequences",
			ErrShape, input, rows, a.seqlen, a.channel[input])
		return
	}
	if in.ch == nil {
		if a.running {
			in.ch = NewRunningAccumulator(cols, a.seqlen, a.channel[input])
		} else {
			in.ch = NewChannelAccumulator(cols, a.seqlen, a.channel[input])
		}
	}
	if err := in.ch.Add(x[:rows*cols], rows/a.seqlen); err != nil {
		a.err = err
	}
}

// stats are the statistics of input for a linear with cols input columns: SumSq[j] =
// Σ x_j² / N (the reference's scaler_row), Hessian = 2/N · Σ x xᵀ, and Sum and Var when the
// input has a channel accumulator. An input that saw no token (an expert no calibration
// token was routed to) has all-zero statistics.
func (a *accumulator) stats(input, cols int) *Stats {
	in := &a.inputs[input]
	st := &Stats{N: a.n, Tokens: in.tokens, SumSq: make([]float32, cols)}
	if in.sumsq != nil && a.n > 0 {
		for j, v := range in.sumsq[:cols] {
			st.SumSq[j] = float32(v / float64(a.n))
		}
	}
	if in.ch != nil {
		cs := in.ch.Stats()
		st.Sum, st.Var = cs.Sum, cs.Var
		if a.running && cs.SumSq != nil {
			st.SumSq = cs.SumSq
		}
	}
	if a.hessian {
		st.Hessian = make([]float64, cols*cols)
		if in.hess != nil && a.n > 0 {
			f := 2 / float64(a.n)
			for k, v := range in.hess {
				st.Hessian[k] = v * f
			}
		}
	}
	return st
}
