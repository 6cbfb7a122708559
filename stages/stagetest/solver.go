package stagetest

import (
	"context"
	"fmt"
	"math"
	"slices"
	"testing"

	"github.com/wanda-go/wanda/pipeline"
)

// TestSolver checks s on every target in targets (plus sparsity 0 for each unstructured
// target) on small calibration problems with correlated inputs, one of them with a dead
// input feature (a zero row and column in the Hessian):
//
//   - the mask is Rows×Cols; every pruned entry of W is +0.0 afterwards; W stays finite;
//   - N:M: every aligned group of M columns of every row has at least N pruned entries;
//     unstructured: the pruned count is between int(numel·s) - Rows and numel·s + 2% of
//     numel; sparsity 0 prunes nothing and leaves W bit-identical;
//   - two runs on the same input give bit-identical W and masks; the statistics are not
//     modified;
//   - the reconstruction error ||(W - W')X|| is no larger than that of zeroing the same
//     mask without any update;
//   - NaN/Inf in W or in the Hessian, a Hessian of the wrong size, missing statistics
//     (when s.NeedsHessian()) and invalid targets are errors.
func TestSolver(t *testing.T, s pipeline.Solver, targets []pipeline.Target, opts ...Option) {
	t.Helper()
	c := newConfig(opts)
	ctx := context.Background()
	if s.Name() == "" {
		t.Errorf("solver has an empty Name")
	}
	var all []pipeline.Target
	for _, tg := range targets {
		all = append(all, tg)
		if !tg.Structured() && tg.Sparsity != 0 {
			z := tg
			z.Sparsity = 0
			all = append(all, z)
		}
	}
	type problem struct {
		rows, cols, dead int
	}
	problems := []problem{{1, 64, -1}, {24, 256, -1}, {16, 192, 37}}
	for ti, tg := range all {
		t.Run(targetName(tg), func(t *testing.T) {
			for pi, pb := range problems {
				cols := pb.cols
				if tg.Structured() && cols%tg.M != 0 {
					cols = (cols + tg.M - 1) / tg.M * tg.M
				}
				r := c.rng(uint64(3000 + 10*ti + pi))
				x, st := randStats(r, cols, 4, 2*cols/4+8, pb.dead)
				w := pipeline.Matrix{Rows: pb.rows, Cols: cols, Data: randNormal32(r, pb.rows*cols, 0.05)}
				what := fmt.Sprintf("%d×%d", pb.rows, cols)
				if pb.dead >= 0 {
					what += fmt.Sprintf(" dead input %d", pb.dead)
				}
				c.solverCase(t, ctx, s, w, st, x, tg, what)
			}
			c.solverErrors(t, ctx, s, tg, uint64(ti))
		})
	}
	t.Run("invalid targets", func(t *testing.T) {
		r := c.rng(6)
		_, st := randStats(r, 16, 2, 16, -1)
		w := pipeline.Matrix{Rows: 4, Cols: 16, Data: randNormal32(r, 64, 0.05)}
		for _, bad := range []pipeline.Target{{Sparsity: 1}, {Sparsity: -0.5}, {N: 4, M: 4}, {N: 2, M: 5}} {
			_, err := s.Solve(ctx, cloneMatrix(w), cloneStats(st), bad, testInfo(4, 16))
			c.wantErr(t, fmt.Sprintf("target %v", bad), err, pipeline.ErrBadTarget)
		}
	})
}

