package arch

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/wanda-go/wanda/format/config"
)

const base = `"hidden_size":64,"intermediate_size":128,"num_hidden_layers":4,"num_attention_heads":4,"vocab_size":100`

func parse(t *testing.T, js string) *config.Config {
	t.Helper()
	c, _, err := Parse([]byte(js))
	if err != nil {
		t.Fatalf("%s: %v", js, err)
	}
	return c
}

func TestSupportedAndRefused(t *testing.T) {
	want := []string{"gemma2", "gemma3_text", "llama", "mistral", "mixtral", "phi3", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe"}
	if got := Supported(); !slices.Equal(got, want) {
		t.Fatalf("Supported() = %v, want %v", got, want)
	}
	for _, typ := range []string{"deepseek_v3", "llama4", "gpt_neox", "gemma3"} {
		_, _, err := Parse([]byte(`{"model_type":"` + typ + `",` + base + `}`))
		if !errors.Is(err, config.ErrUnsupportedArch) {
			t.Fatalf("%s: error %v does not wrap ErrUnsupportedArch", typ, err)
		}
		for _, s := range append([]string{typ}, want...) {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("%s: error %q does not name %q", typ, err, s)
			}
		}
	}
}

func TestDefaultsPerType(t *testing.T) {
	c := parse(t, `{"model_type":"llama",`+base+`}`)
	if c.HeadDim != 16 || c.RopeTheta != 10000 || c.RMSNormEps != 1e-6 || c.MaxPositionEmbeddings != 2048 ||
		c.HiddenAct != ActSiLU || c.SlidingWindow != 0 || c.TieWordEmbeddings || len(c.LayerTypes) != 4 {
		t.Errorf("llama defaults: %+v", c)
	}
	c = parse(t, `{"model_type":"qwen2",`+base+`,"attention_bias":false}`)
	if !c.AttentionBias || c.MaxPositionEmbeddings != 32768 || c.SlidingWindow != 0 {
		t.Errorf("qwen2: %+v", c)
	}
	c = parse(t, `{"model_type":"mistral",`+base+`,"attention_bias":true,"sliding_window":4096}`)
	if c.AttentionBias || c.SlidingWindow != 4096 || c.LayerTypes[0] != config.SlidingAttention || c.MaxPositionEmbeddings != 131072 {
		t.Errorf("mistral: %+v", c)
	}
	c = parse(t, `{"model_type":"mistral",`+base+`,"sliding_window":null}`)
	if c.SlidingWindow != 0 || slices.Contains(c.LayerTypes, config.SlidingAttention) {
		t.Errorf("mistral null window: %+v", c)
	}
	c = parse(t, `{"model_type":"qwen2",`+base+`,"use_sliding_window":true,"sliding_window":70,"max_window_layers":2}`)
	if c.SlidingWindow != 70 || !slices.Equal(c.LayerTypes, []string{"full_attention", "full_attention", "sliding_attention", "sliding_attention"}) {
		t.Errorf("qwen2 window: %v %v", c.SlidingWindow, c.LayerTypes)
	}
	c = parse(t, `{"model_type":"qwen2",`+base+`,"use_sliding_window":false,"sliding_window":70,"layer_types":["sliding_attention","full_attention","full_attention","full_attention"]}`)
	if c.SlidingWindow != 0 || slices.Contains(c.LayerTypes, config.SlidingAttention) {
		t.Errorf("qwen2 layer types without use_sliding_window: %v %v", c.SlidingWindow, c.LayerTypes)
	}
	c = parse(t, `{"model_type":"qwen3",`+base+`}`)
	if c.HeadDim != 128 || c.AttentionBias {
		t.Errorf("qwen3: head_dim %d", c.HeadDim)
	}
	c = parse(t, `{"model_type":"gemma2",`+base+`}`)
	if c.HeadDim != 256 || !c.TieWordEmbeddings || c.HiddenAct != ActGELUTanh || c.QueryPreAttnScalar != 256 ||
		c.AttnLogitSoftcapping != 50 || c.FinalLogitSoftcapping != 30 || c.SlidingWindow != 4096 ||
		!slices.Equal(c.LayerTypes, []string{"sliding_attention", "full_attention", "sliding_attention", "full_attention"}) {
		t.Errorf("gemma2: %+v", c)
	}
	c = parse(t, `{"model_type":"gemma2",`+base+`,"attn_logit_softcapping":null,"final_logit_softcapping":null,"tie_word_embeddings":false}`)
	if c.AttnLogitSoftcapping != 0 || c.FinalLogitSoftcapping != 0 || c.TieWordEmbeddings {
		t.Errorf("gemma2 nulls: %+v", c)
	}
	c = parse(t, `{"model_type":"gemma3_text",`+strings.Replace(base, `"num_hidden_layers":4`, `"num_hidden_layers":7`, 1)+`}`)
	if c.SlidingWindowPattern != 6 || c.RopeLocalBaseFreq != 10000 || c.RopeTheta != 1e6 || c.AttnLogitSoftcapping != 0 ||
		!slices.Equal(c.LayerTypes, []string{"sliding_attention", "sliding_attention", "sliding_attention", "sliding_attention", "sliding_attention", "full_attention", "sliding_attention"}) {
		t.Errorf("gemma3: %+v %v", c, c.LayerTypes)
	}
	c = parse(t, `{"model_type":"mixtral",`+base+`}`)
	if c.NumExperts != 8 || c.NumExpertsPerTok != 2 || !c.NormTopKProb || c.MoEIntermediateSize != 128 || c.RMSNormEps != 1e-5 || c.RopeTheta != 1e6 {
		t.Errorf("mixtral: %+v", c)
	}
	c = parse(t, `{"model_type":"qwen2_moe",`+base+`}`)
	if c.NumExperts != 60 || c.NumExpertsPerTok != 4 || c.NormTopKProb || !c.AttentionBias || c.SharedExpertIntermediateSize != 5632 {
		t.Errorf("qwen2_moe: %+v", c)
	}
	c = parse(t, `{"model_type":"qwen2_moe",`+base+`,"qkv_bias":false}`)
	if c.AttentionBias {
		t.Error("qwen2_moe qkv_bias false ignored")
	}
	c = parse(t, `{"model_type":"qwen3_moe",`+base+`,"num_experts":4,"num_experts_per_tok":2}`)
	if c.NumExperts != 4 || c.MoEIntermediateSize != 768 || c.HeadDim != 16 {
		t.Errorf("qwen3_moe: %+v", c)
	}
	// Completing twice changes nothing.
	c2 := *c
	c2.LayerTypes = slices.Clone(c.LayerTypes)
	if _, err := Complete(&c2); err != nil || !reflect.DeepEqual(&c2, c) {
		t.Errorf("second Complete changed the config: %v", err)
	}
}

