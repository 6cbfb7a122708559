package arch

import (
	"slices"

	"github.com/wanda-go/wanda/format/config"
)

// Qwen2-MoE (Qwen2MoeForCausalLM): Qwen2's attention with q/k/v biases (qkv_bias,
// default true); layer l sparse unless listed in mlp_only_layers or (l+1) is not a
// multiple of decoder_sparse_step; router mlp.gate, experts mlp.experts.<e>.{gate,up,
// down}_proj, top-k renormalised iff norm_topk_prob, plus the shared expert
// mlp.shared_expert.* gated by sigmoid(mlp.shared_expert_gate). With use_sliding_window
// the odd-numbered (1-based) layers below max_window_layers slide (transformers 5's
// default layer_types).
func init() {
	n := qwenMoENames()
	n.SharedGate, n.SharedUp, n.SharedDown = "mlp.shared_expert.gate_proj", "mlp.shared_expert.up_proj", "mlp.shared_expert.down_proj"
	n.SharedExpertGate = "mlp.shared_expert_gate"
	Register(&Arch{
		Type: config.TypeQwen2MoE,
		Defaults: Defaults{MaxPositionEmbeddings: 32768, RMSNormEps: 1e-6, RopeTheta: 10000, SlidingWindow: 4096,
			MaxWindowLayers: 28, NumExperts: 60, NumExpertsPerTok: 4, MoEIntermediateSize: 1408,
			SharedExpertIntermediateSize: 5632, DecoderSparseStep: 1},
		Configure: func(c *config.Config) error {
			if !c.Has("qkv_bias") { // attention_bias does not apply to Qwen2-MoE
				c.AttentionBias = true
			}
			if !c.UseSlidingWindow {
				c.SlidingWindow = 0
			}
			SlidingLayers(c, func(l int) bool { return (l+1)%2 != 0 && l < c.MaxWindowLayers })
			return nil
		},
		Names:        n,
		Sparse:       qwenSparse,
		SharedExpert: true,
	})
}

func qwenMoENames() Names {
	n := llamaNames
	n.Router = "mlp.gate"
	n.Expert = "mlp.experts.%d"
	n.ExpertGate, n.ExpertUp, n.ExpertDown = "gate_proj", "up_proj", "down_proj"
	n.FusedExperts = fusedExperts
	return n
}

// qwenSparse is the Qwen MoE rule for which layers have experts.
func qwenSparse(c *config.Config, l int) bool {
	return c.NumExperts > 0 && !slices.Contains(c.MLPOnlyLayers, l) && (l+1)%c.DecoderSparseStep == 0
}
