package peft

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wanda-go/wanda/format/dtype"
	"github.com/wanda-go/wanda/format/safetensors"
)

func TestParseConfigScaling(t *testing.T) {
	c, err := ParseConfig([]byte(`{"peft_type": "LORA", "r": 8, "lora_alpha": 16,
		"rank_pattern": {"down_proj": 4, "model.layers.1.self_attn.q_proj": 2},
		"alpha_pattern": {"layers\\.1\\..*v_proj": 32}}`))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		module string
		r      int
		alpha  float64
		scale  float64
	}{
		{"model.layers.0.self_attn.q_proj", 8, 16, 2},
		{"model.layers.1.self_attn.q_proj", 2, 16, 8},
		{"model.layers.0.mlp.down_proj", 4, 16, 4},
		{"model.layers.1.self_attn.v_proj", 8, 32, 4},
		{"model.layers.11.self_attn.v_proj", 8, 16, 2}, // "layers\.1\." does not match layer 11
	} {
		r, a := c.RankAlpha(tc.module)
		if r != tc.r || a != tc.alpha || c.Scale(tc.module) != tc.scale {
			t.Errorf("%s: r %d alpha %g scale %g, want %d %g %g", tc.module, r, a, c.Scale(tc.module), tc.r, tc.alpha, tc.scale)
		}
	}
	c, err = ParseConfig([]byte(`{"peft_type": "LORA", "r": 16, "lora_alpha": 8, "use_rslora": true}`))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Scale("x.q_proj"); got != 2 {
		t.Errorf("rslora scale %g, want 8/sqrt(16) = 2", got)
	}
	c, _ = ParseConfig([]byte(`{"peft_type": "LORA"}`))
	if c.R != 8 || c.LoraAlpha != 8 || c.Scale("q") != 1 {
		t.Errorf("defaults: r %d alpha %g", c.R, c.LoraAlpha)
	}
}

func TestTargets(t *testing.T) {
	for _, tc := range []struct {
		cfg    string
		module string
		want   bool
	}{
		{`"target_modules": ["q_proj", "v_proj"]`, "model.layers.0.self_attn.q_proj", true},
		{`"target_modules": ["q_proj", "v_proj"]`, "model.layers.0.self_attn.k_proj", false},
		{`"target_modules": ["q_proj"]`, "model.layers.0.self_attn.xq_proj", false},
		{`"target_modules": ".*layers\\.0\\..*(q|k)_proj"`, "model.layers.0.self_attn.k_proj", true},
		{`"target_modules": ".*layers\\.0\\..*(q|k)_proj"`, "model.layers.1.self_attn.k_proj", false},
		{`"target_modules": "all-linear"`, "model.layers.3.mlp.up_proj", true},
		{`"target_modules": "all-linear"`, "lm_head", false},
		{`"target_modules": ["up_proj"], "layers_to_transform": [1]`, "model.layers.1.mlp.up_proj", true},
		{`"target_modules": ["up_proj"], "layers_to_transform": [1]`, "model.layers.0.mlp.up_proj", false},
		{`"target_modules": ["up_proj"], "layers_to_transform": 0`, "model.layers.0.mlp.up_proj", true},
		{`"target_modules": ["up_proj"], "exclude_modules": ["model.layers.0.mlp.up_proj"]`, "model.layers.0.mlp.up_proj", false},
		{`"target_modules": null`, "model.layers.0.mlp.up_proj", true},
	} {
		c, err := ParseConfig([]byte(`{"peft_type": "LORA", ` + tc.cfg + `}`))
		if err != nil {
			t.Fatalf("%s: %v", tc.cfg, err)
		}
		if got := c.Targets(tc.module); got != tc.want {
			t.Errorf("%s: Targets(%s) = %v", tc.cfg, tc.module, got)
		}
	}
}

