package refine

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"testing"

	"github.com/wanda-go/wanda/pipeline"
)

var attnInfo = pipeline.LayerInfo{Layer: 2, Tensor: "model.layers.2.self_attn.q_proj.weight", Part: "q_proj"}

func ones(n int) []float32 {
	v := make([]float32, n)
	for j := range v {
		v[j] = 1
	}
	return v
}

func maskOf(rows, cols int, pruned ...int) *pipeline.Mask {
	m := pipeline.NewMask(rows, cols)
	for _, k := range pruned {
		m.Set(k/cols, k%cols)
	}
	return m
}

func prunedCols(m *pipeline.Mask, i int) []int {
	var out []int
	for j := range m.Cols {
		if m.Get(i, j) {
			out = append(out, j)
		}
	}
	return out
}

// TestDSnoTHand follows one row by hand. W = [1, -1, 2, -2, 0.5, 3], Sum = Var = SumSq = 1,
// so the DSnoT metric d is W and the Wanda score |W|; the Wanda mask at 50% prunes columns
// 4, 0, 1 (scores 0.5, 1, 1). The error e = 0.5 + 1 − 1 = 0.5.
// Regrowing order (d of pruned, 0 for kept, ascending): 1, 2, 3, 5, 4, 0. Pruning
// candidates: kept by Wanda score 2, 3, 5 with d = 2, −2, 3: negatives first (3), then the
// positives in reverse (5, 2): 3, 5, 2.
//
//	cycle 1: e > 0: regrow the last, 0 (d 1); e ≥ 0: prune the first, 3 (d −2); e = −2.5
//	cycle 2: e < 0: regrow the first, 1 (d −1); prune the last, 2 (d 2); e = 0.5
//	cycle 3: e > 0: regrow 4 (d 0.5); prune 5 (d 3); e = 3
//	cycle 4: regrow 5 — pruned in cycle 3 — and prune 2, already pruned: DSnoT's code would
//	         lower the row's count here; the row stops.
func TestDSnoTHand(t *testing.T) {
	w := pipeline.Matrix{Rows: 1, Cols: 6, Data: []float32{1, -1, 2, -2, 0.5, 3}}
	st := &Stats{SumSq: ones(6), Sum: ones(6), Var: ones(6), N: 1, Tokens: 1}
	tgt := pipeline.Target{Sparsity: 0.5}
	for _, c := range []struct {
		cycles   int
		sameSign bool
		want     []int
	}{
		{50, false, []int{2, 3, 5}},
		{3, false, []int{2, 3, 5}},
		{2, false, []int{2, 3, 4}},
		{1, false, []int{1, 3, 4}},
		{0, false, []int{0, 1, 4}},
		{50, true, []int{0, 1, 4}}, // cycle 1 flips the sign of e: no swap
	} {
		d := DefaultDSnoT()
		d.MaxCycles, d.SameSign = c.cycles, c.sameSign
		m := maskOf(1, 6, 0, 1, 4)
		if err := d.Refine(context.Background(), w, m, st, tgt, attnInfo); err != nil {
			t.Fatal(err)
		}
		if got := prunedCols(m, 0); !slices.Equal(got, c.want) {
			t.Errorf("%d cycles, same sign %v: pruned %v, want %v", c.cycles, c.sameSign, got, c.want)
		}
	}
	// A threshold above |e| = 0.5 stops before the first swap.
	d := DefaultDSnoT()
	d.UpdateThreshold = 0.5
	m := maskOf(1, 6, 0, 1, 4)
	if err := d.Refine(context.Background(), w, m, st, tgt, attnInfo); err != nil {
		t.Fatal(err)
	}
	if got := prunedCols(m, 0); !slices.Equal(got, []int{0, 1, 4}) {
		t.Errorf("threshold 0.5: pruned %v", got)
	}
}

