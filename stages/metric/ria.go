package metric

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/wanda-go/wanda/pipeline"
	"github.com/wanda-go/wanda/tensor"
)

// ErrBadArg reports a metric parameter out of range.
var ErrBadArg = errors.New("metric: invalid argument")

// RIA is Relative Importance and Activations (Zhang et al., "Plug-and-Play: An Efficient
// Post-training Pruning Method for Large Language Models", ICLR 2024; biomedical-cybernetics/
// Relative-importance-and-activation-pruning lib/prune.py:239):
//
//	S_ij = (|W_ij| / Σ_k |W_ik|  +  |W_ij| / Σ_k |W_kj|) · SumSq_j^(A/2)
//
// — the weight's share of its output row plus its share of its input column, times the
// input channel's norm to the power A (SumSq_j^(A/2) = sqrt(SumSq_j)^A, the authors'
// (sqrt(scaler_row))**a). It computes exactly what the example plugin plugins/examples/ria
// computes, bit for bit: row and column sums of |W| in float64 (row sums over j in order,
// column sums over i in order), the two shares added in float64 (a row or column whose
// weights are all zero contributes 0 instead of dividing by zero), math.Pow(SumSq_j, A/2) in
// float64, and one rounding of the product to float32. The authors' code works in float32
// and divides by zero for an all-zero row or column.
type RIA struct {
	// A is the activation exponent a (default 0.5, the paper's and the authors' default).
	A float64
}

var _ pipeline.Metric = RIA{}

// DefaultRIA returns RIA with A = 0.5.
func DefaultRIA() RIA { return RIA{A: 0.5} }

// Name returns "ria".
func (RIA) Name() string { return "ria" }

// NeedsStats returns true.
func (RIA) NeedsStats() bool { return true }

// Score returns the RIA scores of W.
func (ra RIA) Score(ctx context.Context, w pipeline.Matrix, st *pipeline.Stats, info pipeline.LayerInfo) (pipeline.Matrix, error) {
	name := ra.Name()
	if math.IsNaN(ra.A) || math.IsInf(ra.A, 0) {
		return pipeline.Matrix{}, fmt.Errorf("metric %s: %s: exponent a = %v: %w (want a finite number)", name, info, ra.A, ErrBadArg)
	}
	if err := checkW(name, w, info); err != nil {
		return pipeline.Matrix{}, err
	}
	if err := checkSumSq(name, st, w.Cols, info); err != nil {
		return pipeline.Matrix{}, err
	}
	act := make([]float64, w.Cols)
	for j, s := range st.SumSq {
		if !finite(s) || s < 0 {
			return pipeline.Matrix{}, fmt.Errorf("metric %s: %s: input statistic %d is %g: %w", name, info, j, s, pipeline.ErrNonFinite)
		}
		act[j] = math.Pow(float64(s), ra.A/2)
	}
	if err := ctx.Err(); err != nil {
		return pipeline.Matrix{}, err
	}
	rows, cols := w.Rows, w.Cols
	rowSum := make([]float64, rows)
	tensor.ParallelFor(rows, rowGrain, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			var s float64
			for _, v := range w.Row(i) {
				s += math.Abs(float64(v))
			}
			rowSum[i] = s
		}
	})
	// Column sums over the rows in order, split by columns so that each sum keeps that order.
	colSum := make([]float64, cols)
	tensor.ParallelFor(cols, rowGrain, func(lo, hi int) {
		part := colSum[lo:hi]
		for i := range rows {
			for k, v := range w.Data[i*cols+lo : i*cols+hi] {
				part[k] += math.Abs(float64(v))
			}
		}
	})
	out := pipeline.NewMatrix(rows, cols)
	tensor.ParallelFor(rows, rowGrain, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			rs := rowSum[i]
			dst := out.Row(i)
			for j, v := range w.Row(i) {
				x := math.Abs(float64(v))
				var ri float64
				if rs > 0 {
					ri += x / rs
				}
				if cs := colSum[j]; cs > 0 {
					ri += x / cs
				}
				dst[j] = float32(ri * act[j])
			}
		}
	})
	return out, nil
}
