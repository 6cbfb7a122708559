package transform

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
	"strings"
	"testing"

	"github.com/wanda-go/wanda/format/config"
	"github.com/wanda-go/wanda/format/dtype"
	"github.com/wanda-go/wanda/format/peft"
	"github.com/wanda-go/wanda/format/safetensors"
	"github.com/wanda-go/wanda/format/sparse"
	"github.com/wanda-go/wanda/internal/modelgen"
)

// archTypes are the architectures beyond the LLaMA family, each generated
// small by internal/modelgen.
var archTypes = []string{config.TypeQwen3, config.TypePhi3, config.TypeGemma2, config.TypeGemma3Text,
	config.TypeMixtral, config.TypeQwen2MoE, config.TypeQwen3MoE}

// isRouter recognises a router or shared-expert gate by its name (the test's own
// rule, independent of the architecture table).
func isRouter(name string) bool {
	return strings.HasSuffix(name, ".block_sparse_moe.gate.weight") || strings.HasSuffix(name, ".mlp.gate.weight") ||
		strings.HasSuffix(name, ".shared_expert_gate.weight")
}

// prunableByName: a 2-D tensor of a decoder layer that is not a router.
func prunableByName(name string, shape []int64) bool {
	return strings.HasPrefix(name, "model.layers.") && len(shape) == 2 && !isRouter(name)
}

// makeArchPruned writes a modelgen model of opt and prunes every prunable
// linear (by prunableByName) like makePruned: 2 or 3 zeros of every 4 for
// "2:4", about half for "unstructured". The mask file lists them.
func makeArchPruned(t *testing.T, opt modelgen.Options, pattern string, seed uint64) *fixture {
	t.Helper()
	src := filepath.Join(t.TempDir(), "dense")
	opt.Seed = seed
	if err := modelgen.Write(src, opt); err != nil {
		t.Fatal(err)
	}
	set, err := safetensors.OpenDir(src)
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	dir := filepath.Join(t.TempDir(), "pruned")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	f := &fixture{dir: dir, tensors: map[string][]byte{}, shapes: map[string][]int64{}, masks: map[string]*sparse.Mask{},
		other: map[string][]byte{}, dtypes: map[string]string{}}
	r := rand.New(rand.NewPCG(seed, 17))
	var specs []safetensors.Spec
	for _, n := range set.Names() {
		tt, _ := set.Tensor(n)
		specs = append(specs, safetensors.Spec{Name: n, DType: tt.DType, Shape: tt.Shape})
		data := append([]byte(nil), tt.Bytes()...)
		f.shapes[n], f.dtypes[n] = tt.Shape, tt.DType.String()
		if prunableByName(n, tt.Shape) {
			f.masks[n] = pruneRandomly(r, data, tt.Shape, tt.DType.Size(), pattern)
		}
		f.tensors[n] = data
	}
	if err := safetensors.WriteFile(filepath.Join(dir, safetensors.SingleName), specs, tensorsInOrder(f, specs), map[string]string{"format": "pt"}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{ConfigName, "tokenizer.json"} {
		b, err := os.ReadFile(filepath.Join(src, name))
		if err != nil {
			continue
		}
		os.WriteFile(filepath.Join(dir, name), b, 0o644)
		if name == ConfigName {
			json.Unmarshal(b, &f.cfg)
		} else {
			f.other[name] = b
		}
	}
	if err := sparse.WriteMasks(filepath.Join(dir, sparse.MaskFileName), f.masks); err != nil {
		t.Fatal(err)
	}
	f.other[sparse.MaskFileName], _ = os.ReadFile(filepath.Join(dir, sparse.MaskFileName))
	return f
}

func tensorsInOrder(f *fixture, specs []safetensors.Spec) [][]byte {
	out := make([][]byte, len(specs))
	for i, s := range specs {
		out[i] = f.tensors[s.Name]
	}
	return out
}

// TestPackUnpackEveryArch: on every architecture, Pack stores exactly the
// prunable linears packed (experts, shared experts, Phi-3's fused tensors;
// never a router), Open reads them back, and Unpack restores every byte.
func TestPackUnpackEveryArch(t *testing.T) {
	for _, typ := range archTypes {
		for _, pattern := range []string{"2:4", "unstructured"} {
			t.Run(typ+"_"+pattern, func(t *testing.T) {
				opt := modelgen.Default()
				opt.Arch = typ
				f := makeArchPruned(t, opt, pattern, 3)
				work := t.TempDir()
				packed := filepath.Join(work, "packed")
				res, err := Pack(f.dir, packed, Options{MaxShardBytes: 60000})
				if err != nil {
					t.Fatal(err)
				}
				want := map[string]sparse.Format{"2:4": sparse.Format24, "unstructured": sparse.FormatBitmask}[pattern]
				if res.Format != want || len(res.Packed) != len(f.masks) {
					t.Fatalf("packed %d tensors as %s, want %d as %s", len(res.Packed), res.Format, len(f.masks), want)
				}
				set, err := safetensors.OpenDir(packed)
				if err != nil {
					t.Fatal(err)
				}
				routers := 0
				for n := range f.tensors {
					p, _ := sparse.Prefix(n)
					_, dense := set.Tensor(n)
					_, comp := set.Tensor(p + sparse.SuffixCompressed)
					if _, pruned := f.masks[n]; dense == pruned || comp != pruned {
						t.Errorf("%s: stored dense %v, packed %v", n, dense, comp)
					}
					if isRouter(n) {
						routers++
					}
				}
				set.Close()
				if strings.Contains(typ, "moe") || typ == config.TypeMixtral {
					if routers == 0 {
						t.Fatal("no routers in a mixture-of-experts model")
					}
					// Routers stay dense, so the targets list the packed modules.
					if sc := readSparsityConfig(t, packed); len(sc.Targets) != len(res.Packed) {
						t.Errorf("targets %v", sc.Targets)
					}
				}
				r, err := Open(packed)
				if err != nil {
					t.Fatal(err)
				}
				for n, b := range f.tensors {
					got, err := r.Bytes(n)
					if err != nil || !bytes.Equal(got, b) {
						t.Fatalf("%s: packed view differs (%v)", n, err)
					}
				}
				r.Close()
				if err := Unpack(packed, filepath.Join(work, "dense"), Options{}); err != nil {
					t.Fatal(err)
				}
				checkDenseEqual(t, filepath.Join(work, "dense"), f)
			})
		}
	}
}

// bf16At decodes element k of little-endian bf16 bytes.
func bf16At(b []byte, k int) float64 {
	return float64(math.Float32frombits(uint32(binary.LittleEndian.Uint16(b[2*k:])) << 16))
}

// f32Bytes encodes float32 values.
func f32Bytes(v []float32) []byte {
	out := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(out[4*i:], math.Float32bits(x))
	}
	return out
}

