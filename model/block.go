package model

import (
	"fmt"
	"math"

	"github.com/wanda-go/wanda/model/arch"
	"github.com/wanda-go/wanda/pipeline"
	"github.com/wanda-go/wanda/tensor"
)

// Block is one decoder layer ready to compute. Its linears are tensor.Mat views of the
// weights in their stored dtype (usually memory-mapped), never copies: every product
// is tensor.MatMulTMat, which widens a few rows at a time while it packs its panels.
// Only the norm weights and biases, which are small, are widened to float32.
type Block struct {
	m *Model
	L *arch.Layer

	hidden, heads, kvHeads, hd int
	eps                        float32

	attn     []tensor.Mat // q, k, v side by side, or the fused qkv
	bqkv     []float32    // [qn+2kvn] or nil
	o        tensor.Mat
	inNorm   []float32 // norm weights as applied: w, or 1+w for arch.NormOnePlus
	postAttn []float32
	preFF    []float32 // with sandwich norms
	postFF   []float32
	qNorm    []float32 // with q/k norms
	kNorm    []float32

	mlp *mlpWeights // the dense MLP, or nil
	moe *moeWeights // the experts, or nil

	sandwich bool // arch.SandwichNorms

	rope    RopeSpec
	scale   float32
	softcap float32
	window  int
	act     func(dst, g, u []float32)
}

var _ pipeline.Block = (*Block)(nil)

func (b *Block) qn() int   { return b.heads * b.hd }
func (b *Block) kvn() int  { return b.kvHeads * b.hd }
func (b *Block) qkvn() int { return b.qn() + 2*b.kvn() }

// mlpWeights is a gated MLP: down(act(gate·x)·(up·x)).
type mlpWeights struct {
	gu    []tensor.Mat // gate and up side by side, or the fused gate_up
	down  tensor.Mat
	inter int
}

// LoadBlock returns decoder layer l computing with the tensors of w (the source's for
// the dense pass, Model.Weights; the pruned linears over the source's for the pruned
// pass). Every tensor's shape is checked against the config; errors name the layer
// and the tensor.
func (m *Model) LoadBlock(l int, w pipeline.Weights) (pipeline.Block, error) {
	b, err := m.loadBlock(l, w)
	if err != nil {
		return nil, fmt.Errorf("layer %d: %w", l, err)
	}
	return b, nil
}

