package arch

import "github.com/wanda-go/wanda/format/config"

// Qwen2 (Qwen2ForCausalLM): LLaMA with q/k/v biases (always); with use_sliding_window the
// layers from max_window_layers (default 28) on slide, unless layer_types says otherwise.
func init() {
	Register(&Arch{
		Type:     config.TypeQwen2,
		Defaults: Defaults{MaxPositionEmbeddings: 32768, RMSNormEps: 1e-6, RopeTheta: 10000, SlidingWindow: 4096, MaxWindowLayers: 28},
		Configure: func(c *config.Config) error {
			c.AttentionBias = true
			useWindowFrom(c, c.MaxWindowLayers)
			return nil
		},
		Names: llamaNames,
	})
}

// useWindowFrom is Qwen's rule: sliding_window counts only with use_sliding_window, and
// then the layers from first on slide (unless layer_types lists the layers).
func useWindowFrom(c *config.Config, first int) {
	if !c.UseSlidingWindow {
		c.SlidingWindow = 0
	}
	SlidingLayers(c, func(l int) bool { return l >= first })
}
