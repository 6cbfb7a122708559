// Command wanda-plugin-dsnot is DSnoT's mask refinement (Zhang et al., "Dynamic Sparse No
// Training", ICLR 2024) as a refine plugin, written from the algorithm; it gives the masks of
// the built-in `--refine dsnot`.
//
// Each output row is refined on its own. With d_j = W_j·Sum_j (the weight times its input's
// mean, float32), the row's reconstruction error is e = Σ_{j pruned} d_j. Pruned weights are
// ordered for regrowing by d_j / Var_j^p (kept ones count 0), and kept weights are ordered
// for pruning by their Wanda score |W_j|·sqrt(SumSq_j): those with d < 0 by increasing
// score, then one copy of the lowest-scored kept weight per kept d = 0, then those with d > 0
// by decreasing score. Then, for up to max-cycles cycles while |e| > update-threshold, one
// pruned weight is regrown and one kept weight pruned: when e > 0 the next regrowing
// candidate from the top of its order, else from the bottom; when e < 0 the next pruning
// candidate from the end of its list, else from the start; e ← (e + d_pruned) − d_regrown.
// A row stops at the first exchange that would not swap a pruned weight for a kept one (it
// would change the row's count) and, with same-sign, at the first that would flip e's sign.
//
// For N:M targets the weight pruned in exchange for a regrown one is the kept weight of the
// same group of M with the lowest initial score (Wanda's, or |W| with initial=magnitude;
// ties to the lower column), each weight at most once, and the sign check is always on.
//
// Tensors of the module named by skip-layer ("mlp" by default: the tensor name's part after
// "layers.<i>." starts with "mlp.") or of the projection named by skip-sub-layer are left as
// chosen. Arguments (--refine-arg key=value): max-cycles (50), update-threshold (0.1),
// pow-of-var (1; 0 divides by nothing), same-sign (false), initial (wanda), skip-layer (mlp;
// no_skip refines all), skip-sub-layer (none).
//
// W is a block of rows [rows, in] in float32; the mask has the same shape; Sum, SumSq and
// Var are [in].
package main

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/wanda-go/wanda/plugins/sdk"
)

func main() {
	sdk.ServeRefine(sdk.RefineInfo{
		Name:        "dsnot",
		Description: "DSnoT (Zhang et al., ICLR 2024): swap pruned and kept weights of each row to shrink its reconstruction error",
		Args: []sdk.Arg{
			{Name: "max-cycles", Help: "most exchanges per row (default 50)"},
			{Name: "update-threshold", Help: "a row stops once |error| <= this (default 0.1)"},
			{Name: "pow-of-var", Help: "divide the regrowing metric by Var^p (default 1; 0: no division)"},
			{Name: "same-sign", Help: "true: stop before an exchange that flips the error's sign (unstructured)"},
			{Name: "initial", Help: "the metric the mask came from, wanda or magnitude (N:M exchanges)"},
			{Name: "skip-layer", Help: "leave this module of each decoder layer as chosen (default mlp; no_skip)"},
			{Name: "skip-sub-layer", Help: "leave this projection as chosen (default none)"},
		},
		CheckArgs: func(args map[string]string) error {
			_, err := parse(args)
			return err
		},
		NeedsFor: func(args map[string]string) ([]sdk.Stat, error) {
			p, err := parse(args)
			if err != nil {
				return nil, err
			}
			need := []sdk.Stat{sdk.StatSumSq, sdk.StatSum}
			if p.pow != 0 {
				need = append(need, sdk.StatVar)
			}
			return need, nil
		},
		Applies: func(info sdk.LayerInfo) bool {
			p, err := parse(info.Args)
			return err == nil && p.applies(info)
		},
	}, refine)
}

type params struct {
	maxCycles           int
	threshold           float32
	pow                 float64
	sameSign, magnitude bool
	skipLayer, skipProj string
}

