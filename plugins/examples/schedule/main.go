// Command wanda-plugin-schedule is a pattern plugin with a per-layer sparsity schedule: the
// sparsity of decoder layer ℓ (of L) grows linearly with ℓ around the target s,
//
//	s_ℓ = s + d · (2ℓ/(L−1) − 1),   d = min(spread, s, (1−s)/2),
//
// so early layers (which matter more) are pruned less, late layers more, the mean over the
// layers is exactly s, and every s_ℓ stays in [0, (1+s)/2]. spread defaults to 0.1; set it
// with --plugin-arg spread=VALUE. With L <= 1 the schedule is flat (s_ℓ = s).
//
// Within a layer the selection is the built-in unstructured row rule at s_ℓ: every output
// row prunes int(C·s_ℓ) entries, the first ones of a stable ascending sort of its scores
// (ties: the lower column goes first; -0 and +0 are equal). Only unstructured, per-row
// targets without the adaptive variant are accepted.
//
// Scores are row-major [out, in] float32; the mask is [out, in], true = pruned.
package main

import (
	"cmp"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"

	"github.com/wanda-go/wanda/plugins/sdk"
)

func main() {
	sdk.ServePattern(sdk.PatternInfo{
		Name:        "schedule",
		Description: "unstructured per-row pruning, sparsity rising linearly with layer index (mean = target)",
		Args:        []sdk.Arg{{Name: "spread", Help: "largest deviation from the target sparsity (default 0.1)"}},
		CheckArgs: func(args map[string]string) error {
			_, err := spread(args)
			return err
		},
	}, selectMask)
}

func spread(args map[string]string) (float64, error) {
	d, err := sdk.ArgFloat(args, "spread", 0.1)
	if err == nil && !(d >= 0 && d <= 1) {
		err = fmt.Errorf("argument spread=%v: want a number in [0, 1]", d)
	}
	return d, err
}

// layerSparsity is s_ℓ of the package documentation.
func layerSparsity(s, spread float64, layer, layers int) float64 {
	if layers <= 1 {
		return s
	}
	d := min(spread, s, (1-s)/2)
	return s + d*(2*float64(layer)/float64(layers-1)-1)
}

func selectMask(scores sdk.Tensor, t sdk.Target, info sdk.LayerInfo) (sdk.Mask, error) {
	if t.M > 0 || t.Group != "row" || t.Variant {
		return sdk.Mask{}, errors.New("schedule supports unstructured per-row targets only (no N:M, group or variant)")
	}
	sp, err := spread(info.Args)
	if err != nil {
		return sdk.Mask{}, err
	}
	s := layerSparsity(t.Sparsity, sp, info.Layer, info.NumLayers)
	rows, cols := scores.Shape[0], scores.Shape[1]
	k := min(max(int(float64(cols)*s), 0), cols) // Python's int(C·s)
	mask := sdk.NewMask(rows, cols)

	var wg sync.WaitGroup
	workers := min(runtime.GOMAXPROCS(0), rows)
	for wkr := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			idx := make([]int, cols)
			for i := wkr; i < rows; i += workers {
				row := scores.Data[i*cols : (i+1)*cols]
				for j := range idx {
					idx[j] = j
				}
				// Stable: equal scores keep column order, so the lower column is pruned first.
				slices.SortStableFunc(idx, func(a, b int) int { return cmp.Compare(key(row[a]), key(row[b])) })
				for _, j := range idx[:k] {
					mask.Pruned[i*cols+j] = true
				}
			}
		}()
	}
	wg.Wait()
	return mask, nil
}

// key orders scores numerically with -0 == +0 (the host rejects NaN).
func key(v float32) float64 {
	if v == 0 {
		return 0
	}
	return float64(v)
}
