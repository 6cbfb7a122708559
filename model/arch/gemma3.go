package arch

import "github.com/wanda-go/wanda/format/config"

// Gemma 3 text (Gemma3ForCausalLM): Gemma 2 plus q_norm/k_norm ((1+w) over head_dim),
// layer l sliding iff (l+1) % sliding_window_pattern != 0 (default 6) unless
// layer_types lists them, sliding layers rotating with rope_local_base_freq unscaled and
// global ones with rope_theta and rope_scaling; no soft-capping by default.
func init() {
	Register(&Arch{
		Type: config.TypeGemma3Text,
		Defaults: Defaults{MaxPositionEmbeddings: 131072, RMSNormEps: 1e-6, RopeTheta: 1e6, HeadDim: 256,
			HiddenAct: ActGELUTanh, TieWordEmbeddings: true, SlidingWindow: 4096, SlidingWindowPattern: 6,
			QueryPreAttnScalar: 256, RopeLocalBaseFreq: 10000},
		Configure: func(c *config.Config) error {
			p := c.SlidingWindowPattern
			SlidingLayers(c, func(l int) bool { return (l+1)%p != 0 })
			return noOBias(c)
		},
		Names:         llamaNames,
		Norm:          NormOnePlus,
		EmbedScale:    true,
		SandwichNorms: true,
		QKNorm:        true,
		LocalRope:     true,
	})
}
