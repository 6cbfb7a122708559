package stagetest

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/wanda-go/wanda/pipeline"
)

// Row-block conformance (pipeline.RowMetric, pipeline.RowPattern): a stage that offers row
// blocks must give, block by block, exactly what it gives on the whole matrix.

// blockSizes are the rows per block the row-block checks use (0: the whole matrix as one
// block).
var blockSizes = []int{1, 3, 0}

func rowBlocks(rows, block int) [][2]int {
	if block <= 0 {
		block = max(rows, 1)
	}
	var bs [][2]int
	for r0 := 0; r0 < rows; r0 += block {
		bs = append(bs, [2]int{r0, min(rows, r0+block)})
	}
	return bs
}

// eachBlock calls fn for every block, in a random order, from two goroutines when concurrent.
// It returns the error of the lowest failing block.
func eachBlock(r *rand.Rand, blocks [][2]int, concurrent bool, fn func(r0, r1 int) error) error {
	order := slices.Clone(blocks)
	r.Shuffle(len(order), func(a, b int) { order[a], order[b] = order[b], order[a] })
	errs := make(map[int]error)
	var mu sync.Mutex
	run := func(part [][2]int) {
		for _, b := range part {
			if err := fn(b[0], b[1]); err != nil {
				mu.Lock()
				errs[b[0]] = err
				mu.Unlock()
			}
		}
	}
	if concurrent && len(order) > 1 {
		var wg sync.WaitGroup
		half := len(order) / 2
		wg.Go(func() { run(order[:half]) })
		run(order[half:])
		wg.Wait()
	} else {
		run(order)
	}
	first := -1
	for r0 := range errs {
		if first < 0 || r0 < first {
			first = r0
		}
	}
	if first < 0 {
		return nil
	}
	return errs[first]
}

// checkRowMetric checks rm's row blocks against Score on the same inputs: bit-identical
// scores for every block size, blocks in any order and concurrently, W and the statistics
// untouched, errors for non-finite weights naming the row in the whole tensor, and RowScorer
// rejecting statistics of the wrong length.
func (c *config) checkRowMetric(t *testing.T, rm pipeline.RowMetric, shapes [][2]int) {
	ctx := context.Background()
	for si, sh := range shapes {
		rows, cols := sh[0], sh[1]
		r := c.rng(uint64(700 + si))
		w := pipeline.Matrix{Rows: rows, Cols: cols, Data: randNormal32(r, rows*cols, 0.05)}
		w.Data[0] = 0
		_, st := randStats(r, cols, 2, 8, -1)
		info := testInfo(rows, cols)
		want, err := rm.Score(ctx, w, st, info)
		if err != nil {
			t.Errorf("%d×%d: Score: %v", rows, cols, err)
			continue
		}
		w0, st0 := cloneMatrix(w), cloneStats(st)
		sc, err := rm.RowScorer(st, cols, info)
		if err != nil || sc == nil {
			t.Errorf("%d×%d: RowScorer: %v", rows, cols, err)
			continue
		}
		for _, block := range blockSizes {
			got := make([]float32, rows*cols)
			for k := range got {
				got[k] = float32(math.NaN())
			}
			err := eachBlock(r, rowBlocks(rows, block), block == 1, func(r0, r1 int) error {
				wb := pipeline.Matrix{Rows: r1 - r0, Cols: cols, Data: slices.Clone(w.Data[r0*cols : r1*cols])}
				dst := pipeline.Matrix{Rows: r1 - r0, Cols: cols, Data: got[r0*cols : r1*cols]}
				return sc.ScoreRows(dst, wb, r0)
			})
			if err != nil {
				t.Errorf("%d×%d, blocks of %d rows: ScoreRows: %v", rows, cols, block, err)
				continue
			}
			if !sameBits32(got, want.Data) {
				t.Errorf("%d×%d, blocks of %d rows: the scores differ from Score's", rows, cols, block)
			}
		}
		if !sameBits32(w.Data, w0.Data) || !sameStats(st, st0) {
			t.Errorf("%d×%d: the row-block scorer modified W or the statistics", rows, cols)
		}
	}

	// A non-finite weight in row 13 of a 20-row tensor, scored in blocks of 3 rows.
	r := c.rng(800)
	rows, cols := 20, 12
	_, st := randStats(r, cols, 2, 8, -1)
	sc, err := rm.RowScorer(st, cols, testInfo(rows, cols))
	if err != nil {
		t.Fatalf("RowScorer: %v", err)
	}
	for _, bad := range []float32{float32(math.NaN()), float32(math.Inf(1))} {
		w := pipeline.Matrix{Rows: rows, Cols: cols, Data: randNormal32(r, rows*cols, 0.05)}
		w.Data[13*cols+7] = bad
		err := eachBlock(r, rowBlocks(rows, 3), false, func(r0, r1 int) error {
			dst := pipeline.NewMatrix(r1-r0, cols)
			return sc.ScoreRows(dst, pipeline.Matrix{Rows: r1 - r0, Cols: cols, Data: w.Data[r0*cols : r1*cols]}, r0)
		})
		c.wantErr(t, fmt.Sprintf("row blocks, weight %g in row 13", bad), err, pipeline.ErrNonFinite)
		if err != nil && c.strictErrors && !strings.Contains(err.Error(), "13") {
			t.Errorf("row blocks, weight %g in row 13: the error %q does not name row 13", bad, err)
		}
	}
	if rm.NeedsStats() {
		short := cloneStats(st)
		short.SumSq = short.SumSq[:cols-1]
		_, err := rm.RowScorer(short, cols, testInfo(rows, cols))
		c.wantErr(t, "RowScorer with SumSq shorter than Cols", err, pipeline.ErrShape)
		_, err = rm.RowScorer(nil, cols, testInfo(rows, cols))
		if err == nil {
			t.Errorf("RowScorer with nil statistics: no error")
		}
	}
}

