package stagetest

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"

	"github.com/wanda-go/wanda/pipeline"
)

// refinerInfos are the tensors TestRefiner offers a refiner, one of each module kind; it
// runs on the first the refiner applies to.
var refinerInfos = []pipeline.LayerInfo{
	{Layer: 1, Tensor: "model.layers.1.self_attn.q_proj.weight", Part: "q_proj", Expert: -1, ModelType: "llama", Hidden: 64, Intermediate: 128, NumLayers: 2},
	{Layer: 1, Tensor: "model.layers.1.self_attn.o_proj.weight", Part: "o_proj", Expert: -1, ModelType: "llama", Hidden: 64, Intermediate: 128, NumLayers: 2},
	{Layer: 1, Tensor: "model.layers.1.mlp.up_proj.weight", Part: "up_proj", Expert: -1, ModelType: "llama", Hidden: 64, Intermediate: 128, NumLayers: 2},
	{Layer: 1, Tensor: "model.layers.1.mlp.down_proj.weight", Part: "down_proj", Expert: -1, ModelType: "llama", Hidden: 64, Intermediate: 128, NumLayers: 2},
}

// TestRefiner checks r on every target in targets (plus, for each unstructured one, the
// same target at sparsity 0), on the first tensor of a few (q_proj, o_proj, up_proj,
// down_proj of a LLaMA layer) that r applies to (Applies must answer the same twice). The
// masks it refines are those of the built-in rules on Wanda scores (the lowest
// int(Cols·s) of each row, or N of every aligned M) and random masks with the same
// counts; the statistics (SumSq, Sum, Var, whichever r needs, and SumSq always) come from
// random correlated activations with non-zero means. For every case:
//
//   - Refine succeeds, leaves the mask Rows×Cols with no stray bits, and prunes as many
//     weights in every row as before (for N:M targets, in every aligned group of M);
//   - W and the statistics are not modified; two calls give the same mask;
//   - rows are independent: refining blocks of 1 row (concurrently), of 3 rows and the
//     whole matrix gives the same mask;
//   - degenerate shapes (1×M, M×1 for unstructured targets) work.
//
// Errors (sentinels checked with StrictErrors): a NaN or ±Inf weight (ErrNonFinite),
// len(Data) != Rows·Cols and a mask of another shape (ErrShape), an invalid target
// (ErrBadTarget), and, for every statistic r needs, a NaN value (ErrNonFinite), the wrong
// length (ErrShape) and nil statistics (any error).
//
// TestRefiner returns how many of the masks r changed, so that a test can require that the
// refinement does something on its inputs.
func TestRefiner(t *testing.T, r pipeline.Refiner, targets []pipeline.Target, opts ...Option) (changed int) {
	t.Helper()
	c := newConfig(opts)
	ctx := context.Background()
	if r.Name() == "" {
		t.Errorf("refiner has an empty Name")
	}
	need := r.NeedsStats()
	var info *pipeline.LayerInfo
	for i := range refinerInfos {
		a := r.Applies(refinerInfos[i])
		if b := r.Applies(refinerInfos[i]); a != b {
			t.Errorf("%s: Applies answered %v, then %v", refinerInfos[i].Tensor, a, b)
		}
		if a && info == nil {
			info = &refinerInfos[i]
		}
	}
	if info == nil {
		t.Fatalf("refiner %s applies to none of the tensors offered (%s, ...)", r.Name(), refinerInfos[0].Tensor)
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
			shapes := [][2]int{{1, 16}, {7, 32}, {33, 64}, {48, 128}}
			if !tg.Structured() {
				shapes = append(shapes, [2]int{16, 1})
			}
			for si, sh := range shapes {
				rows, cols := sh[0], sh[1]
				if tg.Structured() && cols%tg.M != 0 {
					continue
				}
				rng := c.rng(uint64(5000 + 100*ti + si))
				w := pipeline.Matrix{Rows: rows, Cols: cols, Data: randNormal32(rng, rows*cols, 0.05)}
				st := refineStats(rng, cols, 3, 8)
				for mk, kind := range []string{"wanda", "random"} {
					m0 := chosenMask(rng, w, st, tg, kind == "random")
					what := fmt.Sprintf("%d×%d %s mask", rows, cols, kind)
					got, err := c.refineChecked(ctx, r, w, m0, st, tg, *info)
					if err != nil {
						t.Errorf("%s: %v", what, err)
						continue
					}
					if !sameMask(got, m0) {
						changed++
					}
					if err := c.refineBlocks(ctx, r, w, m0, st, tg, *info, got, uint64(si*10+mk)); err != nil {
						t.Errorf("%s: %v", what, err)
					}
				}
			}
		})
	}

	t.Run("errors", func(t *testing.T) {
		rng := c.rng(6000)
		tg := pipeline.Target{Sparsity: 0.5}
		for _, x := range targets {
			if !x.Structured() && x.Sparsity > 0 {
				tg = x
				break
			}
		}
		rows, cols := 6, 32
		w := pipeline.Matrix{Rows: rows, Cols: cols, Data: randNormal32(rng, rows*cols, 0.05)}
		st := refineStats(rng, cols, 2, 8)
		m0 := chosenMask(rng, w, st, tg, false)
		try := func(w pipeline.Matrix, m *pipeline.Mask, st *pipeline.Stats, tg pipeline.Target) error {
			return r.Refine(ctx, w, cloneMask(m), st, tg, *info)
		}
		for _, bad := range []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1))} {
			b := cloneMatrix(w)
			b.Data[rng.IntN(len(b.Data))] = bad
			c.wantErr(t, fmt.Sprintf("weight %g", bad), try(b, m0, st, tg), pipeline.ErrNonFinite)
		}
		short := pipeline.Matrix{Rows: rows, Cols: cols, Data: w.Data[:len(w.Data)-1]}
		c.wantErr(t, "len(Data) != Rows·Cols", try(short, m0, st, tg), pipeline.ErrShape)
		c.wantErr(t, "mask with a row too many", try(w, pipeline.NewMask(rows+1, cols), st, tg), pipeline.ErrShape)
		c.wantErr(t, "mask with a column too few", try(w, pipeline.NewMask(rows, cols-1), st, tg), pipeline.ErrShape)
		for _, s := range []float64{1, 1.5, -0.1, math.NaN()} {
			bad := tg
			bad.Sparsity = s
			c.wantErr(t, fmt.Sprintf("sparsity %g", s), try(w, m0, st, bad), pipeline.ErrBadTarget)
		}
		c.wantErr(t, "2:4 on 30 columns", r.Refine(ctx, pipeline.Matrix{Rows: 1, Cols: 30, Data: make([]float32, 30)},
			pipeline.NewMask(1, 30), refineStats(rng, 30, 2, 4), pipeline.Target{N: 2, M: 4}, *info), pipeline.ErrBadTarget)
		c.wantErr(t, "4:4", try(w, m0, st, pipeline.Target{N: 4, M: 4}), pipeline.ErrBadTarget)
		if need == 0 {
			return
		}
		if err := try(w, m0, nil, tg); err == nil {
			t.Errorf("nil statistics: no error")
		}
		for _, f := range statFields {
			if !need.Has(f.kind) {
				continue
			}
			b := cloneRefineStats(st)
			*f.get(b) = (*f.get(b))[:cols-1]
			c.wantErr(t, f.name+" shorter than Cols", try(w, m0, b, tg), pipeline.ErrShape)
			b = cloneRefineStats(st)
			*f.get(b) = nil
			if err := try(w, m0, b, tg); err == nil {
				t.Errorf("no %s statistics: no error", f.name)
			}
			b = cloneRefineStats(st)
			(*f.get(b))[rng.IntN(cols)] = float32(math.NaN())
			c.wantErr(t, f.name+" NaN", try(w, m0, b, tg), pipeline.ErrNonFinite)
		}
	})
	return changed
}

