package allocate

import (
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/wanda-go/wanda/format/config"
	"github.com/wanda-go/wanda/internal/testenv"
)

// TestOWLHandComputed checks the arithmetic on ratios whose result is worked out by hand:
// ratios 1, 2, 3, 4 span 3, so with λ = 0.08 they scale to 0, 0.16/3, 0.32/3, 0.16 (mean
// 0.08) and the densities at target 0.5 are 0.42, 0.42 + 0.16/3, 0.42 + 0.32/3, 0.58.
func TestOWLHandComputed(t *testing.T) {
	a, err := DefaultOWL().FromRatios([]float64{1, 2, 3, 4}, 0.5)
	if err != nil {
		t.Fatal(err)
	}
	wantD := []float64{0.42, 0.42 + 0.16/3, 0.42 + 0.32/3, 0.58}
	for i := range wantD {
		if math.Abs(a.Densities[i]-wantD[i]) > 1e-15 || math.Abs(a.Sparsities[i]-(1-wantD[i])) > 1e-15 {
			t.Errorf("layer %d: density %v sparsity %v, want %v and %v", i, a.Densities[i], a.Sparsities[i], wantD[i], 1-wantD[i])
		}
	}
	// The order of the layers does not matter, only each layer's ratio.
	b, err := DefaultOWL().FromRatios([]float64{4, 1, 3, 2}, 0.5)
	if err != nil {
		t.Fatal(err)
	}
	for i, j := range []int{3, 0, 2, 1} {
		if math.Abs(b.Sparsities[i]-a.Sparsities[j]) > 1e-15 {
			t.Errorf("permuted layer %d: %v, want %v", i, b.Sparsities[i], a.Sparsities[j])
		}
	}
	// The mean density is 1 − target.
	for _, target := range []float64{0.3, 0.5, 0.7} {
		a, err := OWL{M: 5, Lambda: 0.1}.FromRatios([]float64{0.3, 0.27, 0.21, 0.22, 0.17, 0.16, 0.5, 0.02, 0.11}, target)
		if err != nil {
			t.Fatal(err)
		}
		var s float64
		for _, d := range a.Densities {
			s += d
		}
		if m := s / float64(len(a.Densities)); math.Abs(m-(1-target)) > 1e-12 {
			t.Errorf("target %v: mean density %v", target, m)
		}
	}
}

// TestOWLEdges: OWL's floor (a sparsity ≤ 0 becomes 0.01), equal ratios, a layer pushed to
// sparsity ≥ 1, and bad input.
func TestOWLEdges(t *testing.T) {
	// Target 0.05 with λ = 0.08: densities 0.87 and 1.03, so sparsities 0.13 and -0.03 → 0.01.
	a, err := DefaultOWL().FromRatios([]float64{1, 2}, 0.05)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(a.Sparsities[0]-0.13) > 1e-15 || a.Sparsities[1] != 0.01 || math.Abs(a.Densities[1]-1.03) > 1e-15 {
		t.Errorf("floor: %+v", a)
	}
	a, err = DefaultOWL().FromRatios([]float64{0.3, 0.3, 0.3}, 0.6)
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range a.Sparsities {
		if s != 0.6 {
			t.Errorf("equal ratios: layer %d sparsity %v, want 0.6", i, s)
		}
	}
	if _, err := DefaultOWL().FromRatios([]float64{1, 2}, 0.95); !errors.Is(err, ErrInfeasible) {
		t.Errorf("sparsity ≥ 1: %v", err)
	}
	for name, c := range map[string]struct {
		o      OWL
		ratios []float64
		target float64
		want   error
	}{
		"NaN ratio":    {DefaultOWL(), []float64{1, math.NaN()}, 0.5, ErrBadStats},
		"no layers":    {DefaultOWL(), nil, 0.5, ErrBadStats},
		"target 1":     {DefaultOWL(), []float64{1, 2}, 1, ErrBadParam},
		"target < 0":   {DefaultOWL(), []float64{1, 2}, -0.1, ErrBadParam},
		"M 0":          {OWL{M: 0, Lambda: 0.08}, []float64{1, 2}, 0.5, ErrBadParam},
		"lambda NaN":   {OWL{M: 5, Lambda: math.NaN()}, []float64{1, 2}, 0.5, ErrBadParam},
		"lambda < 0":   {OWL{M: 5, Lambda: -1}, []float64{1, 2}, 0.5, ErrBadParam},
		"M infinite":   {OWL{M: math.Inf(1), Lambda: 0.08}, []float64{1, 2}, 0.5, ErrBadParam},
		"target NaN":   {DefaultOWL(), []float64{1, 2}, math.NaN(), ErrBadParam},
		"Inf ratio":    {DefaultOWL(), []float64{1, math.Inf(1)}, 0.5, ErrBadStats},
		"one layer ok": {DefaultOWL(), []float64{1}, 0.5, nil},
	} {
		_, err := c.o.FromRatios(c.ratios, c.target)
		if c.want == nil && err != nil || c.want != nil && !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", name, err, c.want)
		}
	}
	if _, err := DefaultOWL().Allocate([]Outliers{{Above: 3, Total: 10}, {Above: 0, Total: 0}}, 0.5); !errors.Is(err, ErrBadStats) {
		t.Errorf("layer without scores: %v", err)
	}
	if _, err := DefaultOWL().Allocate([]Outliers{{Above: 11, Total: 10}, {Above: 1, Total: 10}}, 0.5); !errors.Is(err, ErrBadStats) {
		t.Errorf("more outliers than scores: %v", err)
	}
}

