package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/wanda-go/wanda/format/dtype"
	"github.com/wanda-go/wanda/format/safetensors"
	"github.com/wanda-go/wanda/format/sparse"
	"github.com/wanda-go/wanda/internal/modelgen"
)

// The fixture types of ../shared/models/arch.
var archFixtureTypes = []string{"qwen3", "phi3", "gemma2", "gemma3_text", "mixtral", "qwen2_moe", "qwen3_moe"}

// Test-side rules, independent of the architecture table: a router is the MoE
// gate or Qwen2-MoE's shared-expert gate; a linear of a layer is any 2-D tensor
// under model.layers; an expert linear is one under experts.<e>.
var (
	routerRE = regexp.MustCompile(`\.(block_sparse_moe\.gate|mlp\.gate|mlp\.shared_expert_gate)\.weight$`)
	expertRE = regexp.MustCompile(`^(model\.layers\.(\d+))\.(?:block_sparse_moe|mlp)\.experts\.(\d+)\.(w1|w2|w3|gate_proj|up_proj|down_proj)\.weight$`)
)

// readAll returns every tensor of the model directory dir: bytes, shape, dtype.
type denseTensor struct {
	data  []byte
	shape []int64
	dt    dtype.DType
}

func readAll(t *testing.T, dir string) map[string]denseTensor {
	t.Helper()
	set, err := safetensors.OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	out := map[string]denseTensor{}
	for _, n := range set.Names() {
		tt, _ := set.Tensor(n)
		out[n] = denseTensor{data: append([]byte(nil), tt.Bytes()...), shape: tt.Shape, dt: tt.DType}
	}
	return out
}

// evalArchPPL runs wanda eval on the reference's evaluation windows.
func evalArchPPL(t *testing.T, dir, ref string) float64 {
	t.Helper()
	out, err := inspRun(t, "", "eval", "--model", dir, "--tokens", ref, "--tokens-key", "eval_ids", "--seqlen", "64", "--json")
	if err != nil {
		t.Fatalf("eval %s: %v", dir, err)
	}
	var r evalResultJSON
	if err := json.Unmarshal([]byte(out), &r); err != nil || !(r.PPL > 1) || r.Windows != 4 {
		t.Fatalf("eval %s: %v %+v", dir, err, r)
	}
	return r.PPL
}

