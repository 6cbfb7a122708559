package arch

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/wanda-go/wanda/format/config"
	"github.com/wanda-go/wanda/format/peft"
)

// Input says which activation a linear reads.
type Input int

const (
	// InAttn is the attention input (the input norm's output): q, k, v or qkv.
	InAttn Input = iota
	// InO is the attention output: o_proj.
	InO
	// InMLP is the MLP input (the post-attention or pre-feedforward norm's output): a
	// dense MLP's gate and up, routers, the shared expert's gate and up.
	InMLP
	// InDown is act(gate)·up of the dense MLP or of the shared expert: down_proj.
	InDown
	// InExpert is the rows of InMLP routed to expert Linear.Expert: its gate and up.
	InExpert
	// InExpertAct is act(gate)·up of expert Linear.Expert: its down projection.
	InExpertAct
)

// Linear is one linear layer (an nn.Linear weight [Rows, Cols] = [out, in]).
type Linear struct {
	Name   string // tensor, e.g. "model.layers.0.mlp.experts.3.up_proj.weight"
	Module string // its module path (the PEFT module name), Name without ".weight"
	Rows   int
	Cols   int
	In     Input
	Expert int  // the expert it belongs to, -1 if none
	Router bool // a router or shared-expert gate: never pruned
}

// MLP is a gated MLP's tensors: down(act(gate(x))·up(x)).
type MLP struct {
	Gate, Up string // tensor names; empty when GateUp is fused
	GateUp   string // fused: gate rows then up rows
	Down     string
	Inter    int // intermediate width
}

// MoE is a sparse layer's experts: softmax over Router's logits (float32), the top
// TopK experts per token, renormalised when NormTopK; the layer's output is the sum
// over the chosen experts, in expert order, of weight·expert(x), plus, with a shared
// expert, sigmoid(SharedGate·x)·Shared(x).
type MoE struct {
	Router     string
	Experts    []MLP
	TopK       int
	NormTopK   bool
	Shared     *MLP   // nil when none
	SharedGate string // the shared expert's gate [1, hidden]
}

// Layer is decoder layer Index resolved for computing and pruning.
type Layer struct {
	Index int
	// Window is the sliding-window span (query i sees keys j with i-Window < j ≤ i);
	// 0 for full causal attention.
	Window int
	// Rope: base frequency, scaling (nil for none) and the rotated dimensions.
	RopeTheta   float64
	RopeScaling *config.RopeScaling
	RotaryDim   int
	// AttnScale multiplies q·k; AttnSoftcap (0: none) caps the scores to
	// cap·tanh(s/cap) before the mask.
	AttnScale   float64
	AttnSoftcap float64

	// Tensor names; empty when the layer has no such tensor.
	InputNorm, PostAttnNorm, PreFFNorm, PostFFNorm string
	QNorm, KNorm                                   string
	Q, K, V, QKV, O                                string
	QBias, KBias, VBias                            string

	MLP *MLP // the dense MLP, nil in a sparse layer
	MoE *MoE // the experts, nil in a dense layer

	// Linears in module order (the order transformers registers them, which is the
	// reference's pruning order).
	Linears []Linear
	// Tensors is every tensor of the layer with its shape, in module order.
	Tensors []config.TensorSpec
}

// Layer resolves decoder layer l of a completed config c.
func (a *Arch) Layer(c *config.Config, l int) *Layer {
	if l < 0 || l >= c.NumLayers {
		panic(fmt.Sprintf("arch: Layer(%d) of %d layers", l, c.NumLayers))
	}
	n := a.Names
	pre := "model.layers." + strconv.Itoa(l) + "."
	H := int64(c.HiddenSize)
	qn, kvn := int64(c.NumHeads*c.HeadDim), int64(c.NumKVHeads*c.HeadDim)
	L := &Layer{Index: l, RotaryDim: RotaryDim(c), AttnScale: AttnScale(c), AttnSoftcap: c.AttnLogitSoftcapping,
		RopeTheta: c.RopeTheta, RopeScaling: c.RopeScaling}
	sliding := c.LayerTypes[l] == config.SlidingAttention
	if sliding {
		L.Window = c.SlidingWindow
		if a.LocalRope {
			L.RopeTheta, L.RopeScaling = c.RopeLocalBaseFreq, nil
		}
	}
	weight := func(module string, shape ...int64) string {
		if module == "" {
			return ""
		}
		name := pre + module + ".weight"
		L.Tensors = append(L.Tensors, config.TensorSpec{Name: name, Shape: shape})
		return name
	}
	bias := func(module string, rows int64) string {
		if module == "" || !c.AttentionBias {
			return ""
		}
		name := pre + module + ".bias"
		L.Tensors = append(L.Tensors, config.TensorSpec{Name: name, Shape: []int64{rows}})
		return name
	}
	linear := func(module string, rows, cols int64, in Input, expert int, router bool) string {
		name := weight(module, rows, cols)
		L.Linears = append(L.Linears, Linear{Name: name, Module: pre + module, Rows: int(rows), Cols: int(cols),
			In: in, Expert: expert, Router: router})
		return name
	}

	// Attention, in transformers' registration order.
	if n.QKV != "" {
		// Phi-3 registers o_proj before qkv_proj.
		L.O = linear(n.O, H, qn, InO, -1, false)
		L.QKV = linear(n.QKV, qn+2*kvn, H, InAttn, -1, false)
	} else {
		L.Q = linear(n.Q, qn, H, InAttn, -1, false)
		L.QBias = bias(n.Q, qn)
		L.K = linear(n.K, kvn, H, InAttn, -1, false)
		L.KBias = bias(n.K, kvn)
		L.V = linear(n.V, kvn, H, InAttn, -1, false)
		L.VBias = bias(n.V, kvn)
		L.O = linear(n.O, H, qn, InO, -1, false)
	}
	if a.QKNorm {
		L.QNorm = weight(n.QNorm, int64(c.HeadDim))
		L.KNorm = weight(n.KNorm, int64(c.HeadDim))
	}

	// MLP or experts.
	dense := func(gate, up, gateUp, down string, inter int64, in, act Input, expert int) *MLP {
		m := &MLP{Inter: int(inter)}
		if gateUp != "" {
			m.GateUp = linear(gateUp, 2*inter, H, in, expert, false)
		} else {
			m.Gate = linear(gate, inter, H, in, expert, false)
			m.Up = linear(up, inter, H, in, expert, false)
		}
		m.Down = linear(down, H, inter, act, expert, false)
		return m
	}
	if a.Sparse != nil && a.Sparse(c, l) {
		moe := &MoE{TopK: c.NumExpertsPerTok, NormTopK: c.NormTopKProb}
		moe.Router = linear(n.Router, int64(c.NumExperts), H, InMLP, -1, true)
		inter := int64(c.MoEIntermediateSize)
		for e := range c.NumExperts {
			ex := fmt.Sprintf(n.Expert, e) + "."
			moe.Experts = append(moe.Experts, *dense(ex+n.ExpertGate, ex+n.ExpertUp, "", ex+n.ExpertDown, inter, InExpert, InExpertAct, e))
		}
		if a.SharedExpert {
			moe.Shared = dense(n.SharedGate, n.SharedUp, "", n.SharedDown, int64(c.SharedExpertIntermediateSize), InMLP, InDown, -1)
			moe.SharedGate = linear(n.SharedExpertGate, 1, H, InMLP, -1, true)
		}
		L.MoE = moe
	} else {
		L.MLP = dense(n.Gate, n.Up, n.GateUp, n.Down, int64(c.IntermediateSize), InMLP, InDown, -1)
	}

	// Norms.
	L.InputNorm = weight(n.InputNorm, H)
	L.PostAttnNorm = weight(n.PostAttnNorm, H)
	if a.SandwichNorms {
		L.PreFFNorm = weight(n.PreFFNorm, H)
		L.PostFFNorm = weight(n.PostFFNorm, H)
	}
	return L
}