func TestParseConfigRefusals(t *testing.T) {
	for _, tc := range []struct {
		cfg  string
		want error
	}{
		{`{"r": 8}`, ErrInvalid},
		{`{"peft_type": "IA3"}`, ErrUnsupported},
		{`{"peft_type": "LORA", "fan_in_fan_out": true}`, ErrUnsupported},
		{`{"peft_type": "LORA", "bias": "all"}`, ErrUnsupported},
		{`{"peft_type": "LORA", "use_dora": true}`, ErrUnsupported},
		{`{"peft_type": "LORA", "r": 0}`, ErrInvalid},
		{`{"peft_type": "LORA", "r": "8"}`, ErrInvalid},
		{`{"peft_type": "LORA", "target_modules": 3}`, ErrInvalid},
		{`{"peft_type": "LORA", "rank_pattern": {"q": -1}}`, ErrInvalid},
		{`{"peft_type": "LORA", "target_modules": "(("}`, ErrUnsupported},
		{`[1]`, ErrInvalid},
	} {
		if _, err := ParseConfig([]byte(tc.cfg)); !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.cfg, err, tc.want)
		}
	}
}

func writeAdapter(t *testing.T, dir string, cfg string, specs []safetensors.Spec) {
	t.Helper()
	os.MkdirAll(dir, 0o755)
	if err := os.WriteFile(filepath.Join(dir, ConfigName), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	data := make([][]byte, len(specs))
	for i, s := range specs {
		n := int64(s.DType.Size())
		for _, d := range s.Shape {
			n *= d
		}
		data[i] = make([]byte, n)
	}
	if err := safetensors.WriteFile(filepath.Join(dir, WeightsName), specs, data, nil); err != nil {
		t.Fatal(err)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	writeAdapter(t, dir, `{"peft_type": "LORA", "r": 2, "lora_alpha": 4, "target_modules": ["q_proj"]}`, []safetensors.Spec{
		{Name: "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", DType: dtype.BF16, Shape: []int64{2, 8}},
		{Name: "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight", DType: dtype.BF16, Shape: []int64{6, 2}},
		{Name: "base_model.model.model.layers.1.self_attn.q_proj.lora_A.default.weight", DType: dtype.F32, Shape: []int64{2, 8}},
		{Name: "base_model.model.model.layers.1.self_attn.q_proj.lora_B.default.weight", DType: dtype.F32, Shape: []int64{6, 2}},
	})
	a, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if len(a.Modules) != 2 || a.Modules[1].Name != "model.layers.1.self_attn.q_proj" {
		t.Fatalf("modules %+v", a.Modules)
	}
	m, ok := a.ForWeight("model.layers.0.self_attn.q_proj.weight")
	if !ok || m.Rank != 2 || m.Scale != 2 || m.In != 8 || m.Out != 6 {
		t.Fatalf("module %+v", m)
	}
	shapes := map[string][]int64{
		"model.layers.0.self_attn.q_proj.weight": {6, 8},
		"model.layers.1.self_attn.q_proj.weight": {6, 8},
		"model.norm.weight":                      {8},
	}
	names := []string{"model.layers.0.self_attn.q_proj.weight", "model.layers.1.self_attn.q_proj.weight", "model.norm.weight"}
	shape := func(n string) ([]int64, bool) { s, ok := shapes[n]; return s, ok }
	if err := a.Check(names, shape); err != nil {
		t.Errorf("Check: %v", err)
	}
	shapes["model.layers.1.self_attn.q_proj.weight"] = []int64{8, 6}
	if err := a.Check(names, shape); !errors.Is(err, ErrMismatch) || !strings.Contains(err.Error(), "layers.1.self_attn.q_proj") {
		t.Errorf("Check transposed: %v", err)
	}
}

func TestLoadRefusals(t *testing.T) {
	cfg := `{"peft_type": "LORA", "r": 2}`
	a := safetensors.Spec{Name: "base_model.model.m.q_proj.lora_A.weight", DType: dtype.F32, Shape: []int64{2, 4}}
	b := safetensors.Spec{Name: "base_model.model.m.q_proj.lora_B.weight", DType: dtype.F32, Shape: []int64{4, 2}}
	for _, tc := range []struct {
		name  string
		specs []safetensors.Spec
		want  error
		word  string
	}{
		{"only_A", []safetensors.Spec{a}, ErrInvalid, "lora_A without lora_B"},
		{"modules_to_save", []safetensors.Spec{a, b, {Name: "base_model.model.lm_head.modules_to_save.weight", DType: dtype.F32, Shape: []int64{4, 4}}}, ErrUnsupported, "modules_to_save"},
		{"embedding", []safetensors.Spec{{Name: "base_model.model.model.embed_tokens.lora_embedding_A", DType: dtype.F32, Shape: []int64{2, 4}}}, ErrUnsupported, "embed"},
		{"rank_disagree", []safetensors.Spec{a, {Name: b.Name, DType: dtype.F32, Shape: []int64{4, 3}}}, ErrInvalid, "ranks 2 and 3"},
		{"int_dtype", []safetensors.Spec{{Name: a.Name, DType: dtype.I32, Shape: []int64{2, 4}}, b}, ErrInvalid, "2-D float"},
		{"empty", nil, ErrInvalid, "no lora_A"},
	} {
		dir := filepath.Join(t.TempDir(), tc.name)
		writeAdapter(t, dir, cfg, tc.specs)
		_, err := Load(dir)
		if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.word) || !strings.Contains(err.Error(), WeightsName) {
			t.Errorf("%s: got %v", tc.name, err)
		}
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, ConfigName), []byte(cfg), 0o644)
	os.WriteFile(filepath.Join(dir, LegacyBinName), []byte("pickle"), 0o644)
	if _, err := Load(dir); !errors.Is(err, ErrMissingFile) || !strings.Contains(err.Error(), LegacyBinName) {
		t.Errorf("bin only: %v", err)
	}
}

