package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/wanda-go/wanda/format/config"
	"github.com/wanda-go/wanda/format/dtype"
	"github.com/wanda-go/wanda/format/safetensors"
	"github.com/wanda-go/wanda/internal/modelgen"
	"github.com/wanda-go/wanda/internal/testenv"
)

// inspSharedDir returns ../shared (next to the module root), skipping the
// test when it is absent and failing when CI=true.
func inspSharedDir(t *testing.T) string {
	t.Helper()
	return testenv.SharedDir(t)
}

// inspRun runs the wanda CLI in-process and returns what it wrote to stdout.
func inspRun(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	app := newApp()
	var out, errOut bytes.Buffer
	app.Writer, app.ErrWriter = &out, &errOut
	app.Reader = strings.NewReader(stdin)
	app.ExitErrHandler = func(*cli.Context, error) {}
	err := app.Run(append([]string{"wanda"}, args...))
	return out.String(), err
}

func inspectJSON(t *testing.T, dir string) *inspectReport {
	t.Helper()
	out, err := inspRun(t, "", "inspect", "--model", dir, "--json")
	if err != nil && !errors.Is(err, errInspectProblems) {
		t.Fatalf("inspect %s: %v", dir, err)
	}
	var rep inspectReport
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rep); err != nil {
		t.Fatalf("inspect --json output does not decode: %v\n%s", err, out)
	}
	return &rep
}

// inspCountZeros counts zeros and negative zeros of a tensor from its
// widened float32 values (a different path from inspect's raw-byte scan).
func inspCountZeros(t *testing.T, tt *safetensors.Tensor) (zeros, neg int64) {
	t.Helper()
	v, err := tt.Float32()
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range v {
		if x == 0 {
			zeros++
			if math.Signbit(float64(x)) {
				neg++
			}
		}
	}
	return zeros, neg
}

func TestInspectTinyLlamaA(t *testing.T) {
	dir := filepath.Join(inspSharedDir(t), "models", "tiny-llama-a")
	rep := inspectJSON(t, dir)
	if rep.NumTensors != 57 || len(rep.Tensors) != 57 {
		t.Fatalf("%d tensors, want 57", rep.NumTensors)
	}
	a := rep.Architecture
	if a.ModelType != "llama" || a.NumLayers != 6 || a.HiddenSize != 384 || a.NumHeads != 6 || a.NumKVHeads != 6 ||
		a.HeadDim != 64 || a.VocabSize != 4096 || a.IntermediateSize != 1024 || a.TorchDType != "bfloat16" {
		t.Errorf("architecture %+v", a)
	}
	if len(rep.Problems) != 0 {
		t.Errorf("problems: %v", rep.Problems)
	}
	if !reflect.DeepEqual(rep.Shards, []string{"model.safetensors"}) {
		t.Errorf("shards %v", rep.Shards)
	}
	set, err := safetensors.OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	var prunable int
	var params int64
	for _, ti := range rep.Tensors {
		if ti.DType != "BF16" {
			t.Errorf("%s: dtype %s", ti.Name, ti.DType)
		}
		if ti.Shard != "model.safetensors" {
			t.Errorf("%s: shard %s", ti.Name, ti.Shard)
		}
		tt, ok := set.Tensor(ti.Name)
		if !ok {
			t.Fatalf("inspect lists %s, which the file lacks", ti.Name)
		}
		params += tt.Numel()
		if !reflect.DeepEqual(ti.Shape, tt.Shape) {
			t.Errorf("%s: shape %v, file %v", ti.Name, ti.Shape, tt.Shape)
		}
		isLinear := strings.HasSuffix(ti.Name, "_proj.weight")
		if (ti.Sparsity != nil) != isLinear {
			t.Errorf("%s: sparsity reported = %v", ti.Name, ti.Sparsity != nil)
		}
		if ti.Sparsity == nil {
			continue
		}
		prunable++
		z, neg := inspCountZeros(t, tt)
		sp := ti.Sparsity
		if sp.Zeros != z || sp.NegativeZeros != neg || sp.Numel != tt.Numel() {
			t.Errorf("%s: zeros %d (-0: %d) of %d, independent count %d (-0: %d) of %d",
				ti.Name, sp.Zeros, sp.NegativeZeros, sp.Numel, z, neg, tt.Numel())
		}
		if sp.Is2of4 || sp.Is4of8 {
			t.Errorf("%s: dense trained weights reported as N:M", ti.Name)
		}
	}
	if prunable != 42 || rep.Prunable.Tensors != 42 {
		t.Errorf("prunable %d / %d, want 42", prunable, rep.Prunable.Tensors)
	}
	if params != rep.NumParams {
		t.Errorf("num_params %d, want %d", rep.NumParams, params)
	}

	text, err := inspRun(t, "", "inspect", "--model", dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"TENSOR", "DTYPE", "model.layers.5.mlp.down_proj.weight", "[384, 1024]", "llama", "6 / 6 / 64", "57 tensors"} {
		if !strings.Contains(text, want) {
			t.Errorf("text output lacks %q", want)
		}
	}
}