// TestDSnoTHandNM follows a 2:4 row by hand. W = [1, −1, 2, −2 | 0.5, 3, −0.25, 4], all
// statistics 1. Wanda 2:4 prunes 0, 1 and 6, 4; e = 1 − 1 + 0.5 − 0.25 = 0.25 > 0.
// Regrowing order: 1, 6, 2, 3, 5, 7, 4, 0.
//
//	cycle 1: regrow 0 (d 1); lowest kept score in its group: 2 (2, ties to the lower
//	         column); e = 0.25 + 2 − 1 = 1.25, same sign: swap
//	cycle 2: regrow 4 (d 0.5); lowest kept in 4..7: 5 (3); e = 3.75: swap
//	cycle 3: regrow 7, which is kept: stop
func TestDSnoTHandNM(t *testing.T) {
	w := pipeline.Matrix{Rows: 1, Cols: 8, Data: []float32{1, -1, 2, -2, 0.5, 3, -0.25, 4}}
	st := &Stats{SumSq: ones(8), Sum: ones(8), Var: ones(8), N: 1, Tokens: 1}
	m := maskOf(1, 8, 0, 1, 4, 6)
	if err := DefaultDSnoT().Refine(context.Background(), w, m, st, pipeline.Target{N: 2, M: 4}, attnInfo); err != nil {
		t.Fatal(err)
	}
	if got := prunedCols(m, 0); !slices.Equal(got, []int{1, 2, 5, 6}) {
		t.Errorf("pruned %v, want [1 2 5 6]", got)
	}
	// With the error's sign flipped by a negative Sum on column 2, cycle 1 gives
	// e = 0.25 − 2 − 1 < 0: the N:M branch always checks the sign, so nothing changes.
	st.Sum[2] = -1
	m = maskOf(1, 8, 0, 1, 4, 6)
	if err := DefaultDSnoT().Refine(context.Background(), w, m, st, pipeline.Target{N: 2, M: 4}, attnInfo); err != nil {
		t.Fatal(err)
	}
	if got := prunedCols(m, 0); !slices.Equal(got, []int{0, 1, 4, 6}) {
		t.Errorf("sign flip: pruned %v, want [0 1 4 6]", got)
	}
}

