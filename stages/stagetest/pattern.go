package stagetest

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/wanda-go/wanda/pipeline"
)

// TestPattern checks p on every target in targets (plus, for each unstructured target, the
// same target at sparsity 0) over several shapes and score distributions (continuous,
// heavily tied, constant):
//
//   - the mask is Rows×Cols with no stray bits, two calls agree bit for bit, scores are
//     not modified;
//   - N:M: every aligned group of M columns in every row has exactly N pruned entries, and
//     no pruned score exceeds a kept one in the group;
//   - unstructured, GroupRow: exactly int(Cols·s) pruned per row (Python's int of the
//     float64 product), the lowest of the row; GroupColumn: int(Rows·s) per column;
//     GroupMatrix: exactly the entries <= sorted(scores)[int(numel·s)] (the reference rule);
//     Variant: a per-row threshold mask (every pruned score < every kept score of its row)
//     whose overall sparsity is within 0.01 of s on a 64×256 matrix; sparsity 0 prunes
//     nothing in every mode;
//   - with LowerIndexTies, the pruned set is exactly the first entries of a stable
//     ascending sort of each group (rows, columns or N:M groups);
//   - a NaN score is an error; a ±Inf score is an error or a mask obeying the rules above;
//     invalid targets (sparsity outside [0,1), N >= M, Cols not a multiple of M) and
//     len(Data) != Rows·Cols are errors;
//   - a pattern that implements pipeline.RowPattern must, for every target its RowSelector
//     does not decline, give over row blocks (of 1 and 3 rows and the whole matrix, in a
//     random order, concurrently for single rows) exactly Select's mask; a NaN score is an
//     error naming its row in the whole tensor (strict mode), and RowSelector rejects
//     invalid targets.
func TestPattern(t *testing.T, p pipeline.Pattern, targets []pipeline.Target, opts ...Option) {
	t.Helper()
	c := newConfig(opts)
	ctx := context.Background()
	if p.Name() == "" {
		t.Errorf("pattern has an empty Name")
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
	for ti, tg := range all {
		t.Run(targetName(tg), func(t *testing.T) {
			for si, sh := range patternShapes(tg) {
				rows, cols := sh[0], sh[1]
				for kind := range numKinds {
					r := c.rng(uint64(1000*ti + 10*si + kind))
					sc := pipeline.Matrix{Rows: rows, Cols: cols, Data: patternScores(r, rows*cols, kind)}
					what := fmt.Sprintf("%d×%d %s", rows, cols, kindName[kind])
					m := c.selectChecked(t, ctx, p, sc, tg, what)
					if m == nil {
						continue
					}
					if err := checkRule(sc, tg, m, c.lowerIndexTies); err != nil {
						t.Errorf("%s: %v", what, err)
					}
					if rp, ok := p.(pipeline.RowPattern); ok {
						c.checkRowPattern(t, rp, sc, tg, m, what, uint64(1000*ti+10*si+kind))
					}
					if tg.Variant && tg.Sparsity > 0 && rows*cols >= 64*256 && kind == kindRandom {
						got := float64(m.Count()) / float64(rows*cols)
						if math.Abs(got-tg.Sparsity) > 0.01 {
							t.Errorf("%s: variant sparsity %.4f, target %g", what, got, tg.Sparsity)
						}
					}
				}
			}
			c.patternErrors(t, ctx, p, tg, uint64(ti))
			if rp, ok := p.(pipeline.RowPattern); ok {
				c.rowPatternErrors(t, rp, tg, uint64(ti))
			}
		})
	}

	// Invalid targets, once per kind of target given.
	var unstructured, structured *pipeline.Target
	for i := range targets {
		if targets[i].Structured() && structured == nil {
			structured = &targets[i]
		} else if !targets[i].Structured() && unstructured == nil {
			unstructured = &targets[i]
		}
	}
	t.Run("invalid targets", func(t *testing.T) {
		r := c.rng(5)
		if unstructured != nil {
			sc := pipeline.Matrix{Rows: 4, Cols: 16, Data: patternScores(r, 64, kindRandom)}
			for _, s := range []float64{1, 1.5, -0.1, math.NaN()} {
				bad := *unstructured
				bad.Sparsity = s
				_, err := p.Select(ctx, sc, bad, testInfo(4, 16))
				c.wantErr(t, fmt.Sprintf("sparsity %g", s), err, pipeline.ErrBadTarget)
			}
		}
		if structured != nil {
			n, m := structured.N, structured.M
			sc := pipeline.Matrix{Rows: 3, Cols: m + 1, Data: patternScores(r, 3*(m+1), kindRandom)}
			_, err := p.Select(ctx, sc, *structured, testInfo(3, m+1))
			c.wantErr(t, fmt.Sprintf("%d:%d with %d columns", n, m, m+1), err, pipeline.ErrBadTarget)
			sc = pipeline.Matrix{Rows: 3, Cols: 2 * m, Data: patternScores(r, 6*m, kindRandom)}
			for _, nm := range [][2]int{{m, m}, {0, m}, {m + 1, m}} {
				bad := *structured
				bad.N, bad.M = nm[0], nm[1]
				_, err := p.Select(ctx, sc, bad, testInfo(3, 2*m))
				c.wantErr(t, fmt.Sprintf("%d:%d", nm[0], nm[1]), err, pipeline.ErrBadTarget)
			}
		}
		if rp, ok := p.(pipeline.RowPattern); ok {
			c.rowPatternBadTargets(t, rp, unstructured, structured)
		}
	})
}

// selectChecked runs Select twice on scores and checks shape, determinism and that the
// scores were left alone. It returns nil (after reporting) on failure.
func (c *config) selectChecked(t *testing.T, ctx context.Context, p pipeline.Pattern, sc pipeline.Matrix, tg pipeline.Target, what string) *pipeline.Mask {
	t.Helper()
	sc0 := cloneMatrix(sc)
	info := testInfo(sc.Rows, sc.Cols)
	m1, err := p.Select(ctx, sc, tg, info)
	if err != nil {
		t.Errorf("%s: Select: %v", what, err)
		return nil
	}
	if err := checkMaskShape(m1, sc.Rows, sc.Cols); err != nil {
		t.Errorf("%s: %v", what, err)
		return nil
	}
	if !sameBits32(sc.Data, sc0.Data) || sc.Rows != sc0.Rows || sc.Cols != sc0.Cols {
		t.Errorf("%s: Select modified the scores", what)
	}
	m2, err := p.Select(ctx, sc, tg, info)
	if err != nil {
		t.Errorf("%s: second Select: %v", what, err)
		return nil
	}
	if !sameMask(m1, m2) {
		t.Errorf("%s: two calls gave different masks", what)
	}
	return m1
}

func (c *config) patternErrors(t *testing.T, ctx context.Context, p pipeline.Pattern, tg pipeline.Target, salt uint64) {
	rows, cols := 6, 16
	if tg.Structured() {
		cols = 4 * tg.M
	}
	r := c.rng(2000 + salt)
	info := testInfo(rows, cols)

	sc := pipeline.Matrix{Rows: rows, Cols: cols, Data: patternScores(r, rows*cols, kindRandom)}
	sc.Data[r.IntN(rows*cols)] = float32(math.NaN())
	_, err := p.Select(ctx, sc, tg, info)
	c.wantErr(t, "NaN score", err, pipeline.ErrNonFinite)

	for _, inf := range []float64{math.Inf(1), math.Inf(-1)} {
		sc := pipeline.Matrix{Rows: rows, Cols: cols, Data: patternScores(r, rows*cols, kindRandom)}
		sc.Data[r.IntN(rows*cols)] = float32(inf)
		m, err := p.Select(ctx, sc, tg, info)
		if err != nil {
			continue // rejecting infinities is conforming
		}
		if err := checkMaskShape(m, rows, cols); err != nil {
			t.Errorf("score %g: %v", inf, err)
			continue
		}
		if err := checkRule(sc, tg, m, c.lowerIndexTies); err != nil {
			t.Errorf("score %g: %v", inf, err)
		}
	}

	short := pipeline.Matrix{Rows: rows, Cols: cols, Data: patternScores(r, rows*cols-1, kindRandom)}
	_, err = p.Select(ctx, short, tg, info)
	c.wantErr(t, "len(Data) != Rows·Cols", err, pipeline.ErrShape)
}

func targetName(tg pipeline.Target) string {
	if tg.Structured() {
		return fmt.Sprintf("%d:%d", tg.N, tg.M)
	}
	s := fmt.Sprintf("%g/%v", tg.Sparsity, tg.Group)
	if tg.Variant {
		s += "/variant"
	}
	return s
}

func patternShapes(tg pipeline.Target) [][2]int {
	if tg.Structured() {
		m := tg.M
		return [][2]int{{1, m}, {5, 4 * m}, {33, 16 * m}, {1, 64 * m}}
	}
	return [][2]int{{1, 1}, {1, 7}, {7, 1}, {5, 13}, {33, 100}, {64, 256}}
}

const (
	kindRandom   = iota // continuous, a few exact zeros
	kindTied            // 6 distinct levels: many ties
	kindConstant        // all equal
	numKinds
)

var kindName = [numKinds]string{"random", "tied", "constant"}

func patternScores(r *rand.Rand, n, kind int) []float32 {
	d := make([]float32, n)
	for i := range d {
		switch kind {
		case kindRandom:
			d[i] = float32(math.Abs(r.NormFloat64()))
			if r.IntN(50) == 0 {
				d[i] = 0
			}
		case kindTied:
			d[i] = float32(r.IntN(6)) * 0.25
		case kindConstant:
			d[i] = 0.5
		}
	}
	return d
}

// checkRule verifies that m is what target tg must select on scores sc.
func checkRule(sc pipeline.Matrix, tg pipeline.Target, m *pipeline.Mask, lowerTies bool) error {
	R, C := sc.Rows, sc.Cols
	vals := make([]float32, 0, max(R, C))
	pr := make([]bool, 0, max(R, C))
	switch {
	case tg.Structured():
		for i := range R {
			for g := 0; g < C; g += tg.M {
				vals, pr = vals[:0], pr[:0]
				for j := g; j < g+tg.M; j++ {
					vals = append(vals, sc.Data[i*C+j])
					pr = append(pr, m.Get(i, j))
				}
				if err := checkGroup(vals, pr, tg.N, lowerTies); err != nil {
					return fmt.Errorf("row %d, columns %d..%d: %w", i, g, g+tg.M-1, err)
				}
			}
		}
	case tg.Sparsity == 0:
		if n := m.Count(); n != 0 {
			return fmt.Errorf("sparsity 0 pruned %d entries", n)
		}
	case tg.Variant:
		for i := range R {
			maxP, minK := float32(math.Inf(-1)), float32(math.Inf(1))
			for j := range C {
				if v := sc.Data[i*C+j]; m.Get(i, j) {
					maxP = max(maxP, v)
				} else {
					minK = min(minK, v)
				}
			}
			if !(maxP < minK) {
				return fmt.Errorf("row %d: pruned score %g >= kept score %g (not a per-row threshold mask)", i, maxP, minK)
			}
		}
	case tg.Group == pipeline.GroupRow:
		k := pyIntMul(C, tg.Sparsity)
		for i := range R {
			vals, pr = vals[:0], pr[:0]
			for j := range C {
				vals = append(vals, sc.Data[i*C+j])
				pr = append(pr, m.Get(i, j))
			}
			if err := checkGroup(vals, pr, k, lowerTies); err != nil {
				return fmt.Errorf("row %d: %w", i, err)
			}
		}
	case tg.Group == pipeline.GroupColumn:
		k := pyIntMul(R, tg.Sparsity)
		for j := range C {
			vals, pr = vals[:0], pr[:0]
			for i := range R {
				vals = append(vals, sc.Data[i*C+j])
				pr = append(pr, m.Get(i, j))
			}
			if err := checkGroup(vals, pr, k, lowerTies); err != nil {
				return fmt.Errorf("column %d: %w", j, err)
			}
		}
	case tg.Group == pipeline.GroupMatrix:
		n := R * C
		if n == 0 {
			return nil
		}
		sorted := slices.Clone(sc.Data)
		slices.Sort(sorted)
		th := sorted[min(pyIntMul(n, tg.Sparsity), n-1)]
		for i := range R {
			for j := range C {
				if want := sc.Data[i*C+j] <= th; m.Get(i, j) != want {
					return fmt.Errorf("[%d,%d] score %g, threshold %g: pruned=%v, want %v", i, j, sc.Data[i*C+j], th, !want, want)
				}
			}
		}
	default:
		return fmt.Errorf("unknown group %v", tg.Group)
	}
	return nil
}

// checkGroup checks that exactly k of vals are pruned, that they are the lowest, and with
// lowerTies that they are exactly the first k of a stable ascending sort.
func checkGroup(vals []float32, pruned []bool, k int, lowerTies bool) error {
	n := 0
	maxP, minK := float32(math.Inf(-1)), float32(math.Inf(1))
	for a, v := range vals {
		if pruned[a] {
			n++
			maxP = max(maxP, v)
		} else {
			minK = min(minK, v)
		}
	}
	if n != k {
		return fmt.Errorf("%d of %d pruned, want %d", n, len(vals), k)
	}
	if maxP > minK {
		return fmt.Errorf("pruned score %g > kept score %g", maxP, minK)
	}
	if lowerTies {
		idx := make([]int, len(vals))
		for a := range idx {
			idx[a] = a
		}
		slices.SortStableFunc(idx, func(a, b int) int { return cmp.Compare(vals[a], vals[b]) })
		want := make([]bool, len(vals))
		for _, a := range idx[:k] {
			want[a] = true
		}
		for a := range vals {
			if pruned[a] != want[a] {
				return fmt.Errorf("index %d (score %g): pruned=%v, want %v (ties go to the lower index)", a, vals[a], pruned[a], want[a])
			}
		}
	}
	return nil
}
