package arch

import "github.com/wanda-go/wanda/format/config"

// Qwen3 (Qwen3ForCausalLM): Qwen2's layout without biases (attention_bias would bias
// o_proj too: refused), RMSNorm q_norm/k_norm over head_dim before the rotary
// embedding, head_dim 128 when the file omits it (independent of hidden/heads).
func init() {
	Register(&Arch{
		Type: config.TypeQwen3,
		Defaults: Defaults{MaxPositionEmbeddings: 32768, RMSNormEps: 1e-6, RopeTheta: 10000, HeadDim: 128,
			SlidingWindow: 4096, MaxWindowLayers: 28},
		Configure: func(c *config.Config) error {
			useWindowFrom(c, c.MaxWindowLayers)
			return noOBias(c)
		},
		Names:  llamaNames,
		QKNorm: true,
	})
}