var statFields = []struct {
	kind pipeline.StatsKind
	name string
	get  func(*pipeline.Stats) *[]float32
}{
	{pipeline.StatsSumSq, "SumSq", func(s *pipeline.Stats) *[]float32 { return &s.SumSq }},
	{pipeline.StatsSum, "Sum", func(s *pipeline.Stats) *[]float32 { return &s.Sum }},
	{pipeline.StatsVar, "Var", func(s *pipeline.Stats) *[]float32 { return &s.Var }},
}

// refineChecked refines a copy of m0 twice and checks the common rules; it returns the
// refined mask.
func (c *config) refineChecked(ctx context.Context, r pipeline.Refiner, w pipeline.Matrix, m0 *pipeline.Mask,
	st *pipeline.Stats, tg pipeline.Target, info pipeline.LayerInfo) (*pipeline.Mask, error) {
	w0, st0 := cloneMatrix(w), cloneRefineStats(st)
	got := cloneMask(m0)
	if err := r.Refine(ctx, w, got, st, tg, info); err != nil {
		return nil, fmt.Errorf("Refine: %w", err)
	}
	if err := checkMaskShape(got, w.Rows, w.Cols); err != nil {
		return nil, err
	}
	if err := CheckCounts(got, m0, tg); err != nil {
		return nil, err
	}
	if !sameBits32(w.Data, w0.Data) {
		return nil, fmt.Errorf("Refine modified W")
	}
	if !sameRefineStats(st, st0) {
		return nil, fmt.Errorf("Refine modified the statistics")
	}
	again := cloneMask(m0)
	if err := r.Refine(ctx, w, again, st, tg, info); err != nil {
		return nil, fmt.Errorf("second Refine: %w", err)
	}
	if !sameMask(got, again) {
		return nil, fmt.Errorf("two calls gave different masks")
	}
	return got, nil
}

