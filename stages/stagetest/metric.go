package stagetest

import (
	"context"
	"fmt"
	"math"
	"testing"

	"github.com/wanda-go/wanda/pipeline"
)

// TestMetric checks m: output shape, finite scores for finite inputs, determinism, inputs
// left unmodified, degenerate shapes (1×M, M×1, 1×1), and errors for NaN/±Inf weights, for
// NaN/Inf statistics and for statistics of the wrong length (when m.NeedsStats()). A metric
// that implements pipeline.RowMetric must also give, block by block (blocks of 1 and 3 rows
// and the whole matrix, in any order, concurrently), bit for bit the scores of Score, and
// errors for non-finite weights that name the row in the whole tensor (strict mode).
func TestMetric(t *testing.T, m pipeline.Metric, opts ...Option) {
	t.Helper()
	c := newConfig(opts)
	ctx := context.Background()
	if m.Name() == "" {
		t.Errorf("metric has an empty Name")
	}
	shapes := [][2]int{{1, 1}, {1, 16}, {16, 1}, {7, 13}, {32, 96}}

	t.Run("scores", func(t *testing.T) {
		for si, sh := range shapes {
			rows, cols := sh[0], sh[1]
			r := c.rng(uint64(100 + si))
			w := pipeline.Matrix{Rows: rows, Cols: cols, Data: randNormal32(r, rows*cols, 0.05)}
			w.Data[0] = 0 // an exact zero weight is common in real checkpoints
			_, st := randStats(r, cols, 2, 8, -1)
			w0, st0 := cloneMatrix(w), cloneStats(st)
			info := testInfo(rows, cols)
			s1, err := m.Score(ctx, w, st, info)
			if err != nil {
				t.Errorf("%d×%d: Score: %v", rows, cols, err)
				continue
			}
			if s1.Rows != rows || s1.Cols != cols || len(s1.Data) != rows*cols {
				t.Errorf("%d×%d: scores are %d×%d with %d values", rows, cols, s1.Rows, s1.Cols, len(s1.Data))
				continue
			}
			for k, v := range s1.Data {
				if math.IsNaN(float64(v)) {
					t.Errorf("%d×%d: score [%d,%d] is NaN for finite inputs", rows, cols, k/cols, k%cols)
					break
				}
			}
			if !sameBits32(w.Data, w0.Data) || w.Rows != rows || w.Cols != cols {
				t.Errorf("%d×%d: Score modified W", rows, cols)
			}
			if !sameStats(st, st0) {
				t.Errorf("%d×%d: Score modified the statistics", rows, cols)
			}
			s2, err := m.Score(ctx, w, st, info)
			if err != nil {
				t.Errorf("%d×%d: second Score: %v", rows, cols, err)
				continue
			}
			if !sameBits32(s1.Data, s2.Data) {
				t.Errorf("%d×%d: two calls gave different scores", rows, cols)
			}
		}
	})

	t.Run("non-finite weights", func(t *testing.T) {
		r := c.rng(200)
		rows, cols := 5, 12
		_, st := randStats(r, cols, 2, 8, -1)
		for _, bad := range []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1))} {
			w := pipeline.Matrix{Rows: rows, Cols: cols, Data: randNormal32(r, rows*cols, 0.05)}
			w.Data[r.IntN(len(w.Data))] = bad
			_, err := m.Score(ctx, w, st, testInfo(rows, cols))
			c.wantErr(t, fmt.Sprintf("weight %g", bad), err, pipeline.ErrNonFinite)
		}
	})

	t.Run("shape mismatch", func(t *testing.T) {
		w := pipeline.Matrix{Rows: 3, Cols: 4, Data: make([]float32, 11)}
		_, st := randStats(c.rng(300), 4, 1, 4, -1)
		_, err := m.Score(ctx, w, st, testInfo(3, 4))
		c.wantErr(t, "len(Data) != Rows·Cols", err, pipeline.ErrShape)
	})

	if rm, ok := m.(pipeline.RowMetric); ok {
		t.Run("row blocks", func(t *testing.T) { c.checkRowMetric(t, rm, shapes) })
	}

	if !m.NeedsStats() {
		return
	}
	t.Run("statistics", func(t *testing.T) {
		r := c.rng(400)
		rows, cols := 4, 10
		w := pipeline.Matrix{Rows: rows, Cols: cols, Data: randNormal32(r, rows*cols, 0.05)}
		_, st := randStats(r, cols, 2, 8, -1)

		short := cloneStats(st)
		short.SumSq = short.SumSq[:cols-1]
		_, err := m.Score(ctx, w, short, testInfo(rows, cols))
		c.wantErr(t, "SumSq shorter than Cols", err, pipeline.ErrShape)

		long := cloneStats(st)
		long.SumSq = append(long.SumSq, 1)
		_, err = m.Score(ctx, w, long, testInfo(rows, cols))
		c.wantErr(t, "SumSq longer than Cols", err, pipeline.ErrShape)

		_, err = m.Score(ctx, w, nil, testInfo(rows, cols))
		if err == nil {
			t.Errorf("nil statistics: no error")
		}

		for _, bad := range []float32{float32(math.NaN()), float32(math.Inf(1))} {
			b := cloneStats(st)
			b.SumSq[r.IntN(cols)] = bad
			_, err := m.Score(ctx, w, b, testInfo(rows, cols))
			c.wantErr(t, fmt.Sprintf("SumSq %g", bad), err, pipeline.ErrNonFinite)
		}
	})
}
