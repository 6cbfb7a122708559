package model

import (
	"fmt"
	"math"
	"sync"
	"sync/atomic"

	"github.com/wanda-go/wanda/format/config"
	"github.com/wanda-go/wanda/tensor"
)

// Tap observes the input of a linear layer during Forward: PartQ (the input
// shared by q, k and v), PartO, PartGate (shared by gate and up) and PartDown.
// x is [rows, cols] row-major and is valid only during the call; the tap must
// not modify or retain it.
type Tap func(p config.Part, x []float32, rows, cols int)

// Scratch holds the activation buffers of Forward so that repeated calls do
// not allocate. The zero value is ready to use; a Scratch must not be used by
// two Forward calls at the same time.
type Scratch struct {
	x, qkv, attn, gu []float32
	tiles            [][]float32
}

func grow(buf *[]float32, n int) []float32 {
	if cap(*buf) < n {
		*buf = make([]float32, n)
	}
	return (*buf)[:n]
}

// ScratchFloatsPerToken is the number of float32 values Forward's Scratch
// holds per token row for cfg (the normalised input, q/k/v, the attention
// output and the gate/up products), excluding h itself and the small
// per-worker attention tiles.
func ScratchFloatsPerToken(cfg *config.Config) int {
	d := dimsOf(cfg, 0)
	return d.hidden + d.qkvn() + d.qn() + 2*d.inter
}

// attnTileRows is the number of query rows per attention work item for
// sequences of length T: 128, fewer for very long sequences so that a tile
// of scores stays within 4 MiB.
func attnTileRows(T int) int {
	return max(16, min(128, (1<<20)/max(T, 1)))
}

// Forward runs the decoder block on h in place. h is [nseq*seqlen, hidden]:
// nseq independent sequences of seqlen tokens, positions 0..seqlen-1 in each.
// rope must cover at least seqlen positions. tap (may be nil) sees the input
// of every linear; s (may be nil) supplies reusable buffers.
func (b *Block) Forward(h []float32, nseq, seqlen int, rope *Rope, tap Tap, s *Scratch) {
	b.forward(h, nseq, seqlen, rope, tap, s, false)
}

// ForwardStats is Forward for a pass whose only purpose is tap (the dense pass of a pruning
// run): it stops after tapping the input of down_proj, skipping the down_proj product and
// the last residual, so h holds scratch values afterwards.
func (b *Block) ForwardStats(h []float32, nseq, seqlen int, rope *Rope, tap Tap, s *Scratch) {
	b.forward(h, nseq, seqlen, rope, tap, s, true)
}

func (b *Block) forward(h []float32, nseq, seqlen int, rope *Rope, tap Tap, s *Scratch, statsOnly bool) {
	d := b.d
	H := d.hidden
	rows := nseq * seqlen
	if nseq < 0 || seqlen < 0 || len(h) < rows*H {
		panic(fmt.Sprintf("forward: Forward: h has %d values, need %d×%d×%d", len(h), nseq, seqlen, H))
	}
	if rope == nil || rope.SeqLen < seqlen || rope.HeadDim != d.hd {
		panic("forward: Forward: rope tables do not cover the sequence length or head_dim")
	}
	if rows == 0 {
		return
	}
	if s == nil {
		s = new(Scratch)
	}
	h = h[:rows*H]
	qn, kvn, qkvn, I := d.qn(), d.kvn(), d.qkvn(), d.inter

	// Attention.
	x := grow(&s.x, rows*H)
	rmsNorm(x, h, b.inNorm, rows, H, d.eps)
	if tap != nil {
		tap(config.PartQ, x, rows, H)
	}
	qkv := grow(&s.qkv, rows*qkvn)
	tensor.MatMulT(qkv, x, b.wqkv, rows, qkvn, H)
	parallelFor(rows, 64, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			row := qkv[r*qkvn : (r+1)*qkvn]
			if b.bqkv != nil {
				for i, v := range b.bqkv {
					row[i] += v
				}
			}
			pos := r % seqlen
			rope.Apply(row[:qn], d.heads, pos)
			rope.Apply(row[qn:qn+kvn], d.kvHeads, pos)
		}
	})
	attn := grow(&s.attn, rows*qn)
	b.attention(attn, qkv, nseq, seqlen, s)
	if tap != nil {
		tap(config.PartO, attn, rows, qn)
	}
	tensor.MatMulT(x, attn, b.wo, rows, H, qn)
	addInto(h, x)

	// MLP.
	rmsNorm(x, h, b.postNorm, rows, H, d.eps)
	if tap != nil {
		tap(config.PartGate, x, rows, H)
	}
	gu := grow(&s.gu, rows*2*I)
	tensor.MatMulT(gu, x, b.wgu, rows, 2*I, H)
	parallelFor(rows, 16, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			row := gu[r*2*I : (r+1)*2*I]
			siluMul(row[:I], row[:I], row[I:])
		}
	})
	// Compact the activations to [rows, I] in place: row r moves from
	// offset 2rI to rI, below every row not yet moved.
	for r := 1; r < rows; r++ {
		copy(gu[r*I:(r+1)*I], gu[2*r*I:2*r*I+I])
	}
	act := gu[:rows*I]
	if tap != nil {
		tap(config.PartDown, act, rows, I)
	}
	if statsOnly {
		return
	}
	tensor.MatMulT(x, act, b.wd, rows, H, I)
	addInto(h, x)
}