func (m *Model) loadBlock(l int, w pipeline.Weights) (*Block, error) {
	c, a := m.cfg, m.arch
	L := m.LayerLayout(l)
	b := &Block{m: m, L: L, hidden: c.HiddenSize, heads: c.NumHeads, kvHeads: c.NumKVHeads, hd: c.HeadDim,
		eps: float32(c.RMSNormEps), window: L.Window, scale: float32(L.AttnScale), softcap: float32(L.AttnSoftcap),
		rope: RopeSpec{Theta: L.RopeTheta, Scaling: L.RopeScaling, Dim: L.RotaryDim}, sandwich: a.SandwichNorms}
	switch c.HiddenAct {
	case arch.ActSiLU:
		b.act = siluMul
	case arch.ActGELUTanh:
		b.act = geluTanhMul
	default:
		return nil, fmt.Errorf("hidden_act %q: %w", c.HiddenAct, ErrUnsupported)
	}
	shapes := map[string][]int64{}
	for _, t := range L.Tensors {
		shapes[t.Name] = t.Shape
	}
	mat := func(name string) (tensor.Mat, error) {
		mt, err := w.Mat(name)
		if err != nil {
			return mt, err
		}
		want := shapes[name]
		if len(want) != 2 || mt.Rows != int(want[0]) || mt.Cols != int(want[1]) {
			return mt, fmt.Errorf("tensor %q: shape [%d %d], config implies %v: %w", name, mt.Rows, mt.Cols, want, ErrShape)
		}
		return mt, nil
	}
	vec := func(name string, onePlus bool) ([]float32, error) {
		if name == "" {
			return nil, nil
		}
		mt, err := w.Mat(name)
		if err != nil {
			return nil, err
		}
		want := shapes[name]
		if mt.Rows != 1 || len(want) != 1 || mt.Cols != int(want[0]) {
			return nil, fmt.Errorf("tensor %q: shape [%d %d], config implies %v: %w", name, mt.Rows, mt.Cols, want, ErrShape)
		}
		v := make([]float32, mt.Cols)
		mt.RowsF32(v, 0, 1)
		if onePlus {
			for i := range v {
				v[i] = 1 + v[i]
			}
		}
		return v, nil
	}
	mats := func(names ...string) ([]tensor.Mat, error) {
		var out []tensor.Mat
		for _, n := range names {
			if n == "" {
				continue
			}
			mt, err := mat(n)
			if err != nil {
				return nil, err
			}
			out = append(out, mt)
		}
		return out, nil
	}
	var err error
	onePlus := a.Norm == arch.NormOnePlus
	if b.attn, err = mats(L.Q, L.K, L.V, L.QKV); err != nil {
		return nil, err
	}
	if b.o, err = mat(L.O); err != nil {
		return nil, err
	}
	if L.QBias != "" {
		var parts [3][]float32
		for i, n := range []string{L.QBias, L.KBias, L.VBias} {
			if parts[i], err = vec(n, false); err != nil {
				return nil, err
			}
		}
		b.bqkv = append(append(parts[0], parts[1]...), parts[2]...)
	}
	for _, v := range []struct {
		dst  *[]float32
		name string
	}{{&b.inNorm, L.InputNorm}, {&b.postAttn, L.PostAttnNorm}, {&b.preFF, L.PreFFNorm}, {&b.postFF, L.PostFFNorm},
		{&b.qNorm, L.QNorm}, {&b.kNorm, L.KNorm}} {
		if *v.dst, err = vec(v.name, onePlus); err != nil {
			return nil, err
		}
	}
	loadMLP := func(d *arch.MLP) (*mlpWeights, error) {
		gu, err := mats(d.Gate, d.Up, d.GateUp)
		if err != nil {
			return nil, err
		}
		down, err := mat(d.Down)
		if err != nil {
			return nil, err
		}
		return &mlpWeights{gu: gu, down: down, inter: d.Inter}, nil
	}
	if L.MLP != nil {
		if b.mlp, err = loadMLP(L.MLP); err != nil {
			return nil, err
		}
	}
	if L.MoE != nil {
		if b.moe, err = m.loadMoE(L.MoE, mat, loadMLP); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// Forward runs the block in place on h [nseq·seqlen, hidden]: nseq independent
// sequences of seqlen tokens, positions 0..seqlen-1 in each. tap (may be nil) sees the
// input of every linear.
func (b *Block) Forward(h []float32, nseq, seqlen int, tap pipeline.Tap) {
	b.forward(h, nseq, seqlen, tap, false)
}

// ForwardStats is Forward for a pass whose only purpose is tap (the dense pass of a
// pruning run): it stops after tapping the input of the down projection(s), skipping
// those products and the last residual, so h holds scratch values afterwards.
func (b *Block) ForwardStats(h []float32, nseq, seqlen int, tap pipeline.Tap) {
	b.forward(h, nseq, seqlen, tap, true)
}

func (b *Block) forward(h []float32, nseq, seqlen int, tap pipeline.Tap, statsOnly bool) {
	H := b.hidden
	rows := nseq * seqlen
	if nseq < 0 || seqlen < 0 || len(h) < rows*H {
		panic(fmt.Sprintf("model: Forward: h has %d values, need %d×%d×%d", len(h), nseq, seqlen, H))
	}
	if rows == 0 {
		return
	}
	s := &b.m.scratch
	h = h[:rows*H]
	qn, kvn, qkvn := b.qn(), b.kvn(), b.qkvn()
	rope := b.m.ropeFor(b.rope, seqlen)

	// Attention.
	x := grow(&s.x, rows*H)
	rmsNorm(x, h, b.inNorm, rows, H, b.eps)
	if tap != nil {
		tap(tapAttn, x, rows, H)
	}
	qkv := grow(&s.qkv, rows*qkvn)
	tensor.MatMulTMat(qkv, qkvn, x, rows, H, b.attn...)
	tensor.ParallelFor(rows, 64, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			row := qkv[r*qkvn : (r+1)*qkvn]
			if b.bqkv != nil {
				for i, v := range b.bqkv {
					row[i] += v
				}
			}
			if b.qNorm != nil {
				tensor.RMSNorm(row[:qn], row[:qn], b.qNorm, b.heads, b.hd, b.eps)
				tensor.RMSNorm(row[qn:qn+kvn], row[qn:qn+kvn], b.kNorm, b.kvHeads, b.hd, b.eps)
			}
			pos := r % seqlen
			rope.Apply(row[:qn], b.heads, b.hd, pos)
			rope.Apply(row[qn:qn+kvn], b.kvHeads, b.hd, pos)
		}
	})
	attn := grow(&s.attn, rows*qn)
	b.attention(attn, qkv, nseq, seqlen, s)
	if tap != nil {
		tap(tapO, attn, rows, qn)
	}
	tensor.MatMulTMat(x, H, attn, rows, qn, b.o)
	if b.sandwich { // the attention output is normalised too
		rmsNorm(x, x, b.postAttn, rows, H, b.eps)
	}
	addInto(h, x)

	// MLP.
	mlpNorm := b.postAttn
	if b.sandwich {
		mlpNorm = b.preFF
	}
	rmsNorm(x, h, mlpNorm, rows, H, b.eps)
	if tap != nil {
		tap(tapMLP, x, rows, H)
	}
	var y []float32
	if b.moe != nil {
		y = b.moeForward(x, rows, tap, statsOnly)
	} else {
		y = b.mlpForward(b.mlp, x, rows, tap, tapDown, statsOnly, &s.gu)
	}
	if statsOnly {
		return
	}
	if b.sandwich {
		rmsNorm(y, y, b.postFF, rows, H, b.eps)
	}
	addInto(h, y)
}