// literal transcribes prune_DSnoT's refinement loop (lib/prune.py at 4c029df) as it is
// written: all rows advance together, cycle by cycle, through DSnoT's gather/scatter steps
// on [rows][cols] slices (return_reorder_indice with its float64 positions, infinities,
// flip and sum; topk for the N:M group; the pointer pairs), until every row's update flag is
// off or the cycle limit is reached. One rule is added, the one Refine documents: a row
// whose exchange would change its pruned count (the regrown weight not pruned, the pruned
// one not kept, an index out of range) is stopped for good with nothing written.
func literal(w pipeline.Matrix, mask *pipeline.Mask, st *Stats, d DSnoT, n, m int) [][]bool {
	rows, cols := w.Rows, w.Cols
	W := make([][]float32, rows)
	M := make([][]bool, rows)
	for i := range rows {
		W[i] = w.Row(i)
		M[i] = make([]bool, cols)
		for j := range cols {
			M[i][j] = mask.Get(i, j)
		}
	}
	f32 := func(x float64) float32 { return float32(x) }
	sign := func(x float32) int {
		if x > 0 {
			return 1
		} else if x < 0 {
			return -1
		}
		return 0
	}
	stableArgsort := func(v []float32) []int {
		idx := make([]int, len(v))
		for j := range idx {
			idx[j] = j
		}
		sort.SliceStable(idx, func(a, b int) bool {
			x, y := v[idx[a]], v[idx[b]]
			if math.IsNaN(float64(x)) {
				return false
			}
			return math.IsNaN(float64(y)) || x < y
		})
		return idx
	}
	pow := func(v float32) float32 {
		switch d.PowVarRegrowing {
		case 1:
			return v
		case 2:
			return v * v
		}
		return f32(math.Pow(float64(v), d.PowVarRegrowing))
	}
	thr := float32(d.UpdateThreshold)

	metric := make([][]float32, rows) // DSnoT_metric
	errRow := make([]float32, rows)   // reconstruction_error
	sign0 := make([]int, rows)        // initialize_error_sign
	regrowBlock := make([][]int, rows)
	pruneBlock := make([][]int, rows)
	initial := make([][]float32, rows)
	for i := range rows {
		metric[i] = make([]float32, cols)
		regrowMetric := make([]float32, cols)
		var e float64
		for j := range cols {
			metric[i][j] = W[i][j] * st.Sum[j]
			if M[i][j] {
				regrowMetric[j] = metric[i][j]
				e += float64(metric[i][j])
			}
		}
		errRow[i] = f32(e)
		sign0[i] = sign(errRow[i])
		if d.PowVarRegrowing != 0 {
			for j := range cols {
				regrowMetric[j] /= pow(st.Var[j])
			}
		}
		regrowBlock[i] = stableArgsort(regrowMetric)

		wanda := make([]float32, cols)
		nKept := 0
		for j := range cols {
			wanda[j] = float32(math.Abs(float64(W[i][j]))) * float32(math.Sqrt(float64(st.SumSq[j])))
			if M[i][j] {
				wanda[j] = float32(math.Inf(1))
			} else {
				nKept++
			}
		}
		if m > 0 {
			initial[i] = make([]float32, cols)
			for j := range cols {
				switch {
				case M[i][j]:
					initial[i][j] = float32(math.Inf(1))
				case d.Initial == "magnitude":
					initial[i][j] = float32(math.Abs(float64(W[i][j])))
				default:
					initial[i][j] = wanda[j]
				}
			}
			continue
		}
		resIdx := stableArgsort(wanda)[:nKept] // wanda_res_indices
		// return_reorder_indice(DSnoT_metric gathered at wanda_res_indices)
		pos := make([]float64, nKept)
		neg := make([]float64, nKept)
		for k, j := range resIdx {
			pos[k], neg[k] = float64(k), float64(k)
			if !(metric[i][j] > 0) {
				pos[k] = math.Inf(1)
			}
			if !(metric[i][j] < 0) {
				neg[k] = math.Inf(1)
			}
		}
		sort.Float64s(pos)
		sort.Float64s(neg)
		slices.Reverse(pos)
		pruneBlock[i] = make([]int, nKept)
		for k := range nKept {
			if math.IsInf(pos[k], 1) {
				pos[k] = 0
			}
			if math.IsInf(neg[k], 1) {
				neg[k] = 0
			}
			pruneBlock[i][k] = resIdx[int64(pos[k]+neg[k])]
		}
	}

	regrowPtr := make([][2]int, rows)
	prunePtr := make([][2]int, rows)
	for i := range rows {
		regrowPtr[i] = [2]int{0, cols - 1}
		prunePtr[i] = [2]int{0, len(pruneBlock[i]) - 1}
	}
	step := [2]int{1, -1}
	update := make([]bool, rows)
	stopped := make([]bool, rows) // the added rule
	for i := range update {
		update[i] = true
	}
	for cycle := 0; cycle < d.MaxCycles; cycle++ {
		if !slices.Contains(update, true) {
			break
		}
		for i := range rows {
			e := errRow[i]
			ri := 0
			if e > 0 {
				ri = 1
			}
			rp := regrowPtr[i][ri]
			regrowPtr[i][ri] += step[ri]
			var pr int
			inRange := rp >= 0 && rp < cols
			if m > 0 {
				if inRange {
					reg := regrowBlock[i][rp]
					start := reg - reg%m
					pr = start
					for j := start + 1; j < start+m; j++ { // topk(1, largest=False): the first lowest
						if initial[i][j] < initial[i][pr] {
							pr = j
						}
					}
				}
			} else {
				pi := 0
				if e < 0 {
					pi = 1
				}
				pp := prunePtr[i][pi]
				prunePtr[i][pi] += step[pi]
				if pp < 0 || pp >= len(pruneBlock[i]) {
					inRange = false
				} else {
					pr = pruneBlock[i][pp]
				}
			}
			if !update[i] || stopped[i] {
				continue // DSnoT writes mask[pr] = false, mask[reg] = true here: no-ops
			}
			if !inRange {
				update[i], stopped[i] = false, true
				continue
			}
			reg := regrowBlock[i][rp]
			pm, rm := metric[i][pr], metric[i][reg]
			after := e + pm - rm
			ok := float32(math.Abs(float64(e))) > thr
			if m > 0 || d.SameSign {
				ok = ok && sign0[i] == sign(after)
			}
			if m > 0 && math.IsInf(float64(initial[i][pr]), 1) {
				ok = false
			}
			if ok && (!M[i][reg] || M[i][pr]) {
				ok = false
			}
			if !ok {
				update[i], stopped[i] = false, true
				continue
			}
			if m > 0 {
				initial[i][pr] = float32(math.Inf(1))
			}
			M[i][pr] = true
			M[i][reg] = false
			errRow[i] = e + pm
			errRow[i] -= rm
		}
	}
	return M
}

