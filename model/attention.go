package model

import "github.com/wanda-go/wanda/tensor"

// Scratch holds the activation buffers of a forward pass so that repeated calls do
// not allocate. The zero value is ready to use; a Scratch must not be used by two
// forward passes at the same time.
type Scratch struct {
	x, qkv, attn, gu []float32
	tiles            [][]float32
	moe              moeScratch
}

func grow(buf *[]float32, n int) []float32 {
	if cap(*buf) < n {
		*buf = make([]float32, n)
	}
	return (*buf)[:n]
}

// attnTileRows is the number of query rows per attention work item for sequences of
// length T: 128, fewer for very long sequences so that a tile of scores stays within
// 4 MiB.
func attnTileRows(T int) int {
	return max(16, min(128, (1<<20)/max(T, 1)))
}

// attention computes causal grouped-query attention for every sequence and head from
// qkv ([rows, q|k|v], RoPE applied) into out ([rows, qn]). Work items are (sequence,
// head, query tile), longest tiles first, handed out in ranges by tensor.ParallelFor;
// each range borrows one of Threads() score buffers from s.
func (b *Block) attention(out, qkv []float32, nseq, T int, s *Scratch) {
	tq := attnTileRows(T)
	ntiles := (T + tq - 1) / tq
	items := nseq * b.heads * ntiles
	nw := max(1, min(tensor.Threads(), items)) // ParallelFor runs at most Threads() ranges at once
	for len(s.tiles) < nw {
		s.tiles = append(s.tiles, nil)
	}
	tileLen := min(tq, T)*T + tq // scores, then one 1/sum per row
	free := make(chan []float32, nw)
	for w := range nw {
		free <- grow(&s.tiles[w], tileLen)
	}
	tensor.ParallelFor(items, 1, func(lo, hi int) {
		buf := <-free
		defer func() { free <- buf }()
		for it := lo; it < hi; it++ {
			tile := ntiles - 1 - it/(nseq*b.heads)
			rest := it % (nseq * b.heads)
			b.attnTile(out, qkv, rest/b.heads, rest%b.heads, tile*tq, min(tile*tq+tq, T), T, buf)
		}
	})
}

// attnTile computes the attention output of query rows [i0, i1) of sequence seq for
// head hd: S = scale·Q Kᵀ over the keys the rows may see (soft-capped when the layer
// caps), a masked row softmax (exponentials only), then O = P V scaled by 1/Σ per row.
func (b *Block) attnTile(out, qkv []float32, seq, head, i0, i1, T int, buf []float32) {
	qn, kvn, ld, hd := b.qn(), b.kvn(), b.qkvn(), b.hd
	kvh := head / (b.heads / b.kvHeads)
	j0 := 0
	if b.window > 0 {
		j0 = max(0, i0-b.window+1)
	}
	m, nk := i1-i0, i1-j0
	base := seq * T
	S := buf[:m*nk]
	q := qkv[(base+i0)*ld+head*hd:]
	k := qkv[(base+j0)*ld+qn+kvh*hd:]
	v := qkv[(base+j0)*ld+qn+kvn+kvh*hd:]
	tensor.Sgemm(false, true, m, nk, hd, b.scale, q, ld, k, ld, 0, S, nk)
	inv := buf[m*nk : m*nk+m]
	for r := range m {
		i := i0 + r
		row := S[r*nk : (r+1)*nk]
		lo := 0
		if b.window > 0 {
			lo = max(0, i-b.window+1) - j0
		}
		n := i - j0 + 1 - lo // visible keys
		if b.softcap > 0 {
			softcap(row[lo:lo+n], b.softcap)
		}
		clear(row[:lo])
		inv[r] = float32(1 / expRow(row[lo:], n))
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
