package main

import (
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wanda-go/wanda/format/config"
	"github.com/wanda-go/wanda/pipeline"
)

// TestArchCLI runs `wanda prune` and `wanda eval` on the reference model of every new
// architecture (../shared/models/arch) with the reference's calibration and evaluation
// windows, and compares the pruned perplexity with the reference's (model/golden_test.go
// compares logits and masks in detail).
func TestArchCLI(t *testing.T) {
	shared := inspSharedDir(t)
	cases := []struct{ typ, moeStats, run string }{
		{"qwen3", "", "wanda:unstructured"},
		{"phi3", "", "wanda:unstructured"},
		{"gemma2", "", "wanda:unstructured"},
		{"gemma3_text", "", "wanda:unstructured"},
		{"mixtral", "all", "wanda:unstructured"},
		{"qwen2_moe", "routed", "wanda-routed:unstructured"},
		{"qwen3_moe", "routed", "wanda-routed:unstructured"},
	}
	for _, c := range cases {
		t.Run(c.typ, func(t *testing.T) {
			model := filepath.Join(shared, "models/arch", c.typ)
			ref := filepath.Join(shared, "models/arch", c.typ+"_reference.safetensors")
			var want struct {
				PPL map[string]float64 `json:"ppl"`
			}
			b, err := os.ReadFile(filepath.Join(shared, "models/arch", c.typ+"_ppl.json"))
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(b, &want); err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(t.TempDir(), "out")
			args := []string{"prune", "--model", model, "--out", out, "--method", "wanda", "--calib-tokens", ref,
				"--calib-key", "calib_ids", "--json"}
			if c.moeStats != "" {
				args = append(args, "--moe-stats", c.moeStats)
			}
			stdout, err := inspRun(t, "", args...)
			if err != nil {
				t.Fatalf("prune: %v", err)
			}
			var rep pipeline.Report
			if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
				t.Fatal(err)
			}
			if rep.ModelType != c.typ || rep.GlobalSparsity != 0.5 {
				t.Errorf("report: model_type %q, sparsity %v", rep.ModelType, rep.GlobalSparsity)
			}
			// The LoRA template names the pruned linears as PEFT (transformers 5) does.
			tb, err := os.ReadFile(filepath.Join(out, "lora-template", "adapter_config.json"))
			if err != nil {
				t.Fatal(err)
			}
			var tmpl struct {
				Modules []string `json:"target_modules"`
				Params  []string `json:"target_parameters"`
			}
			if err := json.Unmarshal(tb, &tmpl); err != nil {
				t.Fatal(err)
			}
			wantMods, wantParams := map[string]string{
				"phi3": "o_proj qkv_proj gate_up_proj down_proj", "mixtral": "q_proj k_proj v_proj o_proj",
				"qwen3_moe": "q_proj k_proj v_proj o_proj",
			}[c.typ], ""
			if wantMods == "" {
				wantMods = "q_proj k_proj v_proj o_proj gate_proj up_proj down_proj"
			}
			if c.moeStats != "" {
				wantParams = "mlp.experts.gate_up_proj mlp.experts.down_proj"
			}
			if strings.Join(tmpl.Modules, " ") != wantMods || strings.Join(tmpl.Params, " ") != wantParams {
				t.Errorf("LoRA template targets %v / %v, want %s / %s", tmpl.Modules, tmpl.Params, wantMods, wantParams)
			}
			stdout, err = inspRun(t, "", "eval", "--model", out, "--tokens", ref, "--tokens-key", "eval_ids", "--seqlen", "64", "--json")
			if err != nil {
				t.Fatalf("eval: %v", err)
			}
			var res struct {
				PPL float64 `json:"ppl"`
			}
			if err := json.Unmarshal([]byte(stdout), &res); err != nil {
				t.Fatal(err)
			}
			rel := math.Abs(res.PPL-want.PPL[c.run]) / want.PPL[c.run]
			t.Logf("%s %s: ppl %.6f, reference %.6f (relative %.2g)", c.typ, c.run, res.PPL, want.PPL[c.run], rel)
			if !(rel <= 1e-4) {
				t.Errorf("ppl %.6f, reference %.6f", res.PPL, want.PPL[c.run])
			}
		})
	}
}

// TestArchRefusals: an unsupported model_type is refused with the supported ones, and
// so is an unknown --moe-stats.
func TestArchRefusals(t *testing.T) {
	shared := inspSharedDir(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{"model_type":"deepseek_v3","hidden_size":64}`), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"prune", "--model", dir, "--out", filepath.Join(t.TempDir(), "out"), "--method", "magnitude"},
		{"eval", "--model", dir, "--tokens", filepath.Join(shared, "models/arch/qwen3_reference.safetensors"), "--tokens-key", "eval_ids"},
	} {
		_, err := inspRun(t, "", args...)
		if !errors.Is(err, config.ErrUnsupportedArch) || !strings.Contains(err.Error(), "deepseek_v3") ||
			!strings.Contains(err.Error(), "mixtral") || !strings.Contains(err.Error(), "gemma3_text") {
			t.Errorf("%s: error %v", args[0], err)
		}
	}
	_, err := inspRun(t, "", "prune", "--model", filepath.Join(shared, "models/arch/mixtral"), "--out", filepath.Join(t.TempDir(), "o2"),
		"--method", "magnitude", "--moe-stats", "some")
	if err == nil || !strings.Contains(err.Error(), "some") {
		t.Errorf("--moe-stats some: error %v", err)
	}
}
