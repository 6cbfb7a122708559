package metric

import (
	"context"
	"fmt"
	"math"

	"github.com/wanda-go/wanda/pipeline"
	"github.com/wanda-go/wanda/tensor"
)

// Magnitude scores a weight by its absolute value.
type Magnitude struct{}

// Name returns "magnitude".
func (Magnitude) Name() string { return "magnitude" }

// NeedsStats returns false.
func (Magnitude) NeedsStats() bool { return false }

// Score returns |W|. st is ignored and may be nil.
func (mg Magnitude) Score(ctx context.Context, w pipeline.Matrix, _ *pipeline.Stats, info pipeline.LayerInfo) (pipeline.Matrix, error) {
	if err := checkW(mg.Name(), w, info); err != nil {
		return pipeline.Matrix{}, err
	}
	if err := ctx.Err(); err != nil {
		return pipeline.Matrix{}, err
	}
	out := pipeline.NewMatrix(w.Rows, w.Cols)
	tensor.ParallelFor(w.Rows, rowGrain, func(lo, hi int) {
		src, dst := w.Data[lo*w.Cols:hi*w.Cols], out.Data[lo*w.Cols:hi*w.Cols]
		for k, v := range src {
			dst[k] = abs32(v)
		}
	})
	return out, nil
}

// Wanda scores a weight by |W_ij| · sqrt(SumSq_j) (float32).
type Wanda struct{}

// Name returns "wanda".
func (Wanda) Name() string { return "wanda" }

// NeedsStats returns true.
func (Wanda) NeedsStats() bool { return true }

// Score returns |W_ij| · sqrt(st.SumSq[j]).
func (wd Wanda) Score(ctx context.Context, w pipeline.Matrix, st *pipeline.Stats, info pipeline.LayerInfo) (pipeline.Matrix, error) {
	name := wd.Name()
	if err := checkW(name, w, info); err != nil {
		return pipeline.Matrix{}, err
	}
	if err := checkSumSq(name, st, w.Cols, info); err != nil {
		return pipeline.Matrix{}, err
	}
	if err := ctx.Err(); err != nil {
		return pipeline.Matrix{}, err
	}
	norm, err := wandaNorm(name, st.SumSq, info)
	if err != nil {
		return pipeline.Matrix{}, err
	}
	out := pipeline.NewMatrix(w.Rows, w.Cols)
	tensor.ParallelFor(w.Rows, rowGrain, func(lo, hi int) {
		wandaRows(out.Data[lo*w.Cols:hi*w.Cols], w.Data[lo*w.Cols:hi*w.Cols], norm)
	})
	return out, nil
}

// wandaNorm returns sqrt(SumSq_j) per input column, rejecting a non-finite or negative
// statistic.
func wandaNorm(name string, sumsq []float32, info pipeline.LayerInfo) ([]float32, error) {
	norm := make([]float32, len(sumsq))
	for j, s := range sumsq {
		if !finite(s) || s < 0 {
			return nil, fmt.Errorf("metric %s: %s: input statistic %d is %g: %w", name, info, j, s, pipeline.ErrNonFinite)
		}
		// The float64 square root of a float32, rounded to float32, is the correctly
		// rounded float32 square root (53 >= 2·24 + 2), i.e. torch.sqrt on float32.
		norm[j] = float32(math.Sqrt(float64(s)))
	}
	return norm, nil
}

// wandaRows writes |w|·norm for whole rows of len(norm) columns.
func wandaRows(dst, w, norm []float32) {
	C := len(norm)
	for k := 0; k+C <= len(w); k += C {
		src, d := w[k:k+C], dst[k:k+C]
		for j, v := range src {
			d[j] = abs32(v) * norm[j]
		}
	}
}

// RowScorer checks st as Score does and returns the scorer of row blocks (pipeline.RowMetric):
// S_ij depends only on W_ij and SumSq_j.
func (wd Wanda) RowScorer(st *pipeline.Stats, cols int, info pipeline.LayerInfo) (pipeline.RowScorer, error) {
	name := wd.Name()
	if err := checkSumSq(name, st, cols, info); err != nil {
		return nil, err
	}
	norm, err := wandaNorm(name, st.SumSq, info)
	if err != nil {
		return nil, err
	}
	return &rowScorer{name: name, info: info, cols: cols, kernel: func(dst, w []float32) { wandaRows(dst, w, norm) }}, nil
}

