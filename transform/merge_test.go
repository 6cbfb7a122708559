package transform

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
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
)

// loraPair is one module's adapter weights as float32 (stored as F32).
type loraPair struct {
	a, b     []float32 // A [r, in], B [out, r]
	r, in, o int
}

// writeAdapter writes adapter_config.json (cfg) and adapter_model.safetensors
// with keys base_model.model.<module>.lora_{A,B}.weight.
func writeAdapter(t *testing.T, dir string, cfg map[string]any, mods map[string]loraPair) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	b, _ := json.MarshalIndent(cfg, "", "  ")
	if err := os.WriteFile(filepath.Join(dir, peft.ConfigName), b, 0o644); err != nil {
		t.Fatal(err)
	}
	var specs []safetensors.Spec
	var data [][]byte
	f32 := func(v []float32) []byte {
		out := make([]byte, 4*len(v))
		for i, x := range v {
			binary.LittleEndian.PutUint32(out[4*i:], math.Float32bits(x))
		}
		return out
	}
	for m, p := range mods {
		specs = append(specs,
			safetensors.Spec{Name: "base_model.model." + m + ".lora_A.weight", DType: dtype.F32, Shape: []int64{int64(p.r), int64(p.in)}},
			safetensors.Spec{Name: "base_model.model." + m + ".lora_B.weight", DType: dtype.F32, Shape: []int64{int64(p.o), int64(p.r)}})
		data = append(data, f32(p.a), f32(p.b))
	}
	if err := safetensors.WriteFile(filepath.Join(dir, peft.WeightsName), specs, data, map[string]string{"format": "pt"}); err != nil {
		t.Fatal(err)
	}
}

func randPair(r *rand.Rand, rank, in, out int) loraPair {
	p := loraPair{a: make([]float32, rank*in), b: make([]float32, out*rank), r: rank, in: in, o: out}
	for i := range p.a {
		p.a[i] = float32(r.NormFloat64() * 0.1)
	}
	for i := range p.b {
		p.b[i] = float32(r.NormFloat64() * 0.1)
	}
	return p
}

func module(l int, p config.Part) string {
	n, _ := sparse.Prefix(config.LayerTensor(l, p))
	return n
}

// widenBF16 decodes little-endian bf16 bytes (test-side, independent decoding).
func widenBF16(b []byte) []float64 {
	out := make([]float64, len(b)/2)
	for i := range out {
		out[i] = float64(math.Float32frombits(uint32(binary.LittleEndian.Uint16(b[2*i:])) << 16))
	}
	return out
}

// bf16ULP is the spacing of bfloat16 numbers at |x| (8 significant bits).
func bf16ULP(x float64) float64 {
	x = math.Abs(x)
	if x < 0x1p-126 {
		return 0x1p-133
	}
	_, e := math.Frexp(x) // x = f·2^e, f in [0.5, 1)
	return math.Ldexp(1, e-8)
}