// rmsNorm is tensor.RMSNorm split over rows on several goroutines.
func rmsNorm(dst, x, w []float32, rows, dim int, eps float32) {
	parallelFor(rows, 256, func(lo, hi int) {
		tensor.RMSNorm(dst[lo*dim:hi*dim], x[lo*dim:hi*dim], w, hi-lo, dim, eps)
	})
}

// addInto computes h += x.
func addInto(h, x []float32) {
	x = x[:len(h)]
	parallelFor(len(h), 1<<16, func(lo, hi int) {
		hh, xx := h[lo:hi], x[lo:hi]
		for i := range hh {
			hh[i] += xx[i]
		}
	})
}

// attention computes causal grouped-query attention for every sequence and
// head from qkv ([rows, q|k|v], RoPE applied) into out ([rows, qn]). Work
// items are (sequence, head, query tile), taken from a shared counter by
// workers() goroutines, longest tiles first.
func (b *Block) attention(out, qkv []float32, nseq, T int, s *Scratch) {
	d := b.d
	tq := attnTileRows(T)
	ntiles := (T + tq - 1) / tq
	items := nseq * d.heads * ntiles
	nw := min(workers(), items)
	for len(s.tiles) < nw {
		s.tiles = append(s.tiles, nil)
	}
	tileLen := min(tq, T)*T + tq // scores, then one 1/sum per row
	var next atomic.Int64
	work := func(buf []float32) {
		for {
			it := int(next.Add(1) - 1)
			if it >= items {
				return
			}
			tile := ntiles - 1 - it/(nseq*d.heads)
			rest := it % (nseq * d.heads)
			b.attnTile(out, qkv, rest/d.heads, rest%d.heads, tile*tq, min(tile*tq+tq, T), T, buf)
		}
	}
	if nw <= 1 {
		work(grow(&s.tiles[0], tileLen))
		return
	}
	var wg sync.WaitGroup
	for w := range nw {
		buf := grow(&s.tiles[w], tileLen)
		wg.Add(1)
		go func() {
			defer wg.Done()
			work(buf)
		}()
	}
	wg.Wait()
}

// attnTile computes the attention output of query rows [i0, i1) of sequence
// seq for head hd: S = scale·Q Kᵀ over the keys the rows may see, a masked
// row softmax (exponentials only), then O = P V scaled by 1/Σ per row.
func (b *Block) attnTile(out, qkv []float32, seq, head, i0, i1, T int, buf []float32) {
	d := b.d
	qn, kvn, ld, hd := d.qn(), d.kvn(), d.qkvn(), d.hd
	kvh := head / (d.heads / d.kvHeads)
	j0 := 0
	if d.window > 0 {
		j0 = max(0, i0-d.window+1)
	}
	m, nk := i1-i0, i1-j0
	base := seq * T
	scale := float32(1 / math.Sqrt(float64(hd)))
	S := buf[:m*nk]
	q := qkv[(base+i0)*ld+head*hd:]
	k := qkv[(base+j0)*ld+qn+kvh*hd:]
	v := qkv[(base+j0)*ld+qn+kvn+kvh*hd:]
	tensor.Sgemm(false, true, m, nk, hd, scale, q, ld, k, ld, 0, S, nk)
	inv := buf[m*nk : m*nk+m]
	for r := range m {
		i := i0 + r
		row := S[r*nk : (r+1)*nk]
		lo := 0
		if d.window > 0 {
			lo = max(0, i-d.window+1) - j0
		}
		clear(row[:lo])
		inv[r] = float32(1 / expRow(row[lo:], i-j0+1-lo))
	}
	o := out[(base+i0)*qn+head*hd:]
	tensor.Sgemm(false, false, m, hd, nk, 1, S, nk, v, ld, 0, o, qn)
	for r := range m {
		orow := o[r*qn : r*qn+hd]
		for e := range orow {
			orow[e] *= inv[r]
		}
	}
}
