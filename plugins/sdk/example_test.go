package sdk_test

import (
	"math"

	"github.com/wanda-go/wanda/plugins/sdk"
)

// An allocation plugin that prunes layers with heavier weights less: each layer's summary is
// the mean |W| of its linears, and sparsities are spread by ±0.05 around the target, from the
// lightest layer to the heaviest.
func ExampleServeAllocation() {
	sdk.ServeAllocation(sdk.AllocationInfo{Name: "heavy", Description: "heavier layers pruned less"},
		func(layer int, linears []sdk.Linear, _ map[string]string) ([]float64, error) {
			var sum, n float64
			for _, l := range linears {
				row := make([]float32, l.W.Cols)
				for i := range l.W.Rows {
					l.W.RowsF32(row, i, i+1)
					for _, v := range row {
						sum += math.Abs(float64(v))
					}
				}
				n += float64(l.W.Rows * l.W.Cols)
			}
			return []float64{sum / n}, nil
		},
		func(summaries [][]float64, t sdk.Target, _ map[string]string) ([]float64, error) {
			lo, hi := math.Inf(1), math.Inf(-1)
			for _, s := range summaries {
				lo, hi = min(lo, s[0]), max(hi, s[0])
			}
			sp := make([]float64, len(summaries))
			for l, s := range summaries {
				sp[l] = t.Sparsity
				if hi > lo {
					sp[l] += 0.05 - 0.1*(s[0]-lo)/(hi-lo)
				}
				sp[l] = min(max(sp[l], 0), 0.99)
			}
			return sp, nil
		})
}

// A refine plugin that, in every row but those of down_proj, regrows the pruned weight with
// the largest |W_j·Sum_j| and prunes the kept weight with the smallest instead (the row's
// count stays the same).
func ExampleServeRefine() {
	sdk.ServeRefine(sdk.RefineInfo{
		Name: "swap1", Description: "one exchange per row",
		Needs:   []sdk.Stat{sdk.StatSum},
		Applies: func(info sdk.LayerInfo) bool { return info.Part != "down_proj" },
	}, func(w sdk.Tensor, mask sdk.Mask, st sdk.Stats, _ sdk.Target, _ sdk.LayerInfo) (sdk.Mask, error) {
		rows, cols := w.Shape[0], w.Shape[1]
		for i := range rows {
			grow, cut := -1, -1
			for j := range cols {
				d := math.Abs(float64(w.Data[i*cols+j] * st.Sum[j]))
				if mask.Pruned[i*cols+j] && (grow < 0 || d > math.Abs(float64(w.Data[i*cols+grow]*st.Sum[grow]))) {
					grow = j
				}
				if !mask.Pruned[i*cols+j] && (cut < 0 || d < math.Abs(float64(w.Data[i*cols+cut]*st.Sum[cut]))) {
					cut = j
				}
			}
			if grow >= 0 && cut >= 0 {
				mask.Pruned[i*cols+grow], mask.Pruned[i*cols+cut] = false, true
			}
		}
		return mask, nil
	})
}

// A metric plugin: |W| (magnitude) out of process. Built as wanda-plugin-absw into a plugin
// directory, it runs with `wanda prune --method plugin:absw --plugin-dir DIR`.
func ExampleServeMetric() {
	sdk.ServeMetric(sdk.MetricInfo{Name: "absw", Description: "|W| (magnitude) as a plugin"},
		func(w, s sdk.Tensor, info sdk.LayerInfo) (sdk.Tensor, error) {
			out := sdk.NewTensor(w.Shape[0], w.Shape[1])
			for i, v := range w.Data {
				out.Data[i] = max(v, -v)
			}
			return out, nil
		})
}