// peftTensor is one tensor of an adapter file.
type peftTensor struct {
	key   string
	shape []int64
	v     []float32
}

func randTensor(r *rand.Rand, key string, rows, cols int) peftTensor {
	v := make([]float32, rows*cols)
	for i := range v {
		v[i] = float32(r.NormFloat64() * 0.1)
	}
	return peftTensor{key: key, shape: []int64{int64(rows), int64(cols)}, v: v}
}

func writePeft(t *testing.T, dir string, cfg map[string]any, ts []peftTensor) {
	t.Helper()
	os.MkdirAll(dir, 0o755)
	b, _ := json.MarshalIndent(cfg, "", "  ")
	if err := os.WriteFile(filepath.Join(dir, peft.ConfigName), b, 0o644); err != nil {
		t.Fatal(err)
	}
	var specs []safetensors.Spec
	var data [][]byte
	for _, x := range ts {
		specs = append(specs, safetensors.Spec{Name: x.key, DType: dtype.F32, Shape: x.shape})
		data = append(data, f32Bytes(x.v))
	}
	if err := safetensors.WriteFile(filepath.Join(dir, peft.WeightsName), specs, data, map[string]string{"format": "pt"}); err != nil {
		t.Fatal(err)
	}
}

// expertLoRA is the adapter of one fused expert parameter as PEFT's
// ParamWrapper holds it (peft/tuners/lora/layer.py, ParamWrapper.update_layer:
// lora_A = nn.Linear(in, r·E), lora_B = nn.Linear(r·E, out); for a 3-D
// parameter [E, d1, d2] PEFT ≥ 0.20 takes in = d2, out = d1 unless the experts
// module is_transposed, earlier PEFT in = d1, out = d2). Expert e's update is
// get_delta_weight's einsum over A reshaped [E, r, in] and B reshaped
// [out, r, E]: Δ[e][o][i] = Σ_k B[o][k·E+e]·A[e·r+k][i], stored as [d1, d2]
// (transposed for the older layout).
type expertLoRA struct {
	a, b          peftTensor
	r, e, in, out int
	legacy        bool
}