// craftedTensor is one linear of layer 0 replaced by a hand-made sparsity
// pattern, with the answers inspect must give known by construction.
type craftedTensor struct {
	name      string
	dt        dtype.DType
	values    []float32
	want24    bool // known by construction
	want48    bool
	wantZeros int64 // counted by construction
	wantNegZ  int64
}

func TestInspectCraftedPatterns(t *testing.T) {
	dir := t.TempDir()
	opt := modelgen.Default()
	opt.Seed = 7
	if err := modelgen.Write(dir, opt); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	// Read the generated dense weights, then rewrite the file with the crafted ones.
	set, err := safetensors.OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	dense := map[string][]float32{}
	for _, n := range set.Names() {
		tt, _ := set.Tensor(n)
		v, err := tt.Float32()
		if err != nil {
			t.Fatal(err)
		}
		dense[n] = v
	}
	set.Close()

	crafted := map[string]*craftedTensor{}
	add := func(p config.Part, dt dtype.DType, want24, want48 bool, f func(r, c int, v float32) float32) {
		name := config.LayerTensor(0, p)
		out, in := cfg.LinearShape(p)
		ct := &craftedTensor{name: name, dt: dt, want24: want24, want48: want48, values: make([]float32, out*in)}
		for r := 0; r < out; r++ {
			for c := 0; c < in; c++ {
				v := f(r, c, dense[name][r*in+c])
				ct.values[r*in+c] = v
				if v == 0 {
					ct.wantZeros++
					if math.Signbit(float64(v)) {
						ct.wantNegZ++
					}
				}
			}
		}
		crafted[name] = ct
	}
	negZero := float32(math.Copysign(0, -1))
	// q: exact 2:4 (columns 1 and 2 of every group of 4 zero; column 2 as -0.0 in even rows): 2:4 and 4:8.
	add(config.PartQ, dtype.BF16, true, true, func(r, c int, v float32) float32 {
		switch c % 4 {
		case 1:
			return 0
		case 2:
			if r%2 == 0 {
				return negZero
			}
			return 0
		}
		return v
	})
	// k: first four of every eight zero: 4:8 but not 2:4.
	add(config.PartK, dtype.F16, false, true, func(r, c int, v float32) float32 {
		if c%8 < 4 {
			return 0
		}
		return v
	})
	// v: 2:4 everywhere except one group of the last row that keeps 3 of 4: neither.
	_, vin := cfg.LinearShape(config.PartV)
	vout, _ := cfg.LinearShape(config.PartV)
	add(config.PartV, dtype.F32, false, false, func(r, c int, v float32) float32 {
		if c%4 >= 2 && !(r == vout-1 && c == vin-1) {
			return negZero
		}
		return v
	})
	// o: three quarters zero (columns 0-2 of every 4, all -0.0 in row 0): both patterns.
	add(config.PartO, dtype.BF16, true, true, func(r, c int, v float32) float32 {
		if c%4 < 3 {
			if r == 0 {
				return negZero
			}
			return 0
		}
		return v
	})
	// gate: scattered zeros (every 3rd element): neither pattern.
	add(config.PartGate, dtype.BF16, false, false, func(r, c int, v float32) float32 {
		if (r*131+c)%3 == 0 {
			return 0
		}
		return v
	})
	// up: dense.
	add(config.PartUp, dtype.BF16, false, false, func(r, c int, v float32) float32 { return v })
	// down: an entirely zero matrix (every group all zeros).
	add(config.PartDown, dtype.F32, true, true, func(r, c int, v float32) float32 { return 0 })

	var specs []safetensors.Spec
	var data [][]byte
	for _, e := range cfg.ExpectedTensors() {
		dt, vals := dtype.BF16, dense[e.Name]
		if ct, ok := crafted[e.Name]; ok {
			dt, vals = ct.dt, ct.values
		}
		b := make([]byte, len(vals)*dt.Size())
		if err := dtype.FromFloat32(b, vals, dt); err != nil {
			t.Fatal(err)
		}
		specs = append(specs, safetensors.Spec{Name: e.Name, DType: dt, Shape: e.Shape})
		data = append(data, b)
	}
	if err := safetensors.WriteFile(filepath.Join(dir, "model.safetensors"), specs, data, map[string]string{"format": "pt"}); err != nil {
		t.Fatal(err)
	}

	rep := inspectJSON(t, dir)
	if len(rep.Problems) != 0 {
		t.Errorf("problems: %v", rep.Problems)
	}
	seen := 0
	var totZ, totNeg int64
	for _, ti := range rep.Tensors {
		if ti.Sparsity != nil {
			totZ += ti.Sparsity.Zeros
			totNeg += ti.Sparsity.NegativeZeros
		}
		ct, ok := crafted[ti.Name]
		if !ok {
			if ti.Sparsity != nil && (ti.Sparsity.Zeros != 0 || ti.Sparsity.Is2of4 || ti.Sparsity.Is4of8) {
				t.Errorf("%s: generated dense weights reported with zeros/patterns: %+v", ti.Name, ti.Sparsity)
			}
			continue
		}
		seen++
		sp := ti.Sparsity
		if sp == nil {
			t.Fatalf("%s: no sparsity reported", ti.Name)
		}
		if ti.DType != ct.dt.String() {
			t.Errorf("%s: dtype %s want %s", ti.Name, ti.DType, ct.dt)
		}
		if sp.Zeros != ct.wantZeros || sp.NegativeZeros != ct.wantNegZ || sp.Is2of4 != ct.want24 || sp.Is4of8 != ct.want48 {
			t.Errorf("%s: got zeros %d -0 %d 2:4 %v 4:8 %v; want %d %d %v %v", ti.Name,
				sp.Zeros, sp.NegativeZeros, sp.Is2of4, sp.Is4of8, ct.wantZeros, ct.wantNegZ, ct.want24, ct.want48)
		}
		if want := float64(ct.wantZeros) / float64(len(ct.values)); math.Abs(sp.ZeroFraction-want) > 1e-12 {
			t.Errorf("%s: zero fraction %v want %v", ti.Name, sp.ZeroFraction, want)
		}
	}
	if seen != len(crafted) {
		t.Errorf("saw %d crafted tensors of %d", seen, len(crafted))
	}
	// Sanity of the construction itself: q's -0.0 count is half the zeros of column 2.
	q := crafted[config.LayerTensor(0, config.PartQ)]
	qout, qin := cfg.LinearShape(config.PartQ)
	if q.wantZeros != int64(qout*qin/2) || q.wantNegZ != int64((qout+1)/2*qin/4) {
		t.Errorf("construction: q zeros %d neg %d", q.wantZeros, q.wantNegZ)
	}
	if rep.Prunable.Zeros != totZ || rep.Prunable.NegativeZeros != totNeg || rep.Prunable.All2of4 || rep.Prunable.All4of8 {
		t.Errorf("totals %+v (sum zeros %d neg %d)", rep.Prunable, totZ, totNeg)
	}

	text, err := inspRun(t, "", "inspect", "--model", dir)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text, "negative zeros (-0.0) present") {
		t.Error("text output does not warn about -0.0")
	}
	qLine := ""
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, config.LayerTensor(0, config.PartQ)) {
			qLine = l
		}
	}
	if f := strings.Fields(qLine); len(f) < 9 || f[len(f)-5] != "50.00%" || f[len(f)-4] != "512" || f[len(f)-3] != "yes" || f[len(f)-2] != "yes" || f[len(f)-1] != "model.safetensors" {
		t.Errorf("q_proj text line %q", qLine)
	}
}

