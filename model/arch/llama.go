package arch

import "github.com/wanda-go/wanda/format/config"

// llamaNames are the module names of the LLaMA layout, which most types share.
var llamaNames = Names{
	Q: "self_attn.q_proj", K: "self_attn.k_proj", V: "self_attn.v_proj", O: "self_attn.o_proj",
	QNorm: "self_attn.q_norm", KNorm: "self_attn.k_norm",
	InputNorm: "input_layernorm", PostAttnNorm: "post_attention_layernorm",
	PreFFNorm: "pre_feedforward_layernorm", PostFFNorm: "post_feedforward_layernorm",
	Gate: "mlp.gate_proj", Up: "mlp.up_proj", Down: "mlp.down_proj",
}

// LLaMA (LlamaForCausalLM): transformers' modeling_llama. attention_bias would also
// give o_proj a bias, which is refused.
func init() {
	Register(&Arch{
		Type:     config.TypeLlama,
		Defaults: Defaults{MaxPositionEmbeddings: 2048, RMSNormEps: 1e-6, RopeTheta: 10000},
		Configure: func(c *config.Config) error {
			SlidingLayers(c, func(int) bool { return false })
			return noOBias(c)
		},
		Names: llamaNames,
	})
}
