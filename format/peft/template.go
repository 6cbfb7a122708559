package peft

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/wanda-go/wanda/format/config"
)

// The template is written to TemplateDir/TemplateName inside a pruned model
// directory, so that LoraConfig.from_pretrained("<model>/lora-template")
// reads it. It must not sit in the model directory itself: with PEFT
// installed, transformers' from_pretrained treats a directory holding an
// adapter_config.json as an adapter and tries to load it (and its
// base_model_name_or_path) instead of the model.
const (
	TemplateDir  = "lora-template"
	TemplateName = ConfigName
)

// Targets are the LoRA targets of a pruned model, as PEFT names them: Modules for
// target_modules (each matches the modules whose path ends with it, e.g. "q_proj"), and
// Parameters for target_parameters (nn.Parameters PEFT adapts directly, e.g. the 3-D
// fused expert weights "mlp.experts.gate_up_proj" of mixture-of-experts models in
// transformers 5; PEFT then requires lora_dropout 0).
type Targets struct {
	Modules    []string
	Parameters []string
}

// LlamaTargets are the seven linears of the LLaMA layout.
func LlamaTargets() *Targets {
	t := &Targets{}
	for _, p := range config.Linears {
		t.Modules = append(t.Modules, p.String())
	}
	return t
}

// WriteTemplate writes AdapterTemplate(t, baseModel) to modelDir/TemplateDir/TemplateName,
// creating the subdirectory.
func WriteTemplate(modelDir string, t *Targets, baseModel string) error {
	dir := filepath.Join(modelDir, TemplateDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("peft: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, TemplateName), AdapterTemplate(t, baseModel), 0o644); err != nil {
		return fmt.Errorf("peft: %w", err)
	}
	return nil
}

type field struct {
	k string
	v any
}

type object []field

func (o object) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, f := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(f.k)
		v, err := json.Marshal(f.v)
		if err != nil {
			return nil, err
		}
		b.Write(k)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// AdapterTemplate returns an adapter_config.json for LoRA fine-tuning of the
// pruned model: peft_type LORA, task_type CAUSAL_LM, r 8, lora_alpha 16,
// lora_dropout 0.05 (0 when t has Parameters, which PEFT's parameter wrapper
// requires), bias none, fan_in_fan_out false, init_lora_weights true,
// inference_mode false, target_modules t.Modules (nil t: the seven LLaMA linears),
// target_parameters t.Parameters when there are any, and base_model_name_or_path
// baseModel. Keys are sorted as PEFT writes them; 2-space indent, trailing newline.
func AdapterTemplate(t *Targets, baseModel string) []byte {
	if t == nil {
		t = LlamaTargets()
	}
	targets := append([]string{}, t.Modules...)
	dropout := 0.05
	if len(t.Parameters) > 0 {
		dropout = 0
	}
	o := object{
		{"alpha_pattern", map[string]any{}},
		{"base_model_name_or_path", baseModel},
		{"bias", "none"},
		{"fan_in_fan_out", false},
		{"inference_mode", false},
		{"init_lora_weights", true},
		{"layers_pattern", nil},
		{"layers_to_transform", nil},
		{"lora_alpha", 16},
		{"lora_dropout", dropout},
		{"modules_to_save", nil},
		{"peft_type", "LORA"},
		{"r", 8},
		{"rank_pattern", map[string]any{}},
		{"revision", nil},
		{"target_modules", targets},
		{"target_parameters", nil},
		{"task_type", "CAUSAL_LM"},
		{"use_dora", false},
		{"use_rslora", false},
	}
	for i := range o {
		if o[i].k == "target_parameters" {
			if len(t.Parameters) == 0 {
				o = append(o[:i], o[i+1:]...)
			} else {
				o[i].v = append([]string{}, t.Parameters...)
			}
			break
		}
	}
	raw, err := json.Marshal(o)
	if err != nil {
		panic(err) // static content
	}
	var b bytes.Buffer
	if err := json.Indent(&b, raw, "", "  "); err != nil {
		panic(err)
	}
	b.WriteByte('\n')
	return b.Bytes()
}
