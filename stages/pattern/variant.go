package pattern

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"sort"

	"github.com/wanda-go/wanda/pipeline"
)

// selectVariant is Wanda's adaptive-alpha variant (lib/prune.py:97-103, :178-196). Per row r,
// with the row sorted ascending (sorted_r), cum_r = cumsum(sorted_r) and sum_r = Σ scores_r:
//
//	count_r(α) = #{j : cum_r[j] <= sum_r·α}
//	thres_r(α) = sorted_r[count_r(α) - 1]
//	mask(α)    = scores_r <= thres_r(α)            (all ties at the threshold pruned)
//	cur(α)     = #mask(α) / numel                  (one α shared by all rows)
//
// and α is bisected from 0.4 in [0, 0.8] exactly like the Python loop: while
// |cur - s| > 0.001 and hi - lo >= 0.001, α = (α+lo)/2 (hi = α) if cur > s, else
// α = (α+hi)/2 (lo = α). The mask of the last α evaluated is returned.
//
// Arithmetic, matching torch on CPU where it can be matched:
//   - cum_r: each prefix sum accumulated in float64 and rounded to float32, which is what
//     torch.cumsum does for float32 on CPU (acc_type<float, CPU> = double). On CUDA, where
//     the reference ran, the scan is a parallel float32 scan whose rounding is not
//     reproducible; the difference is a few ulps.
//   - sum_r: accumulated in float64 and rounded to float32 (torch's float32 cascade/tree sum
//     is within a few ulps of that).
//   - sum_r·α, cur - s, and the comparisons with s and 0.001 are float32 operations with the
//     Python floats α, s and 0.001 rounded to float32 (how torch mixes a float32 tensor with
//     a Python scalar); α itself and hi - lo are float64 (Python floats).
//   - cur = float32(#pruned) / float32(numel), as torch's int64 / int true division.
//   - count_r = 0 would make the reference gather index -1; torch.gather actually rejects
//     negative indices (an error on CPU, a device assert on CUDA), so the reference would
//     crash. Here index -1 wraps to the last element, as Python negative indexing would:
//     thres_r = max(row), and the whole row is pruned. Only possible when
//     min(row) > α·sum_r, i.e. a very small α or very few columns.
//
// Non-finite scores are rejected (the sums would be meaningless).
func selectVariant(ctx context.Context, name string, scores pipeline.Matrix, s float64, info pipeline.LayerInfo) (*pipeline.Mask, error) {
	R, C := scores.Rows, scores.Cols
	m := pipeline.NewMask(R, C)
	for p, v := range scores.Data {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return nil, fmt.Errorf("pattern %s: %s: score [%d,%d] = %g (the adaptive variant needs finite scores): %w",
				name, info, p/max(C, 1), p%max(C, 1), v, pipeline.ErrNonFinite)
		}
	}
	if s == 0 || R*C == 0 {
		return m, nil
	}
	sorted := make([]float32, R*C)
	cum := make([]float32, R*C)
	sums := make([]float32, R)
	nonneg := make([]bool, R) // cum is non-decreasing in rows without negative scores
	err := parallelChunks(ctx, R, 1, rowTarget, func(lo, hi int) error {
		keys := make([]uint32, C)
		tmp := make([]uint32, C)
		for i := lo; i < hi; i++ {
			row := scores.Row(i)
			var sum float64
			nn := true
			for j, v := range row {
				keys[j] = sortKey(v)
				sum += float64(v)
				nn = nn && v >= 0
			}
			sums[i] = float32(sum)
			nonneg[i] = nn
			radixSort(keys, tmp)
			srow, crow := sorted[i*C:(i+1)*C], cum[i*C:(i+1)*C]
			var acc float64
			for j, x := range keys {
				v := keyValue(x)
				srow[j] = v
				acc += float64(v)
				crow[j] = float32(acc)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}

	thres := make([]float32, R)
	numel := float32(R * C)
	eval := func(alpha float64) float32 {
		a := float32(alpha)
		total := 0
		for i := range R {
			srow, crow := sorted[i*C:(i+1)*C], cum[i*C:(i+1)*C]
			lim := sums[i] * a
			var cnt int
			if nonneg[i] {
				cnt = sort.Search(C, func(j int) bool { return crow[j] > lim })
			} else {
				for _, c := range crow {
					if c <= lim {
						cnt++
					}
				}
			}
			idx := cnt - 1
			if idx < 0 {
				idx += C // Python-style wrap of index -1 (see above)
			}
			th := srow[idx]
			thres[i] = th
			total += sort.Search(C, func(j int) bool { return srow[j] > th })
		}
		return float32(total) / numel
	}

	s32, tol := float32(s), float32(0.001)
	alpha, lo, hi := 0.4, 0.0, 0.8
	cur := eval(alpha)
	for abs32(cur-s32) > tol && hi-lo >= 0.001 {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if cur > s32 {
			alpha, hi = (alpha+lo)/2, alpha
		} else {
			alpha, lo = (alpha+hi)/2, alpha
		}
		cur = eval(alpha)
	}
	slog.Debug("wanda variant", "layer", info.String(), "alpha", alpha, "sparsity", cur)

	err = parallelChunks(ctx, R, rowGrain(C), rowTarget, func(lo, hi int) error {
		for i := lo; i < hi; i++ {
			th, base := thres[i], i*C
			for j, v := range scores.Row(i) {
				if v <= th {
					setBit(m.Bits, base+j)
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return m, nil
}

func abs32(x float32) float32 {
	if x < 0 {
		return -x
	}
	return x
}
