package model

import (
	"errors"
	"fmt"
	"sync"

	"github.com/wanda-go/wanda/format/config"
	"github.com/wanda-go/wanda/format/safetensors"
	"github.com/wanda-go/wanda/model/arch"
	"github.com/wanda-go/wanda/pipeline"
)

// Sentinel errors.
var (
	// ErrShape: a weight's shape differs from what the config implies. It is
	// pipeline.ErrShape, the stage contract's one shape sentinel.
	ErrShape = pipeline.ErrShape
	// ErrUnsupported: the model uses a feature this package does not implement.
	ErrUnsupported = errors.New("model: unsupported model feature")
	// ErrTokenRange: a token id outside [0, vocab_size).
	ErrTokenRange = errors.New("model: token id out of range")
)

// Statistics modes of mixture-of-experts layers (Options.MoEStats).
const (
	// MoEStatsAll: for the statistics every expert sees every token of the layer
	// input (llm-compressor's moe_calibrate_all_experts), while the layer's output
	// follows the router.
	MoEStatsAll = "all"
	// MoEStatsRouted: each expert's statistics come from the tokens routed to it only.
	MoEStatsRouted = "routed"
)

// Options configure a Model.
type Options struct {
	// MoEStats is MoEStatsAll (the default when empty) or MoEStatsRouted.
	MoEStats string
}

// Model is a decoder-only network of any architecture in the table (model/arch),
// computing from the tensors of a Source in their stored dtype. It implements
// pipeline.Model. A Model and its blocks are not safe for concurrent use: blocks share
// the model's scratch buffers, and one block computes at a time.
type Model struct {
	cfg  *config.Config
	arch *arch.Arch
	src  Source
	opt  Options

	mu     sync.Mutex
	layers map[int]*arch.Layer
	ropes  []*Rope

	scratch Scratch
}

var _ pipeline.Model = (*Model)(nil)

// New is the library's front door: the model of cfg (completed in place by its
// architecture's entry, arch.Complete) computing with the tensors of set.
// Unsupported architectures are refused with the list of supported ones
// (config.ErrUnsupportedArch).
func New(set *safetensors.Set, cfg *config.Config, opt Options) (*Model, error) {
	return NewFrom(SetSource(set), cfg, opt)
}

// NewFrom is New reading the tensors from any Source (e.g. transform's dense view of a
// packed directory).
func NewFrom(src Source, cfg *config.Config, opt Options) (*Model, error) {
	a, err := arch.Complete(cfg)
	if err != nil {
		return nil, err
	}
	switch opt.MoEStats {
	case "":
		opt.MoEStats = MoEStatsAll
	case MoEStatsAll, MoEStatsRouted:
	default:
		return nil, fmt.Errorf("%w: MoE statistics mode %q (want %q or %q)", ErrUnsupported, opt.MoEStats, MoEStatsAll, MoEStatsRouted)
	}
	return &Model{cfg: cfg, arch: a, src: src, opt: opt, layers: map[int]*arch.Layer{}}, nil
}

// Config is the completed configuration.
func (m *Model) Config() *config.Config { return m.cfg }

// Tensors is every tensor the model's checkpoint holds, from the architecture table
// (pipeline.TensorLister).
func (m *Model) Tensors() []config.TensorSpec { return m.arch.Tensors(m.cfg) }

// Arch is the model's entry in the architecture table.
func (m *Model) Arch() *arch.Arch { return m.arch }

// Weights serves the source's tensors in their stored dtype.
func (m *Model) Weights() pipeline.Weights { return sourceWeights{m.src} }

// LayerLayout is decoder layer l resolved by the architecture table.
func (m *Model) LayerLayout(l int) *arch.Layer {
	m.mu.Lock()
	defer m.mu.Unlock()
	if L, ok := m.layers[l]; ok {
		return L
	}
	L := m.arch.Layer(m.cfg, l)
	m.layers[l] = L
	return L
}

// Tap inputs of a layer: the four every layer has, then per expert.
const (
	tapAttn = iota
	tapO
	tapMLP
	tapDown
	numBaseTaps
)

// Layer is the layout of decoder layer l for the pipeline: its linears (Module = the
// PEFT module path; routers with Prune false) and the taps that see their inputs. The
// four base taps are "attn" (q, k, v), "o", "mlp" (gate, up, routers, shared expert) and
// "down". In a sparse layer with MoEStatsAll every expert's gate and up read "mlp" (one
// set of statistics, not one per expert) and expert e's down reads "experts.<e>.act";
// with MoEStatsRouted expert e's gate and up read "experts.<e>.in" (its routed rows
// only).
func (m *Model) Layer(l int) pipeline.LayerSpec {
	L := m.LayerLayout(l)
	spec := pipeline.LayerSpec{Index: l, Inputs: []string{"attn", "o", "mlp", "down"}}
	if L.MoE != nil {
		for e := range L.MoE.Experts {
			if m.opt.MoEStats == MoEStatsRouted {
				spec.Inputs = append(spec.Inputs, fmt.Sprintf("experts.%d.in", e))
			}
			spec.Inputs = append(spec.Inputs, fmt.Sprintf("experts.%d.act", e))
		}
	}
	for _, lin := range L.Linears {
		spec.Linears = append(spec.Linears, pipeline.LinearSpec{Name: lin.Name, Module: lin.Module,
			Rows: lin.Rows, Cols: lin.Cols, Input: m.tapOf(lin.In, lin.Expert), Expert: lin.Expert, Prune: !lin.Router})
	}
	return spec
}

// tapOf is the tap id of input in (of expert e for the expert inputs).
func (m *Model) tapOf(in arch.Input, e int) int {
	routed := m.opt.MoEStats == MoEStatsRouted
	switch in {
	case arch.InAttn:
		return tapAttn
	case arch.InO:
		return tapO
	case arch.InMLP:
		return tapMLP
	case arch.InDown:
		return tapDown
	case arch.InExpert:
		if routed {
			return numBaseTaps + 2*e
		}
		return tapMLP
	case arch.InExpertAct:
		if routed {
			return numBaseTaps + 2*e + 1
		}
		return numBaseTaps + e
	}
	panic(fmt.Sprintf("model: input %d", in))
}

// ReleaseBlock drops the mapped pages of layer l's tensors.
func (m *Model) ReleaseBlock(l int) {
	for _, t := range m.LayerLayout(l).Tensors {
		m.src.Release(t.Name)
	}
}

// ropeFor returns rope tables of spec covering seqlen positions (cached, grown when a
// longer sequence comes).
func (m *Model) ropeFor(spec RopeSpec, seqlen int) *Rope {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, r := range m.ropes {
		if r.Spec.same(spec) {
			if r.SeqLen < seqlen {
				r = NewRope(spec, seqlen)
				m.ropes[i] = r
			}
			return r
		}
	}
	r := NewRope(spec, seqlen)
	m.ropes = append(m.ropes, r)
	return r
}

// ScratchFloatsPerToken is the number of float32 values a forward pass's Scratch holds
// per token row for a completed cfg (the normalised input, q/k/v, the attention output
// and the MLP's or the experts' buffers), excluding h itself and the small per-worker
// attention tiles.
func ScratchFloatsPerToken(cfg *config.Config) int {
	qn, kvn := cfg.NumHeads*cfg.HeadDim, cfg.NumKVHeads*cfg.HeadDim
	mlp := 2 * cfg.IntermediateSize
	if cfg.NumExperts > 0 {
		mlp = max(mlp, moeFloatsPerToken(cfg))
	}
	return cfg.HiddenSize + qn + 2*kvn + qn + mlp
}
