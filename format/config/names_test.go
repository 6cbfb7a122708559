package config

import (
	"reflect"
	"testing"
)

func TestLayerTensorNames(t *testing.T) {
	want := map[Part]string{
		PartQ:            "model.layers.3.self_attn.q_proj.weight",
		PartK:            "model.layers.3.self_attn.k_proj.weight",
		PartV:            "model.layers.3.self_attn.v_proj.weight",
		PartO:            "model.layers.3.self_attn.o_proj.weight",
		PartGate:         "model.layers.3.mlp.gate_proj.weight",
		PartUp:           "model.layers.3.mlp.up_proj.weight",
		PartDown:         "model.layers.3.mlp.down_proj.weight",
		PartInputNorm:    "model.layers.3.input_layernorm.weight",
		PartPostAttnNorm: "model.layers.3.post_attention_layernorm.weight",
		PartQBias:        "model.layers.3.self_attn.q_proj.bias",
		PartKBias:        "model.layers.3.self_attn.k_proj.bias",
		PartVBias:        "model.layers.3.self_attn.v_proj.bias",
	}
	if len(want) != int(numParts) {
		t.Fatalf("table covers %d parts, have %d", len(want), numParts)
	}
	for p, name := range want {
		if got := LayerTensor(3, p); got != name {
			t.Errorf("LayerTensor(3, %v) = %q, want %q", p, got, name)
		}
		l, q, ok := ParseLayerTensor(name)
		if !ok || l != 3 || q != p {
			t.Errorf("ParseLayerTensor(%q) = %d, %v, %v", name, l, q, ok)
		}
	}
	for _, l := range []int{0, 9, 10, 127} {
		for p := Part(0); p < numParts; p++ {
			if gl, gp, ok := ParseLayerTensor(LayerTensor(l, p)); !ok || gl != l || gp != p {
				t.Errorf("round trip %d %v: %d %v %v", l, p, gl, gp, ok)
			}
		}
	}
	for _, bad := range []string{
		"", "model.embed_tokens.weight", "model.norm.weight", "lm_head.weight",
		"model.layers.03.self_attn.q_proj.weight", "model.layers.-1.self_attn.q_proj.weight",
		"model.layers..self_attn.q_proj.weight", "model.layers.1.self_attn.q_proj.weight.x",
		"model.layers.1.self_attn.q_proj", "model.layers.1.mlp.gate_proj.bias",
		"model.layers.1.self_attn.rotary_emb.inv_freq", "model.layers.1a.mlp.up_proj.weight",
		"model.layers.99999999999.mlp.up_proj.weight",
	} {
		if l, p, ok := ParseLayerTensor(bad); ok {
			t.Errorf("ParseLayerTensor(%q) accepted: %d %v", bad, l, p)
		}
	}
	if !reflect.DeepEqual(Linears, []Part{PartQ, PartK, PartV, PartO, PartGate, PartUp, PartDown}) {
		t.Error("Linears order")
	}
	for p := Part(0); p < numParts; p++ {
		if p.IsLinear() != (p <= PartDown) {
			t.Errorf("%v.IsLinear", p)
		}
	}
}

func TestShapesGQA(t *testing.T) {
	// hidden 64, 4 heads of 16, 2 KV heads, intermediate 128, qwen2 (biases).
	c, err := Parse([]byte(`{"model_type":"qwen2","hidden_size":64,"intermediate_size":128,"num_hidden_layers":2,
		"num_attention_heads":4,"num_key_value_heads":2,"head_dim":16,"vocab_size":100,"tie_word_embeddings":true,
		"attention_bias":true}`))
	if err != nil {
		t.Fatal(err)
	}
	want := map[Part][2]int{PartQ: {64, 64}, PartK: {32, 64}, PartV: {32, 64}, PartO: {64, 64},
		PartGate: {128, 64}, PartUp: {128, 64}, PartDown: {64, 128}}
	for p, w := range want {
		if o, i := c.LinearShape(p); o != w[0] || i != w[1] {
			t.Errorf("LinearShape(%v) = %d,%d want %v", p, o, i, w)
		}
	}
	specs := c.ExpectedTensors()
	// embed + 2 layers × (7 linears + 3 biases + 2 norms) + norm, no lm_head (tied).
	if len(specs) != 1+2*12+1 {
		t.Fatalf("%d specs", len(specs))
	}
	got := map[string][]int64{}
	for _, s := range specs {
		got[s.Name] = s.Shape
	}
	checks := map[string][]int64{
		"model.embed_tokens.weight":                      {100, 64},
		"model.layers.1.self_attn.k_proj.bias":           {32},
		"model.layers.1.self_attn.q_proj.bias":           {64},
		"model.layers.0.mlp.down_proj.weight":            {64, 128},
		"model.layers.0.post_attention_layernorm.weight": {64},
		"model.norm.weight":                              {64},
	}
	for name, shape := range checks {
		if !reflect.DeepEqual(got[name], shape) {
			t.Errorf("%s: %v want %v", name, got[name], shape)
		}
	}
	if _, ok := got["lm_head.weight"]; ok {
		t.Error("tied model expects lm_head")
	}
	// The order follows transformers' registration.
	wantOrder := []string{"model.embed_tokens.weight",
		"model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.q_proj.bias",
		"model.layers.0.self_attn.k_proj.weight", "model.layers.0.self_attn.k_proj.bias",
		"model.layers.0.self_attn.v_proj.weight", "model.layers.0.self_attn.v_proj.bias",
		"model.layers.0.self_attn.o_proj.weight", "model.layers.0.mlp.gate_proj.weight",
		"model.layers.0.mlp.up_proj.weight", "model.layers.0.mlp.down_proj.weight",
		"model.layers.0.input_layernorm.weight", "model.layers.0.post_attention_layernorm.weight"}
	for i, n := range wantOrder {
		if specs[i].Name != n {
			t.Errorf("specs[%d] = %s want %s", i, specs[i].Name, n)
		}
	}
}
