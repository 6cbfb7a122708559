package config

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/wanda-go/wanda/internal/testenv"
)

// sharedDir returns ../shared relative to the module root, skipping the test
// when it is absent (failing instead when CI=true).
func sharedDir(t *testing.T) string {
	t.Helper()
	return testenv.SharedDir(t)
}

func TestLoadTinyLlamaA(t *testing.T) {
	path := filepath.Join(sharedDir(t), "models", "tiny-llama-a", "config.json")
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	// Values as written in the file.
	want := Config{
		ModelType: "llama", Architectures: []string{"LlamaForCausalLM"},
		HiddenSize: 384, IntermediateSize: 1024, NumLayers: 6, NumHeads: 6, NumKVHeads: 6, HeadDim: 64,
		VocabSize: 4096, MaxPositionEmbeddings: 512, RMSNormEps: 1e-5, RopeTheta: 10000,
		TorchDType: "bfloat16", BOSTokenID: 1, EOSTokenID: 2, HiddenAct: "silu",
	}
	got := *c
	got.Raw = nil
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
	if n := c.Raw["rms_norm_eps"]; n != json.Number("1e-05") {
		t.Errorf("Raw[rms_norm_eps] = %#v, want json.Number(\"1e-05\")", n)
	}
	specs := c.ExpectedTensors()
	if len(specs) != 57 {
		t.Errorf("ExpectedTensors: %d tensors, want 57", len(specs))
	}
	if specs[0].Name != "model.embed_tokens.weight" || !reflect.DeepEqual(specs[0].Shape, []int64{4096, 384}) {
		t.Errorf("first spec %+v", specs[0])
	}
	if last := specs[len(specs)-1]; last.Name != "lm_head.weight" || !reflect.DeepEqual(last.Shape, []int64{4096, 384}) {
		t.Errorf("last spec %+v", last)
	}
}