// TestArchToolsEveryType runs inspect, pack, unpack, eval of the packed model
// and merge-lora on the reference model of every new architecture, pruned by
// `wanda prune` (Wanda, 2:4 and 50% unstructured).
func TestArchToolsEveryType(t *testing.T) {
	shared := inspSharedDir(t)
	for _, typ := range archFixtureTypes {
		t.Run(typ, func(t *testing.T) {
			model := filepath.Join(shared, "models/arch", typ)
			ref := filepath.Join(shared, "models/arch", typ+"_reference.safetensors")
			orig := readAll(t, model)
			var linears, routers, experts int
			for n, x := range orig {
				if strings.HasPrefix(n, "model.layers.") && len(x.shape) == 2 {
					linears++
					if routerRE.MatchString(n) {
						routers++
					}
					if expertRE.MatchString(n) {
						experts++
					}
				}
			}
			moe := strings.Contains(typ, "moe") || typ == "mixtral"
			if moe != (routers > 0) || moe != (experts > 0) {
				t.Fatalf("%d routers, %d expert linears", routers, experts)
			}
			prunable := linears - routers

			// inspect of the original: every tensor expected, the linears and routers found.
			rep := inspectJSON(t, model)
			if len(rep.Problems) != 0 || rep.NumTensors != len(orig) {
				t.Fatalf("inspect %s: %d tensors of %d, problems %v", typ, rep.NumTensors, len(orig), rep.Problems)
			}
			gotRouters, gotExperts := 0, 0
			for _, it := range rep.Tensors {
				isLinear := strings.HasPrefix(it.Name, "model.layers.") && len(it.Shape) == 2
				if (it.Sparsity != nil) != isLinear || (it.Role == "router") != routerRE.MatchString(it.Name) ||
					(it.Role == "linear") != (isLinear && !routerRE.MatchString(it.Name)) || (it.Expert != nil) != expertRE.MatchString(it.Name) {
					t.Errorf("%s: role %q, expert %v, sparsity %v", it.Name, it.Role, it.Expert, it.Sparsity != nil)
				}
				if it.Role == "router" {
					gotRouters++
				}
				if it.Expert != nil {
					gotExperts++
					if m := expertRE.FindStringSubmatch(it.Name); m[3] != fmt.Sprint(*it.Expert) || m[2] != fmt.Sprint(*it.Layer) {
						t.Errorf("%s: layer %d expert %d", it.Name, *it.Layer, *it.Expert)
					}
				}
			}
			if rep.Prunable.Tensors != prunable || gotRouters != routers || gotExperts != experts {
				t.Errorf("inspect: %d prunable (want %d), %d routers (want %d), %d expert linears (want %d)",
					rep.Prunable.Tensors, prunable, gotRouters, routers, gotExperts, experts)
			}
			layerRouters, layerPrunable := 0, 0
			for _, l := range rep.Layers {
				layerRouters += len(l.Routers)
				layerPrunable += l.Prunable.Tensors
				if (l.MLP == "experts") != moe || (moe && (l.Experts < 2 || l.TopK < 1)) {
					t.Errorf("layer %d: %+v", l.Index, l)
				}
			}
			if layerRouters != routers || layerPrunable != prunable || (rep.Architecture.SparseLayers > 0) != moe {
				t.Errorf("layers: %d routers, %d prunable, %d sparse layers", layerRouters, layerPrunable, rep.Architecture.SparseLayers)
			}

			var pruned24 string
			for _, pattern := range []string{"2:4", "unstructured"} {
				work := t.TempDir()
				out := filepath.Join(work, "pruned")
				if _, err := inspRun(t, "", "prune", "--model", model, "--out", out, "--method", "wanda", "--pattern", pattern,
					"--calib-tokens", ref, "--calib-key", "calib_ids"); err != nil {
					t.Fatalf("prune %s: %v", pattern, err)
				}
				if pattern == "2:4" {
					pruned24 = out
				}
				dense := readAll(t, out)
				rep := inspectJSON(t, out)
				if len(rep.Problems) != 0 || rep.Prunable.Tensors != prunable || rep.Prunable.All2of4 != (pattern == "2:4") ||
					math.Abs(rep.Prunable.ZeroFraction-0.5) > 1e-9 {
					t.Errorf("inspect %s: problems %v, prunable %+v", pattern, rep.Problems, rep.Prunable)
				}
				for n, x := range orig {
					if routerRE.MatchString(n) && !bytes.Equal(dense[n].data, x.data) {
						t.Errorf("%s: a router was pruned", n)
					}
				}

				packed := filepath.Join(work, "packed")
				if _, err := inspRun(t, "", "pack", "--model", out, "--out", packed, "--max-shard-size", "200KB"); err != nil {
					t.Fatalf("pack %s: %v", pattern, err)
				}
				stored := readAll(t, packed)
				comp := 0
				for n := range stored {
					if strings.HasSuffix(n, sparse.SuffixCompressed) {
						comp++
					}
				}
				prep := inspectJSON(t, packed)
				wantFormat := map[string]sparse.Format{"2:4": sparse.Format24, "unstructured": sparse.FormatBitmask}[pattern]
				if comp != prunable || prep.PackedTensors != prunable || prep.Format != string(wantFormat) || len(prep.Problems) != 0 {
					t.Errorf("packed %s: %d .compressed, %d packed, format %s, problems %v (want %d, %s)",
						pattern, comp, prep.PackedTensors, prep.Format, prep.Problems, prunable, wantFormat)
				}
				for n := range orig {
					if routerRE.MatchString(n) {
						if _, ok := stored[n]; !ok {
							t.Errorf("router %s is not stored dense", n)
						}
					}
				}
				unpacked := filepath.Join(work, "unpacked")
				if _, err := inspRun(t, "", "unpack", "--model", packed, "--out", unpacked); err != nil {
					t.Fatal(err)
				}
				back := readAll(t, unpacked)
				if len(back) != len(dense) {
					t.Errorf("unpacked %d tensors, pruned %d", len(back), len(dense))
				}
				for n, x := range dense {
					if y, ok := back[n]; !ok || y.dt != x.dt || !slices.Equal(y.shape, x.shape) || !bytes.Equal(y.data, x.data) {
						t.Errorf("%s: unpacked bytes differ from the pruned model's", n)
					}
				}
				d, p := evalArchPPL(t, out, ref), evalArchPPL(t, packed, ref)
				t.Logf("%s %s: ppl dense %.6f, packed %.6f", typ, pattern, d, p)
				if d != p {
					t.Errorf("%s: packed ppl %.17g != dense ppl %.17g", pattern, p, d)
				}
			}
			mergeArchFixture(t, pruned24)
		})
	}
}