func newExpertLoRA(rng *rand.Rand, key string, r, e, d1, d2 int, legacy bool) expertLoRA {
	in, out := d2, d1
	if legacy {
		in, out = d1, d2
	}
	return expertLoRA{a: randTensor(rng, key+".lora_A.weight", r*e, in), b: randTensor(rng, key+".lora_B.weight", out, r*e),
		r: r, e: e, in: in, out: out, legacy: legacy}
}

// delta is element [row, col] of expert e's slice [d1, d2] of the update, in
// float64, and the sum of the absolute products (for the rounding bound).
func (x expertLoRA) delta(e, row, col int) (float64, float64) {
	o, i := row, col
	if x.legacy {
		o, i = col, row
	}
	var acc, abs float64
	for k := 0; k < x.r; k++ {
		p := float64(x.b.v[o*x.r*x.e+k*x.e+e]) * float64(x.a.v[(e*x.r+k)*x.in+i])
		acc += p
		abs += math.Abs(p)
	}
	return acc, abs
}

// checkMerged compares the merged bf16 tensor got with W + s·Δ (float64) at
// every kept position and demands exact +0.0 at every pruned one. The merge
// computes in float32 and rounds once to bf16, so the bound is one bf16 ulp of
// the exact value plus the float32 error, 2^-22·(|W| + s·Σ|B·A|) (which
// matters only where W and s·Δ nearly cancel). It returns the largest
// deviation as a fraction of that bound.
func checkMerged(t *testing.T, name string, w, got []byte, mask *sparse.Mask, rows, cols int, s float64, delta func(i, j int) (float64, float64)) float64 {
	t.Helper()
	worst := 0.0
	for i := 0; i < rows; i++ {
		for j := 0; j < cols; j++ {
			k := i*cols + j
			if mask.Get(i, j) {
				if got[2*k] != 0 || got[2*k+1] != 0 {
					t.Fatalf("%s[%d,%d]: pruned weight is %v, want +0.0", name, i, j, bf16At(got, k))
				}
				continue
			}
			d, abs := delta(i, j)
			exp := bf16At(w, k) + s*d
			bound := bf16ULP(exp) + 0x1p-22*(math.Abs(bf16At(w, k))+s*abs)
			dev := math.Abs(bf16At(got, k)-exp) / bound
			worst = max(worst, dev)
			if dev > 1 {
				t.Fatalf("%s[%d,%d] = %v, want %v (%.2f of the rounding bound %.3g)", name, i, j, bf16At(got, k), exp, dev, bound)
			}
		}
	}
	return worst
}

