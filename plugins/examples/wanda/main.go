// Command wanda-plugin-wanda is the Wanda metric as an out-of-process plugin: the score of
// weight (i, j) is |W_ij| · sqrt(S_j) in float32, with S_j the mean squared activation of
// input channel j (per sequence), as the built-in metric computes it.
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
		Name:        "wanda",
		Description: "Wanda |W|·sqrt(S) computed out of process (same scores as the built-in)",
		Args:        []sdk.Arg{},
	}, score)
}

func score(w, s sdk.Tensor, _ sdk.LayerInfo) (sdk.Tensor, error) {
	rows, cols := w.Shape[0], w.Shape[1]
	if len(s.Data) != cols {
		return sdk.Tensor{}, fmt.Errorf("%d statistics for %d input columns", len(s.Data), cols)
	}
	norm := make([]float32, cols)
	for j, v := range s.Data {
		if !(v >= 0) {
			return sdk.Tensor{}, fmt.Errorf("statistic %d is %g", j, v)
		}
		// float64 sqrt rounded to float32 is the correctly rounded float32 sqrt.
		norm[j] = float32(math.Sqrt(float64(v)))
	}
	out := sdk.NewTensor(rows, cols)
	for i := range rows {
		src, dst := w.Data[i*cols:(i+1)*cols], out.Data[i*cols:(i+1)*cols]
		for j, v := range src {
			dst[j] = float32(math.Abs(float64(v))) * norm[j]
		}
	}
	return out, nil
}