// mergeArchFixture writes a PEFT adapter for the LoRA template of the pruned model
// dir, as PEFT with transformers 5 saves it, merges it with wanda merge-lora and
// compares every weight with a float64 computation; masked weights must be +0.0.
func mergeArchFixture(t *testing.T, dir string) {
	t.Helper()
	var tmpl struct {
		Modules []string `json:"target_modules"`
		Params  []string `json:"target_parameters"`
		R       int      `json:"r"`
		Alpha   float64  `json:"lora_alpha"`
	}
	b, err := os.ReadFile(filepath.Join(dir, "lora-template", "adapter_config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &tmpl); err != nil {
		t.Fatal(err)
	}
	pruned := readAll(t, dir)
	masks, err := sparse.ReadMasks(filepath.Join(dir, sparse.MaskFileName))
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, uint64(len(pruned))))
	r := tmpl.R
	s := tmpl.Alpha / float64(r)
	var specs []safetensors.Spec
	var data [][]byte
	add := func(key string, rows, cols int) []float32 {
		v := make([]float32, rows*cols)
		for i := range v {
			v[i] = float32(rng.NormFloat64() * 0.05)
		}
		specs = append(specs, safetensors.Spec{Name: key, DType: dtype.F32, Shape: []int64{int64(rows), int64(cols)}})
		raw := make([]byte, 4*len(v))
		for i, x := range v {
			binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(x))
		}
		data = append(data, raw)
		return v
	}
	// want[name](i, j) is the float64 update of element (i, j) of a model tensor.
	want := map[string]func(i, j int) float64{}
	// target_modules: modules of transformers 5's module tree (not the per-expert
	// tensors, which it fuses) whose path ends with a target.
	for n, x := range pruned {
		mod, _ := strings.CutSuffix(n, ".weight")
		if !strings.HasPrefix(n, "model.layers.") || len(x.shape) != 2 || expertRE.MatchString(n) || routerRE.MatchString(n) ||
			!slices.ContainsFunc(tmpl.Modules, func(m string) bool { return strings.HasSuffix(mod, "."+m) }) {
			continue
		}
		rows, cols := int(x.shape[0]), int(x.shape[1])
		a := add("base_model.model."+mod+".lora_A.weight", r, cols)
		bb := add("base_model.model."+mod+".lora_B.weight", rows, r)
		want[n] = func(i, j int) float64 {
			var acc float64
			for k := 0; k < r; k++ {
				acc += float64(bb[i*r+k]) * float64(a[k*cols+j])
			}
			return acc
		}
	}
	// target_parameters: per sparse layer, gate_up_proj [E, 2I, H] wrapped innermost
	// (".base_layer") and down_proj [E, H, I] outermost; PEFT ≥ 0.20 layout
	// (lora_A [r·E, in], lora_B [out, r·E], in/out = the parameter's dims 2/1).
	type expertSet struct{ gate, up, down []string }
	layers := map[string]*expertSet{}
	for n := range pruned {
		m := expertRE.FindStringSubmatch(n)
		if m == nil {
			continue
		}
		es := layers[m[1]]
		if es == nil {
			es = &expertSet{}
			layers[m[1]] = es
		}
		switch m[4] {
		case "w1", "gate_proj":
			es.gate = append(es.gate, n)
		case "w3", "up_proj":
			es.up = append(es.up, n)
		default:
			es.down = append(es.down, n)
		}
	}
	if (len(layers) > 0) != (len(tmpl.Params) == 2) {
		t.Fatalf("template target_parameters %v for %d sparse layers", tmpl.Params, len(layers))
	}
	byExpert := func(names []string) []string { // sort by expert number
		slices.SortFunc(names, func(x, y string) int {
			var ex, ey int
			fmt.Sscan(expertRE.FindStringSubmatch(x)[3], &ex)
			fmt.Sscan(expertRE.FindStringSubmatch(y)[3], &ey)
			return ex - ey
		})
		return names
	}
	for layer, es := range layers {
		E := len(es.gate)
		I, H := int(pruned[es.gate[0]].shape[0]), int(pruned[es.gate[0]].shape[1])
		key := "base_model.model." + layer + ".mlp.experts"
		guA := add(key+".base_layer.lora_A.weight", r*E, H)
		guB := add(key+".base_layer.lora_B.weight", 2*I, r*E)
		dnA := add(key+".lora_A.weight", r*E, I)
		dnB := add(key+".lora_B.weight", H, r*E)
		// Δ[e][o][i] = Σ_k B[o][k·E+e]·A[e·r+k][i] (get_delta_weight's einsum).
		delta := func(a, bm []float32, in, e, o, i int) float64 {
			var acc float64
			for k := 0; k < r; k++ {
				acc += float64(bm[o*r*E+k*E+e]) * float64(a[(e*r+k)*in+i])
			}
			return acc
		}
		for e, n := range byExpert(es.gate) {
			want[n] = func(i, j int) float64 { return delta(guA, guB, H, e, i, j) }
		}
		for e, n := range byExpert(es.up) {
			want[n] = func(i, j int) float64 { return delta(guA, guB, H, e, I+i, j) }
		}
		for e, n := range byExpert(es.down) {
			want[n] = func(i, j int) float64 { return delta(dnA, dnB, I, e, i, j) }
		}
	}
	cfg := map[string]any{"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": r, "lora_alpha": tmpl.Alpha, "lora_dropout": 0.0,
		"target_modules": tmpl.Modules, "bias": "none", "peft_version": "0.21.0"}
	if len(tmpl.Params) > 0 {
		cfg["target_parameters"] = tmpl.Params
	}
	adir := filepath.Join(t.TempDir(), "adapter")
	os.MkdirAll(adir, 0o755)
	cb, _ := json.Marshal(cfg)
	os.WriteFile(filepath.Join(adir, "adapter_config.json"), cb, 0o644)
	if err := safetensors.WriteFile(filepath.Join(adir, "adapter_model.safetensors"), specs, data, map[string]string{"format": "pt"}); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "merged")
	stdout, err := inspRun(t, "", "merge-lora", "--model", dir, "--adapter", adir, "--out", out)
	if err != nil {
		t.Fatalf("merge-lora: %v", err)
	}
	if !strings.Contains(stdout, fmt.Sprintf("merged %d weights", len(want))) {
		t.Errorf("merge-lora said %q, want %d weights", stdout, len(want))
	}
	merged := readAll(t, out)
	worst := 0.0
	for n, x := range pruned {
		got := merged[n]
		f, ok := want[n]
		if !ok {
			if !bytes.Equal(got.data, x.data) {
				t.Errorf("%s changed", n)
			}
			continue
		}
		if x.dt != dtype.BF16 {
			t.Fatalf("%s is %s", n, x.dt)
		}
		mask := masks[n]
		rows, cols := int(x.shape[0]), int(x.shape[1])
		for i := 0; i < rows; i++ {
			for j := 0; j < cols; j++ {
				k := i*cols + j
				w := float64(math.Float32frombits(uint32(binary.LittleEndian.Uint16(x.data[2*k:])) << 16))
				g := float64(math.Float32frombits(uint32(binary.LittleEndian.Uint16(got.data[2*k:])) << 16))
				if mask != nil && mask.Get(i, j) {
					if w != 0 || got.data[2*k] != 0 || got.data[2*k+1] != 0 {
						t.Fatalf("%s[%d,%d]: pruned weight %v merged to %v, want +0.0", n, i, j, w, g)
					}
					continue
				}
				exp := w + s*f(i, j)
				// One bf16 ulp of the exact value plus float32 rounding of the sum.
				_, e := math.Frexp(exp)
				bound := math.Ldexp(1, e-8) + 0x1p-20*(math.Abs(w)+math.Abs(s*f(i, j)))
				dev := math.Abs(g-exp) / bound
				worst = max(worst, dev)
				if dev > 1 {
					t.Fatalf("%s[%d,%d] = %v, want %v", n, i, j, g, exp)
				}
			}
		}
	}
	t.Logf("merge-lora: %d weights, max deviation from float64 %.3f of the bound", len(want), worst)
}