// mlpForward computes the gated MLP d on x [rows, hidden], tapping act(gate)·up as
// input downTap, and returns its output [rows, hidden] in x's buffer (x is consumed),
// or nil with statsOnly. gu is the scratch for the gate|up products.
func (b *Block) mlpForward(d *mlpWeights, x []float32, rows int, tap pipeline.Tap, downTap int, statsOnly bool, gu *[]float32) []float32 {
	I := d.inter
	g := grow(gu, rows*2*I)
	tensor.MatMulTMat(g, 2*I, x, rows, b.hidden, d.gu...)
	act := b.activate(g, rows, I)
	if tap != nil {
		tap(downTap, act, rows, I)
	}
	if statsOnly {
		return nil
	}
	y := x[:rows*b.hidden]
	tensor.MatMulTMat(y, b.hidden, act, rows, I, d.down)
	return y
}

// activate turns gu [rows, 2I] (gate | up per row) into act(gate)·up, compacted in place
// to [rows, I], and returns it.
func (b *Block) activate(gu []float32, rows, I int) []float32 {
	tensor.ParallelFor(rows, 16, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			row := gu[r*2*I : (r+1)*2*I]
			b.act(row[:I], row[:I], row[I:])
		}
	})
	// Row r moves from offset 2rI to rI, below every row not yet moved.
	for r := 1; r < rows; r++ {
		copy(gu[r*I:(r+1)*I], gu[2*r*I:2*r*I+I])
	}
	return gu[:rows*I]
}

// rmsNorm is tensor.RMSNorm split over rows on several goroutines (dst may alias x).
func rmsNorm(dst, x, w []float32, rows, dim int, eps float32) {
	tensor.ParallelFor(rows, 256, func(lo, hi int) {
		tensor.RMSNorm(dst[lo*dim:hi*dim], x[lo*dim:hi*dim], w, hi-lo, dim, eps)
	})
}

// addInto computes h += x.
func addInto(h, x []float32) {
	x = x[:len(h)]
	tensor.ParallelFor(len(h), 1<<16, func(lo, hi int) {
		hh, xx := h[lo:hi], x[lo:hi]
		for i := range hh {
			hh[i] += xx[i]
		}
	})
}

// softcap replaces x by c·tanh(x/c) (float32 division and product, tanh rounded to
// float32), as transformers' Gemma soft-capping computes it.
func softcap(x []float32, c float32) {
	for i, v := range x {
		x[i] = float32(math.Tanh(float64(v/c))) * c
	}
}
