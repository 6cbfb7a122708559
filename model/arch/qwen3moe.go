package arch

import "github.com/wanda-go/wanda/format/config"

// Qwen3-MoE (Qwen3MoeForCausalLM): Qwen3's attention (q_norm/k_norm, no biases) and
// Qwen2-MoE's sparse layers without the shared expert; with use_sliding_window every
// layer slides.
func init() {
	Register(&Arch{
		Type: config.TypeQwen3MoE,
		Defaults: Defaults{MaxPositionEmbeddings: 32768, RMSNormEps: 1e-6, RopeTheta: 10000, SlidingWindow: 4096,
			NumExperts: 128, NumExpertsPerTok: 8, MoEIntermediateSize: 768, DecoderSparseStep: 1},
		Configure: func(c *config.Config) error {
			if !c.UseSlidingWindow {
				c.SlidingWindow = 0
			}
			SlidingLayers(c, func(int) bool { return true })
			return noOBias(c)
		},
		Names:  qwenMoENames(),
		QKNorm: true,
		Sparse: qwenSparse,
	})
}