func parse(args map[string]string) (params, error) {
	p := params{maxCycles: 50, pow: 1, skipLayer: "mlp"}
	if v, ok := args["max-cycles"]; ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return p, fmt.Errorf("max-cycles=%q: want an integer >= 0", v)
		}
		p.maxCycles = n
	}
	thr, err := sdk.ArgFloat(args, "update-threshold", 0.1)
	if err != nil || math.IsNaN(thr) || thr < 0 {
		return p, fmt.Errorf("update-threshold=%q: want a number >= 0", args["update-threshold"])
	}
	p.threshold = float32(thr)
	if p.pow, err = sdk.ArgFloat(args, "pow-of-var", 1); err != nil || math.IsNaN(p.pow) || math.IsInf(p.pow, 0) {
		return p, fmt.Errorf("pow-of-var=%q: want a finite number", args["pow-of-var"])
	}
	switch v := args["same-sign"]; v {
	case "", "false":
	case "true":
		p.sameSign = true
	default:
		return p, fmt.Errorf("same-sign=%q: want true or false", v)
	}
	switch v := args["initial"]; v {
	case "", "wanda":
	case "magnitude":
		p.magnitude = true
	default:
		return p, fmt.Errorf("initial=%q: want wanda or magnitude", v)
	}
	if v, ok := args["skip-layer"]; ok {
		p.skipLayer = v
	}
	p.skipProj = args["skip-sub-layer"]
	return p, nil
}

// applies: the tensor's module inside its decoder layer ("self_attn.q_proj" for
// "model.layers.3.self_attn.q_proj.weight"; from the part name when the tensor name has no
// "layers.<i>."), split at dots, is skipped when its first component is skip-layer or its
// second skip-sub-layer.
func (p params) applies(info sdk.LayerInfo) bool {
	module := ""
	comps := strings.Split(strings.TrimSuffix(info.Tensor, ".weight"), ".")
	for i := 0; i+2 < len(comps) && module == ""; i++ {
		if _, err := strconv.Atoi(comps[i+1]); comps[i] == "layers" && err == nil {
			module = strings.Join(comps[i+2:], ".")
		}
	}
	if module == "" {
		switch info.Part {
		case "q_proj", "k_proj", "v_proj", "o_proj":
			module = "self_attn." + info.Part
		case "gate_proj", "up_proj", "down_proj":
			module = "mlp." + info.Part
		default:
			module = info.Part
		}
	}
	parts := strings.Split(module, ".")
	if p.skipLayer != "" && p.skipLayer != "no_skip" && parts[0] == p.skipLayer {
		return false
	}
	return p.skipProj == "" || p.skipProj == "no_skip" || len(parts) < 2 || parts[1] != p.skipProj
}

func refine(w sdk.Tensor, mask sdk.Mask, st sdk.Stats, t sdk.Target, info sdk.LayerInfo) (sdk.Mask, error) {
	p, err := parse(info.Args)
	if err != nil {
		return sdk.Mask{}, err
	}
	rows, cols := w.Shape[0], w.Shape[1]
	if len(st.Sum) != cols || len(st.SumSq) != cols || p.pow != 0 && len(st.Var) != cols {
		return sdk.Mask{}, fmt.Errorf("statistics for %d columns missing", cols)
	}
	if p.maxCycles == 0 || !p.applies(info) {
		return mask, nil
	}
	// Per-column values shared by all rows.
	norm := make([]float32, cols) // sqrt(SumSq): the activation norm of Wanda's score
	for j, s := range st.SumSq {
		norm[j] = float32(math.Sqrt(float64(s)))
	}
	var varPow []float32
	if p.pow != 0 {
		varPow = make([]float32, cols)
		for j, v := range st.Var {
			varPow[j] = powF32(v, p.pow)
		}
	}
	for i := range rows {
		r := row{
			w: w.Data[i*cols : (i+1)*cols], pruned: mask.Pruned[i*cols : (i+1)*cols],
			sum: st.Sum, norm: norm, varPow: varPow, p: p,
		}
		if t.M > 0 {
			r.refineNM(t.M)
		} else {
			r.refine()
		}
	}
	return mask, nil
}

