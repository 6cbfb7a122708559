package refine

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/wanda-go/wanda/pipeline"
	"github.com/wanda-go/wanda/tensor"
)

// DSnoT is the training-free mask refinement of Zhang et al., "Dynamic Sparse No Training"
// (ICLR 2024), as zyxxmu/DSnoT lib/prune.py prune_DSnoT computes it (commit 4c029df). See
// the package documentation for the algorithm and its interpretation.
type DSnoT struct {
	// MaxCycles bounds the swaps per row (max_cycle_time, default 50).
	MaxCycles int
	// UpdateThreshold stops a row once |reconstruction error| ≤ it (update_threshold,
	// default 0.1; compared in float32 like torch compares a float32 tensor with a Python
	// float).
	UpdateThreshold float64
	// PowVarRegrowing divides the regrowing metric by Var^p (pow_of_var_regrowing, default 1;
	// 0 leaves it undivided, as DSnoT's `if args.pow_of_var_regrowing:` does).
	PowVarRegrowing float64
	// SameSign, for unstructured targets, also stops a row when a swap would flip the sign of
	// the reconstruction error. DSnoT's default (without_same_sign, an argparse type=bool flag
	// that is True for every non-empty value) leaves it off. N:M targets always check the
	// sign, as DSnoT's N:M branch does.
	SameSign bool
	// Initial is the metric the initial mask came from, "wanda" (default) or "magnitude"
	// (initial_method). It matters only for N:M targets: the weight pruned in a group is the
	// kept one with the lowest initial score. (Unstructured refinement orders its pruning
	// candidates by the Wanda score whatever the initial method, as DSnoT does.)
	Initial string
	// SkipLayer leaves tensors of this module of the decoder layer unrefined (skip_layer:
	// "mlp" by default, so only attention projections are refined; "" or "no_skip" refines
	// all). SkipSubLayer does the same for one projection ("q_proj", …; default none).
	SkipLayer, SkipSubLayer string
}

var _ Refiner = DSnoT{}

// DefaultDSnoT returns DSnoT's main.py defaults: 50 cycles, threshold 0.1, variance power 1,
// no sign check, Wanda initial mask, MLP skipped.
func DefaultDSnoT() DSnoT {
	return DSnoT{MaxCycles: 50, UpdateThreshold: 0.1, PowVarRegrowing: 1, Initial: "wanda", SkipLayer: "mlp"}
}

// Name returns "dsnot".
func (DSnoT) Name() string { return "dsnot" }

// NeedsStats returns SumSq and Sum, and Var unless PowVarRegrowing is 0.
func (d DSnoT) NeedsStats() StatsKind {
	k := NeedSumSq | NeedSum
	if d.PowVarRegrowing != 0 {
		k |= NeedVar
	}
	return k
}

// Validate checks the parameters.
func (d DSnoT) Validate() error {
	switch {
	case d.MaxCycles < 0:
		return fmt.Errorf("%w: dsnot max cycles %d < 0", ErrBadParam, d.MaxCycles)
	case math.IsNaN(d.UpdateThreshold) || d.UpdateThreshold < 0:
		return fmt.Errorf("%w: dsnot update threshold %v (want ≥ 0)", ErrBadParam, d.UpdateThreshold)
	case math.IsNaN(d.PowVarRegrowing) || math.IsInf(d.PowVarRegrowing, 0):
		return fmt.Errorf("%w: dsnot variance power %v (want a finite number)", ErrBadParam, d.PowVarRegrowing)
	case d.Initial != "" && d.Initial != "wanda" && d.Initial != "magnitude":
		return fmt.Errorf("%w: dsnot initial method %q (want wanda or magnitude)", ErrBadParam, d.Initial)
	}
	return nil
}

