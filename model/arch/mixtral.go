package arch

import "github.com/wanda-go/wanda/format/config"

// Mixtral (MixtralForCausalLM): Mistral's attention; every layer sparse, router
// block_sparse_moe.gate, experts block_sparse_moe.experts.<e>.{w1,w3,w2} (gate, up,
// down), softmax top-k always renormalised.
func init() {
	n := llamaNames
	n.Gate, n.Up, n.Down = "", "", ""
	n.Router = "block_sparse_moe.gate"
	n.Expert = "block_sparse_moe.experts.%d"
	n.ExpertGate, n.ExpertUp, n.ExpertDown = "w1", "w3", "w2"
	n.FusedExperts = fusedExperts // transformers 5 renames block_sparse_moe to mlp
	Register(&Arch{
		Type: config.TypeMixtral,
		Defaults: Defaults{MaxPositionEmbeddings: 4096 * 32, RMSNormEps: 1e-5, RopeTheta: 1e6,
			NumExperts: 8, NumExpertsPerTok: 2, DecoderSparseStep: 1},
		Configure: func(c *config.Config) error {
			c.AttentionBias = false
			c.NormTopKProb = true
			if c.MoEIntermediateSize == 0 {
				c.MoEIntermediateSize = c.IntermediateSize // an expert is intermediate_size wide
			}
			SlidingLayers(c, func(int) bool { return true })
			return nil
		},
		Names:  n,
		Sparse: func(*config.Config, int) bool { return true },
	})
}
