// Command wanda-plugin-owl is OWL's layer-wise sparsity allocation (Yin et al., "Outlier
// Weighed Layerwise Sparsity", 2023) as an allocation plugin, giving the same sparsities as
// the built-in `--allocation owl`:
//
//   - Observe (one decoder layer of the dense model): the Wanda scores |W_ij|·sqrt(SumSq_j)
//     of all the layer's prunable linears together, their mean, and how many exceed M × the
//     mean. The summary is [outliers, scores].
//   - Allocate: each layer's outlier ratio (percent) is min-max scaled to [0, 2λ] and
//     shifted so that the densities average 1 − target; a layer's sparsity is 1 − its
//     density.
//
// M (default 5) and λ (default 0.08) are set with --allocation-arg m=VALUE and
// lambda=VALUE. The counting streams each weight in blocks of rows (two passes: the mean,
// then the count) with wanda's allocate.OutlierCounter, and the arithmetic of Allocate is
// allocate.OWL's: a plugin may reuse wanda's packages.
//
// Weights arrive [out, in] in the model's stored dtype and are widened a block of rows at a
// time; SumSq is [in].
package main

import (
	"fmt"
	"math"

	"github.com/wanda-go/wanda/plugins/sdk"
	"github.com/wanda-go/wanda/stages/allocate"
)

func main() {
	sdk.ServeAllocation(sdk.AllocationInfo{
		Name:        "owl",
		Description: "OWL (Yin et al., 2023): layer sparsities from each layer's share of outlier Wanda scores",
		Args: []sdk.Arg{
			{Name: "m", Help: "outlier threshold: M × the layer's mean score (default 5)"},
			{Name: "lambda", Help: "the layers' densities span at most 2λ (default 0.08)"},
		},
		CheckArgs: func(args map[string]string) error {
			_, err := params(args)
			return err
		},
	}, observe, allocateLayers)
}

func params(args map[string]string) (allocate.OWL, error) {
	o := allocate.DefaultOWL()
	var err error
	if o.M, err = sdk.ArgFloat(args, "m", o.M); err != nil {
		return o, err
	}
	if o.Lambda, err = sdk.ArgFloat(args, "lambda", o.Lambda); err != nil {
		return o, err
	}
	return o, o.Validate()
}

// blockRows is the number of rows scored at once.
const blockRows = 64

func observe(layer int, linears []sdk.Linear, args map[string]string) ([]float64, error) {
	o, err := params(args)
	if err != nil {
		return nil, err
	}
	c := allocate.NewOutlierCounter(o.M)
	for pass := range 2 {
		for _, l := range linears {
			if err := scoreLinear(c, l, pass); err != nil {
				return nil, fmt.Errorf("layer %d %s: %w", layer, l.Info.Tensor, err)
			}
		}
		if pass == 0 {
			if _, err := c.Threshold(); err != nil {
				return nil, fmt.Errorf("layer %d: %w", layer, err)
			}
		}
	}
	out, err := c.Outliers()
	if err != nil {
		return nil, fmt.Errorf("layer %d: %w", layer, err)
	}
	return []float64{float64(out.Above), float64(out.Total)}, nil
}

// scoreLinear streams one linear's Wanda scores into c: sums in pass 0, counts in pass 1.
func scoreLinear(c *allocate.OutlierCounter, l sdk.Linear, pass int) error {
	w := l.W
	if len(l.Stats.SumSq) != w.Cols {
		return fmt.Errorf("%d activation statistics for %d input columns", len(l.Stats.SumSq), w.Cols)
	}
	norm := make([]float32, w.Cols)
	for j, s := range l.Stats.SumSq {
		norm[j] = float32(math.Sqrt(float64(s))) // sqrt in float32, as torch.sqrt
	}
	buf := make([]float32, blockRows*w.Cols)
	for r0 := 0; r0 < w.Rows; r0 += blockRows {
		r1 := min(w.Rows, r0+blockRows)
		s := buf[:(r1-r0)*w.Cols]
		w.RowsF32(s, r0, r1)
		for k, v := range s {
			s[k] = float32(math.Abs(float64(v))) * norm[k%w.Cols]
		}
		var err error
		if pass == 0 {
			err = c.AddSum(s)
		} else {
			err = c.AddCount(s)
		}
		if err != nil {
			return fmt.Errorf("rows [%d, %d): %w", r0, r1, err)
		}
	}
	return nil
}

func allocateLayers(summaries [][]float64, t sdk.Target, args map[string]string) ([]float64, error) {
	o, err := params(args)
	if err != nil {
		return nil, err
	}
	outs := make([]allocate.Outliers, len(summaries))
	for i, s := range summaries {
		if len(s) != 2 {
			return nil, fmt.Errorf("layer %d: summary %v (want [outliers, scores])", i, s)
		}
		outs[i] = allocate.Outliers{Above: int64(s[0]), Total: int64(s[1])}
	}
	a, err := o.Allocate(outs, t.Sparsity)
	if err != nil {
		return nil, err
	}
	return a.Sparsities, nil
}