func TestInspectShardedAndProblems(t *testing.T) {
	dir := t.TempDir()
	opt := modelgen.Default()
	opt.Arch = config.TypeQwen2
	opt.MaxShardBytes = 40000
	opt.Tied = true
	if err := modelgen.Write(dir, opt); err != nil {
		t.Fatal(err)
	}
	var index struct {
		WeightMap map[string]string `json:"weight_map"`
	}
	b, err := os.ReadFile(filepath.Join(dir, "model.safetensors.index.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &index); err != nil {
		t.Fatal(err)
	}
	rep := inspectJSON(t, dir)
	if len(rep.Shards) < 2 {
		t.Errorf("shards %v", rep.Shards)
	}
	// embed + 2 layers × (7 linears + 3 biases + 2 norms) + final norm; tied: no lm_head.
	if rep.NumTensors != 1+2*12+1 || len(index.WeightMap) != rep.NumTensors {
		t.Errorf("%d tensors, index has %d", rep.NumTensors, len(index.WeightMap))
	}
	for _, ti := range rep.Tensors {
		if index.WeightMap[ti.Name] != ti.Shard {
			t.Errorf("%s: shard %s, index says %s", ti.Name, ti.Shard, index.WeightMap[ti.Name])
		}
	}
	if !rep.Architecture.AttentionBias || !rep.Architecture.TieWordEmbeddings || len(rep.Problems) != 0 {
		t.Errorf("arch %+v problems %v", rep.Architecture, rep.Problems)
	}

	// A config that disagrees with the weights is reported, not fatal.
	cfgPath := filepath.Join(dir, "config.json")
	raw, _ := os.ReadFile(cfgPath)
	raw = bytes.Replace(raw, []byte(`"num_hidden_layers": 2`), []byte(`"num_hidden_layers": 3`), 1)
	raw = bytes.Replace(raw, []byte(`"intermediate_size": 128`), []byte(`"intermediate_size": 96`), 1)
	if err := os.WriteFile(cfgPath, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	rep = inspectJSON(t, dir)
	joined := strings.Join(rep.Problems, "\n")
	for _, want := range []string{"missing tensor model.layers.2.self_attn.q_proj.weight", "model.layers.0.mlp.up_proj.weight: shape [128, 64], config implies [96, 64]"} {
		if !strings.Contains(joined, want) {
			t.Errorf("problems lack %q:\n%s", want, joined)
		}
	}

	// Errors name the file.
	if err := os.WriteFile(cfgPath, []byte(`{"model_type":"gpt_neox"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = inspRun(t, "", "inspect", "--model", dir)
	if err == nil || !strings.Contains(err.Error(), cfgPath) || !strings.Contains(err.Error(), "gpt_neox") {
		t.Errorf("error %v", err)
	}
}

// --- tests of the fixture generator internal/modelgen ---

func TestGenDeterministicAndConsistent(t *testing.T) {
	read := func(dir string) map[string][]byte {
		files := map[string][]byte{}
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			b, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			files[e.Name()] = b
		}
		return files
	}
	a, b, c := t.TempDir(), t.TempDir(), t.TempDir()
	opt := modelgen.Default()
	opt.Seed = 42
	for _, d := range []string{a, b} {
		if err := modelgen.Write(d, opt); err != nil {
			t.Fatal(err)
		}
	}
	opt.Seed = 43
	if err := modelgen.Write(c, opt); err != nil {
		t.Fatal(err)
	}
	fa, fb, fc := read(a), read(b), read(c)
	wantFiles := []string{"config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"}
	for _, n := range wantFiles {
		if fa[n] == nil {
			t.Errorf("missing %s", n)
		}
		if !bytes.Equal(fa[n], fb[n]) {
			t.Errorf("%s differs between two runs with the same seed", n)
		}
	}
	if len(fa) != len(wantFiles) {
		t.Errorf("files %v", len(fa))
	}
	if bytes.Equal(fa["model.safetensors"], fc["model.safetensors"]) {
		t.Error("seeds 42 and 43 gave the same weights")
	}
	if !bytes.Equal(fa["tokenizer.json"], fc["tokenizer.json"]) {
		t.Error("the tokenizer depends on the seed")
	}

	cfg, err := config.Load(filepath.Join(a, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ModelType != "llama" || cfg.NumLayers != 2 || cfg.HiddenSize != 64 || cfg.IntermediateSize != 128 ||
		cfg.NumHeads != 4 || cfg.NumKVHeads != 2 || cfg.HeadDim != 16 || cfg.VocabSize != 576 ||
		cfg.TorchDType != "bfloat16" || cfg.TieWordEmbeddings || cfg.RopeScaling != nil ||
		cfg.BOSTokenID != 1 || cfg.EOSTokenID != 2 || len(cfg.Architectures) != 1 || cfg.Architectures[0] != "LlamaForCausalLM" {
		t.Errorf("config %+v", cfg)
	}
	if modelgen.TokenizerSize() > cfg.VocabSize {
		t.Errorf("tokenizer has %d tokens, vocab_size %d", modelgen.TokenizerSize(), cfg.VocabSize)
	}
	set, err := safetensors.OpenDir(a)
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	exp := cfg.ExpectedTensors()
	if len(set.Names()) != len(exp) {
		t.Errorf("%d tensors, config expects %d", len(set.Names()), len(exp))
	}
	for _, e := range exp {
		tt, err := set.Get(e.Name)
		if err != nil {
			t.Fatal(err)
		}
		if tt.DType != dtype.BF16 || !reflect.DeepEqual(tt.Shape, e.Shape) {
			t.Errorf("%s: %v %v, want BF16 %v", e.Name, tt.DType, tt.Shape, e.Shape)
		}
	}

	// Statistics of the weights: linears ~N(0, 0.02^2), no exact zeros; the
	// outlier channels carry larger embeddings and norm weights.
	outl, err := modelgen.OutlierChannels(modelgen.Default())
	if err != nil {
		t.Fatal(err)
	}
	isOut := map[int]bool{}
	for _, c := range outl {
		isOut[c] = true
	}
	if len(outl) != 2 {
		t.Errorf("outlier channels %v, want 2 for hidden 64", outl)
	}
	setD := inspGenOpen(t, modelgen.Default())
	defer setD.Close()
	std := func(v []float32) float64 {
		var s, ss float64
		for _, x := range v {
			s += float64(x)
			ss += float64(x) * float64(x)
		}
		m := s / float64(len(v))
		return math.Sqrt(ss/float64(len(v)) - m*m)
	}
	up := inspFloats(t, setD, config.LayerTensor(1, config.PartUp))
	if s := std(up); math.Abs(s-0.02) > 0.001 {
		t.Errorf("up_proj std %v, want 0.02", s)
	}
	for _, n := range setD.Names() {
		z, _ := inspCountZeros(t, inspMustTensor(t, setD, n))
		if z != 0 {
			t.Errorf("%s: %d exact zeros in a fresh model", n, z)
		}
	}
	emb := inspFloats(t, setD, config.EmbedTokens)
	var outCols, inCols []float32
	for i, x := range emb {
		if isOut[i%64] {
			outCols = append(outCols, x)
		} else {
			inCols = append(inCols, x)
		}
	}
	if r := std(outCols) / std(inCols); r < modelgen.EmbedOutlierScale*0.9 || r > modelgen.EmbedOutlierScale*1.1 {
		t.Errorf("outlier/other embedding std ratio %v, want ~%v", r, modelgen.EmbedOutlierScale)
	}
	norm := inspFloats(t, setD, config.LayerTensor(0, config.PartInputNorm))
	for c, x := range norm {
		want := 1.0
		if isOut[c] {
			want = modelgen.NormOutlierScale
		}
		if math.Abs(float64(x)-want) > 0.15 {
			t.Errorf("input_layernorm[%d] = %v, want ~%v", c, x, want)
		}
	}
}

func inspGenOpen(t *testing.T, opt modelgen.Options) *safetensors.Set {
	t.Helper()
	dir := t.TempDir()
	if err := modelgen.Write(dir, opt); err != nil {
		t.Fatal(err)
	}
	set, err := safetensors.OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	return set
}

func inspMustTensor(t *testing.T, set *safetensors.Set, name string) *safetensors.Tensor {
	t.Helper()
	tt, err := set.Get(name)
	if err != nil {
		t.Fatal(err)
	}
	return tt
}

func inspFloats(t *testing.T, set *safetensors.Set, name string) []float32 {
	t.Helper()
	v, err := inspMustTensor(t, set, name).Float32()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestGenVariants(t *testing.T) {
	tests := []struct {
		name string
		opt  modelgen.Options
		dt   dtype.DType
	}{
		{"mistral f16 linear rope", modelgen.Options{Arch: "mistral", DType: "f16", RopeScaling: "linear", Layers: 1}, dtype.F16},
		{"qwen2 f32 tied llama3 sharded", modelgen.Options{Arch: "qwen2", DType: "f32", Tied: true, RopeScaling: "llama3", MaxShardBytes: 30000, Layers: 3}, dtype.F32},
		{"llama MHA head_dim", modelgen.Options{Heads: 2, HeadDim: 24, Hidden: 32, Intermediate: 48, Vocab: 600, Seed: 3}, dtype.BF16},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := modelgen.Write(dir, tc.opt); err != nil {
				t.Fatal(err)
			}
			cfg, err := config.Load(filepath.Join(dir, "config.json"))
			if err != nil {
				t.Fatal(err)
			}
			o := tc.opt
			if o.Arch == "" {
				o.Arch = "llama"
			}
			if cfg.ModelType != o.Arch || cfg.TieWordEmbeddings != o.Tied || (o.Layers != 0 && cfg.NumLayers != o.Layers) {
				t.Errorf("config %+v", cfg)
			}
			switch o.RopeScaling {
			case "linear":
				if cfg.RopeScaling == nil || *cfg.RopeScaling != (config.RopeScaling{Type: "linear", Factor: 2}) {
					t.Errorf("rope %+v", cfg.RopeScaling)
				}
			case "llama3":
				if cfg.RopeScaling == nil || cfg.RopeScaling.Type != "llama3" || cfg.RopeScaling.Factor != 8 {
					t.Errorf("rope %+v", cfg.RopeScaling)
				}
			}
			if o.Heads == 2 && (cfg.NumKVHeads != 2 || cfg.HeadDim != 24 || cfg.VocabSize != 600) {
				t.Errorf("MHA config %+v", cfg)
			}
			rep := inspectJSON(t, dir)
			if len(rep.Problems) != 0 {
				t.Errorf("problems %v", rep.Problems)
			}
			if (len(rep.Shards) > 1) != (o.MaxShardBytes > 0) {
				t.Errorf("shards %v", rep.Shards)
			}
			for _, ti := range rep.Tensors {
				if ti.DType != tc.dt.String() {
					t.Errorf("%s: %s", ti.Name, ti.DType)
				}
			}
			if o.Arch == "qwen2" {
				if _, ok := inspFindTensor(rep, config.LayerTensor(2, config.PartVBias)); !ok {
					t.Error("qwen2 model lacks v_proj.bias")
				}
			}
		})
	}
	for _, bad := range []modelgen.Options{
		{Arch: "gpt2"}, {Heads: 3, KVHeads: 2}, {Vocab: 100}, {DType: "i8"}, {RopeScaling: "yarn"}, {Hidden: 30, Heads: 4},
	} {
		if err := modelgen.Write(t.TempDir(), bad); err == nil || !errors.Is(err, modelgen.ErrOptions) {
			t.Errorf("Write(%+v) = %v, want ErrOptions", bad, err)
		}
	}
}

func inspFindTensor(rep *inspectReport, name string) (inspectTensor, bool) {
	for _, ti := range rep.Tensors {
		if ti.Name == name {
			return ti, true
		}
	}
	return inspectTensor{}, false
}