// TestDefaults: what the file omits stays zero (the architecture table fills the
// type's defaults), except num_key_value_heads (= num_attention_heads).
func TestDefaults(t *testing.T) {
	c, err := Parse([]byte(`{"model_type":"llama","hidden_size":64,"intermediate_size":128,
		"num_hidden_layers":2,"num_attention_heads":4,"vocab_size":100}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.NumKVHeads != 4 || c.HeadDim != 0 || c.RopeTheta != 0 || c.RMSNormEps != 0 ||
		c.RopeScaling != nil || c.TieWordEmbeddings || c.AttentionBias || c.BOSTokenID != -1 ||
		c.EOSTokenID != -1 || c.TorchDType != "" || c.MaxPositionEmbeddings != 0 || c.SlidingWindow != 0 ||
		c.HiddenAct != "" || c.NumExperts != 0 || c.LayerTypes != nil || c.Has("tie_word_embeddings") {
		t.Errorf("defaults wrong: %+v", c)
	}
	// Any model_type parses; support is model/arch's question.
	if c, err := Parse([]byte(`{"model_type":"gpt_neox","hidden_size":64,"intermediate_size":128,
		"num_hidden_layers":2,"num_attention_heads":4,"vocab_size":100}`)); err != nil || c.ModelType != "gpt_neox" {
		t.Errorf("gpt_neox: %v %+v", err, c)
	}
}

func TestFields(t *testing.T) {
	base := `"hidden_size":64,"intermediate_size":128,"num_hidden_layers":2,"num_attention_heads":4,"vocab_size":100`
	tests := []struct {
		name, json string
		check      func(c *Config) bool
	}{
		{"eos list", `{"model_type":"llama",` + base + `,"eos_token_id":[7,8],"bos_token_id":3}`,
			func(c *Config) bool { return c.EOSTokenID == 7 && c.BOSTokenID == 3 }},
		{"eos null", `{"model_type":"llama",` + base + `,"eos_token_id":null}`,
			func(c *Config) bool { return c.EOSTokenID == -1 }},
		{"integral float", `{"model_type":"llama",` + base + `,"num_key_value_heads":2.0}`,
			func(c *Config) bool { return c.NumKVHeads == 2 && c.HeadDim == 0 }},
		{"explicit head_dim", `{"model_type":"llama",` + base + `,"head_dim":32}`,
			func(c *Config) bool { return c.HeadDim == 32 }},
		{"head_dim null", `{"model_type":"llama",` + base + `,"head_dim":null}`,
			func(c *Config) bool { return c.HeadDim == 0 && !c.Has("head_dim") }},
		{"dtype key", `{"model_type":"llama",` + base + `,"dtype":"float16"}`,
			func(c *Config) bool { return c.TorchDType == "float16" }},
		{"llama attention_bias", `{"model_type":"llama",` + base + `,"attention_bias":true}`,
			func(c *Config) bool { return c.AttentionBias }},
		{"tied", `{"model_type":"llama",` + base + `,"tie_word_embeddings":true}`,
			func(c *Config) bool { return c.TieWordEmbeddings }},
		{"rope null", `{"model_type":"llama",` + base + `,"rope_scaling":null,"rope_theta":500000}`,
			func(c *Config) bool { return c.RopeScaling == nil && c.RopeTheta == 500000 }},
		{"rope default", `{"model_type":"llama",` + base + `,"rope_scaling":{"rope_type":"default"}}`,
			func(c *Config) bool { return c.RopeScaling == nil }},
		{"rope linear type", `{"model_type":"llama",` + base + `,"rope_scaling":{"type":"linear","factor":4}}`,
			func(c *Config) bool { return *c.RopeScaling == RopeScaling{Type: "linear", Factor: 4} }},
		{"rope linear rope_type", `{"model_type":"llama",` + base + `,"rope_scaling":{"rope_type":"linear","factor":2.5}}`,
			func(c *Config) bool { return *c.RopeScaling == RopeScaling{Type: "linear", Factor: 2.5} }},
		{"rope llama3", `{"model_type":"llama",` + base + `,"rope_scaling":{"rope_type":"llama3","factor":8.0,
			"low_freq_factor":1.0,"high_freq_factor":4.0,"original_max_position_embeddings":8192}}`,
			func(c *Config) bool {
				return *c.RopeScaling == RopeScaling{Type: "llama3", Factor: 8, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPositionEmbeddings: 8192}
			}},
		{"rope_parameters (transformers 5)", `{"model_type":"llama",` + base + `,"rope_parameters":{"rope_type":"linear","factor":2,"rope_theta":1000}}`,
			func(c *Config) bool {
				return c.RopeTheta == 1000 && *c.RopeScaling == RopeScaling{Type: "linear", Factor: 2}
			}},
		{"rope_parameters default", `{"model_type":"llama",` + base + `,"rope_parameters":{"rope_type":"default","rope_theta":1e6}}`,
			func(c *Config) bool { return c.RopeTheta == 1e6 && c.RopeScaling == nil }},
		{"silu", `{"model_type":"llama",` + base + `,"hidden_act":"silu","mlp_bias":false}`,
			func(c *Config) bool { return !c.MLPBias && c.HiddenAct == "silu" }},
		{"hidden_activation wins", `{"model_type":"gemma2",` + base + `,"hidden_act":"gelu","hidden_activation":"gelu_pytorch_tanh"}`,
			func(c *Config) bool { return c.HiddenAct == "gelu_pytorch_tanh" }},
		{"sliding raw", `{"model_type":"qwen2",` + base + `,"use_sliding_window":false,"sliding_window":4096,"max_window_layers":3}`,
			func(c *Config) bool { return c.SlidingWindow == 4096 && !c.UseSlidingWindow && c.MaxWindowLayers == 3 }},
		{"sliding null", `{"model_type":"mistral",` + base + `,"sliding_window":null}`,
			func(c *Config) bool { return c.SlidingWindow == 0 && !c.Has("sliding_window") }},
		{"layer types", `{"model_type":"gemma3_text",` + base + `,"layer_types":["sliding_attention","full_attention"],"_sliding_window_pattern":3}`,
			func(c *Config) bool {
				return reflect.DeepEqual(c.LayerTypes, []string{SlidingAttention, FullAttention}) && c.SlidingWindowPattern == 3
			}},
		{"gemma scalars", `{"model_type":"gemma2",` + base + `,"query_pre_attn_scalar":256,"attn_logit_softcapping":50.0,"final_logit_softcapping":null,"rope_local_base_freq":10000}`,
			func(c *Config) bool {
				return c.QueryPreAttnScalar == 256 && c.AttnLogitSoftcapping == 50 && c.FinalLogitSoftcapping == 0 && c.RopeLocalBaseFreq == 1e4
			}},
		{"mixtral experts", `{"model_type":"mixtral",` + base + `,"num_local_experts":8,"num_experts_per_tok":2}`,
			func(c *Config) bool { return c.NumExperts == 8 && c.NumExpertsPerTok == 2 }},
		{"qwen moe", `{"model_type":"qwen2_moe",` + base + `,"num_experts":60,"num_experts_per_tok":4,"moe_intermediate_size":1408,
			"shared_expert_intermediate_size":5632,"norm_topk_prob":true,"decoder_sparse_step":2,"mlp_only_layers":[0,3],"qkv_bias":false,"attention_bias":true}`,
			func(c *Config) bool {
				return c.NumExperts == 60 && c.NumExpertsPerTok == 4 && c.MoEIntermediateSize == 1408 &&
					c.SharedExpertIntermediateSize == 5632 && c.NormTopKProb && c.DecoderSparseStep == 2 &&
					reflect.DeepEqual(c.MLPOnlyLayers, []int{0, 3}) && !c.AttentionBias
			}},
		{"partial rotary", `{"model_type":"phi3",` + base + `,"partial_rotary_factor":0.75}`,
			func(c *Config) bool { return c.PartialRotaryFactor == 0.75 }},
		{"head_dim independent of hidden", `{"model_type":"qwen3",` + strings.Replace(base, `64`, `66`, 1) + `,"head_dim":32}`,
			func(c *Config) bool { return c.HeadDim == 32 && c.HiddenSize == 66 }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(tc.json))
			if err != nil {
				t.Fatal(err)
			}
			if !tc.check(c) {
				t.Errorf("unexpected config %+v (rope %+v)", c, c.RopeScaling)
			}
		})
	}
}

func TestMalformed(t *testing.T) {
	base := `"hidden_size":64,"intermediate_size":128,"num_hidden_layers":2,"num_attention_heads":4,"vocab_size":100`
	tests := []struct {
		name, json string
		sentinel   error
		words      []string // each must appear in the message
	}{
		{"bad json", `{"model_type":"llama",`, ErrInvalid, []string{"JSON"}},
		{"not object", `[1,2]`, ErrInvalid, []string{"JSON object"}},
		{"trailing", `{"model_type":"llama",` + base + `} {}`, ErrInvalid, []string{"trailing"}},
		{"missing model_type", `{` + base + `}`, ErrInvalid, []string{"model_type", "missing"}},
		{"missing hidden_size", `{"model_type":"llama","intermediate_size":128,"num_hidden_layers":2,"num_attention_heads":4,"vocab_size":100}`,
			ErrInvalid, []string{"hidden_size", "missing"}},
		{"hidden_size string", `{"model_type":"llama",` + strings.Replace(base, `64`, `"64"`, 1) + `}`,
			ErrInvalid, []string{"hidden_size", "integer"}},
		{"hidden_size fraction", `{"model_type":"llama",` + strings.Replace(base, `64`, `64.5`, 1) + `}`,
			ErrInvalid, []string{"hidden_size", "integer"}},
		{"zero layers", `{"model_type":"llama",` + strings.Replace(base, `"num_hidden_layers":2`, `"num_hidden_layers":0`, 1) + `}`,
			ErrInvalid, []string{"num_hidden_layers", "positive"}},
		{"negative vocab", `{"model_type":"llama",` + strings.Replace(base, `"vocab_size":100`, `"vocab_size":-5`, 1) + `}`,
			ErrInvalid, []string{"vocab_size", "positive"}},
		{"heads not divisible", `{"model_type":"llama",` + base + `,"num_key_value_heads":3}`,
			ErrInvalid, []string{"num_attention_heads", "num_key_value_heads", "divisible"}},
		{"huge", `{"model_type":"llama",` + strings.Replace(base, `64`, `1e12`, 1) + `}`,
			ErrInvalid, []string{"hidden_size", "implausibly"}},
		{"rope not object", `{"model_type":"llama",` + base + `,"rope_scaling":"linear"}`,
			ErrInvalid, []string{"rope_scaling", "object"}},
		{"rope no type", `{"model_type":"llama",` + base + `,"rope_scaling":{"factor":2}}`,
			ErrInvalid, []string{"rope_scaling", "rope_type"}},
		{"rope dynamic", `{"model_type":"llama",` + base + `,"rope_scaling":{"type":"dynamic","factor":2}}`,
			ErrUnsupported, []string{"rope_scaling", "dynamic"}},
		{"rope yarn", `{"model_type":"qwen2",` + base + `,"rope_scaling":{"rope_type":"yarn","factor":4}}`,
			ErrUnsupported, []string{"rope_scaling", "yarn"}},
		{"rope linear no factor", `{"model_type":"llama",` + base + `,"rope_scaling":{"type":"linear"}}`,
			ErrInvalid, []string{"rope_scaling.factor", "missing"}},
		{"rope linear bad factor", `{"model_type":"llama",` + base + `,"rope_scaling":{"type":"linear","factor":-1}}`,
			ErrInvalid, []string{"rope_scaling.factor", "positive"}},
		{"rope llama3 missing", `{"model_type":"llama",` + base + `,"rope_scaling":{"rope_type":"llama3","factor":8,"low_freq_factor":1,"high_freq_factor":4}}`,
			ErrInvalid, []string{"rope_scaling.original_max_position_embeddings", "missing"}},
		{"rope llama3 order", `{"model_type":"llama",` + base + `,"rope_scaling":{"rope_type":"llama3","factor":8,"low_freq_factor":4,"high_freq_factor":1,"original_max_position_embeddings":8192}}`,
			ErrInvalid, []string{"rope_scaling", "high_freq_factor"}},
		{"bad dtype", `{"model_type":"llama",` + base + `,"torch_dtype":"int8"}`, ErrUnsupported, []string{"torch_dtype", "int8"}},
		{"bad tie", `{"model_type":"llama",` + base + `,"tie_word_embeddings":"yes"}`, ErrInvalid, []string{"tie_word_embeddings"}},
		{"bad eos", `{"model_type":"llama",` + base + `,"eos_token_id":[2,"x"]}`, ErrInvalid, []string{"eos_token_id[1]"}},
		{"bad eps", `{"model_type":"llama",` + base + `,"rms_norm_eps":0}`, ErrInvalid, []string{"rms_norm_eps", "positive"}},
		{"bad layer types", `{"model_type":"gemma2",` + base + `,"layer_types":"sliding"}`, ErrInvalid, []string{"layer_types"}},
		{"bad mlp_only_layers", `{"model_type":"qwen2_moe",` + base + `,"mlp_only_layers":[1,-2]}`, ErrInvalid, []string{"mlp_only_layers[1]"}},
		{"bad partial rotary", `{"model_type":"phi3",` + base + `,"partial_rotary_factor":1.5}`, ErrInvalid, []string{"partial_rotary_factor"}},
		{"bad softcap", `{"model_type":"gemma2",` + base + `,"attn_logit_softcapping":"x"}`, ErrInvalid, []string{"attn_logit_softcapping"}},
		{"bad architectures", `{"model_type":"llama",` + base + `,"architectures":"LlamaForCausalLM"}`, ErrInvalid, []string{"architectures"}},
	}
	dir := t.TempDir()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_")+".json")
			if err := os.WriteFile(path, []byte(tc.json), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := Load(path)
			if err == nil {
				t.Fatal("no error")
			}
			if !errors.Is(err, tc.sentinel) {
				t.Errorf("error %q does not wrap %v", err, tc.sentinel)
			}
			msg := err.Error()
			if !strings.Contains(msg, path) {
				t.Errorf("error %q does not name the file", msg)
			}
			for _, w := range tc.words {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not mention %q", msg, w)
				}
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.json")
	_, err := Load(path)
	if err == nil || !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), path) {
		t.Errorf("got %v", err)
	}
}