// RowScorer returns the scorer of row blocks (pipeline.RowMetric): S_ij = |W_ij|.
func (mg Magnitude) RowScorer(_ *pipeline.Stats, cols int, info pipeline.LayerInfo) (pipeline.RowScorer, error) {
	return &rowScorer{name: mg.Name(), info: info, cols: cols, kernel: magnitudeRows}, nil
}

func magnitudeRows(dst, w []float32) {
	dst = dst[:len(w)]
	for k, v := range w {
		dst[k] = abs32(v)
	}
}

// rowScorer scores row blocks with an elementwise kernel after Score's checks of W.
type rowScorer struct {
	name   string
	info   pipeline.LayerInfo
	cols   int
	kernel func(dst, w []float32)
}

// ScoreRows scores rows [row0, row0+w.Rows) of the tensor (see pipeline.RowScorer).
func (s *rowScorer) ScoreRows(dst, w pipeline.Matrix, row0 int) error {
	if w.Cols != s.cols || dst.Rows != w.Rows || dst.Cols != w.Cols || len(dst.Data) != len(w.Data) {
		return fmt.Errorf("metric %s: %s: rows %d.. of %d×%d into scores %d×%d (tensor width %d): %w",
			s.name, s.info, row0, w.Rows, w.Cols, dst.Rows, dst.Cols, s.cols, pipeline.ErrShape)
	}
	if err := checkRows(s.name, w, row0, s.info); err != nil {
		return err
	}
	s.kernel(dst.Data, w.Data)
	return nil
}

var (
	_ pipeline.RowMetric = Wanda{}
	_ pipeline.RowMetric = Magnitude{}
)

// checkSumSq checks that st holds one input statistic (SumSq) per input column.
func checkSumSq(name string, st *pipeline.Stats, cols int, info pipeline.LayerInfo) error {
	if st == nil {
		return fmt.Errorf("metric %s: %s: no calibration statistics: %w", name, info, pipeline.ErrShape)
	}
	if len(st.SumSq) != cols {
		return fmt.Errorf("metric %s: %s: %d input statistics for %d input columns: %w",
			name, info, len(st.SumSq), cols, pipeline.ErrShape)
	}
	return nil
}

func checkW(name string, w pipeline.Matrix, info pipeline.LayerInfo) error {
	return checkRows(name, w, 0, info)
}

// checkRows checks w, rows [row0, row0+w.Rows) of a tensor: its shape and that every weight
// is finite (errors name the entry's row in the tensor).
func checkRows(name string, w pipeline.Matrix, row0 int, info pipeline.LayerInfo) error {
	if w.Rows < 0 || w.Cols < 0 || len(w.Data) != w.Rows*w.Cols {
		return fmt.Errorf("metric %s: %s: weight %d×%d with %d values: %w", name, info, w.Rows, w.Cols, len(w.Data), pipeline.ErrShape)
	}
	// v - v is NaN exactly for NaN and ±Inf; the OR of the bit patterns of v - v is
	// zero exactly when every difference is +0.
	var acc uint32
	for _, v := range w.Data {
		acc |= math.Float32bits(v - v)
	}
	if acc != 0 {
		for k, v := range w.Data {
			if !finite(v) {
				return fmt.Errorf("metric %s: %s: weight [%d,%d] is %g: %w", name, info, row0+k/w.Cols, k%w.Cols, v, pipeline.ErrNonFinite)
			}
		}
	}
	return nil
}

// rowGrain is the smallest number of rows (or columns) worth handing to another goroutine
// (tensor.ParallelFor, which honours tensor.SetThreads).
const rowGrain = 64

func finite(v float32) bool { return !math.IsNaN(float64(v)) && !math.IsInf(float64(v), 0) }

func abs32(v float32) float32 { return math.Float32frombits(math.Float32bits(v) &^ (1 << 31)) }
