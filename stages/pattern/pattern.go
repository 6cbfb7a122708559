package pattern

import (
	"context"
	"fmt"
	"math/bits"
	"sync"

	"github.com/wanda-go/wanda/pipeline"
)

// ForTarget returns the built-in pattern for t: NM when t is structured, else Unstructured.
func ForTarget(t pipeline.Target) pipeline.Pattern {
	if t.Structured() {
		return NM{}
	}
	return Unstructured{}
}

// rowTarget is the number of rows a goroutine takes at a time.
const rowTarget = 16

func checkScores(name string, scores pipeline.Matrix, info pipeline.LayerInfo) error {
	if scores.Rows < 0 || scores.Cols < 0 || len(scores.Data) != scores.Rows*scores.Cols {
		return fmt.Errorf("pattern %s: %s: scores %d×%d with %d values: %w",
			name, info, scores.Rows, scores.Cols, len(scores.Data), pipeline.ErrShape)
	}
	return nil
}

func setBit(mb []uint64, k int) { mb[k>>6] |= 1 << (uint(k) & 63) }

// pyIntMul is Python's int(n * s) for a non-negative int n and float s: the float64 product
// truncated toward zero, clamped to [0, n].
func pyIntMul(n int, s float64) int {
	return min(max(int(float64(n)*s), 0), n)
}

// Unstructured is the unstructured pattern (see the package documentation).
type Unstructured struct{}

// Name returns "unstructured".
func (Unstructured) Name() string { return "unstructured" }

// Select returns the mask of scores for the unstructured target t.
func (u Unstructured) Select(ctx context.Context, scores pipeline.Matrix, t pipeline.Target, info pipeline.LayerInfo) (*pipeline.Mask, error) {
	name := u.Name()
	if err := checkScores(name, scores, info); err != nil {
		return nil, err
	}
	if t.Structured() {
		return nil, fmt.Errorf("pattern %s: %s: target %v is N:M (use the nm pattern): %w", name, info, t, pipeline.ErrBadTarget)
	}
	if err := t.Validate(scores.Cols); err != nil {
		return nil, fmt.Errorf("pattern %s: %s: %w", name, info, err)
	}
	if t.Variant {
		if t.Group != pipeline.GroupRow {
			return nil, fmt.Errorf("pattern %s: %s: the adaptive variant compares within rows, not group %v: %w",
				name, info, t.Group, pipeline.ErrBadTarget)
		}
		return selectVariant(ctx, name, scores, t.Sparsity, info)
	}
	switch t.Group {
	case pipeline.GroupRow:
		return selectRows(ctx, name, scores, pyIntMul(scores.Cols, t.Sparsity), info)
	case pipeline.GroupColumn:
		return selectColumns(ctx, name, scores, pyIntMul(scores.Rows, t.Sparsity), info)
	case pipeline.GroupMatrix:
		return selectMatrix(ctx, name, scores, t.Sparsity, info)
	}
	return nil, fmt.Errorf("pattern %s: %s: unknown group %v: %w", name, info, t.Group, pipeline.ErrBadTarget)
}

