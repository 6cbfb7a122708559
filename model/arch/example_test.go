package arch_test

import (
	"errors"
	"fmt"

	"github.com/wanda-go/wanda/format/config"
	"github.com/wanda-go/wanda/model/arch"
)

// Parse completes a config.json with its type's entry; Layer resolves a decoder layer.
func ExampleParse() {
	cfg, a, err := arch.Parse([]byte(`{"model_type":"gemma3_text","hidden_size":64,"intermediate_size":128,
		"num_hidden_layers":3,"num_attention_heads":4,"num_key_value_heads":2,"head_dim":32,"vocab_size":100,
		"sliding_window":16,"sliding_window_pattern":3,"query_pre_attn_scalar":48}`))
	if err != nil {
		panic(err)
	}
	for l := range cfg.NumLayers {
		L := a.Layer(cfg, l)
		fmt.Printf("layer %d: window %d, rope theta %g, %d linears, q_norm %q\n", l, L.Window, L.RopeTheta, len(L.Linears), L.QNorm)
	}
	fmt.Println(a.LoRATargets(cfg).Modules)
	_, _, err = arch.Parse([]byte(`{"model_type":"llama4"}`))
	fmt.Println(errors.Is(err, config.ErrUnsupportedArch))
	// Output:
	// layer 0: window 16, rope theta 10000, 7 linears, q_norm "model.layers.0.self_attn.q_norm.weight"
	// layer 1: window 16, rope theta 10000, 7 linears, q_norm "model.layers.1.self_attn.q_norm.weight"
	// layer 2: window 0, rope theta 1e+06, 7 linears, q_norm "model.layers.2.self_attn.q_norm.weight"
	// [q_proj k_proj v_proj o_proj gate_proj up_proj down_proj]
	// true
}