// CheckCounts reports a refined mask that prunes a different number of weights than the
// chosen mask m0 in some row, or, for N:M targets, in some aligned group of M columns.
func CheckCounts(got, m0 *pipeline.Mask, tg pipeline.Target) error {
	if got.Rows != m0.Rows || got.Cols != m0.Cols {
		return fmt.Errorf("mask is %d×%d, the chosen one %d×%d", got.Rows, got.Cols, m0.Rows, m0.Cols)
	}
	group := got.Cols
	if tg.Structured() {
		group = tg.M
	}
	for i := range got.Rows {
		for g0 := 0; g0 < got.Cols; g0 += group {
			a, b := 0, 0
			for j := g0; j < min(g0+group, got.Cols); j++ {
				if got.Get(i, j) {
					a++
				}
				if m0.Get(i, j) {
					b++
				}
			}
			if a != b {
				if group == got.Cols {
					return fmt.Errorf("row %d prunes %d weights, the chosen mask %d", i, a, b)
				}
				return fmt.Errorf("row %d columns [%d, %d) prune %d weights, the chosen mask %d", i, g0, g0+group, a, b)
			}
		}
	}
	return nil
}

// refineBlocks refines m0 in row blocks of 1 (concurrently) and 3 rows and compares each
// assembled mask with want, the whole matrix's.
func (c *config) refineBlocks(ctx context.Context, r pipeline.Refiner, w pipeline.Matrix, m0 *pipeline.Mask,
	st *pipeline.Stats, tg pipeline.Target, info pipeline.LayerInfo, want *pipeline.Mask, salt uint64) error {
	for _, size := range []int{1, 3} {
		if size >= w.Rows {
			continue
		}
		got := pipeline.NewMask(w.Rows, w.Cols)
		var starts []int
		for r0 := 0; r0 < w.Rows; r0 += size {
			starts = append(starts, r0)
		}
		c.rng(salt).Shuffle(len(starts), func(i, j int) { starts[i], starts[j] = starts[j], starts[i] })
		var wg sync.WaitGroup
		var mu sync.Mutex
		var firstErr error
		for _, r0 := range starts {
			r1 := min(w.Rows, r0+size)
			run := func() {
				bw := pipeline.Matrix{Rows: r1 - r0, Cols: w.Cols, Data: slices.Clone(w.Data[r0*w.Cols : r1*w.Cols])}
				bm := subMask(m0, r0, r1)
				err := r.Refine(ctx, bw, bm, st, tg, info)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					if firstErr == nil {
						firstErr = fmt.Errorf("rows [%d, %d): %w", r0, r1, err)
					}
					return
				}
				for i := r0; i < r1; i++ {
					for j := range w.Cols {
						if bm.Get(i-r0, j) {
							got.Set(i, j)
						}
					}
				}
			}
			if size == 1 {
				wg.Go(run)
			} else {
				run()
			}
		}
		wg.Wait()
		if firstErr != nil {
			return firstErr
		}
		if !sameMask(got, want) {
			for i := range w.Rows {
				for j := range w.Cols {
					if got.Get(i, j) != want.Get(i, j) {
						return fmt.Errorf("refining blocks of %d rows gives another mask than the whole matrix, first at (%d, %d)", size, i, j)
					}
				}
			}
		}
	}
	return nil
}

