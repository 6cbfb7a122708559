// Command wanda-plugin-ria is the RIA metric (Relative Importance and Activations, Zhang et
// al., "Plug-and-Play: An Efficient Post-training Pruning Method for Large Language Models",
// ICLR 2024) as a plugin:
//
//	score_ij = (|W_ij| / Σ_k |W_ik|  +  |W_ij| / Σ_k |W_kj|) · S_j^(a/2)
//
// the weight's importance relative to its output row plus relative to its input column,
// times the input channel's activation norm to the power a (S_j is the mean squared
// activation, so S_j^(a/2) is ‖X_j‖^a up to a per-layer constant, which does not change any
// ranking). a defaults to 0.5, as in the paper; set it with --plugin-arg a=VALUE. A row or
// column whose weights are all zero contributes 0 instead of dividing by zero. Sums are in
// float64; scores are float32.
//
// W and the scores are row-major [out, in] float32; S is [in].
package main

import (
	"fmt"
	"math"

	"github.com/wanda-go/wanda/plugins/sdk"
)

func main() {
	sdk.ServeMetric(sdk.MetricInfo{
		Name:        "ria",
		Description: "RIA (Zhang et al., ICLR 2024): relative importance (row + column) · ‖X_j‖^a",
		Args:        []sdk.Arg{{Name: "a", Help: "activation exponent a (default 0.5)"}},
		CheckArgs: func(args map[string]string) error {
			_, err := exponent(args)
			return err
		},
	}, score)
}

func exponent(args map[string]string) (float64, error) {
	a, err := sdk.ArgFloat(args, "a", 0.5)
	if err == nil && (math.IsNaN(a) || math.IsInf(a, 0)) {
		err = fmt.Errorf("argument a=%v: want a finite number", a)
	}
	return a, err
}

func score(w, s sdk.Tensor, info sdk.LayerInfo) (sdk.Tensor, error) {
	a, err := exponent(info.Args)
	if err != nil {
		return sdk.Tensor{}, err
	}
	rows, cols := w.Shape[0], w.Shape[1]
	if len(s.Data) != cols {
		return sdk.Tensor{}, fmt.Errorf("%d statistics for %d input columns", len(s.Data), cols)
	}
	rowSum := make([]float64, rows)
	colSum := make([]float64, cols)
	for i := range rows {
		var rs float64
		for j, v := range w.Data[i*cols : (i+1)*cols] {
			x := math.Abs(float64(v))
			rs += x
			colSum[j] += x
		}
		rowSum[i] = rs
	}
	act := make([]float64, cols)
	for j, v := range s.Data {
		if !(v >= 0) {
			return sdk.Tensor{}, fmt.Errorf("statistic %d is %g", j, v)
		}
		act[j] = math.Pow(float64(v), a/2)
	}
	out := sdk.NewTensor(rows, cols)
	for i := range rows {
		for j, v := range w.Data[i*cols : (i+1)*cols] {
			x := math.Abs(float64(v))
			var ri float64
			if rowSum[i] > 0 {
				ri += x / rowSum[i]
			}
			if colSum[j] > 0 {
				ri += x / colSum[j]
			}
			out.Data[i*cols+j] = float32(ri * act[j])
		}
	}
	return out, nil
}