// powF32 is torch.pow of a float32 tensor: its exact special cases for the common
// exponents, float64 pow rounded to float32 otherwise.
func powF32(v float32, e float64) float32 {
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

// row is one output row being refined; pruned is a view of its mask.
type row struct {
	w, sum, norm, varPow []float32
	pruned               []bool
	p                    params
	d                    []float32 // DSnoT's metric W_j·Sum_j
}

// start computes d, the error e (summed in float64, rounded once) and the regrowing order.
func (r *row) start() (e float32, nPruned int, regrow []int) {
	cols := len(r.w)
	r.d = make([]float32, cols)
	key := make([]float32, cols)
	var e64 float64
	for j, v := range r.w {
		r.d[j] = v * r.sum[j]
		var g float32
		if r.pruned[j] {
			g = r.d[j]
			e64 += float64(r.d[j])
			nPruned++
		}
		if r.varPow != nil {
			g /= r.varPow[j]
		}
		key[j] = g
	}
	return float32(e64), nPruned, ascending(key)
}

// ascending returns the indices of key in increasing order: a stable sort, NaN last.
func ascending(key []float32) []int {
	idx := make([]int, len(key))
	for j := range idx {
		idx[j] = j
	}
	slices.SortStableFunc(idx, func(a, b int) int {
		x, y := key[a], key[b]
		switch xn, yn := x != x, y != y; {
		case xn || yn:
			return cmp.Compare(b2i(xn), b2i(yn))
		}
		return cmp.Compare(x, y)
	})
	return idx
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func sign(x float32) int {
	switch {
	case x > 0:
		return 1
	case x < 0:
		return -1
	}
	return 0
}

func abs(x float32) float32 { return float32(math.Abs(float64(x))) }

func (r *row) refine() {
	cols := len(r.w)
	e, nPruned, regrow := r.start()
	nKept := cols - nPruned
	if nPruned == 0 || nKept == 0 {
		return
	}
	// Kept weights by increasing Wanda score (pruned ones count as +Inf, so they sort last).
	score := make([]float32, cols)
	for j, v := range r.w {
		if r.pruned[j] {
			score[j] = float32(math.Inf(1))
		} else {
			score[j] = abs(v) * r.norm[j]
		}
	}
	kept := ascending(score)[:nKept]
	var cand []int
	for _, j := range kept {
		if r.d[j] < 0 {
			cand = append(cand, j)
		}
	}
	for _, j := range kept {
		if !(r.d[j] < 0) && !(r.d[j] > 0) {
			cand = append(cand, kept[0])
		}
	}
	for k := len(kept) - 1; k >= 0; k-- {
		if r.d[kept[k]] > 0 {
			cand = append(cand, kept[k])
		}
	}

	s0 := sign(e)
	regLo, regHi := 0, cols-1
	candLo, candHi := 0, len(cand)-1
	for range r.p.maxCycles {
		var grow, cut int
		if e > 0 {
			if regHi < 0 {
				return
			}
			grow = regrow[regHi]
			regHi--
		} else {
			if regLo >= cols {
				return
			}
			grow = regrow[regLo]
			regLo++
		}
		if e < 0 {
			if candHi < 0 {
				return
			}
			cut = cand[candHi]
			candHi--
		} else {
			if candLo >= len(cand) {
				return
			}
			cut = cand[candLo]
			candLo++
		}
		next := e + r.d[cut] - r.d[grow]
		if !(abs(e) > r.p.threshold) || r.p.sameSign && sign(next) != s0 {
			return
		}
		if !r.pruned[grow] || r.pruned[cut] {
			return // not a pruned weight for a kept one: the row's count would change
		}
		r.pruned[grow], r.pruned[cut] = false, true
		e = next
	}
}

func (r *row) refineNM(m int) {
	cols := len(r.w)
	e, nPruned, regrow := r.start()
	if nPruned == 0 || nPruned == cols {
		return
	}
	inf := float32(math.Inf(1))
	initial := make([]float32, cols) // +Inf: pruned, or already exchanged
	for j, v := range r.w {
		switch {
		case r.pruned[j]:
			initial[j] = inf
		case r.p.magnitude:
			initial[j] = abs(v)
		default:
			initial[j] = abs(v) * r.norm[j]
		}
	}
	s0 := sign(e)
	regLo, regHi := 0, cols-1
	for range r.p.maxCycles {
		var grow int
		if e > 0 {
			if regHi < 0 {
				return
			}
			grow = regrow[regHi]
			regHi--
		} else {
			if regLo >= cols {
				return
			}
			grow = regrow[regLo]
			regLo++
		}
		g0 := grow - grow%m
		cut := g0 // the group's lowest initial score, the first of equals, NaN highest
		for j := g0 + 1; j < g0+m; j++ {
			x, y := initial[j], initial[cut]
			if x < y || y != y && x == x {
				cut = j
			}
		}
		next := e + r.d[cut] - r.d[grow]
		if !(abs(e) > r.p.threshold) || sign(next) != s0 {
			return
		}
		if !r.pruned[grow] || r.pruned[cut] || initial[cut] == inf {
			return // the group's count would change
		}
		initial[cut] = inf
		r.pruned[grow], r.pruned[cut] = false, true
		e = next
	}
}