func TestMergeLoRA(t *testing.T) {
	for _, tc := range []struct {
		name   string
		masks  bool
		rslora bool
		scale  float64
		packed bool
	}{
		{"maskfile", true, false, 0, false},
		{"exactzeros_rslora_scale", false, true, 0.5, false},
		{"packed_input", true, false, 2, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := makePruned(t, fixtureOpts{dtype: "bf16", pattern: "2:4", masks: tc.masks, seed: 61})
			work := t.TempDir()
			model := f.dir
			if tc.packed {
				model = filepath.Join(work, "packed")
				if _, err := Pack(f.dir, model, Options{}); err != nil {
					t.Fatal(err)
				}
			}
			rng := rand.New(rand.NewPCG(7, 7))
			mods := map[string]loraPair{}
			targets := []config.Part{config.PartQ, config.PartV, config.PartDown}
			for l := 0; l < 2; l++ {
				for _, p := range targets {
					sh := f.shapes[config.LayerTensor(l, p)]
					rank := 4
					if p == config.PartDown {
						rank = 2 // via rank_pattern
					}
					mods[module(l, p)] = randPair(rng, rank, int(sh[1]), int(sh[0]))
				}
			}
			cfg := map[string]any{
				"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": 4, "lora_alpha": 8,
				"target_modules": []string{"q_proj", "v_proj", "down_proj"}, "bias": "none", "fan_in_fan_out": false,
				"rank_pattern": map[string]any{"down_proj": 2}, "alpha_pattern": map[string]any{"model.layers.1.self_attn.v_proj": 3},
				"use_rslora": tc.rslora,
			}
			adir := filepath.Join(work, "adapter")
			writeAdapter(t, adir, cfg, mods)
			out := filepath.Join(work, "merged")
			res, err := MergeLoRA(model, adir, out, MergeOptions{Scale: tc.scale})
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Merged) != 6 {
				t.Errorf("merged %d tensors, want 6", len(res.Merged))
			}
			wantSource := "exact zeros"
			if tc.masks {
				wantSource = sparse.MaskFileName
			}
			if res.MaskSource != wantSource {
				t.Errorf("mask source %q", res.MaskSource)
			}
			set, err := safetensors.OpenDir(out)
			if err != nil {
				t.Fatal(err)
			}
			defer set.Close()
			userScale := tc.scale
			if userScale == 0 {
				userScale = 1
			}
			maxULP := 0.0
			for n, want := range f.tensors {
				got, ok := set.Tensor(n)
				if !ok {
					t.Fatalf("%s missing from the merged model", n)
				}
				l, p, isLayer := config.ParseLayerTensor(n)
				pair, adapted := mods[module(l, p)]
				if !isLayer || !adapted {
					if !bytes.Equal(got.Bytes(), want) {
						t.Errorf("%s changed", n)
					}
					continue
				}
				// Independent computation: W + s·B·A with naive loops (float64), mask, compare.
				alpha := 8.0
				if n == config.LayerTensor(1, config.PartV) {
					alpha = 3
				}
				s := alpha / float64(pair.r)
				if tc.rslora {
					s = alpha / math.Sqrt(float64(pair.r))
				}
				s *= userScale
				w := widenBF16(want)
				g := widenBF16(got.Bytes())
				mask := f.masks[n]
				gb := got.Bytes()
				for i := 0; i < pair.o; i++ {
					for j := 0; j < pair.in; j++ {
						k := i*pair.in + j
						pruned := mask.Bits[k>>6]&(1<<(uint(k)&63)) != 0
						if gb[2*k+1] == 0x80 && gb[2*k] == 0 {
							t.Fatalf("%s[%d,%d]: -0.0 written", n, i, j)
						}
						if pruned {
							if gb[2*k] != 0 || gb[2*k+1] != 0 {
								t.Fatalf("%s[%d,%d]: pruned weight is %v, want +0.0", n, i, j, g[k])
							}
							continue
						}
						if g[k] == 0 {
							t.Fatalf("%s[%d,%d]: kept weight became 0", n, i, j)
						}
						var acc float64
						for q := 0; q < pair.r; q++ {
							acc += float64(pair.b[i*pair.r+q]) * float64(pair.a[q*pair.in+j])
						}
						exp := w[k] + s*acc
						d := math.Abs(g[k]-exp) / bf16ULP(exp)
						maxULP = max(maxULP, d)
						if d > 1 {
							t.Fatalf("%s[%d,%d] = %v, want %v (%.2f bf16 ulp)", n, i, j, g[k], exp, d)
						}
					}
				}
			}
			t.Logf("max deviation from the float64 reference: %.3f bf16 ulp", maxULP)
			if b, _ := os.ReadFile(filepath.Join(out, ConfigName)); bytes.Contains(b, []byte("quantization_config")) {
				t.Error("merged config.json keeps the quantization_config")
			}
			noTempDirs(t, work)
		})
	}
}