func TestAdapterTemplate(t *testing.T) {
	b := AdapterTemplate(nil, "out/llama-pruned")
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": 8.0, "lora_alpha": 16.0, "lora_dropout": 0.05,
		"bias": "none", "fan_in_fan_out": false, "base_model_name_or_path": "out/llama-pruned",
		"inference_mode": false, "init_lora_weights": true,
	}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %v, want %v", k, m[k], v)
		}
	}
	tm, _ := m["target_modules"].([]any)
	if len(tm) != 7 || tm[0] != "q_proj" || tm[6] != "down_proj" {
		t.Errorf("target_modules %v", tm)
	}
	// It must parse as a config this package accepts, with scale 16/8.
	c, err := ParseConfig(b)
	if err != nil {
		t.Fatal(err)
	}
	if c.Scale("model.layers.0.mlp.gate_proj") != 2 || !c.Targets("model.layers.0.mlp.gate_proj") || c.Targets("lm_head") {
		t.Errorf("template config: scale %g", c.Scale("x"))
	}
	if math.Abs(c.LoraDropout-0.05) > 0 {
		t.Errorf("dropout %g", c.LoraDropout)
	}
}

func TestWriteTemplate(t *testing.T) {
	dir := t.TempDir()
	if err := WriteTemplate(dir, nil, dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, ConfigName)); !errors.Is(err, os.ErrNotExist) {
		t.Error("template written into the model directory itself (transformers would treat it as an adapter)")
	}
	b, err := os.ReadFile(filepath.Join(dir, TemplateDir, TemplateName))
	if err != nil {
		t.Fatal(err)
	}
	c, err := ParseConfig(b)
	if err != nil || c.BaseModelNameOrPath != dir {
		t.Errorf("template: %v %+v", err, c)
	}
}

func TestAdapterTemplateTargets(t *testing.T) {
	b := AdapterTemplate(&Targets{Modules: []string{"q_proj", "k_proj"}, Parameters: []string{"mlp.experts.gate_up_proj", "mlp.experts.down_proj"}}, "m")
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	tp, _ := m["target_parameters"].([]any)
	if len(tp) != 2 || tp[0] != "mlp.experts.gate_up_proj" || m["lora_dropout"] != 0.0 {
		t.Errorf("target_parameters %v, dropout %v", m["target_parameters"], m["lora_dropout"])
	}
	if tm, _ := m["target_modules"].([]any); len(tm) != 2 || tm[1] != "k_proj" {
		t.Errorf("target_modules %v", m["target_modules"])
	}
	// Without parameters the key is absent (the LLaMA template is unchanged).
	b = AdapterTemplate(&Targets{Modules: []string{"qkv_proj"}}, "m")
	if strings.Contains(string(b), "target_parameters") || !strings.Contains(string(b), `"lora_dropout": 0.05`) {
		t.Errorf("template %s", b)
	}
	if !bytes.Equal(AdapterTemplate(nil, "m"), AdapterTemplate(LlamaTargets(), "m")) {
		t.Error("nil targets differ from the LLaMA ones")
	}
}

