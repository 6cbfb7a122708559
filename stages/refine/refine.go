package refine

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/wanda-go/wanda/pipeline"
)

// ErrBadParam reports a refiner parameter out of range.
var ErrBadParam = errors.New("refine: invalid parameter")

// StatsKind is a set of per-input-channel statistics a refiner reads.
type StatsKind uint8

// The statistics a refiner can ask the dense pass for (see Stats for their definitions).
const (
	NeedSumSq StatsKind = 1 << iota // Stats.SumSq: (1/N)·Σ x², Wanda's scaler_row
	NeedSum                         // Stats.Sum: (1/N)·Σ x, DSnoT's sum_metric_row
	NeedVar                         // Stats.Var: DSnoT's var
)

// Has reports whether k includes every statistic of x.
func (k StatsKind) Has(x StatsKind) bool { return k&x == x }

func (k StatsKind) String() string {
	var parts []string
	for _, c := range []struct {
		k    StatsKind
		name string
	}{{NeedSumSq, "sumsq"}, {NeedSum, "sum"}, {NeedVar, "var"}} {
		if k.Has(c.k) {
			parts = append(parts, c.name)
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, "+")
}

// Stats are per-input-channel statistics of one linear layer's input over the calibration
// set, from the dense forward pass of its decoder block (N sequences, Tokens token rows in
// all). Index j is the input column of W. Only the slices a refiner asked for are needed.
type Stats struct {
	// SumSq[j] = (1/N)·Σ_seq Σ_tok x_j², as pipeline.Stats.SumSq.
	SumSq []float32
	// Sum[j] = (1/N)·Σ_seq Σ_tok x_j: the sum over all tokens divided by the number of
	// sequences, not of tokens (DSnoT's sum_metric_row, a running average of per-sequence
	// token sums).
	Sum []float32
	// Var[j] = Σ_seq Σ_tok (x_j − mean_seq,j)² / Tokens: the token-weighted average over
	// sequences of each sequence's biased (1/T) variance around its own mean — DSnoT's var
	// (torch.var(unbiased=False) per sequence, combined by token counts). It is not the
	// variance around the overall mean: the spread between sequence means is left out.
	Var []float32
	// N is the number of calibration sequences, Tokens the number of token rows.
	N, Tokens int
}

// Refiner changes a mask chosen by a metric and a pattern, keeping the number pruned in each
// row (and, for N:M targets, in each group of M).
type Refiner interface {
	Name() string
	// NeedsStats says which statistics Refine reads.
	NeedsStats() StatsKind
	// Applies reports whether Refine changes the tensor at all; the pipeline can skip
	// gathering statistics for the tensors it does not apply to.
	Applies(info pipeline.LayerInfo) bool
	// Refine updates mask in place for the dense weights w ([out, in], the weights the mask
	// was chosen on; not modified) and the layer input's statistics st. It leaves the mask
	// of a tensor it does not apply to unchanged and returns nil (st may be nil then).
	Refine(ctx context.Context, w pipeline.Matrix, mask *pipeline.Mask, st *Stats, t pipeline.Target, info pipeline.LayerInfo) error
}

// checkInputs validates w, mask and the statistics in need for a refiner called name.
func checkInputs(name string, w pipeline.Matrix, mask *pipeline.Mask, st *Stats, need StatsKind, info pipeline.LayerInfo) error {
	if w.Rows < 0 || w.Cols < 0 || len(w.Data) != w.Rows*w.Cols {
		return fmt.Errorf("refine %s: %s: weight %d×%d with %d values: %w", name, info, w.Rows, w.Cols, len(w.Data), pipeline.ErrShape)
	}
	if mask == nil || mask.Rows != w.Rows || mask.Cols != w.Cols || len(mask.Bits) != (w.Rows*w.Cols+63)/64 {
		return fmt.Errorf("refine %s: %s: mask does not fit the %d×%d weight: %w", name, info, w.Rows, w.Cols, pipeline.ErrShape)
	}
	for k, v := range w.Data {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return fmt.Errorf("refine %s: %s: weight [%d,%d] is %v: %w", name, info, k/w.Cols, k%w.Cols, v, pipeline.ErrNonFinite)
		}
	}
	if need == 0 {
		return nil
	}
	if st == nil {
		return fmt.Errorf("refine %s: %s: no calibration statistics: %w", name, info, pipeline.ErrShape)
	}
	for _, c := range []struct {
		k        StatsKind
		name     string
		v        []float32
		positive bool
	}{{NeedSumSq, "sumsq", st.SumSq, true}, {NeedSum, "sum", st.Sum, false}, {NeedVar, "var", st.Var, true}} {
		if !need.Has(c.k) {
			continue
		}
		if len(c.v) != w.Cols {
			return fmt.Errorf("refine %s: %s: %d %s statistics for %d input columns: %w", name, info, len(c.v), c.name, w.Cols, pipeline.ErrShape)
		}
		for j, v := range c.v {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) || c.positive && v < 0 {
				return fmt.Errorf("refine %s: %s: %s statistic %d is %v: %w", name, info, c.name, j, v, pipeline.ErrNonFinite)
			}
		}
	}
	return nil
}