// Applies reports whether the tensor is refined: not when its module within the decoder
// layer (the name after "layers.<i>.", split at dots as DSnoT splits "self_attn.q_proj")
// has SkipLayer as its first component or SkipSubLayer as its second.
func (d DSnoT) Applies(info pipeline.LayerInfo) bool {
	parts := strings.Split(layerModule(info), ".")
	if d.SkipLayer != "" && d.SkipLayer != "no_skip" && parts[0] == d.SkipLayer {
		return false
	}
	if d.SkipSubLayer != "" && d.SkipSubLayer != "no_skip" && len(parts) > 1 && parts[1] == d.SkipSubLayer {
		return false
	}
	return true
}

// layerModule returns the module path of a tensor inside its decoder layer:
// "model.layers.3.self_attn.q_proj.weight" → "self_attn.q_proj". Without a "layers.<i>."
// component it falls back to the part name's conventional module.
func layerModule(info pipeline.LayerInfo) string {
	name := strings.TrimSuffix(info.Tensor, ".weight")
	comps := strings.Split(name, ".")
	for i := 0; i+2 < len(comps); i++ {
		if comps[i] == "layers" {
			if _, err := strconv.Atoi(comps[i+1]); err == nil {
				return strings.Join(comps[i+2:], ".")
			}
		}
	}
	switch info.Part {
	case "q_proj", "k_proj", "v_proj", "o_proj":
		return "self_attn." + info.Part
	case "gate_proj", "up_proj", "down_proj":
		return "mlp." + info.Part
	}
	return info.Part
}

// Refine refines mask in place (see the package documentation). Tensors the refiner does
// not apply to are left alone without looking at w, mask or st (st may be nil for them).
func (d DSnoT) Refine(ctx context.Context, w pipeline.Matrix, mask *pipeline.Mask, st *Stats, t pipeline.Target, info pipeline.LayerInfo) error {
	if err := d.Validate(); err != nil {
		return err
	}
	if !d.Applies(info) {
		return nil // skipped tensors need no statistics
	}
	if err := checkInputs(d.Name(), w, mask, st, d.NeedsStats(), info); err != nil {
		return err
	}
	if err := t.Validate(w.Cols); err != nil {
		return fmt.Errorf("refine %s: %s: %w", d.Name(), info, err)
	}
	if w.Rows == 0 || w.Cols == 0 || d.MaxCycles == 0 {
		return nil
	}
	p := d.prepare(w.Cols, st)
	swaps := make([][]swap, w.Rows)
	var firstErr error
	var once sync.Once
	tensor.ParallelFor(w.Rows, 16, func(lo, hi int) {
		ws := newWork(w.Cols)
		for i := lo; i < hi; i++ {
			if (i-lo)%64 == 0 {
				if err := ctx.Err(); err != nil {
					once.Do(func() { firstErr = err })
					return
				}
			}
			for j := range w.Cols {
				ws.pruned[j] = mask.Get(i, j)
			}
			if t.Structured() {
				swaps[i] = d.refineRowNM(w.Row(i), ws, p, t.M)
			} else {
				swaps[i] = d.refineRow(w.Row(i), ws, p)
			}
		}
	})
	if firstErr != nil {
		return firstErr
	}
	for i, row := range swaps {
		for _, s := range row {
			clearBit(mask, i, int(s.regrow))
			mask.Set(i, int(s.prune))
		}
	}
	return nil
}

// swap is one accepted exchange: regrow (unprune) a weight and prune another in its place.
type swap struct{ regrow, prune int32 }

// params are the per-tensor values shared by all rows.
type params struct {
	sum     []float32 // Stats.Sum
	sqrtSS  []float32 // sqrt(SumSq), float32-rounded: Wanda's activation norm
	varPow  []float32 // Var^PowVarRegrowing (nil when PowVarRegrowing is 0)
	thr     float32   // UpdateThreshold in float32
	maxCyc  int
	sign    bool
	initMag bool
}

func (d DSnoT) prepare(cols int, st *Stats) *params {
	p := &params{sum: st.Sum, sqrtSS: make([]float32, cols), thr: float32(d.UpdateThreshold),
		maxCyc: d.MaxCycles, sign: d.SameSign, initMag: d.Initial == "magnitude"}
	for j, s := range st.SumSq {
		p.sqrtSS[j] = float32(math.Sqrt(float64(s)))
	}
	if d.PowVarRegrowing != 0 {
		p.varPow = make([]float32, cols)
		for j, v := range st.Var {
			p.varPow[j] = pow32(v, d.PowVarRegrowing)
		}
	}
	return p
}