func randomCase(r *rand.Rand, rows, cols int, zeros bool) (pipeline.Matrix, *Stats) {
	w := pipeline.NewMatrix(rows, cols)
	for k := range w.Data {
		w.Data[k] = float32(r.NormFloat64() * 0.05)
		if zeros && r.IntN(20) == 0 {
			w.Data[k] = 0
		}
	}
	st := &Stats{SumSq: make([]float32, cols), Sum: make([]float32, cols), Var: make([]float32, cols), N: 8, Tokens: 64}
	for j := range cols {
		st.Var[j] = float32(math.Exp(r.NormFloat64()))
		st.Sum[j] = float32(r.NormFloat64() * 20)
		st.SumSq[j] = st.Var[j]*64/8 + st.Sum[j]*st.Sum[j]/64
		if zeros && j%7 == 3 {
			st.Sum[j] = 0
		}
	}
	return w, st
}

// wandaRows is the per-row Wanda mask (lowest k scores, stable) or N:M mask; with
// jitter it prunes a random count per row instead.
func wandaRows(r *rand.Rand, w pipeline.Matrix, st *Stats, s float64, n, m int, jitter bool) *pipeline.Mask {
	mask := pipeline.NewMask(w.Rows, w.Cols)
	score := make([]float32, w.Cols)
	for i := range w.Rows {
		for j, v := range w.Row(i) {
			score[j] = float32(math.Abs(float64(v))) * float32(math.Sqrt(float64(st.SumSq[j])))
		}
		if m > 0 {
			for g := 0; g < w.Cols; g += m {
				idx := make([]int, m)
				for k := range idx {
					idx[k] = g + k
				}
				sort.SliceStable(idx, func(a, b int) bool { return score[idx[a]] < score[idx[b]] })
				for _, j := range idx[:n] {
					mask.Set(i, j)
				}
			}
			continue
		}
		idx := make([]int, w.Cols)
		for j := range idx {
			idx[j] = j
		}
		sort.SliceStable(idx, func(a, b int) bool { return score[idx[a]] < score[idx[b]] })
		k := int(float64(w.Cols) * s)
		if jitter {
			k = r.IntN(w.Cols + 1)
		}
		for _, j := range idx[:k] {
			mask.Set(i, j)
		}
	}
	return mask
}

// TestDSnoTLiteral compares Refine with the literal transcription on random layers: widths
// from 8 (pointers run out) to 200, exact zeros in W and Sum (DSnoT's duplicated candidate),
// per-row counts from Wanda masks and random ones, unstructured and N:M, and the parameters.
func TestDSnoTLiteral(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	swaps := 0
	for trial := range 300 {
		rows := 1 + r.IntN(40)
		cols := []int{8, 12, 16, 64, 96, 200}[r.IntN(6)]
		w, st := randomCase(r, rows, cols, trial%2 == 0)
		d := DefaultDSnoT()
		d.MaxCycles = []int{1, 5, 50, 50, 400}[r.IntN(5)]
		d.UpdateThreshold = []float64{0.1, 0.01, 0}[r.IntN(3)]
		d.PowVarRegrowing = []float64{1, 1, 2, 0, 0.7}[r.IntN(5)]
		d.SameSign = r.IntN(4) == 0
		if r.IntN(3) == 0 {
			d.Initial = "magnitude"
		}
		var n, m int
		var s float64
		jitter := false
		switch r.IntN(4) {
		case 0:
			n, m = 2, 4
		case 1:
			n, m = []int{1, 2, 3, 4}[r.IntN(4)], 8
			if cols%8 != 0 {
				n, m = 2, 4
			}
		case 2:
			jitter = true
		default:
			s = []float64{0.3, 0.5, 0.7, 0.9}[r.IntN(4)]
		}
		mask := wandaRows(r, w, st, s, n, m, jitter)
		want := literal(w, mask, st, d, n, m)
		before := slices.Clone(mask.Bits)
		tgt := pipeline.Target{Sparsity: s, N: n, M: m}
		if err := d.Refine(context.Background(), w, mask, st, tgt, attnInfo); err != nil {
			t.Fatal(err)
		}
		old := &pipeline.Mask{Rows: rows, Cols: cols, Bits: before}
		for i := range rows {
			for j := range cols {
				if mask.Get(i, j) != want[i][j] {
					t.Fatalf("trial %d (%d×%d, %d:%d s=%v, %+v): row %d: Refine prunes %v, literal %v",
						trial, rows, cols, n, m, s, d, i, prunedCols(mask, i), literalRow(want[i]))
				}
				if mask.Get(i, j) && !old.Get(i, j) {
					swaps++
				}
			}
		}
	}
	if swaps < 1000 {
		t.Errorf("only %d swaps in all trials: the cases do not exercise the refinement", swaps)
	}
}