// TestPairwiseSum checks numpy's summation order on sums whose rounding tells the orders
// apart (2^53 + 1 rounds back to 2^53, 2^53 + 2 is exact).
func TestPairwiseSum(t *testing.T) {
	p := math.Ldexp(1, 53)
	// n < 8: in order from -0.0, so both 1s are lost.
	if got := pairwiseSum([]float64{p, 1, 1}); got != p {
		t.Errorf("n=3: %v, want 2^53", got)
	}
	if got := pairwiseSum([]float64{math.Copysign(0, -1)}); !math.Signbit(got) {
		t.Errorf("sum of -0.0 is %v, want -0", got)
	}
	// n = 8: eight accumulators, ((r0+r1)+(r2+r3)) + ((r4+r5)+(r6+r7)): r2+r3 = 2 is added
	// to 2^53 at once.
	if got := pairwiseSum([]float64{p, 0, 1, 1, 0, 0, 0, 0}); got != p+2 {
		t.Errorf("n=8: %v, want 2^53+2", got)
	}
	// n = 10: the remainder after the 8-wide block is added in order: lost.
	if got := pairwiseSum([]float64{p, 0, 0, 0, 0, 0, 0, 0, 1, 1}); got != p {
		t.Errorf("n=10: %v, want 2^53", got)
	}
	// n = 16: a[8] and a[9] go to accumulators 0 and 1: r0 = 2^53+1 → 2^53, r1 = 1, lost.
	a := make([]float64, 16)
	a[0], a[1], a[9] = p, 0, 1
	a[8] = 1
	if got := pairwiseSum(a); got != p {
		t.Errorf("n=16: %v, want 2^53", got)
	}
	// n = 136 > 128: split at 64; the second half sums to 2 on its own.
	a = make([]float64, 136)
	a[0], a[64], a[65] = p, 1, 1
	if got := pairwiseSum(a); got != p+2 {
		t.Errorf("n=136: %v, want 2^53+2", got)
	}
}

type owlRun struct {
	Method        string    `json:"method"`
	Sparsity      float64   `json:"sparsity"`
	Pattern       string    `json:"pattern"`
	LayerSparsity []float64 `json:"layer_sparsity"`
	Params        struct {
		Lamda  float64 `json:"Lamda"`
		HyperM float64 `json:"Hyper_m"`
	} `json:"params"`
	Ratios     []float64 `json:"owl_outlier_ratio_before_adjustment"`
	Densities  []float64 `json:"owl_density_after_adjustment"`
	Sparsities []float64 `json:"owl_layer_sparsity_target"`
}