// TestMergeLoRAFusedExperts merges PEFT target_parameters adapters of
// transformers 5's fused experts into the per-expert tensors of Mixtral
// (w1/w3/w2) and Qwen2-MoE (gate/up/down_proj, with its shared expert as a
// plain module), in the layout of PEFT ≥ 0.20 and in the older transposed one,
// and compares with an independent float64 computation; pruned weights stay
// exactly +0.0.
func TestMergeLoRAFusedExperts(t *testing.T) {
	for _, tc := range []struct {
		typ     string
		legacy  bool
		version string
		params  []string // target_parameters
	}{
		{config.TypeMixtral, false, "0.21.0", []string{"mlp.experts.gate_up_proj", "mlp.experts.down_proj"}},
		{config.TypeMixtral, true, "", []string{"mlp.experts.gate_up_proj", "mlp.experts.down_proj"}},
		{config.TypeQwen2MoE, false, "0.20.0", []string{"mlp.experts.down_proj", "mlp.experts.gate_up_proj"}},
		{config.TypeQwen3MoE, false, "0.21.0", []string{"experts.down_proj"}},
	} {
		t.Run(fmt.Sprintf("%s_legacy%v_%d", tc.typ, tc.legacy, len(tc.params)), func(t *testing.T) {
			opt := modelgen.Default()
			opt.Arch = tc.typ
			opt.Hidden, opt.Intermediate, opt.MoEIntermediate = 64, 96, 48 // no square expert parameter
			f := makeArchPruned(t, opt, "2:4", 9)
			var cfgJSON struct {
				Experts int `json:"num_experts"`
				Local   int `json:"num_local_experts"`
				Layers  int `json:"num_hidden_layers"`
			}
			b, _ := os.ReadFile(filepath.Join(f.dir, ConfigName))
			json.Unmarshal(b, &cfgJSON)
			E := max(cfgJSON.Experts, cfgJSON.Local)
			// On-disk names of expert e's gate, up and down projections.
			expertNames := func(l, e int) (gate, up, down string) {
				if tc.typ == config.TypeMixtral {
					p := fmt.Sprintf("model.layers.%d.block_sparse_moe.experts.%d.", l, e)
					return p + "w1.weight", p + "w3.weight", p + "w2.weight"
				}
				p := fmt.Sprintf("model.layers.%d.mlp.experts.%d.", l, e)
				return p + "gate_proj.weight", p + "up_proj.weight", p + "down_proj.weight"
			}
			if _, ok := f.tensors[func() string { g, _, _ := expertNames(0, E-1); return g }()]; !ok || E < 2 {
				t.Fatalf("fixture has no expert %d tensors", E-1)
			}
			H := 64
			g0, _, d0 := expertNames(0, 0)
			I := int(f.shapes[d0][1]) // Mixtral's experts are intermediate_size wide, Qwen's moe_intermediate_size
			if sh := f.shapes[g0]; len(sh) != 2 || sh[0] != int64(I) || sh[1] != int64(H) || 2*I == H || I == H {
				t.Fatalf("%s is %v (I %d, H %d: want no square parameter)", g0, sh, I, H)
			}
			rng := rand.New(rand.NewPCG(11, 12))
			const r = 4
			var ts []peftTensor
			gateUp := map[int]expertLoRA{}
			down := map[int]expertLoRA{}
			both := len(tc.params) == 2
			for l := 0; l < cfgJSON.Layers; l++ {
				mod := fmt.Sprintf("base_model.model.model.layers.%d.mlp.experts", l)
				// Nested wrappers: gate_up_proj is registered first, so it is wrapped
				// first and ends up innermost (tuners_utils.py, _inject_parameters).
				downKey, guKey := mod, mod+".base_layer"
				if both {
					gu := newExpertLoRA(rng, guKey, r, E, 2*I, H, tc.legacy)
					gateUp[l] = gu
					ts = append(ts, gu.a, gu.b)
				}
				dn := newExpertLoRA(rng, downKey, 2, E, H, I, tc.legacy) // rank 2 via rank_pattern
				down[l] = dn
				ts = append(ts, dn.a, dn.b)
			}
			cfg := map[string]any{
				"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": r, "lora_alpha": 8, "lora_dropout": 0.0,
				"target_modules": []string{"o_proj"}, "target_parameters": tc.params, "bias": "none",
				"rank_pattern": map[string]any{"down_proj": 2},
			}
			if tc.version != "" {
				cfg["peft_version"] = tc.version
			}
			// A plain module too: o_proj of layer 1, and for Qwen2-MoE the shared expert's down_proj.
			oName := "model.layers.1.self_attn.o_proj"
			oPair := randTensor(rng, "base_model.model."+oName+".lora_A.weight", r, int(f.shapes[oName+".weight"][1]))
			oB := randTensor(rng, "base_model.model."+oName+".lora_B.weight", int(f.shapes[oName+".weight"][0]), r)
			ts = append(ts, oPair, oB)
			work := t.TempDir()
			adir := filepath.Join(work, "adapter")
			writePeft(t, adir, cfg, ts)
			out := filepath.Join(work, "merged")
			res, err := MergeLoRA(f.dir, adir, out, MergeOptions{})
			if err != nil {
				t.Fatal(err)
			}
			perLayer := E
			if both {
				perLayer = 3 * E
			}
			if want := cfgJSON.Layers*perLayer + 1; len(res.Merged) != want || res.MaskSource != sparse.MaskFileName {
				t.Fatalf("merged %d tensors (mask from %s), want %d", len(res.Merged), res.MaskSource, want)
			}
			set, err := safetensors.OpenDir(out)
			if err != nil {
				t.Fatal(err)
			}
			defer set.Close()
			worst := 0.0
			merged := map[string]bool{}
			for l := 0; l < cfgJSON.Layers; l++ {
				for e := 0; e < E; e++ {
					g, u, d := expertNames(l, e)
					get := func(n string) []byte { tt, _ := set.Tensor(n); merged[n] = true; return tt.Bytes() }
					dn := down[l]
					worst = max(worst, checkMerged(t, d, f.tensors[d], get(d), f.masks[d], H, I, 8.0/2,
						func(i, j int) (float64, float64) { return dn.delta(e, i, j) }))
					if !both {
						continue
					}
					gu := gateUp[l]
					worst = max(worst, checkMerged(t, g, f.tensors[g], get(g), f.masks[g], I, H, 8.0/r,
						func(i, j int) (float64, float64) { return gu.delta(e, i, j) }))
					worst = max(worst, checkMerged(t, u, f.tensors[u], get(u), f.masks[u], I, H, 8.0/r,
						func(i, j int) (float64, float64) { return gu.delta(e, I+i, j) }))
				}
			}
			on := oName + ".weight"
			oRows, oCols := int(f.shapes[on][0]), int(f.shapes[on][1])
			tt, _ := set.Tensor(on)
			merged[on] = true
			worst = max(worst, checkMerged(t, on, f.tensors[on], tt.Bytes(), f.masks[on], oRows, oCols, 8.0/r, func(i, j int) (float64, float64) {
				var acc, abs float64
				for k := 0; k < r; k++ {
					p := float64(oB.v[i*r+k]) * float64(oPair.v[k*oCols+j])
					acc, abs = acc+p, abs+math.Abs(p)
				}
				return acc, abs
			}))
			for n, want := range f.tensors {
				if merged[n] {
					continue
				}
				if tt, ok := set.Tensor(n); !ok || !bytes.Equal(tt.Bytes(), want) {
					t.Errorf("%s changed", n)
				}
			}
			t.Logf("max deviation from the float64 reference: %.3f of the rounding bound, over %d merged tensors", worst, len(merged))
		})
	}
}