func literalRow(b []bool) []int {
	var out []int
	for j, v := range b {
		if v {
			out = append(out, j)
		}
	}
	return out
}

// TestDSnoTInvariants: counts per row (and per group of M) are kept, W and the statistics are
// not modified, results are deterministic, skipped tensors are untouched.
func TestDSnoTInvariants(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	ctx := context.Background()
	for _, tc := range []struct {
		s    float64
		n, m int
	}{{0.5, 0, 0}, {0.7, 0, 0}, {0.9, 0, 0}, {0, 2, 4}, {0, 4, 8}} {
		w, st := randomCase(r, 300, 128, true)
		w0 := slices.Clone(w.Data)
		st0 := []([]float32){slices.Clone(st.SumSq), slices.Clone(st.Sum), slices.Clone(st.Var)}
		tgt := pipeline.Target{Sparsity: tc.s, N: tc.n, M: tc.m}
		mask := wandaRows(r, w, st, tc.s, tc.n, tc.m, false)
		orig := slices.Clone(mask.Bits)
		d := DefaultDSnoT()
		d.UpdateThreshold = 0.001
		if err := d.Refine(ctx, w, mask, st, tgt, attnInfo); err != nil {
			t.Fatal(err)
		}
		old := &pipeline.Mask{Rows: w.Rows, Cols: w.Cols, Bits: orig}
		changed := 0
		for i := range w.Rows {
			if len(prunedCols(mask, i)) != len(prunedCols(old, i)) {
				t.Fatalf("%v: row %d count %d → %d", tgt, i, len(prunedCols(old, i)), len(prunedCols(mask, i)))
			}
			if tc.m > 0 {
				for g := 0; g < w.Cols; g += tc.m {
					c := 0
					for j := g; j < g+tc.m; j++ {
						if mask.Get(i, j) {
							c++
						}
					}
					if c != tc.n {
						t.Fatalf("%v: row %d group %d has %d pruned", tgt, i, g, c)
					}
				}
			}
			for j := range w.Cols {
				if mask.Get(i, j) != old.Get(i, j) {
					changed++
				}
			}
		}
		if changed == 0 {
			t.Errorf("%v: nothing changed", tgt)
		}
		if !slices.Equal(w.Data, w0) || !slices.Equal(st.SumSq, st0[0]) || !slices.Equal(st.Sum, st0[1]) || !slices.Equal(st.Var, st0[2]) {
			t.Errorf("%v: inputs modified", tgt)
		}
		again := &pipeline.Mask{Rows: w.Rows, Cols: w.Cols, Bits: slices.Clone(orig)}
		if err := d.Refine(ctx, w, again, st, tgt, attnInfo); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(again.Bits, mask.Bits) {
			t.Errorf("%v: two runs differ", tgt)
		}
		skipped := &pipeline.Mask{Rows: w.Rows, Cols: w.Cols, Bits: slices.Clone(orig)}
		mlp := pipeline.LayerInfo{Layer: 2, Tensor: "model.layers.2.mlp.up_proj.weight", Part: "up_proj"}
		if err := d.Refine(ctx, w, skipped, st, tgt, mlp); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(skipped.Bits, orig) {
			t.Errorf("%v: the skipped MLP tensor changed", tgt)
		}
	}
}

