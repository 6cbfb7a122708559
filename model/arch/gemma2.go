package arch

import "github.com/wanda-go/wanda/format/config"

// Gemma 2 (Gemma2ForCausalLM): (1+w) RMSNorms, embeddings × √hidden, GeGLU with the
// tanh approximation, sandwich norms around attention and MLP, attention scale
// query_pre_attn_scalar^-1/2, attention-logit and final-logit soft-capping, even layers
// sliding (layer_types may say otherwise), tied embeddings by default.
func init() {
	Register(&Arch{
		Type: config.TypeGemma2,
		Defaults: Defaults{MaxPositionEmbeddings: 8192, RMSNormEps: 1e-6, RopeTheta: 10000, HeadDim: 256,
			HiddenAct: ActGELUTanh, TieWordEmbeddings: true, SlidingWindow: 4096, QueryPreAttnScalar: 256,
			AttnLogitSoftcapping: 50, FinalLogitSoftcapping: 30},
		Configure: func(c *config.Config) error {
			SlidingLayers(c, func(l int) bool { return l%2 == 0 })
			return noOBias(c)
		},
		Names:         llamaNames,
		Norm:          NormOnePlus,
		EmbedScale:    true,
		SandwichNorms: true,
	})
}