// TestInspectAndPackAgree: a 2:4 model with one group of 4 holding a single
// zero: inspect says it is not 2:4 and why, and pack refuses sparse-24-bitmask
// with the same words (one scanner, sparse.Scan, behind both).
func TestInspectAndPackAgree(t *testing.T) {
	work := t.TempDir()
	model := filepath.Join(work, "m")
	opt := modelgen.Default()
	if err := modelgen.Write(model, opt); err != nil {
		t.Fatal(err)
	}
	pruned := filepath.Join(work, "pruned")
	if _, err := inspRun(t, "", "prune", "--model", model, "--out", pruned, "--method", "magnitude", "--pattern", "2:4"); err != nil {
		t.Fatal(err)
	}
	// Give row 3, columns 4..7 of layer 1's up_proj a single zero.
	const name = "model.layers.1.mlp.up_proj.weight"
	path := filepath.Join(pruned, "model.safetensors")
	f, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	var specs []safetensors.Spec
	var data [][]byte
	for _, tt := range f.Tensors() {
		b := append([]byte(nil), tt.Bytes()...)
		if tt.Name == name {
			cols := int(tt.Shape[1])
			zeros := 0
			for j := 4; j < 8; j++ {
				k := 3*cols + j
				if b[2*k] == 0 && b[2*k+1] == 0 {
					if zeros > 0 {
						b[2*k], b[2*k+1] = 0x80, 0x3f // 1.0
					}
					zeros++
				}
			}
			if zeros < 2 {
				t.Fatalf("the fixture's group had %d zeros", zeros)
			}
		}
		specs = append(specs, safetensors.Spec{Name: tt.Name, DType: tt.DType, Shape: tt.Shape})
		data = append(data, b)
	}
	meta := f.Metadata
	f.Close()
	if err := safetensors.WriteFile(path, specs, data, meta); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(pruned, sparse.MaskFileName)) // the masks no longer describe the weights

	const why = "row 3, columns 4..7 hold 1 zero (2:4 needs at least 2 in every aligned group of 4)"
	rep := inspectJSON(t, pruned)
	it, ok := inspFindTensor(rep, name)
	if !ok || it.Sparsity == nil || it.Sparsity.Is2of4 || it.Sparsity.Why2of4 != why || it.Sparsity.Is4of8 ||
		it.Sparsity.Why4of8 != "row 3, columns 0..7 hold 3 zeros (4:8 needs at least 4 in every aligned group of 8)" {
		t.Fatalf("inspect: %+v", it.Sparsity)
	}
	if rep.Prunable.All2of4 || rep.Prunable.First2of4 != name+": "+why {
		t.Errorf("inspect totals: %+v", rep.Prunable)
	}
	text, err := inspRun(t, "", "inspect", "--model", pruned)
	if err != nil || !strings.Contains(text, "not 2:4: "+name+": "+why) {
		t.Errorf("inspect text (%v) lacks the reason:\n%s", err, text)
	}
	_, err = inspRun(t, "", "pack", "--model", pruned, "--out", filepath.Join(work, "p"), "--format", "sparse-24-bitmask")
	if !errors.Is(err, sparse.ErrNot24) || !strings.Contains(err.Error(), name) || !strings.HasSuffix(err.Error(), ": "+why) {
		t.Errorf("pack: %v", err)
	}
	// auto falls back to sparse-bitmask, and says why in the same words.
	out, err := inspRun(t, "", "pack", "--model", pruned, "--out", filepath.Join(work, "p"), "--json")
	if err != nil || !strings.Contains(out, `"format": "sparse-bitmask"`) || !strings.Contains(out, `"sparsity_structure": "unstructured"`) {
		t.Errorf("pack auto: %v %s", err, out)
	}
}