func TestDSnoTApplies(t *testing.T) {
	d := DefaultDSnoT()
	for _, c := range []struct {
		info      pipeline.LayerInfo
		skip, sub string
		want      bool
	}{
		{pipeline.LayerInfo{Tensor: "model.layers.0.self_attn.q_proj.weight", Part: "q_proj"}, "mlp", "", true},
		{pipeline.LayerInfo{Tensor: "model.layers.11.mlp.down_proj.weight", Part: "down_proj"}, "mlp", "", false},
		{pipeline.LayerInfo{Tensor: "model.layers.1.mlp.experts.3.gate_proj.weight", Part: "gate_proj"}, "mlp", "", false},
		{pipeline.LayerInfo{Tensor: "model.layers.1.mlp.down_proj.weight", Part: "down_proj"}, "no_skip", "", true},
		{pipeline.LayerInfo{Tensor: "model.layers.1.mlp.down_proj.weight", Part: "down_proj"}, "", "", true},
		{pipeline.LayerInfo{Tensor: "model.layers.1.self_attn.k_proj.weight", Part: "k_proj"}, "no_skip", "k_proj", false},
		{pipeline.LayerInfo{Tensor: "model.layers.1.self_attn.o_proj.weight", Part: "o_proj"}, "self_attn", "", false},
		{pipeline.LayerInfo{Part: "down_proj"}, "mlp", "", false}, // no tensor name: from the part
		{pipeline.LayerInfo{Part: "q_proj"}, "self_attn", "", false},
	} {
		d.SkipLayer, d.SkipSubLayer = c.skip, c.sub
		if got := d.Applies(c.info); got != c.want {
			t.Errorf("%q skip %q/%q: %v, want %v", c.info.Tensor, c.skip, c.sub, got, c.want)
		}
	}
}