func TestRefusedFeatures(t *testing.T) {
	for _, tc := range []struct {
		name, json string
		sentinel   error
		words      []string
	}{
		{"mlp_bias", `{"model_type":"llama",` + base + `,"mlp_bias":true}`, config.ErrUnsupported, []string{"mlp_bias"}},
		{"gelu", `{"model_type":"llama",` + base + `,"hidden_act":"gelu"}`, config.ErrUnsupported, []string{"hidden_act", "gelu"}},
		{"llama o bias", `{"model_type":"llama",` + base + `,"attention_bias":true}`, config.ErrUnsupported, []string{"attention_bias"}},
		{"qwen3 o bias", `{"model_type":"qwen3",` + base + `,"attention_bias":true}`, config.ErrUnsupported, []string{"attention_bias"}},
		{"head_dim", `{"model_type":"llama",` + strings.Replace(base, `64`, `66`, 1) + `}`, config.ErrInvalid, []string{"head_dim", "divisible"}},
		{"odd rotary", `{"model_type":"phi3",` + base + `,"partial_rotary_factor":0.3125}`, config.ErrUnsupported, []string{"rotary"}},
		{"top-k", `{"model_type":"mixtral",` + base + `,"num_local_experts":2,"num_experts_per_tok":3}`, config.ErrInvalid, []string{"experts"}},
		{"layer types", `{"model_type":"gemma2",` + base + `,"layer_types":["sliding_attention","chunked_attention","full_attention","full_attention"]}`, config.ErrUnsupported, []string{"chunked_attention"}},
		{"layer types length", `{"model_type":"gemma2",` + base + `,"layer_types":["sliding_attention"]}`, config.ErrInvalid, []string{"layer_types"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := Parse([]byte(tc.json))
			if !errors.Is(err, tc.sentinel) {
				t.Fatalf("error %v does not wrap %v", err, tc.sentinel)
			}
			for _, w := range tc.words {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestLayerLayouts(t *testing.T) {
	c := parse(t, `{"model_type":"qwen2",`+base+`,"num_key_value_heads":2,"tie_word_embeddings":true}`)
	a, _ := Lookup("qwen2")
	L := a.Layer(c, 1)
	var names []string
	for _, s := range L.Tensors {
		names = append(names, strings.TrimPrefix(s.Name, "model.layers.1."))
	}
	want := []string{"self_attn.q_proj.weight", "self_attn.q_proj.bias", "self_attn.k_proj.weight", "self_attn.k_proj.bias",
		"self_attn.v_proj.weight", "self_attn.v_proj.bias", "self_attn.o_proj.weight", "mlp.gate_proj.weight",
		"mlp.up_proj.weight", "mlp.down_proj.weight", "input_layernorm.weight", "post_attention_layernorm.weight"}
	if !slices.Equal(names, want) {
		t.Errorf("qwen2 layer tensors %v", names)
	}
	// The LLaMA layout's tensor list is format/config's (so the generator's files do not change).
	if got, old := a.Tensors(c), c.ExpectedTensors(); !reflect.DeepEqual(got, old) {
		t.Errorf("Tensors differ from config.ExpectedTensors:\n%v\n%v", got, old)
	}
	ins := map[string]Input{}
	for _, lin := range L.Linears {
		ins[strings.TrimPrefix(lin.Name, "model.layers.1.")] = lin.In
		if lin.Router || lin.Expert != -1 || lin.Module+".weight" != lin.Name {
			t.Errorf("%+v", lin)
		}
	}
	if ins["self_attn.k_proj.weight"] != InAttn || ins["self_attn.o_proj.weight"] != InO || ins["mlp.up_proj.weight"] != InMLP || ins["mlp.down_proj.weight"] != InDown {
		t.Errorf("inputs %v", ins)
	}

	c = parse(t, `{"model_type":"qwen2_moe",`+base+`,"num_experts":3,"num_experts_per_tok":2,"moe_intermediate_size":8,
		"shared_expert_intermediate_size":24,"decoder_sparse_step":2,"mlp_only_layers":[3]}`)
	a, _ = Lookup("qwen2_moe")
	for l, sparse := range []bool{false, true, false, false} {
		if got := a.Layer(c, l).MoE != nil; got != sparse {
			t.Errorf("qwen2_moe layer %d sparse %v", l, got)
		}
	}
	L = a.Layer(c, 1)
	var routers, experts []string
	for _, lin := range L.Linears {
		short := strings.TrimPrefix(lin.Name, "model.layers.1.")
		switch {
		case lin.Router:
			routers = append(routers, short)
			if lin.In != InMLP {
				t.Errorf("router %s input %v", short, lin.In)
			}
		case lin.Expert >= 0:
			experts = append(experts, short)
			want := InExpert
			if strings.Contains(short, "down_proj") {
				want = InExpertAct
			}
			if lin.In != want || lin.Rows*lin.Cols != 8*64 {
				t.Errorf("%s: %+v", short, lin)
			}
		}
	}
	if !slices.Equal(routers, []string{"mlp.gate.weight", "mlp.shared_expert_gate.weight"}) {
		t.Errorf("routers %v", routers)
	}
	if len(experts) != 9 || experts[0] != "mlp.experts.0.gate_proj.weight" || experts[8] != "mlp.experts.2.down_proj.weight" {
		t.Errorf("experts %v", experts)
	}
	if L.MoE.Shared == nil || L.MoE.Shared.Inter != 24 || L.MoE.SharedGate != "model.layers.1.mlp.shared_expert_gate.weight" || L.MoE.TopK != 2 {
		t.Errorf("moe %+v", L.MoE)
	}
	if !a.Prunable(c, "model.layers.1.mlp.experts.2.up_proj.weight") || a.Prunable(c, "model.layers.1.mlp.gate.weight") ||
		a.Prunable(c, "model.layers.9.mlp.experts.2.up_proj.weight") || a.Prunable(c, "model.norm.weight") {
		t.Error("Prunable")
	}

	c = parse(t, `{"model_type":"phi3",`+base+`,"num_key_value_heads":2}`)
	a, _ = Lookup("phi3")
	L = a.Layer(c, 0)
	if len(L.Linears) != 4 || L.Linears[0].Name != "model.layers.0.self_attn.o_proj.weight" ||
		L.Linears[1].Name != "model.layers.0.self_attn.qkv_proj.weight" || L.Linears[1].Rows != 64+2*32 ||
		L.Linears[2].Name != "model.layers.0.mlp.gate_up_proj.weight" || L.Linears[2].Rows != 256 || L.QKV == "" || L.MLP.GateUp == "" {
		t.Errorf("phi3 linears %+v", L.Linears)
	}

	c = parse(t, `{"model_type":"gemma3_text",`+base+`,"head_dim":32,"query_pre_attn_scalar":48,"sliding_window":16,
		"_sliding_window_pattern":2,"rope_scaling":{"rope_type":"linear","factor":8}}`)
	a, _ = Lookup("gemma3_text")
	L0, L1 := a.Layer(c, 0), a.Layer(c, 1)
	if L0.Window != 16 || L0.RopeTheta != 10000 || L0.RopeScaling != nil || L1.Window != 0 || L1.RopeTheta != 1e6 ||
		L1.RopeScaling == nil || L0.QNorm == "" || L0.PreFFNorm == "" || L0.PostFFNorm == "" {
		t.Errorf("gemma3 layers %+v %+v", L0, L1)
	}
	if d := L0.AttnScale - 1/6.928203230275509; d > 1e-15 || d < -1e-15 {
		t.Errorf("scale %v", L0.AttnScale)
	}
}

// FuzzParse: Parse never panics, errors wrap a config sentinel, and a success gives a
// config every part of wanda can use.
func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"model_type":"llama","hidden_size":64,"intermediate_size":128,"num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"vocab_size":100}`))
	f.Add([]byte(`{"model_type":"qwen2_moe",` + base + `,"num_experts":3,"num_experts_per_tok":2,"moe_intermediate_size":8,"shared_expert_intermediate_size":24,"decoder_sparse_step":2,"mlp_only_layers":[3]}`))
	f.Add([]byte(`{"model_type":"gemma3_text",` + base + `,"head_dim":32,"sliding_window":16,"_sliding_window_pattern":2}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, a, err := Parse(data)
		if err != nil {
			if !errors.Is(err, config.ErrInvalid) && !errors.Is(err, config.ErrUnsupported) && !errors.Is(err, config.ErrUnsupportedArch) {
				t.Fatalf("error wraps no sentinel: %v", err)
			}
			return
		}
		if c.HeadDim <= 0 || c.MaxPositionEmbeddings <= 0 || !(c.RMSNormEps > 0) || !(c.RopeTheta > 0) || c.MLPBias ||
			len(c.LayerTypes) != c.NumLayers {
			t.Fatalf("incomplete config %+v", c)
		}
		if c.NumLayers <= 8 && c.NumExperts <= 64 {
			for _, s := range a.Tensors(c) {
				for _, d := range s.Shape {
					if d <= 0 {
						t.Fatalf("%s shape %v", s.Name, s.Shape)
					}
				}
			}
		}
	})
}

func TestLoRATargets(t *testing.T) {
	llama := []string{"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
	fused := []string{"mlp.experts.gate_up_proj", "mlp.experts.down_proj"}
	for _, tc := range []struct {
		json          string
		modules, pars []string
	}{
		{`{"model_type":"llama",` + base + `}`, llama, nil},
		{`{"model_type":"gemma3_text",` + base + `}`, llama, nil},
		{`{"model_type":"phi3",` + base + `}`, []string{"o_proj", "qkv_proj", "gate_up_proj", "down_proj"}, nil},
		{`{"model_type":"mixtral",` + base + `}`, llama[:4], fused},
		{`{"model_type":"qwen3_moe",` + base + `}`, llama[:4], fused},
		// The shared expert's linears, and the dense layers' of mlp_only_layers.
		{`{"model_type":"qwen2_moe",` + base + `}`, llama, fused},
		{`{"model_type":"qwen3_moe",` + base + `,"mlp_only_layers":[0]}`, llama, fused},
	} {
		c, a, err := Parse([]byte(tc.json))
		if err != nil {
			t.Fatal(err)
		}
		got := a.LoRATargets(c)
		if !slices.Equal(got.Modules, tc.modules) || !slices.Equal(got.Parameters, tc.pars) {
			t.Errorf("%s: %+v, want %v %v", c.ModelType, got, tc.modules, tc.pars)
		}
	}
}
