package arch

import "github.com/wanda-go/wanda/format/config"

// Phi-3 (Phi3ForCausalLM): fused qkv_proj (q rows, then k, then v) and gate_up_proj
// (gate rows, then up), each pruned as one tensor; out = down(up·silu(gate)); sliding
// window on every layer when sliding_window is set; partial_rotary_factor rotates the
// leading part of each head. longrope scaling is refused by config.
func init() {
	n := llamaNames
	n.Q, n.K, n.V, n.QKV = "", "", "", "self_attn.qkv_proj"
	n.Gate, n.Up, n.GateUp = "", "", "mlp.gate_up_proj"
	Register(&Arch{
		Type:     config.TypePhi3,
		Defaults: Defaults{MaxPositionEmbeddings: 4096, RMSNormEps: 1e-5, RopeTheta: 10000},
		Configure: func(c *config.Config) error {
			c.AttentionBias = false // Phi3Attention's projections have none
			SlidingLayers(c, func(int) bool { return true })
			return nil
		},
		Names: n,
	})
}