func TestMergeLoRARefusals(t *testing.T) {
	f := makePruned(t, fixtureOpts{dtype: "bf16", pattern: "2:4", seed: 71})
	work := t.TempDir()
	rng := rand.New(rand.NewPCG(8, 8))
	q := module(0, config.PartQ)
	qs := f.shapes[config.LayerTensor(0, config.PartQ)]
	good := func() (map[string]any, map[string]loraPair) {
		return map[string]any{"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": []string{"q_proj"}},
			map[string]loraPair{q: randPair(rng, 4, int(qs[1]), int(qs[0]))}
	}
	cases := []struct {
		name  string
		edit  func(cfg map[string]any, mods map[string]loraPair, dir string)
		want  error
		words []string
	}{
		{"prefix_tuning", func(c map[string]any, _ map[string]loraPair, _ string) { c["peft_type"] = "PREFIX_TUNING" },
			peft.ErrUnsupported, []string{"PREFIX_TUNING", peft.ConfigName}},
		{"fan_in_fan_out", func(c map[string]any, _ map[string]loraPair, _ string) { c["fan_in_fan_out"] = true },
			peft.ErrUnsupported, []string{"fan_in_fan_out"}},
		{"no_weights", func(_ map[string]any, _ map[string]loraPair, d string) { os.Remove(filepath.Join(d, peft.WeightsName)) },
			peft.ErrMissingFile, []string{peft.WeightsName}},
		{"no_config", func(_ map[string]any, _ map[string]loraPair, d string) { os.Remove(filepath.Join(d, peft.ConfigName)) },
			peft.ErrMissingFile, []string{peft.ConfigName}},
		{"wrong_in", func(_ map[string]any, m map[string]loraPair, _ string) {
			m[q] = randPair(rng, 4, int(qs[1])+4, int(qs[0]))
		},
			peft.ErrMismatch, []string{q}},
		{"absent_module", func(c map[string]any, m map[string]loraPair, _ string) {
			c["target_modules"] = []string{"c_attn"}
			delete(m, q)
			m["transformer.h.0.attn.c_attn"] = randPair(rng, 4, 64, 192)
		}, peft.ErrMismatch, []string{"transformer.h.0.attn.c_attn"}},
		{"rank_mismatch", func(c map[string]any, _ map[string]loraPair, _ string) { c["r"] = 8 },
			peft.ErrInvalid, []string{q, "rank 4"}},
		{"untargeted", func(c map[string]any, _ map[string]loraPair, _ string) { c["target_modules"] = []string{"k_proj"} },
			peft.ErrInvalid, []string{q, "target_modules"}},
		{"unknown_target", func(c map[string]any, _ map[string]loraPair, _ string) {
			c["target_modules"] = []string{"q_proj", "c_fc"}
		},
			peft.ErrMismatch, []string{"c_fc"}},
		{"dora", func(c map[string]any, _ map[string]loraPair, _ string) { c["use_dora"] = true },
			peft.ErrUnsupported, []string{"use_dora"}},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg, mods := good()
			adir := filepath.Join(work, "adapter"+string(rune('a'+i)))
			// write first, then edit files; edits of cfg/mods rewrite
			c.edit(cfg, mods, adir)
			writeAdapter(t, adir, cfg, mods)
			c.edit(cfg, mods, adir) // file removals take effect after writing
			out := filepath.Join(work, "out")
			_, err := MergeLoRA(f.dir, adir, out, MergeOptions{})
			if !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
			for _, w := range c.words {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
				t.Error("output written for a refused adapter")
			}
			noTempDirs(t, work)
		})
	}
}

// TestMergeLoRANonFinite: NaN or ±Inf in the adapter, or merged values that
// overflow float32 or the model's dtype (W + s·B·A), are refused with the
// module named, and nothing is written.
func TestMergeLoRANonFinite(t *testing.T) {
	nan, inf := float32(math.NaN()), float32(math.Inf(1))
	for _, tc := range []struct {
		name  string
		dtype string
		edit  func(p *loraPair)
		says  []string
	}{
		{"NaN in lora_A", "bf16", func(p *loraPair) { p.a[5] = nan }, []string{"lora_A", "NaN at [0, 5]"}},
		{"Inf in lora_B", "bf16", func(p *loraPair) { p.b[3*p.r] = inf }, []string{"lora_B", "+Inf at [3, 0]"}},
		{"float32 overflow", "bf16", func(p *loraPair) {
			for i := range p.a {
				p.a[i], p.b[i%len(p.b)] = 1e30, 1e30
			}
		}, []string{"after the merge", "Inf"}},
		{"f16 overflow", "f16", func(p *loraPair) {
			for i := range p.a {
				p.a[i] = 300
			}
			for i := range p.b {
				p.b[i] = 300
			}
		}, []string{"overflows F16"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := makePruned(t, fixtureOpts{dtype: tc.dtype, pattern: "unstructured", seed: 3})
			work := t.TempDir()
			q := module(1, config.PartQ)
			qs := f.shapes[config.LayerTensor(1, config.PartQ)]
			p := randPair(rand.New(rand.NewPCG(4, 4)), 2, int(qs[1]), int(qs[0]))
			tc.edit(&p)
			adir := filepath.Join(work, "adapter")
			writeAdapter(t, adir, map[string]any{"peft_type": "LORA", "r": 2, "lora_alpha": 2, "target_modules": []string{"q_proj"}},
				map[string]loraPair{q: p})
			out := filepath.Join(work, "merged")
			_, err := MergeLoRA(f.dir, adir, out, MergeOptions{})
			if !errors.Is(err, ErrNonFinite) {
				t.Fatalf("got %v, want ErrNonFinite", err)
			}
			t.Log(err)
			for _, w := range append(tc.says, q) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
				t.Error("output written")
			}
			noTempDirs(t, work)
		})
	}
}
