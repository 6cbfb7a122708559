package arch

import "github.com/wanda-go/wanda/format/config"

// Mistral (MistralForCausalLM): LLaMA with sliding-window attention on every layer when
// sliding_window is set (4096 when the key is absent, none when null); no biases.
func init() {
	Register(&Arch{
		Type:     config.TypeMistral,
		Defaults: Defaults{MaxPositionEmbeddings: 4096 * 32, RMSNormEps: 1e-6, RopeTheta: 10000, SlidingWindow: 4096},
		Configure: func(c *config.Config) error {
			c.AttentionBias = false
			SlidingLayers(c, func(int) bool { return true })
			return nil
		},
		Names: llamaNames,
	})
}