// pow32 is torch.pow(float32 tensor, exponent): exponents 1, 2, 3, 0.5, -0.5, -1 and -2 are
// computed the way torch special-cases them; others with float64 pow rounded to float32
// (torch uses a vectorised powf with ≤ 1 ulp error, so those may differ in the last bit).
func pow32(v float32, e float64) float32 {
	switch e {
	case 1:
		return v
	case 2:
		return v * v
	case 3:
		return v * v * v
	case 0.5:
		return float32(math.Sqrt(float64(v)))
	case -0.5:
		return 1 / float32(math.Sqrt(float64(v)))
	case -1:
		return 1 / v
	case -2:
		return 1 / (v * v)
	}
	return float32(math.Pow(float64(v), e))
}

// work is one goroutine's scratch space for a row.
type work struct {
	pruned []bool
	d, key []float32
	regrow []int32 // columns by increasing regrowing metric
	order  []int32 // columns by increasing Wanda score (pruned ones last)
	prune  []int32 // pruning candidates (DSnoT's pruning_indices_block)
	init   []float32
}

func newWork(cols int) *work {
	return &work{pruned: make([]bool, cols), d: make([]float32, cols), key: make([]float32, cols),
		regrow: make([]int32, cols), order: make([]int32, cols), prune: make([]int32, 0, cols), init: make([]float32, cols)}
}

// begin computes the DSnoT metric d_j = W_j·Sum_j, the initial reconstruction error e (the
// sum of d over the pruned weights), and the regrowing order: columns sorted stably by
// (pruned ? d_j : 0) / Var_j^p, NaN last. It returns e and the number of pruned weights.
func (ws *work) begin(w []float32, p *params) (e float32, nPruned int) {
	var e64 float64
	for j, v := range w {
		dj := v * p.sum[j]
		ws.d[j] = dj
		g := float32(0)
		if ws.pruned[j] {
			g = dj
			e64 += float64(dj)
			nPruned++
		}
		if p.varPow != nil {
			g /= p.varPow[j]
		}
		ws.key[j] = g
	}
	argsort(ws.regrow, ws.key)
	return float32(e64), nPruned
}

// refineRow is DSnoT's unstructured branch for one row; it returns the accepted swaps in
// order and leaves ws.pruned at the refined row.
func (d DSnoT) refineRow(w []float32, ws *work, p *params) []swap {
	cols := len(w)
	e, nPruned := ws.begin(w, p)
	nKept := cols - nPruned
	if nPruned == 0 || nKept == 0 {
		return nil
	}
	// Pruning candidates: the kept weights by increasing Wanda score (pruned weights count
	// as +Inf, as DSnoT's scatter of inf before its stable sort), then reordered as DSnoT's
	// return_reorder_indice: those with d < 0 in that order, one copy of the first kept
	// weight for each d = 0, those with d > 0 in the reverse order.
	inf := float32(math.Inf(1))
	for j, v := range w {
		if ws.pruned[j] {
			ws.key[j] = inf
		} else {
			ws.key[j] = abs32(v) * p.sqrtSS[j]
		}
	}
	argsort(ws.order, ws.key)
	kept := ws.order[:nKept]
	ws.prune = ws.prune[:0]
	zeros := 0
	for _, j := range kept {
		switch x := ws.d[j]; {
		case x < 0:
			ws.prune = append(ws.prune, j)
		case !(x > 0):
			zeros++
		}
	}
	for range zeros {
		ws.prune = append(ws.prune, kept[0])
	}
	for k := len(kept) - 1; k >= 0; k-- {
		if ws.d[kept[k]] > 0 {
			ws.prune = append(ws.prune, kept[k])
		}
	}

	sign0 := sign32(e)
	var out []swap
	rLo, rHi := 0, cols-1  // regrowing pointers: from the most negative, from the most positive
	pLo, pHi := 0, nKept-1 // pruning pointers into ws.prune
	for range p.maxCyc {
		var reg, pr int32
		if e > 0 {
			if rHi < 0 {
				break
			}
			reg = ws.regrow[rHi]
			rHi--
		} else {
			if rLo >= cols {
				break
			}
			reg = ws.regrow[rLo]
			rLo++
		}
		if e < 0 {
			if pHi < 0 {
				break
			}
			pr = ws.prune[pHi]
			pHi--
		} else {
			if pLo >= nKept {
				break
			}
			pr = ws.prune[pLo]
			pLo++
		}
		after := e + ws.d[pr] - ws.d[reg]
		if !(abs32(e) > p.thr) || p.sign && sign32(after) != sign0 {
			break
		}
		if !ws.pruned[reg] || ws.pruned[pr] {
			break // DSnoT would change the row's pruned count here
		}
		ws.pruned[reg], ws.pruned[pr] = false, true
		e = after
		out = append(out, swap{regrow: reg, prune: pr})
	}
	return out
}