func TestDSnoTErrors(t *testing.T) {
	ctx := context.Background()
	r := rand.New(rand.NewPCG(9, 10))
	w, st := randomCase(r, 4, 16, false)
	mask := wandaRows(r, w, st, 0.5, 0, 0, false)
	tgt := pipeline.Target{Sparsity: 0.5}
	d := DefaultDSnoT()
	for name, c := range map[string]struct {
		mut  func(w *pipeline.Matrix, m **pipeline.Mask, st *Stats, d *DSnoT, t *pipeline.Target)
		want error
	}{
		"NaN weight": {func(w *pipeline.Matrix, _ **pipeline.Mask, _ *Stats, _ *DSnoT, _ *pipeline.Target) {
			w.Data[5] = float32(math.NaN())
		}, pipeline.ErrNonFinite},
		"Inf weight": {func(w *pipeline.Matrix, _ **pipeline.Mask, _ *Stats, _ *DSnoT, _ *pipeline.Target) {
			w.Data[0] = float32(math.Inf(-1))
		}, pipeline.ErrNonFinite},
		"NaN sum": {func(_ *pipeline.Matrix, _ **pipeline.Mask, st *Stats, _ *DSnoT, _ *pipeline.Target) {
			st.Sum[3] = float32(math.NaN())
		}, pipeline.ErrNonFinite},
		"negative var": {func(_ *pipeline.Matrix, _ **pipeline.Mask, st *Stats, _ *DSnoT, _ *pipeline.Target) { st.Var[3] = -1 }, pipeline.ErrNonFinite},
		"Inf sumsq": {func(_ *pipeline.Matrix, _ **pipeline.Mask, st *Stats, _ *DSnoT, _ *pipeline.Target) {
			st.SumSq[0] = float32(math.Inf(1))
		}, pipeline.ErrNonFinite},
		"short var": {func(_ *pipeline.Matrix, _ **pipeline.Mask, st *Stats, _ *DSnoT, _ *pipeline.Target) {
			st.Var = st.Var[:15]
		}, pipeline.ErrShape},
		"no sum": {func(_ *pipeline.Matrix, _ **pipeline.Mask, st *Stats, _ *DSnoT, _ *pipeline.Target) { st.Sum = nil }, pipeline.ErrShape},
		"mask shape": {func(_ *pipeline.Matrix, m **pipeline.Mask, _ *Stats, _ *DSnoT, _ *pipeline.Target) {
			*m = pipeline.NewMask(4, 15)
		}, pipeline.ErrShape},
		"nil mask": {func(_ *pipeline.Matrix, m **pipeline.Mask, _ *Stats, _ *DSnoT, _ *pipeline.Target) { *m = nil }, pipeline.ErrShape},
		"weight length": {func(w *pipeline.Matrix, _ **pipeline.Mask, _ *Stats, _ *DSnoT, _ *pipeline.Target) {
			w.Data = w.Data[:60]
		}, pipeline.ErrShape},
		"N:M width": {func(_ *pipeline.Matrix, _ **pipeline.Mask, _ *Stats, _ *DSnoT, t *pipeline.Target) {
			*t = pipeline.Target{N: 2, M: 5}
		}, pipeline.ErrBadTarget},
		"cycles": {func(_ *pipeline.Matrix, _ **pipeline.Mask, _ *Stats, d *DSnoT, _ *pipeline.Target) { d.MaxCycles = -1 }, ErrBadParam},
		"threshold": {func(_ *pipeline.Matrix, _ **pipeline.Mask, _ *Stats, d *DSnoT, _ *pipeline.Target) {
			d.UpdateThreshold = math.NaN()
		}, ErrBadParam},
		"power": {func(_ *pipeline.Matrix, _ **pipeline.Mask, _ *Stats, d *DSnoT, _ *pipeline.Target) {
			d.PowVarRegrowing = math.Inf(1)
		}, ErrBadParam},
		"initial": {func(_ *pipeline.Matrix, _ **pipeline.Mask, _ *Stats, d *DSnoT, _ *pipeline.Target) {
			d.Initial = "sparsegpt"
		}, ErrBadParam},
	} {
		w2 := pipeline.Matrix{Rows: w.Rows, Cols: w.Cols, Data: slices.Clone(w.Data)}
		st2 := &Stats{SumSq: slices.Clone(st.SumSq), Sum: slices.Clone(st.Sum), Var: slices.Clone(st.Var), N: st.N, Tokens: st.Tokens}
		m2 := &pipeline.Mask{Rows: mask.Rows, Cols: mask.Cols, Bits: slices.Clone(mask.Bits)}
		d2, t2 := d, tgt
		c.mut(&w2, &m2, st2, &d2, &t2)
		err := d2.Refine(ctx, w2, m2, st2, t2, attnInfo)
		if !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", name, err, c.want)
		}
	}
	// A cancelled context stops Refine with the context's error and the mask untouched.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	m2 := &pipeline.Mask{Rows: mask.Rows, Cols: mask.Cols, Bits: slices.Clone(mask.Bits)}
	if err := d.Refine(cctx, w, m2, st, tgt, attnInfo); !errors.Is(err, context.Canceled) || !slices.Equal(m2.Bits, mask.Bits) {
		t.Errorf("cancelled: %v", err)
	}
	// A skipped tensor needs no statistics.
	mlp := pipeline.LayerInfo{Layer: 2, Tensor: "model.layers.2.mlp.down_proj.weight", Part: "down_proj"}
	m3 := &pipeline.Mask{Rows: mask.Rows, Cols: mask.Cols, Bits: slices.Clone(mask.Bits)}
	if err := d.Refine(ctx, w, m3, nil, tgt, mlp); err != nil || !slices.Equal(m3.Bits, mask.Bits) {
		t.Errorf("skipped tensor without statistics: %v", err)
	}
	if d := (DSnoT{PowVarRegrowing: 0}); d.NeedsStats().Has(NeedVar) {
		t.Errorf("power 0 needs %v", d.NeedsStats())
	}
	if got := DefaultDSnoT().NeedsStats().String(); got != "sumsq+sum+var" {
		t.Errorf("NeedsStats %q", got)
	}
}