// TestLoadParamWrappers: a target_parameters adapter as PEFT saves it for two
// parameters of one module (nested ParamWrappers: the first registered
// parameter innermost, behind ".base_layer"), resolved by the model's
// registration order, with rank_pattern matched against the parameter path.
func TestLoadParamWrappers(t *testing.T) {
	dir := t.TempDir()
	const mod = "base_model.model.model.layers.0.mlp.experts"
	cfg := `{"peft_type": "LORA", "r": 2, "lora_alpha": 4, "target_modules": ["q_proj"], "peft_version": "0.21.0",
		"target_parameters": ["mlp.experts.down_proj", "mlp.experts.gate_up_proj"], "rank_pattern": {"gate_up_proj": 1}}`
	writeAdapter(t, dir, cfg, []safetensors.Spec{
		{Name: mod + ".base_layer.lora_A.weight", DType: dtype.F32, Shape: []int64{1 * 3, 8}}, // gate_up: r 1 × 3 experts, in = hidden 8
		{Name: mod + ".base_layer.lora_B.weight", DType: dtype.F32, Shape: []int64{12, 3}},    // out = 2·6
		{Name: mod + ".lora_A.weight", DType: dtype.F32, Shape: []int64{2 * 3, 6}},            // down: r 2 × 3, in = 6
		{Name: mod + ".lora_B.weight", DType: dtype.F32, Shape: []int64{8, 6}},
	})
	if _, err := Load(dir); !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "order") {
		t.Errorf("Load without the parameter order: %v", err)
	}
	a, err := LoadWith(dir, LoadOptions{ParamOrder: []string{"gate_up_proj", "down_proj"}})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if len(a.Modules) != 2 {
		t.Fatalf("modules %+v", a.Modules)
	}
	dn, gu := a.Modules[0], a.Modules[1]
	if dn.Name != "model.layers.0.mlp.experts.down_proj" || dn.Param != "down_proj" || dn.Rank != 2 || dn.Experts != 3 || dn.Scale != 2 ||
		dn.In != 6 || dn.Out != 8 || dn.Weight != dn.Name {
		t.Errorf("down_proj %+v", dn)
	}
	if gu.Name != "model.layers.0.mlp.experts.gate_up_proj" || gu.Rank != 1 || gu.Experts != 3 || gu.Scale != 4 || gu.In != 8 || gu.Out != 12 {
		t.Errorf("gate_up_proj %+v", gu)
	}
	if _, ok := a.ForWeight(dn.Name); ok {
		t.Error("a parameter target is found as a module weight")
	}
	shapes := map[string][]int64{gu.Name: {3, 12, 8}, dn.Name: {3, 8, 6}, "model.layers.0.self_attn.q_proj.weight": {8, 8}}
	names := []string{gu.Name, dn.Name, "model.layers.0.self_attn.q_proj.weight"}
	shape := func(n string) ([]int64, bool) { s, ok := shapes[n]; return s, ok }
	if err := a.Check(names, shape); err != nil || gu.Transposed || dn.Transposed {
		t.Errorf("Check: %v (transposed %v %v)", err, gu.Transposed, dn.Transposed)
	}
	shapes[dn.Name] = []int64{3, 6, 8} // the older PEFT layout fits the transpose
	if err := a.Check(names, shape); err != nil || !dn.Transposed {
		t.Errorf("Check transposed layout: %v (transposed %v)", err, dn.Transposed)
	}
	shapes[dn.Name] = []int64{4, 8, 6}
	if err := a.Check(names, shape); !errors.Is(err, ErrMismatch) || !strings.Contains(err.Error(), "down_proj") {
		t.Errorf("Check with 4 experts: %v", err)
	}
	delete(shapes, gu.Name)
	if err := a.Check(names[1:], shape); !errors.Is(err, ErrMismatch) {
		t.Errorf("Check without the parameter: %v", err)
	}
}

func TestVersionAtLeast(t *testing.T) {
	for v, want := range map[string]bool{"0.20.0": true, "0.21.0.dev0": true, "0.19.1": false, "1.0": true, "": false, "x.y": false, "0.20.0+local": true} {
		c := &Config{PeftVersion: v}
		if got := c.VersionAtLeast(0, 20, 0); got != want {
			t.Errorf("VersionAtLeast(0.20.0) of %q = %v", v, got)
		}
	}
}