func loadOWLRuns(t *testing.T) []owlRun {
	t.Helper()
	path := testenv.SharedPath(t, "reference/tiny-llama-a/methods.json")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Runs []owlRun `json:"runs"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	var owl []owlRun
	for _, r := range doc.Runs {
		if r.Method == "owl" {
			owl = append(owl, r)
		}
	}
	if len(owl) == 0 {
		t.Fatal("methods.json has no owl run")
	}
	return owl
}

// tinyShapes returns the [rows, cols] of the seven linears of a tiny-llama-a layer.
func tinyShapes(t *testing.T) [][2]int {
	t.Helper()
	cfg, err := config.Load(filepath.Join(testenv.SharedPath(t, "models/tiny-llama-a"), "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	H, I := cfg.HiddenSize, cfg.IntermediateSize
	q, kv := cfg.NumHeads*cfg.HeadDim, cfg.NumKVHeads*cfg.HeadDim
	return [][2]int{{q, H}, {kv, H}, {kv, H}, {H, q}, {I, H}, {I, H}, {H, I}}
}

// TestOWLReferenceArithmetic feeds OWL's own "before adjustment" ratios of tiny-llama-a
// (methods.json, from luuyin/OWL's code) to FromRatios and checks OWL's densities and
// targets bit for bit, the ratio formula (count / total · 100) on the counts those ratios
// come from, and the realised per-layer sparsity (each row prunes int(cols · s)) against
// the sparsity of the reference's masks.
func TestOWLReferenceArithmetic(t *testing.T) {
	shapes := tinyShapes(t)
	var total int64
	for _, s := range shapes {
		total += int64(s[0] * s[1])
	}
	for _, r := range loadOWLRuns(t) {
		o := OWL{M: r.Params.HyperM, Lambda: r.Params.Lamda}
		if o != DefaultOWL() {
			t.Errorf("owl %v: parameters %+v differ from DefaultOWL", r.Sparsity, o)
		}
		a, err := o.FromRatios(r.Ratios, r.Sparsity)
		if err != nil {
			t.Fatal(err)
		}
		for i := range r.Ratios {
			if a.Densities[i] != r.Densities[i] || a.Sparsities[i] != r.Sparsities[i] {
				t.Errorf("owl %v layer %d: density %v sparsity %v, OWL: %v and %v (Δ %g, %g)", r.Sparsity, i,
					a.Densities[i], a.Sparsities[i], r.Densities[i], r.Sparsities[i],
					a.Densities[i]-r.Densities[i], a.Sparsities[i]-r.Sparsities[i])
			}
			above := int64(math.Round(r.Ratios[i] / 100 * float64(total)))
			if got := (Outliers{Above: above, Total: total}).Ratio(); got != r.Ratios[i] {
				t.Errorf("layer %d: %d/%d → %v, OWL printed %v", i, above, total, got, r.Ratios[i])
			}
			var pruned int64
			for _, s := range shapes {
				pruned += int64(s[0]) * int64(float64(s[1])*a.Sparsities[i])
			}
			if got := float64(pruned) / float64(total); got != r.LayerSparsity[i] {
				t.Errorf("owl %v layer %d: realised sparsity %v, reference masks %v", r.Sparsity, i, got, r.LayerSparsity[i])
			}
		}
		// Through Allocate (counts) the result is the same.
		layers := make([]Outliers, len(r.Ratios))
		for i, x := range r.Ratios {
			layers[i] = Outliers{Above: int64(math.Round(x / 100 * float64(total))), Total: total}
		}
		b, err := o.Allocate(layers, r.Sparsity)
		if err != nil {
			t.Fatal(err)
		}
		for i := range b.Sparsities {
			if b.Sparsities[i] != r.Sparsities[i] {
				t.Errorf("Allocate: layer %d: %v, OWL %v", i, b.Sparsities[i], r.Sparsities[i])
			}
		}
	}
}