// selectRows prunes the first k entries of a stable ascending sort of every row.
func selectRows(ctx context.Context, name string, scores pipeline.Matrix, k int, info pipeline.LayerInfo) (*pipeline.Mask, error) {
	R, C := scores.Rows, scores.Cols
	m := pipeline.NewMask(R, C)
	err := parallelChunks(ctx, R, rowGrain(C), rowTarget, func(lo, hi int) error {
		keys := make([]uint32, C)
		var sel selector
		for i := lo; i < hi; i++ {
			if j := rowKeys(keys, scores.Row(i)); j >= 0 {
				return nanError(name, info, i, j)
			}
			markFirstK(m.Bits, i*C, keys, k, &sel)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return m, nil
}

// markFirstK sets the bits base+j of the k smallest keys, ties to the lower j (exactly the
// first k of a stable ascending sort).
//
// One histogram pass over the digit just below the keys' common prefix finds the bucket
// holding the k-th smallest key; a second pass marks every key of a lower bucket and
// collects the (few) keys of that bucket, in index order, which are then resolved exactly
// by radix selection and an index-ordered tie pass.
func markFirstK(mb []uint64, base int, keys []uint32, k int, sel *selector) {
	switch {
	case k <= 0:
		return
	case k >= len(keys):
		for j := range keys {
			setBit(mb, base+j)
		}
		return
	}
	lo, hi := keys[0], keys[0]
	for _, x := range keys {
		lo = min(lo, x)
		hi = max(hi, x)
	}
	if lo == hi { // all equal: the first k indices
		for j := range k {
			setBit(mb, base+j)
		}
		return
	}
	rem := uint(bits.Len32(lo ^ hi))
	sh := rem - min(rem, selectDigit)
	mask := uint32(1)<<(rem-sh) - 1
	h := sel.hist[:mask+1]
	clear(h)
	for _, x := range keys {
		h[(x>>sh)&mask]++
	}
	// Bucket bk holds the key at sorted position k-1; cum keys lie in lower buckets.
	bk, cum := uint32(0), 0
	for ; cum+int(h[bk]) <= k-1; bk++ {
		cum += int(h[bk])
	}
	need := k - cum // keys of bucket bk to prune, >= 1
	candKeys := sel.candKeys[:0]
	candIdx := sel.candIdx[:0]
	var bw bitWriter
	bw.start(mb, base)
	for j, x := range keys {
		d := (x >> sh) & mask
		var b uint64
		if d < bk { // a conditional move: about half the keys are below
			b = 1
		}
		if d == bk { // rare and predictable
			candKeys = append(candKeys, x)
			candIdx = append(candIdx, int32(j))
		}
		bw.put(b)
	}
	bw.flush()
	sel.candKeys, sel.candIdx = candKeys, candIdx
	if need == len(candKeys) {
		for _, j := range candIdx {
			setBit(mb, base+int(j))
		}
		return
	}
	t, less := sel.kth(candKeys, need-1)
	ties := need - less // candidates equal to t that are pruned, in index order
	for c, x := range candKeys {
		if x < t {
			setBit(mb, base+int(candIdx[c]))
		} else if x == t && ties > 0 {
			ties--
			setBit(mb, base+int(candIdx[c]))
		}
	}
}

// bitWriter ORs a stream of bits into a bitset from position base on, a word at a time.
type bitWriter struct {
	mb   []uint64
	w    int    // index of the word being filled
	sh   uint   // next bit position within it
	word uint64 // bits gathered for mb[w]
}

func (bw *bitWriter) start(mb []uint64, base int) {
	*bw = bitWriter{mb: mb, w: base >> 6, sh: uint(base) & 63}
}

func (bw *bitWriter) put(b uint64) {
	bw.word |= b << bw.sh
	bw.sh++
	if bw.sh == 64 {
		bw.mb[bw.w] |= bw.word
		bw.w++
		bw.sh, bw.word = 0, 0
	}
}

func (bw *bitWriter) flush() {
	if bw.word != 0 {
		bw.mb[bw.w] |= bw.word
	}
}

// selectColumns prunes the first k entries of a stable ascending sort of every column.
func selectColumns(ctx context.Context, name string, scores pipeline.Matrix, k int, info pipeline.LayerInfo) (*pipeline.Mask, error) {
	R, C := scores.Rows, scores.Cols
	// Work on the transposed mask [C, R] so that each column owns a contiguous bit range,
	// then transpose the set bits.
	tm := pipeline.NewMask(C, R)
	err := parallelChunks(ctx, C, rowGrain(R), rowTarget, func(lo, hi int) error {
		keys := make([]uint32, R)
		var sel selector
		for j := lo; j < hi; j++ {
			for i := range R {
				v := scores.Data[i*C+j]
				if v != v {
					return nanError(name, info, i, j)
				}
				keys[i] = sortKey(v)
			}
			markFirstK(tm.Bits, j*R, keys, k, &sel)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	m := pipeline.NewMask(R, C)
	for w, word := range tm.Bits {
		for word != 0 {
			b := bits.TrailingZeros64(word)
			word &= word - 1
			p := w*64 + b
			m.Set(p%R, p/R)
		}
	}
	return m, nil
}

// selectMatrix applies the reference's whole-matrix rule: every score <= the value at
// position int(numel·s) of the ascending sort is pruned.
func selectMatrix(ctx context.Context, name string, scores pipeline.Matrix, s float64, info pipeline.LayerInfo) (*pipeline.Mask, error) {
	R, C := scores.Rows, scores.Cols
	m := pipeline.NewMask(R, C)
	n := R * C
	// Pass 1: NaN check and a histogram of the top digit of the keys, per goroutine.
	nb := 1 << digitBits[0]
	var mu sync.Mutex
	hist := make([]int, nb)
	err := parallelChunks(ctx, R, 1, rowTarget*4, func(lo, hi int) error {
		h := make([]int, nb)
		for i := lo; i < hi; i++ {
			for j, v := range scores.Row(i) {
				if v != v {
					return nanError(name, info, i, j)
				}
				h[sortKey(v)>>digitShift[0]]++
			}
		}
		mu.Lock()
		for b, c := range h {
			hist[b] += c
		}
		mu.Unlock()
		return nil
	})
	if err != nil {
		return nil, err
	}
	if s == 0 || n == 0 {
		return m, nil
	}
	k := min(pyIntMul(n, s), n-1)
	b, cum := 0, 0
	for ; cum+hist[b] <= k; b++ {
		cum += hist[b]
	}
	// Pass 2: the candidates in bucket b; select within them.
	cand := make([]uint32, 0, hist[b])
	for _, v := range scores.Data {
		if x := sortKey(v); int(x>>digitShift[0]) == b {
			cand = append(cand, x)
		}
	}
	var sel selector
	t, _ := sel.kth(cand, k-cum)
	// Pass 3: prune every key <= t.
	err = parallelChunks(ctx, R, rowGrain(C), rowTarget*4, func(lo, hi int) error {
		for i := lo; i < hi; i++ {
			base := i * C
			for j, v := range scores.Row(i) {
				if sortKey(v) <= t {
					setBit(m.Bits, base+j)
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return m, nil
}

// NM is the N:M pattern (see the package documentation).
type NM struct{}

// Name returns "nm".
func (NM) Name() string { return "nm" }

// Select prunes, in every row, the t.N lowest scores of each aligned group of t.M columns.
func (p NM) Select(ctx context.Context, scores pipeline.Matrix, t pipeline.Target, info pipeline.LayerInfo) (*pipeline.Mask, error) {
	name := p.Name()
	if err := checkScores(name, scores, info); err != nil {
		return nil, err
	}
	if !t.Structured() {
		return nil, fmt.Errorf("pattern %s: %s: target %v is not N:M: %w", name, info, t, pipeline.ErrBadTarget)
	}
	if err := t.Validate(scores.Cols); err != nil {
		return nil, fmt.Errorf("pattern %s: %s: %w", name, info, err)
	}
	R, C, N, M := scores.Rows, scores.Cols, t.N, t.M
	m := pipeline.NewMask(R, C)
	err := parallelChunks(ctx, R, rowGrain(C), rowTarget, func(lo, hi int) error {
		keys := make([]uint32, C)
		pruned := make([]bool, M)
		q := make([]topkElem, M)
		for i := lo; i < hi; i++ {
			row := scores.Row(i)
			if j := rowKeys(keys, row); j >= 0 {
				return nanError(name, info, i, j)
			}
			nmRow(m.Bits, i*C, row, N, M, pruned, q)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return m, nil
}

// nmRow writes the mask bits of one row of scores from bit bit0 of bits on: in every
// aligned group of m columns the n lowest scores are pruned, ties broken as the reference's
// torch.topk does on the CPU (TorchSmallestK). pruned and q are scratch of m entries.
func nmRow(bits []uint64, bit0 int, row []float32, n, m int, pruned []bool, q []topkElem) {
	var bw bitWriter
	bw.start(bits, bit0)
	for g := 0; g < len(row); g += m {
		TorchSmallestK(row[g:g+m], n, pruned, q)
		for _, p := range pruned {
			var b uint64
			if p {
				b = 1
			}
			bw.put(b)
		}
	}
	bw.flush()
}
