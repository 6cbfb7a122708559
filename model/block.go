package model

import (
	"errors"
	"fmt"
	"slices"

	"github.com/wanda-go/wanda/format/config"
	"github.com/wanda-go/wanda/format/safetensors"
	"github.com/wanda-go/wanda/pipeline"
)

// Sentinel errors.
var (
	// ErrShape: a weight's shape differs from what the config implies.
	ErrShape = errors.New("shape mismatch")
	// ErrUnsupported: the model uses a feature this package does not implement.
	ErrUnsupported = errors.New("unsupported model feature")
	// ErrTokenRange: a token id outside [0, vocab_size).
	ErrTokenRange = errors.New("token id out of range")
)

// dims are the sizes a block needs, taken from the config.
type dims struct {
	hidden, inter      int
	heads, kvHeads, hd int
	eps                float32
	window             int // sliding-window span (0 = full causal attention)
}

func (d dims) qn() int   { return d.heads * d.hd }
func (d dims) kvn() int  { return d.kvHeads * d.hd }
func (d dims) qkvn() int { return d.qn() + 2*d.kvn() }

func dimsOf(cfg *config.Config, layer int) dims {
	d := dims{
		hidden: cfg.HiddenSize, inter: cfg.IntermediateSize,
		heads: cfg.NumHeads, kvHeads: cfg.NumKVHeads, hd: cfg.HeadDim,
		eps: float32(cfg.RMSNormEps),
	}
	d.window = slidingWindow(cfg, layer)
	return d
}

// slidingWindow is the attention span of layer of a completed config (arch.Complete):
// cfg.SlidingWindow for the layers LayerTypes marks sliding, 0 for the others.
func slidingWindow(cfg *config.Config, layer int) int {
	if layer < len(cfg.LayerTypes) && cfg.LayerTypes[layer] == config.SlidingAttention {
		return cfg.SlidingWindow
	}
	return 0
}

// Block is one decoder layer's weights in float32. The q, k and v weights are
// stored back to back in one [(q+2kv), hidden] matrix and gate and up in one
// [2·intermediate, hidden] matrix, so that each pair of projections sharing an
// input is a single GEMM; Linear returns views into them.
type Block struct {
	Layer int
	d     dims

	wqkv     []float32 // [qn+2kvn, hidden]: q rows, then k rows, then v rows
	bqkv     []float32 // [qn+2kvn] or nil
	wo       []float32 // [hidden, qn]
	wgu      []float32 // [2·inter, hidden]: gate rows, then up rows
	wd       []float32 // [hidden, inter]
	inNorm   []float32 // [hidden]
	postNorm []float32 // [hidden]
}

// Getter returns a tensor widened to float32 with its shape.
type Getter func(name string) ([]float32, []int64, error)

// LoadBlock loads layer's weights from set, widening them to float32, and
// releases the tensors' mapped pages afterwards.
func LoadBlock(set *safetensors.Set, cfg *config.Config, layer int) (*Block, error) {
	return LoadBlockIntoFrom(nil, SetSource(set), cfg, layer)
}

// LoadBlockInto is LoadBlock reusing the buffers of old (a block of the same
// model that is no longer needed; nil allocates), so that streaming the
// layers of a model through one buffer set does not allocate per layer. On
// success the returned block is old refilled (when old fits); old must not be
// used afterwards either way.
func LoadBlockInto(old *Block, set *safetensors.Set, cfg *config.Config, layer int) (*Block, error) {
	return LoadBlockIntoFrom(old, SetSource(set), cfg, layer)
}

// LoadBlockFrom is LoadBlock reading from any Source.
func LoadBlockFrom(src Source, cfg *config.Config, layer int) (*Block, error) {
	return LoadBlockIntoFrom(nil, src, cfg, layer)
}

// LoadBlockIntoFrom is LoadBlockInto reading from any Source.
func LoadBlockIntoFrom(old *Block, src Source, cfg *config.Config, layer int) (*Block, error) {
	var names []string
	defer func() {
		for _, n := range names {
			src.Release(n)
		}
	}()
	return newBlock(old, cfg, layer, func(name string, dst []float32) ([]int64, error) {
		dt, shape, err := lookup(src, name)
		if err != nil {
			return nil, err
		}
		names = append(names, name)
		if numelOf(shape) != int64(len(dst)) {
			return shape, nil // the shape check reports it
		}
		return shape, readFloat32(src, name, dt, dst)
	})
}

// NewBlock builds layer's block from tensors returned by get (called once per
// tensor name of the layer). The returned slices are copied into the block.
func NewBlock(cfg *config.Config, layer int, get Getter) (*Block, error) {
	return newBlock(nil, cfg, layer, func(name string, dst []float32) ([]int64, error) {
		v, shape, err := get(name)
		if err != nil {
			return nil, err
		}
		if len(v) != len(dst) {
			n := int64(1)
			for _, d := range shape {
				n *= d
			}
			if n == int64(len(dst)) {
				return nil, fmt.Errorf("tensor %q: %d values for shape %v: %w", name, len(v), shape, ErrShape)
			}
			return shape, nil // a wrong shape, which the caller reports
		}
		copy(dst, v)
		return shape, nil
	})
}