// TestMergeLoRAFusedRefusals: adapters of fused parameters that cannot be told
// apart or do not fit are refused before anything is written.
func TestMergeLoRAFusedRefusals(t *testing.T) {
	opt := modelgen.Default()
	opt.Arch = config.TypeQwen3MoE
	opt.Hidden, opt.MoEIntermediate = 64, 32 // gate_up_proj is [E, 64, 64]: square
	f := makeArchPruned(t, opt, "2:4", 13)
	rng := rand.New(rand.NewPCG(1, 2))
	E, H, I := 4, 64, 32
	base := func(l int) string { return fmt.Sprintf("base_model.model.model.layers.%d.mlp.experts", l) }
	adapter := func(version string, params []string, legacyDown bool) string {
		var ts []peftTensor
		for l := 0; l < 2; l++ {
			gu := newExpertLoRA(rng, base(l)+".base_layer", 2, E, 2*I, H, false)
			dn := newExpertLoRA(rng, base(l), 2, E, H, I, legacyDown)
			ts = append(ts, gu.a, gu.b, dn.a, dn.b)
		}
		cfg := map[string]any{"peft_type": "LORA", "r": 2, "lora_alpha": 4, "target_modules": []string{"q_proj"},
			"target_parameters": params}
		if version != "" {
			cfg["peft_version"] = version
		}
		dir := filepath.Join(t.TempDir(), "adapter")
		writePeft(t, dir, cfg, ts)
		return dir
	}
	both := []string{"mlp.experts.gate_up_proj", "mlp.experts.down_proj"}
	for _, tc := range []struct {
		name, dir string
		ok        bool
		want      error
		words     string
	}{
		{"square_old_peft", adapter("0.19.1", both, false), false, peft.ErrMismatch, "refusing to guess"},
		{"square_no_version", adapter("", both, false), false, peft.ErrMismatch, "peft_version: absent"},
		{"square_new_peft", adapter("0.20.0", both, false), true, nil, ""},
		{"one_param_listed_two_saved", adapter("0.21.0", both[1:], false), false, peft.ErrInvalid, "the file holds 2 LoRA pairs"},
	} {
		out := filepath.Join(t.TempDir(), "merged")
		_, err := MergeLoRA(f.dir, tc.dir, out, MergeOptions{})
		if tc.ok {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
			}
			continue
		}
		if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.words) {
			t.Errorf("%s: got %v, want %v with %q", tc.name, err, tc.want, tc.words)
		}
		if _, serr := os.Stat(out); !errors.Is(serr, os.ErrNotExist) {
			t.Errorf("%s: output written after a refusal", tc.name)
		}
	}
}
