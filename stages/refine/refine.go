package refine

import (
	"errors"
	"fmt"
	"math"

	"github.com/wanda-go/wanda/pipeline"
)

// ErrBadParam reports a refiner parameter out of range.
var ErrBadParam = errors.New("refine: invalid parameter")

// StatsKind, Stats and Refiner are the pipeline's (see pipeline.Refiner).
type (
	StatsKind = pipeline.StatsKind
	Stats     = pipeline.Stats
	Refiner   = pipeline.Refiner
)

// The statistics a refiner can ask the dense pass for.
const (
	NeedSumSq = pipeline.StatsSumSq
	NeedSum   = pipeline.StatsSum
	NeedVar   = pipeline.StatsVar
)

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
