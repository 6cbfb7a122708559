package model

import (
	"fmt"
	"sync"

	"github.com/wanda-go/wanda/format/config"
	"github.com/wanda-go/wanda/format/dtype"
	"github.com/wanda-go/wanda/format/safetensors"
	"github.com/wanda-go/wanda/model/arch"
	"github.com/wanda-go/wanda/pipeline"
	"github.com/wanda-go/wanda/tensor"
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
// computing from the tensors of a Source. It implements pipeline.Model. A Model and
// its blocks are not safe for concurrent use: blocks share the model's scratch
// buffers, and one block computes at a time.
type Model struct {
	cfg  *config.Config
	arch *arch.Arch
	src  Source
	opt  Options

	mu     sync.Mutex
	layers map[int]*arch.Layer
	rope   *Rope

	scratch Scratch
	last    *Block // the previous block: its buffers are reused for the next one
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
	if a.Sparse != nil || a.QKNorm || a.SandwichNorms || a.Norm != arch.NormWeight || a.EmbedScale ||
		a.Names.QKV != "" || a.Names.GateUp != "" || cfg.HiddenAct != arch.ActSiLU || arch.RotaryDim(cfg) != cfg.HeadDim {
		return nil, fmt.Errorf("%s: %w: not computed yet", cfg.ModelType, ErrUnsupported)
	}
	return &Model{cfg: cfg, arch: a, src: src, opt: opt, layers: map[int]*arch.Layer{}}, nil
}

// Config is the completed configuration.
func (m *Model) Config() *config.Config { return m.cfg }

// Arch is the model's entry in the architecture table.
func (m *Model) Arch() *arch.Arch { return m.arch }

// layer is arch.Layer(l), cached.
func (m *Model) layer(l int) *arch.Layer {
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
// set of statistics, not one per expert) and expert e's down reads
// "experts.<e>.act"; with MoEStatsRouted expert e's gate and up read "experts.<e>.in"
// (its routed rows only).
func (m *Model) Layer(l int) pipeline.LayerSpec {
	L := m.layer(l)
	spec := pipeline.LayerSpec{Index: l, Inputs: []string{"attn", "o", "mlp", "down"}}
	routed := m.opt.MoEStats == MoEStatsRouted
	if L.MoE != nil {
		for e := range L.MoE.Experts {
			if routed {
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

// Embed writes the embeddings of ids into dst [len(ids), hidden].
func (m *Model) Embed(ids []int32, dst []float32) error {
	return EmbedFrom(m.src, m.cfg, ids, dst)
}

// Weights serves the source's tensors in their stored dtype.
func (m *Model) Weights() pipeline.Weights { return sourceWeights{m.src} }

// LoadBlock returns decoder layer l computing with the tensors of w.
func (m *Model) LoadBlock(l int, w pipeline.Weights) (pipeline.Block, error) {
	b, err := LoadBlockIntoFrom(m.last, weightsSource{src: m.src, w: w}, m.cfg, l)
	if err != nil {
		return nil, fmt.Errorf("load block: %w", err)
	}
	m.last = b
	m.mu.Lock()
	if m.rope == nil {
		m.rope = NewRope(m.cfg, 1)
	}
	m.mu.Unlock()
	return &modelBlock{b: b, m: m}, nil
}

// ReleaseBlock drops the mapped pages of layer l's tensors.
func (m *Model) ReleaseBlock(l int) {
	for _, t := range m.layer(l).Tensors {
		m.src.Release(t.Name)
	}
}

// ropeFor returns rope tables covering seqlen positions.
func (m *Model) ropeFor(seqlen int) *Rope {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.rope == nil || m.rope.SeqLen < seqlen {
		m.rope = NewRope(m.cfg, seqlen)
	}
	return m.rope
}

type modelBlock struct {
	b *Block
	m *Model
}

func tapOf(tap pipeline.Tap) Tap {
	if tap == nil {
		return nil
	}
	return func(p config.Part, x []float32, rows, cols int) {
		tap(map[config.Part]int{config.PartQ: tapAttn, config.PartO: tapO, config.PartGate: tapMLP, config.PartDown: tapDown}[p], x, rows, cols)
	}
}

func (b *modelBlock) Forward(h []float32, nseq, seqlen int, tap pipeline.Tap) {
	b.b.Forward(h, nseq, seqlen, b.m.ropeFor(seqlen), tapOf(tap), &b.m.scratch)
}

func (b *modelBlock) ForwardStats(h []float32, nseq, seqlen int, tap pipeline.Tap) {
	b.b.ForwardStats(h, nseq, seqlen, b.m.ropeFor(seqlen), tapOf(tap), &b.m.scratch)
}

// sourceWeights serves a Source as pipeline.Weights.
type sourceWeights struct{ src Source }

func (w sourceWeights) Mat(name string) (tensor.Mat, error) {
	dt, shape, err := lookup(w.src, name)
	if err != nil {
		return tensor.Mat{}, err
	}
	b, err := w.src.Bytes(name)
	if err != nil {
		return tensor.Mat{}, err
	}
	return pipeline.TensorMat(name, dt, shape, b)
}

// weightsSource reads a block's tensors from pipeline Weights (shapes and dtypes, which
// pruning does not change, from the model's source).
type weightsSource struct {
	src Source
	w   pipeline.Weights
}

func (s weightsSource) DType(name string) (dtype.DType, bool) { return s.src.DType(name) }
func (s weightsSource) Shape(name string) ([]int64, bool)     { return s.src.Shape(name) }
func (s weightsSource) Release(name string)                   {}
func (s weightsSource) Bytes(name string) ([]byte, error) {
	m, err := s.w.Mat(name)
	if err != nil {
		return nil, err
	}
	return m.Raw, nil
}
