package pipeline

import "github.com/wanda-go/wanda/tensor"

// accumulator gathers the statistics of each distinct linear input (tap) of one decoder
// layer during its dense forward pass: per input channel j the sum of x_j² (float64), and
// with hessian the sum of x xᵀ (float64, [cols, cols]).
type accumulator struct {
	inputs  []inputAcc
	gram    []float32 // scratch for one chunk's xᵀx
	n       int       // calibration sequences seen
	hessian bool
}

type inputAcc struct {
	sumsq  []float64
	hess   []float64
	tokens int
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

// stats are the statistics of input for a linear with cols input columns: SumSq[j] =
// Σ x_j² / N (the reference's scaler_row) and Hessian = 2/N · Σ x xᵀ. An input that saw no
// token (an expert no calibration token was routed to) has all-zero statistics.
func (a *accumulator) stats(input, cols int) *Stats {
	in := &a.inputs[input]
	st := &Stats{N: a.n, Tokens: in.tokens, SumSq: make([]float32, cols)}
	if in.sumsq != nil && a.n > 0 {
		for j, v := range in.sumsq[:cols] {
			st.SumSq[j] = float32(v / float64(a.n))
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