func (c *config) solverCase(t *testing.T, ctx context.Context, s pipeline.Solver, w pipeline.Matrix, st *pipeline.Stats, x []float64, tg pipeline.Target, what string) {
	t.Helper()
	R, C := w.Rows, w.Cols
	info := testInfo(R, C)
	w0, st0 := cloneMatrix(w), cloneStats(st)
	w1 := cloneMatrix(w)
	m1, err := s.Solve(ctx, w1, st, tg, info)
	if err != nil {
		t.Errorf("%s: Solve: %v", what, err)
		return
	}
	if err := checkMaskShape(m1, R, C); err != nil {
		t.Errorf("%s: %v", what, err)
		return
	}
	if !sameStats(st, st0) {
		t.Errorf("%s: Solve modified the statistics", what)
	}
	for k, v := range w1.Data {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			t.Errorf("%s: W[%d,%d] = %g after Solve", what, k/C, k%C, v)
			return
		}
		if m1.Get(k/C, k%C) && math.Float32bits(v) != 0 {
			t.Errorf("%s: pruned W[%d,%d] = %g, want +0.0", what, k/C, k%C, v)
			return
		}
	}
	switch {
	case tg.Structured():
		for i := range R {
			for g := 0; g < C; g += tg.M {
				n := 0
				for j := g; j < g+tg.M; j++ {
					if m1.Get(i, j) {
						n++
					}
				}
				if n < tg.N {
					t.Errorf("%s: row %d columns %d..%d: %d pruned, want >= %d", what, i, g, g+tg.M-1, n, tg.N)
					return
				}
			}
		}
	case tg.Sparsity == 0:
		if n := m1.Count(); n != 0 {
			t.Errorf("%s: sparsity 0 pruned %d entries", what, n)
		}
		if !sameBits32(w1.Data, w0.Data) {
			t.Errorf("%s: sparsity 0 changed W", what)
		}
	default:
		n, numel := m1.Count(), R*C
		lo, hi := pyIntMul(numel, tg.Sparsity)-R, tg.Sparsity*float64(numel)+0.02*float64(numel)
		if n < lo || float64(n) > hi {
			t.Errorf("%s: %d of %d pruned, want within [%d, %.0f] for sparsity %g", what, n, numel, lo, hi, tg.Sparsity)
		}
	}

	// Determinism.
	w2 := cloneMatrix(w0)
	m2, err := s.Solve(ctx, w2, cloneStats(st0), tg, info)
	if err != nil {
		t.Errorf("%s: second Solve: %v", what, err)
		return
	}
	if !sameMask(m1, m2) || !sameBits32(w1.Data, w2.Data) {
		t.Errorf("%s: two runs gave different results", what)
	}

	// The update must not make the layer output worse than plain masking.
	masked := cloneMatrix(w0)
	pipeline.ApplyMask(m1, masked)
	eSolve, eMask := reconError(w0, w1, x), reconError(w0, masked, x)
	if eSolve > eMask*(1+1e-4)+1e-12 {
		t.Errorf("%s: reconstruction error %.6g is worse than masking without update (%.6g)", what, eSolve, eMask)
	}
}

// reconError returns ||(A - B) Xᵀ||_F for X [tokens, cols] (float64).
func reconError(a, b pipeline.Matrix, x []float64) float64 {
	C := a.Cols
	tokens := len(x) / max(C, 1)
	d := make([]float64, C)
	var sum float64
	for i := range a.Rows {
		for j := range C {
			d[j] = float64(a.Data[i*C+j]) - float64(b.Data[i*C+j])
		}
		for t := range tokens {
			var y float64
			xr := x[t*C : (t+1)*C]
			for j, v := range d {
				y += v * xr[j]
			}
			sum += y * y
		}
	}
	return math.Sqrt(sum)
}

func (c *config) solverErrors(t *testing.T, ctx context.Context, s pipeline.Solver, tg pipeline.Target, salt uint64) {
	rows, cols := 4, 32
	if tg.Structured() && cols%tg.M != 0 {
		cols = tg.M * 4
	}
	r := c.rng(4000 + salt)
	_, st := randStats(r, cols, 2, 2*cols, -1)
	info := testInfo(rows, cols)
	newW := func() pipeline.Matrix {
		return pipeline.Matrix{Rows: rows, Cols: cols, Data: randNormal32(r, rows*cols, 0.05)}
	}
	for _, bad := range []float32{float32(math.NaN()), float32(math.Inf(1))} {
		w := newW()
		w.Data[r.IntN(len(w.Data))] = bad
		_, err := s.Solve(ctx, w, cloneStats(st), tg, info)
		c.wantErr(t, fmt.Sprintf("weight %g", bad), err, pipeline.ErrNonFinite)
	}
	short := pipeline.Matrix{Rows: rows, Cols: cols, Data: randNormal32(r, rows*cols-1, 0.05)}
	_, err := s.Solve(ctx, short, cloneStats(st), tg, info)
	c.wantErr(t, "len(Data) != Rows·Cols", err, pipeline.ErrShape)
	if !s.NeedsHessian() {
		return
	}
	for _, bad := range []float64{math.NaN(), math.Inf(1)} {
		b := cloneStats(st)
		a := r.IntN(cols)
		b.Hessian[a*cols+a] = bad
		_, err := s.Solve(ctx, newW(), b, tg, info)
		c.wantErr(t, fmt.Sprintf("Hessian %g", bad), err, pipeline.ErrNonFinite)
	}
	b := cloneStats(st)
	b.Hessian = slices.Clone(b.Hessian[:len(b.Hessian)-1])
	_, err = s.Solve(ctx, newW(), b, tg, info)
	c.wantErr(t, "Hessian of the wrong size", err, pipeline.ErrShape)
	b = cloneStats(st)
	b.Hessian = nil
	_, err = s.Solve(ctx, newW(), b, tg, info)
	if err == nil {
		t.Errorf("missing Hessian: no error")
	}
	_, err = s.Solve(ctx, newW(), nil, tg, info)
	if err == nil {
		t.Errorf("nil statistics: no error")
	}
}