// Tensors is every tensor the model's weights must hold, with its shape: the
// embeddings, each layer's tensors, the final norm, and lm_head unless the embeddings
// are tied (a tied checkpoint may still carry lm_head.weight; callers should tolerate
// it).
func (a *Arch) Tensors(c *config.Config) []config.TensorSpec {
	vh := []int64{int64(c.VocabSize), int64(c.HiddenSize)}
	specs := []config.TensorSpec{{Name: EmbedTokens, Shape: vh}}
	for l := range c.NumLayers {
		specs = append(specs, a.Layer(c, l).Tensors...)
	}
	specs = append(specs, config.TensorSpec{Name: FinalNorm, Shape: []int64{int64(c.HiddenSize)}})
	if !c.TieWordEmbeddings {
		specs = append(specs, config.TensorSpec{Name: LMHead, Shape: slices.Clone(vh)})
	}
	return specs
}

// Prunable reports whether name is a prunable linear of a layer of c (every linear
// but the routers).
func (a *Arch) Prunable(c *config.Config, name string) bool {
	l, ok := layerOf(name)
	if !ok || l >= c.NumLayers {
		return false
	}
	for _, lin := range a.Layer(c, l).Linears {
		if lin.Name == name {
			return !lin.Router
		}
	}
	return false
}

// layerOf parses the layer number of "model.layers.<l>.…".
func layerOf(name string) (int, bool) {
	const p = "model.layers."
	if len(name) <= len(p) || name[:len(p)] != p {
		return 0, false
	}
	rest := name[len(p):]
	i := 0
	for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
		i++
	}
	if i == 0 || i > 9 || i >= len(rest) || rest[i] != '.' || (i > 1 && rest[0] == '0') {
		return 0, false
	}
	l, _ := strconv.Atoi(rest[:i])
	return l, true
}

// fusedExperts are the names of the fused expert parameters of transformers 5's
// mixture-of-experts blocks (Mixtral, Qwen2-MoE, Qwen3-MoE): mlp.experts.gate_up_proj
// [experts, 2·inter, hidden] (gate rows then up rows) and mlp.experts.down_proj
// [experts, hidden, inter].
var fusedExperts = []string{"mlp.experts.gate_up_proj", "mlp.experts.down_proj"}

// LoRATargets are the PEFT LoRA targets of the model's prunable linears: target_modules
// the last component of every prunable linear's module outside the experts (q_proj,
// ..., qkv_proj, gate_up_proj, the shared expert's gate/up/down_proj, in layer order,
// each once); when the model has sparse layers, target_parameters the fused expert
// parameters (Names.FusedExperts), because transformers 5 holds a layer's experts as
// two 3-D parameters, not as per-expert nn.Linear modules a target_modules name could
// match. Routers are never targeted.
func (a *Arch) LoRATargets(c *config.Config) *peft.Targets {
	t := &peft.Targets{}
	seen := map[string]bool{}
	sparse := false
	for l := range c.NumLayers {
		L := a.Layer(c, l)
		sparse = sparse || L.MoE != nil
		for _, lin := range L.Linears {
			if lin.Router || lin.Expert >= 0 {
				continue
			}
			short := lin.Module[strings.LastIndexByte(lin.Module, '.')+1:]
			if !seen[short] {
				seen[short] = true
				t.Modules = append(t.Modules, short)
			}
		}
	}
	if sparse {
		t.Parameters = append(t.Parameters, a.Names.FusedExperts...)
	}
	return t
}