// fill reads tensor name into dst (len(dst) values) and returns its shape.
type fill func(name string, dst []float32) ([]int64, error)

func reuse(buf []float32, n int) []float32 {
	if cap(buf) >= n {
		return buf[:n]
	}
	return make([]float32, n)
}

func newBlock(old *Block, cfg *config.Config, layer int, get fill) (*Block, error) {
	if cfg.MLPBias {
		return nil, fmt.Errorf("layer %d: mlp_bias: %w", layer, ErrUnsupported)
	}
	if cfg.AttentionBias && cfg.ModelType == config.TypeLlama {
		// transformers' llama then also gives o_proj a bias, which the name
		// table (format/config) has no part for.
		return nil, fmt.Errorf("layer %d: llama attention_bias (o_proj.bias): %w", layer, ErrUnsupported)
	}
	if cfg.HeadDim%2 != 0 {
		return nil, fmt.Errorf("layer %d: head_dim %d is odd: %w", layer, cfg.HeadDim, ErrUnsupported)
	}
	d := dimsOf(cfg, layer)
	if old == nil {
		old = &Block{}
	}
	b := old
	*b = Block{Layer: layer, d: d, wqkv: b.wqkv, bqkv: b.bqkv, wo: b.wo, wgu: b.wgu, wd: b.wd, inNorm: b.inNorm, postNorm: b.postNorm}
	H := d.hidden
	b.wqkv = reuse(b.wqkv, d.qkvn()*H)
	b.wgu = reuse(b.wgu, 2*d.inter*H)
	b.wo = reuse(b.wo, H*d.qn())
	b.wd = reuse(b.wd, H*d.inter)
	b.inNorm = reuse(b.inNorm, H)
	b.postNorm = reuse(b.postNorm, H)
	if cfg.AttentionBias {
		b.bqkv = reuse(b.bqkv, d.qkvn())
	} else {
		b.bqkv = nil
	}
	load := func(p config.Part, dst []float32) error {
		name := config.LayerTensor(layer, p)
		shape, err := get(name, dst)
		if err != nil {
			return fmt.Errorf("layer %d %s: %w", layer, p, err)
		}
		if want := cfg.PartShape(p); !slices.Equal(shape, want) {
			return fmt.Errorf("layer %d: tensor %q: shape %v, config implies %v: %w", layer, name, shape, want, ErrShape)
		}
		return nil
	}
	for _, p := range cfg.LayerParts() {
		var dst []float32
		switch p {
		case config.PartInputNorm:
			dst = b.inNorm
		case config.PartPostAttnNorm:
			dst = b.postNorm
		case config.PartQBias:
			dst = b.bqkv[:d.qn()]
		case config.PartKBias:
			dst = b.bqkv[d.qn() : d.qn()+d.kvn()]
		case config.PartVBias:
			dst = b.bqkv[d.qn()+d.kvn():]
		default:
			dst = b.Linear(p).Data
		}
		if err := load(p, dst); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// Linear returns linear part p (PartQ..PartDown) as a mutable [out, in] view
// aliasing the block's weights: writes change what Forward computes. It panics
// for other parts.
func (b *Block) Linear(p config.Part) pipeline.Matrix {
	d := b.d
	H := d.hidden
	switch p {
	case config.PartQ:
		return pipeline.Matrix{Rows: d.qn(), Cols: H, Data: b.wqkv[: d.qn()*H : d.qn()*H]}
	case config.PartK:
		lo, hi := d.qn()*H, (d.qn()+d.kvn())*H
		return pipeline.Matrix{Rows: d.kvn(), Cols: H, Data: b.wqkv[lo:hi:hi]}
	case config.PartV:
		lo, hi := (d.qn()+d.kvn())*H, d.qkvn()*H
		return pipeline.Matrix{Rows: d.kvn(), Cols: H, Data: b.wqkv[lo:hi:hi]}
	case config.PartO:
		return pipeline.Matrix{Rows: H, Cols: d.qn(), Data: b.wo}
	case config.PartGate:
		n := d.inter * H
		return pipeline.Matrix{Rows: d.inter, Cols: H, Data: b.wgu[:n:n]}
	case config.PartUp:
		n := d.inter * H
		return pipeline.Matrix{Rows: d.inter, Cols: H, Data: b.wgu[n : 2*n : 2*n]}
	case config.PartDown:
		return pipeline.Matrix{Rows: H, Cols: d.inter, Data: b.wd}
	}
	panic(fmt.Sprintf("forward: Linear(%v): not a linear part", p))
}

// Params is the number of float32 values the block holds.
func (b *Block) Params() int {
	return len(b.wqkv) + len(b.bqkv) + len(b.wo) + len(b.wgu) + len(b.wd) + len(b.inNorm) + len(b.postNorm)
}