// refineRowNM is DSnoT's N:M branch for one row: the weight pruned in exchange for a regrown
// one is the kept weight of the same group of m with the lowest initial score, and a swap
// must keep the sign of the reconstruction error.
func (d DSnoT) refineRowNM(w []float32, ws *work, p *params, m int) []swap {
	cols := len(w)
	e, nPruned := ws.begin(w, p)
	if nPruned == 0 || nPruned == cols {
		return nil
	}
	inf := float32(math.Inf(1))
	for j, v := range w {
		switch {
		case ws.pruned[j]:
			ws.init[j] = inf
		case p.initMag:
			ws.init[j] = abs32(v)
		default:
			ws.init[j] = abs32(v) * p.sqrtSS[j]
		}
	}
	sign0 := sign32(e)
	var out []swap
	rLo, rHi := 0, cols-1
	for range p.maxCyc {
		var reg int32
		if e > 0 {
			if rHi < 0 {
				break
			}
			reg = ws.regrow[rHi]
			rHi--
		} else {
			if rLo >= cols {
				break
			}
			reg = ws.regrow[rLo]
			rLo++
		}
		g0 := int(reg) - int(reg)%m
		pr := int32(g0)
		for j := g0 + 1; j < g0+m; j++ { // the first lowest, NaN counting as highest
			if ws.init[j] < ws.init[pr] || math.IsNaN(float64(ws.init[pr])) && !math.IsNaN(float64(ws.init[j])) {
				pr = int32(j)
			}
		}
		after := e + ws.d[pr] - ws.d[reg]
		if !(abs32(e) > p.thr) || sign32(after) != sign0 {
			break
		}
		if !ws.pruned[reg] || ws.pruned[pr] || ws.init[pr] == inf {
			break // DSnoT would change the group's pruned count here
		}
		ws.init[pr] = inf
		ws.pruned[reg], ws.pruned[pr] = false, true
		e = after
		out = append(out, swap{regrow: reg, prune: pr})
	}
	return out
}

// argsort fills idx with 0..len(key)-1 sorted by increasing key, ties by index (a stable
// sort), NaN after everything (torch.sort's order).
func argsort(idx []int32, key []float32) {
	for j := range idx {
		idx[j] = int32(j)
	}
	slices.SortFunc(idx, func(a, b int32) int {
		ka, kb := key[a], key[b]
		na, nb := ka != ka, kb != kb
		switch {
		case na && !nb:
			return 1
		case nb && !na:
			return -1
		case !na && ka < kb:
			return -1
		case !na && ka > kb:
			return 1
		}
		return int(a) - int(b)
	})
}

func sign32(x float32) float32 {
	switch {
	case x > 0:
		return 1
	case x < 0:
		return -1
	}
	return 0
}

func abs32(v float32) float32 { return math.Float32frombits(math.Float32bits(v) &^ (1 << 31)) }

func clearBit(m *pipeline.Mask, i, j int) {
	k := i*m.Cols + j
	m.Bits[k>>6] &^= 1 << (uint(k) & 63)
}
