package allocate

import (
	"context"
	"fmt"
	"math"
	"sync"

	"github.com/wanda-go/wanda/pipeline"
	"github.com/wanda-go/wanda/tensor"
)

// Allocator is OWL as a pipeline.Allocator: in the dense pre-pass each layer's summary is its
// outlier count over the Wanda scores |W_ij|·sqrt(SumSq_j) of all its prunable linears
// ([above, total]); Allocate turns the counts into the layers' sparsities (OWL.Allocate).
// The scores are computed from the stored weights in row blocks, twice (the mean, then the
// count), so the pre-pass needs no memory proportional to a tensor.
type Allocator struct {
	OWL
}

// Name returns "owl".
func (Allocator) Name() string { return "owl" }

// scoreRows is the number of weight rows scored at once by one goroutine.
const scoreRows = 64

// ObserveLayer counts the layer's outliers: [above, total].
func (a Allocator) ObserveLayer(ctx context.Context, l int, linears []pipeline.AllocInput) ([]float64, error) {
	if err := a.Validate(); err != nil {
		return nil, err
	}
	c := NewOutlierCounter(a.M)
	for pass := range 2 {
		for _, in := range linears {
			if err := a.pass(ctx, c, in, pass); err != nil {
				return nil, err
			}
		}
		if pass == 0 {
			if _, err := c.Threshold(); err != nil {
				return nil, fmt.Errorf("layer %d: %w", l, err)
			}
		}
	}
	o, err := c.Outliers()
	if err != nil {
		return nil, fmt.Errorf("layer %d: %w", l, err)
	}
	return []float64{float64(o.Above), float64(o.Total)}, nil
}

// pass streams one linear's scores into c (pass 0: sums, pass 1: counts), row blocks on
// several goroutines with forked counters merged in.
func (a Allocator) pass(ctx context.Context, c *OutlierCounter, in pipeline.AllocInput, pass int) error {
	w, st := in.W, in.Stats
	if st == nil || len(st.SumSq) != w.Cols {
		return fmt.Errorf("%s: %w: no input statistics for %d columns", in.Info, ErrBadStats, w.Cols)
	}
	norm := make([]float32, w.Cols)
	for j, s := range st.SumSq {
		norm[j] = float32(math.Sqrt(float64(s))) // as metric.Wanda: torch.sqrt on float32
	}
	var mu sync.Mutex
	var firstErr error
	blocks := (w.Rows + scoreRows - 1) / scoreRows
	tensor.ParallelFor(blocks, 1, func(lo, hi int) {
		f := c.Fork()
		buf := make([]float32, scoreRows*w.Cols)
		var err error
		for b := lo; b < hi && err == nil; b++ {
			if err = ctx.Err(); err != nil {
				break
			}
			r0, r1 := b*scoreRows, min(w.Rows, (b+1)*scoreRows)
			s := buf[:(r1-r0)*w.Cols]
			w.RowsF32(s, r0, r1)
			for k, v := range s {
				s[k] = float32(math.Abs(float64(v))) * norm[k%w.Cols]
			}
			if pass == 0 {
				err = f.AddSum(s)
			} else {
				err = f.AddCount(s)
			}
		}
		mu.Lock()
		defer mu.Unlock()
		if err == nil {
			err = c.Merge(f)
		}
		if err != nil && firstErr == nil {
			firstErr = fmt.Errorf("%s: %w", in.Info, err)
		}
	})
	return firstErr
}

// Allocate returns OWL's sparsity of every layer from the layers' counts.
func (a Allocator) Allocate(_ context.Context, summaries [][]float64, t pipeline.Target) ([]float64, error) {
	outs := make([]Outliers, len(summaries))
	for i, s := range summaries {
		if len(s) != 2 {
			return nil, fmt.Errorf("%w: layer %d: summary %v (want [above, total])", ErrBadStats, i, s)
		}
		outs[i] = Outliers{Above: int64(s[0]), Total: int64(s[1])}
	}
	al, err := a.OWL.Allocate(outs, t.Sparsity)
	if err != nil {
		return nil, err
	}
	return al.Sparsities, nil
}

func init() {
	pipeline.RegisterAllocator(pipeline.AllocatorEntry{
		Name: "owl", Help: "OWL: layer-wise sparsity from each layer's share of outlier Wanda scores (params m, lambda)",
		New: func(p pipeline.Params) (pipeline.Allocator, error) {
			if err := p.Only("m", "lambda"); err != nil {
				return nil, err
			}
			o := DefaultOWL()
			var err error
			if o.M, err = p.Float("m", o.M); err != nil {
				return nil, err
			}
			if o.Lambda, err = p.Float("lambda", o.Lambda); err != nil {
				return nil, err
			}
			if err := o.Validate(); err != nil {
				return nil, err
			}
			return Allocator{o}, nil
		},
	})
}