func subMask(m *pipeline.Mask, r0, r1 int) *pipeline.Mask {
	s := pipeline.NewMask(r1-r0, m.Cols)
	for i := r0; i < r1; i++ {
		for j := range m.Cols {
			if m.Get(i, j) {
				s.Set(i-r0, j)
			}
		}
	}
	return s
}

func cloneMask(m *pipeline.Mask) *pipeline.Mask {
	return &pipeline.Mask{Rows: m.Rows, Cols: m.Cols, Bits: slices.Clone(m.Bits)}
}

func cloneRefineStats(st *pipeline.Stats) *pipeline.Stats {
	if st == nil {
		return nil
	}
	c := cloneStats(st)
	c.Sum, c.Var = slices.Clone(st.Sum), slices.Clone(st.Var)
	return c
}

func sameRefineStats(a, b *pipeline.Stats) bool {
	return sameStats(a, b) && (a == nil || sameBits32(a.Sum, b.Sum) && sameBits32(a.Var, b.Var))
}

// refineStats draws nseq sequences of seqlen tokens of cols correlated features with
// per-feature means and returns their SumSq, Sum and Var as the pipeline defines them.
func refineStats(r *rand.Rand, cols, nseq, seqlen int) *pipeline.Stats {
	tokens := nseq * seqlen
	mean := make([]float64, cols)
	scale := make([]float64, cols)
	for j := range cols {
		mean[j] = r.NormFloat64()
		scale[j] = math.Exp(r.NormFloat64() * 0.7)
	}
	st := &pipeline.Stats{N: nseq, Tokens: tokens, SumSq: make([]float32, cols), Sum: make([]float32, cols), Var: make([]float32, cols)}
	x := make([]float64, seqlen)
	for j := range cols {
		var ss, s, v float64
		for range nseq {
			shift := r.NormFloat64() * 0.3 // sequences differ in their means
			var m float64
			for k := range x {
				x[k] = float32ify((mean[j] + shift + r.NormFloat64()) * scale[j])
				m += x[k]
			}
			m /= float64(seqlen)
			for _, xv := range x {
				ss += xv * xv
				s += xv
				v += (xv - m) * (xv - m)
			}
		}
		st.SumSq[j] = float32(ss / float64(nseq))
		st.Sum[j] = float32(s / float64(nseq))
		st.Var[j] = float32(v / float64(tokens))
	}
	return st
}

// chosenMask is the mask a metric and a pattern would choose for target tg: the lowest
// Wanda scores |W|·sqrt(SumSq) of each row (int(Cols·s) of them) or of each aligned group
// of M (N of them), or, with random, as many at random positions.
func chosenMask(r *rand.Rand, w pipeline.Matrix, st *pipeline.Stats, tg pipeline.Target, random bool) *pipeline.Mask {
	m := pipeline.NewMask(w.Rows, w.Cols)
	group, k := w.Cols, pyIntMul(w.Cols, tg.Sparsity)
	if tg.Structured() {
		group, k = tg.M, tg.N
	}
	key := make([]float64, group)
	idx := make([]int, group)
	for i := range w.Rows {
		for g0 := 0; g0+group <= w.Cols; g0 += group {
			for j := range group {
				if random {
					key[j] = r.Float64()
				} else {
					key[j] = math.Abs(float64(w.Data[i*w.Cols+g0+j])) * math.Sqrt(float64(st.SumSq[g0+j]))
				}
				idx[j] = j
			}
			slices.SortStableFunc(idx, func(a, b int) int {
				switch {
				case key[a] < key[b]:
					return -1
				case key[a] > key[b]:
					return 1
				}
				return 0
			})
			for _, j := range idx[:k] {
				m.Set(i, g0+j)
			}
		}
	}
	return m
}
