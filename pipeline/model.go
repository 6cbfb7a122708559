package pipeline

import (
	"fmt"

	"github.com/wanda-go/wanda/format/config"
	"github.com/wanda-go/wanda/format/dtype"
	"github.com/wanda-go/wanda/format/safetensors"
	"github.com/wanda-go/wanda/tensor"
)

// The network contracts: what the runner needs of a model. The model package implements
// them for every supported architecture (model.New); a test can implement them with a toy.

// Tap receives the input of the linears that share one input (LinearSpec.Input == input)
// during a forward pass: x is [rows, cols] row-major and valid only during the call. The
// same input may arrive in several calls (chunks of rows, or an expert's routed rows).
type Tap func(input int, x []float32, rows, cols int)

// LinearSpec is one linear layer (an nn.Linear weight, [out, in]) of a decoder layer.
type LinearSpec struct {
	Name       string // tensor name, e.g. "model.layers.3.self_attn.q_proj.weight"
	Module     string // module path, e.g. "model.layers.3.self_attn.q_proj"
	Rows, Cols int    // [out, in]
	// Input is the tap that sees this linear's input: linears with the same Input share
	// their statistics (q, k and v; gate and up).
	Input int
	// Expert is the index of the mixture-of-experts expert this linear belongs to, -1 if none.
	Expert int
	// Prune is false for linears that are never pruned (routers).
	Prune bool
}

// LayerSpec describes decoder layer Index for the runner.
type LayerSpec struct {
	Index int
	// Linears in the order they are pruned (the reference's module order).
	Linears []LinearSpec
	// Inputs names the taps: Inputs[i] is tap i's name (e.g. "attn", "mlp", "experts.3.act").
	Inputs []string
}

// Weights gives tensors by name in their stored dtype (tensor.Mat; 1-D tensors are one
// row). The views stay valid until the run ends.
type Weights interface {
	Mat(name string) (tensor.Mat, error)
}

// Block is one decoder layer ready to compute.
type Block interface {
	// Forward runs the block in place on h [nseq·seqlen, hidden] (nseq independent
	// sequences of seqlen tokens); tap, when not nil, sees the input of every linear.
	Forward(h []float32, nseq, seqlen int, tap Tap)
	// ForwardStats computes only what tap needs (the dense pass of a pruning run, whose
	// output is thrown away): h is scratch afterwards.
	ForwardStats(h []float32, nseq, seqlen int, tap Tap)
}

// ExpertCounter is implemented by the blocks of mixture-of-experts layers: the calibration
// tokens the router sent to each expert (top-k choices) over the ForwardStats calls since
// the block was loaded.
type ExpertCounter interface {
	ExpertTokens() []int64
}

// TensorLister is implemented by models that know every tensor their checkpoint holds
// (model.Model, from the architecture table): Run then checks the whole checkpoint against
// config.json before it writes anything. A tied checkpoint may still carry lm_head.weight.
type TensorLister interface {
	Tensors() []config.TensorSpec
}

// Model gives the runner what it needs of the network: its layers' layout, embeddings, and
// blocks, one at a time.
type Model interface {
	Config() *config.Config
	// Layer is the layout of decoder layer l (0 ≤ l < Config().NumLayers).
	Layer(l int) LayerSpec
	// Embed writes the embeddings of ids into dst [len(ids), hidden].
	Embed(ids []int32, dst []float32) error
	// LoadBlock returns decoder layer l computing with the tensors of w (the source model's
	// for the dense pass; the pruned linears over the source's for the pruned pass).
	LoadBlock(l int, w Weights) (Block, error)
	// ReleaseBlock drops what layer l holds (its mapped pages) when it is done.
	ReleaseBlock(l int)
}

// SetWeights serves the tensors of a safetensors set as Weights.
func SetWeights(s *safetensors.Set) Weights { return setWeights{s} }

type setWeights struct{ s *safetensors.Set }

func (w setWeights) Mat(name string) (tensor.Mat, error) {
	t, err := w.s.Get(name)
	if err != nil {
		return tensor.Mat{}, err
	}
	return TensorMat(name, t.DType, t.Shape, t.Bytes())
}

// TensorMat views a 1-D or 2-D float tensor's bytes as a Mat (1-D: one row).
func TensorMat(name string, dt dtype.DType, shape []int64, raw []byte) (tensor.Mat, error) {
	m := tensor.Mat{DType: dt, Raw: raw}
	switch len(shape) {
	case 1:
		m.Rows, m.Cols = 1, int(shape[0])
	case 2:
		m.Rows, m.Cols = int(shape[0]), int(shape[1])
	default:
		return m, fmt.Errorf("tensor %q: shape %v: %w: want 1 or 2 dimensions", name, shape, ErrShape)
	}
	if err := m.Check(); err != nil {
		return m, fmt.Errorf("tensor %q: %w: %w", name, ErrShape, err)
	}
	return m, nil
}

// overlay serves replaced tensors over a base.
type overlay struct {
	base Weights
	over map[string]tensor.Mat
}

func (o *overlay) Mat(name string) (tensor.Mat, error) {
	if m, ok := o.over[name]; ok {
		return m, nil
	}
	return o.base.Mat(name)
}