// maxPasses bounds the read passes a row selector may ask for in these checks.
const maxPasses = 64

// streamSelect drives sel over the row blocks of sc as PruneTensor would (blocks in a random
// order, concurrently when asked) and returns the mask put together.
func streamSelect(ctx context.Context, r *rand.Rand, sel pipeline.RowSelector, sc pipeline.Matrix, block int, concurrent bool) (*pipeline.Mask, error) {
	R, C := sc.Rows, sc.Cols
	blocks := rowBlocks(R, block)
	view := func(r0, r1 int) pipeline.Matrix {
		return pipeline.Matrix{Rows: r1 - r0, Cols: C, Data: sc.Data[r0*C : r1*C]}
	}
	for pass := 0; sel.NextPass(); pass++ {
		if pass == maxPasses {
			return nil, fmt.Errorf("more than %d read passes", maxPasses)
		}
		if err := eachBlock(r, blocks, concurrent, func(r0, r1 int) error { return sel.Observe(view(r0, r1), r0) }); err != nil {
			return nil, err
		}
		if err := sel.EndPass(ctx); err != nil {
			return nil, err
		}
	}
	full := pipeline.NewMask(R, C)
	var mu sync.Mutex
	err := eachBlock(r, blocks, concurrent, func(r0, r1 int) error {
		bm := pipeline.NewMask(r1-r0, C)
		if err := sel.SelectRows(bm, view(r0, r1), r0); err != nil {
			return err
		}
		if err := checkMaskShape(bm, r1-r0, C); err != nil {
			return fmt.Errorf("block mask of rows %d..%d: %w", r0, r1, err)
		}
		mu.Lock()
		defer mu.Unlock()
		for i := range r1 - r0 {
			for j := range C {
				if bm.Get(i, j) {
					full.Set(r0+i, j)
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return full, nil
}

func anonScratch(n int) ([]float32, error) { return make([]float32, n), nil }

// checkRowPattern checks rp's row blocks for target tg on sc against want, Select's mask.
func (c *config) checkRowPattern(t *testing.T, rp pipeline.RowPattern, sc pipeline.Matrix, tg pipeline.Target, want *pipeline.Mask, what string, salt uint64) {
	ctx := context.Background()
	info := testInfo(sc.Rows, sc.Cols)
	sc0 := cloneMatrix(sc)
	for bi, block := range blockSizes {
		sel, err := rp.RowSelector(tg, sc.Rows, sc.Cols, info, pipeline.RowEnv{Scratch: anonScratch})
		if err != nil {
			t.Errorf("%s: RowSelector: %v", what, err)
			return
		}
		if sel == nil {
			return // whole-matrix selection for this target
		}
		got, err := streamSelect(ctx, c.rng(salt+uint64(bi)), sel, sc, block, block == 1)
		if err != nil {
			t.Errorf("%s, blocks of %d rows: %v", what, block, err)
			continue
		}
		if !sameMask(got, want) {
			t.Errorf("%s, blocks of %d rows: the mask differs from Select's (%d pruned, Select %d)", what, block, got.Count(), want.Count())
		}
	}
	if !sameBits32(sc.Data, sc0.Data) {
		t.Errorf("%s: the row selector modified the scores", what)
	}
}

// rowPatternErrors checks that a NaN score in row 4 fails the row-block selection (in a read
// pass or the mask pass), naming row 4 in strict mode, and that RowSelector rejects invalid
// targets.
func (c *config) rowPatternErrors(t *testing.T, rp pipeline.RowPattern, tg pipeline.Target, salt uint64) {
	rows, cols := 6, 16
	if tg.Structured() {
		cols = 4 * tg.M
	}
	r := c.rng(3000 + salt)
	info := testInfo(rows, cols)
	sel, err := rp.RowSelector(tg, rows, cols, info, pipeline.RowEnv{Scratch: anonScratch})
	if err != nil {
		t.Errorf("RowSelector: %v", err)
		return
	}
	if sel == nil {
		return
	}
	sc := pipeline.Matrix{Rows: rows, Cols: cols, Data: patternScores(r, rows*cols, kindRandom)}
	sc.Data[4*cols+r.IntN(cols)] = float32(math.NaN())
	_, err = streamSelect(context.Background(), r, sel, sc, 2, false)
	c.wantErr(t, "row blocks, NaN score in row 4", err, pipeline.ErrNonFinite)
	if err != nil && c.strictErrors && !strings.Contains(err.Error(), "["+strconv.Itoa(4)+",") {
		t.Errorf("row blocks, NaN score in row 4: the error %q does not name row 4", err)
	}
}

func (c *config) rowPatternBadTargets(t *testing.T, rp pipeline.RowPattern, unstructured, structured *pipeline.Target) {
	if unstructured != nil {
		for _, s := range []float64{1, -0.1, math.NaN()} {
			bad := *unstructured
			bad.Sparsity = s
			_, err := rp.RowSelector(bad, 4, 16, testInfo(4, 16), pipeline.RowEnv{Scratch: anonScratch})
			c.wantErr(t, fmt.Sprintf("RowSelector with sparsity %g", s), err, pipeline.ErrBadTarget)
		}
	}
	if structured != nil {
		_, err := rp.RowSelector(*structured, 3, structured.M+1, testInfo(3, structured.M+1), pipeline.RowEnv{Scratch: anonScratch})
		c.wantErr(t, fmt.Sprintf("RowSelector %d:%d with %d columns", structured.N, structured.M, structured.M+1), err, pipeline.ErrBadTarget)
	}
}
