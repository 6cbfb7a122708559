package metric

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"sync"

	"github.com/wanda-go/wanda/pipeline"
)

// ErrUnknown is returned by Builtin for a name that is not a built-in metric.
var ErrUnknown = errors.New("unknown metric")

// Builtin returns the built-in metric called name: "magnitude" or "wanda".
func Builtin(name string) (pipeline.Metric, error) {
	switch name {
	case "magnitude":
		return Magnitude{}, nil
	case "wanda":
		return Wanda{}, nil
	}
	return nil, fmt.Errorf("metric %q: %w (want magnitude or wanda)", name, ErrUnknown)
}

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
	parallelRows(w.Rows, func(lo, hi int) {
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
	if st == nil {
		return pipeline.Matrix{}, fmt.Errorf("metric %s: %s: no calibration statistics: %w", name, info, pipeline.ErrShape)
	}
	if len(st.SumSq) != w.Cols {
		return pipeline.Matrix{}, fmt.Errorf("metric %s: %s: %d input statistics for %d input columns: %w",
			name, info, len(st.SumSq), w.Cols, pipeline.ErrShape)
	}
	if err := ctx.Err(); err != nil {
		return pipeline.Matrix{}, err
	}
	norm := make([]float32, w.Cols)
	for j, s := range st.SumSq {
		if !finite(s) || s < 0 {
			return pipeline.Matrix{}, fmt.Errorf("metric %s: %s: input statistic %d is %g: %w", name, info, j, s, pipeline.ErrNonFinite)
		}
		// The float64 square root of a float32, rounded to float32, is the correctly
		// rounded float32 square root (53 >= 2·24 + 2), i.e. torch.sqrt on float32.
		norm[j] = float32(math.Sqrt(float64(s)))
	}
	out := pipeline.NewMatrix(w.Rows, w.Cols)
	parallelRows(w.Rows, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			src, dst := w.Row(i), out.Row(i)
			dst = dst[:len(src)]
			norm := norm[:len(src)]
			for j, v := range src {
				dst[j] = abs32(v) * norm[j]
			}
		}
	})
	return out, nil
}

func checkW(name string, w pipeline.Matrix, info pipeline.LayerInfo) error {
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
				return fmt.Errorf("metric %s: %s: weight [%d,%d] is %g: %w", name, info, k/w.Cols, k%w.Cols, v, pipeline.ErrNonFinite)
			}
		}
	}
	return nil
}

// parallelRows runs fn over [0, rows) split among up to GOMAXPROCS goroutines.
func parallelRows(rows int, fn func(lo, hi int)) {
	n := max(1, min(runtime.GOMAXPROCS(0), rows/64))
	if n == 1 {
		fn(0, rows)
		return
	}
	var wg sync.WaitGroup
	for g := range n {
		lo, hi := g*rows/n, (g+1)*rows/n
		wg.Go(func() { fn(lo, hi) })
	}
	wg.Wait()
}

func finite(v float32) bool { return !math.IsNaN(float64(v)) && !math.IsInf(float64(v), 0) }

func abs32(v float32) float32 { return math.Float32frombits(math.Float32bits(v) &^ (1 << 31)) }
