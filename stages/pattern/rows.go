package pattern

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/wanda-go/wanda/pipeline"
)

// Row-block selection (pipeline.RowPattern). Every built-in target streams over row blocks
// except unstructured per-column selection, which needs whole columns:
//
//   - per-row unstructured and N:M decide each row from its own scores: no read pass;
//   - the whole-matrix threshold (GroupMatrix) is the key at rank int(numel·s) of all
//     scores, found exactly in two read passes of 16-bit histograms of the order-preserving
//     keys (the top half, then the bottom half of the keys sharing the top half found);
//   - Wanda's adaptive variant sorts each row once in a read pass into a scratch map the
//     caller lends (RowEnv.Scratch, file-backed in the pipeline), then bisects α over the
//     sorted rows exactly as selectVariant does.

var (
	_ pipeline.RowPattern = Unstructured{}
	_ pipeline.RowPattern = NM{}
)

// RowSelector returns the row-block selector of target t (see pipeline.RowPattern), or
// (nil, nil) for GroupColumn targets.
func (u Unstructured) RowSelector(t pipeline.Target, rows, cols int, info pipeline.LayerInfo, env pipeline.RowEnv) (pipeline.RowSelector, error) {
	name := u.Name()
	if t.Structured() {
		return nil, fmt.Errorf("pattern %s: %s: target %v is N:M (use the nm pattern): %w", name, info, t, pipeline.ErrBadTarget)
	}
	if err := t.Validate(cols); err != nil {
		return nil, fmt.Errorf("pattern %s: %s: %w", name, info, err)
	}
	base := rowBase{name: name, info: info, rows: rows, cols: cols}
	if t.Variant {
		if t.Group != pipeline.GroupRow {
			return nil, fmt.Errorf("pattern %s: %s: the adaptive variant compares within rows, not group %v: %w",
				name, info, t.Group, pipeline.ErrBadTarget)
		}
		return newVariantRows(base, t.Sparsity, env)
	}
	switch t.Group {
	case pipeline.GroupRow:
		return &firstKRows{rowBase: base, k: pyIntMul(cols, t.Sparsity)}, nil
	case pipeline.GroupMatrix:
		m := &matrixRows{rowBase: base}
		if n := rows * cols; t.Sparsity != 0 && n != 0 {
			m.passes = 2
			m.k = min(pyIntMul(n, t.Sparsity), n-1)
		}
		return m, nil
	case pipeline.GroupColumn:
		return nil, nil
	}
	return nil, fmt.Errorf("pattern %s: %s: unknown group %v: %w", name, info, t.Group, pipeline.ErrBadTarget)
}

// RowSelector returns the row-block selector of the N:M target t (see pipeline.RowPattern).
func (p NM) RowSelector(t pipeline.Target, rows, cols int, info pipeline.LayerInfo, _ pipeline.RowEnv) (pipeline.RowSelector, error) {
	name := p.Name()
	if !t.Structured() {
		return nil, fmt.Errorf("pattern %s: %s: target %v is not N:M: %w", name, info, t, pipeline.ErrBadTarget)
	}
	if err := t.Validate(cols); err != nil {
		return nil, fmt.Errorf("pattern %s: %s: %w", name, info, err)
	}
	return &nmRows{rowBase: rowBase{name: name, info: info, rows: rows, cols: cols}, n: t.N, m: t.M}, nil
}

// rowBase is what every row selector knows of its tensor.
type rowBase struct {
	name       string
	info       pipeline.LayerInfo
	rows, cols int
}

// check verifies a block: its scores are whole rows inside the tensor and mask (when not
// nil) has their shape.
func (b *rowBase) check(mask *pipeline.Mask, scores pipeline.Matrix, row0 int) error {
	if scores.Cols != b.cols || scores.Rows < 0 || len(scores.Data) != scores.Rows*scores.Cols ||
		row0 < 0 || row0+scores.Rows > b.rows {
		return fmt.Errorf("pattern %s: %s: block of rows %d.. with scores %d×%d (%d values) in a %d×%d tensor: %w",
			b.name, b.info, row0, scores.Rows, scores.Cols, len(scores.Data), b.rows, b.cols, pipeline.ErrShape)
	}
	if mask != nil && (mask.Rows != scores.Rows || mask.Cols != scores.Cols || len(mask.Bits) != (scores.Rows*scores.Cols+63)/64) {
		return fmt.Errorf("pattern %s: %s: block mask %d×%d for scores %d×%d: %w",
			b.name, b.info, mask.Rows, mask.Cols, scores.Rows, scores.Cols, pipeline.ErrShape)
	}
	return nil
}

// nanCheck fails on the first NaN of a block, naming its row in the tensor.
func (b *rowBase) nanCheck(scores pipeline.Matrix, row0 int) error {
	for k, v := range scores.Data {
		if v != v {
			return nanError(b.name, b.info, row0+k/b.cols, k%b.cols)
		}
	}
	return nil
}

// rowLocal is the part of RowSelector a selector without read passes shares.
type rowLocal struct{}

func (rowLocal) NextPass() bool { return false }

func (rowLocal) Observe(pipeline.Matrix, int) error {
	panic("pattern: Observe on a selector without read passes")
}

func (rowLocal) EndPass(context.Context) error { return nil }

// rowScratch is per-call scratch of the row selectors.
type rowScratch struct {
	keys   []uint32
	tmp    []uint32
	sel    selector
	pruned []bool
	q      []topkElem
}

var rowScratchPool = sync.Pool{New: func() any { return new(rowScratch) }}

func growU32(b []uint32, n int) []uint32 {
	if cap(b) < n {
		return make([]uint32, n)
	}
	return b[:n]
}

// firstKRows prunes the first k entries of a stable ascending sort of every row (GroupRow).
type firstKRows struct {
	rowBase
	rowLocal
	k int
}

func (s *firstKRows) SelectRows(mask *pipeline.Mask, scores pipeline.Matrix, row0 int) error {
	if err := s.check(mask, scores, row0); err != nil {
		return err
	}
	C := s.cols
	sc := rowScratchPool.Get().(*rowScratch)
	defer rowScratchPool.Put(sc)
	sc.keys = growU32(sc.keys, C)
	for i := range scores.Rows {
		if j := rowKeys(sc.keys, scores.Row(i)); j >= 0 {
			return nanError(s.name, s.info, row0+i, j)
		}
		markFirstK(mask.Bits, i*C, sc.keys, s.k, &sc.sel)
	}
	return nil
}

// nmRows prunes the n lowest scores of each aligned group of m columns of every row, ties
// as the reference's CPU torch.topk (TorchSmallestK), like NM.Select.
type nmRows struct {
	rowBase
	rowLocal
	n, m int
}

func (s *nmRows) SelectRows(mask *pipeline.Mask, scores pipeline.Matrix, row0 int) error {
	if err := s.check(mask, scores, row0); err != nil {
		return err
	}
	if err := s.nanCheck(scores, row0); err != nil {
		return err
	}
	C, N, M := s.cols, s.n, s.m
	sc := rowScratchPool.Get().(*rowScratch)
	defer rowScratchPool.Put(sc)
	if cap(sc.pruned) < M {
		sc.pruned, sc.q = make([]bool, M), make([]topkElem, M)
	}
	pruned, q := sc.pruned[:M], sc.q[:M]
	for i := range scores.Rows {
		nmRow(mask.Bits, i*C, scores.Row(i), N, M, pruned, q)
	}
	return nil
}

// matrixRows is the reference's whole-matrix rule over row blocks: every score <= t, t the
// key at 0-based rank k of all scores in ascending order (as selectMatrix).
//
// Read pass 1 counts the top 16 bits of every key and finds the value hi of the top half of
// t and the rank of t among the keys sharing it; read pass 2 counts the bottom 16 bits of
// those keys and finds t's bottom half. Sparsity 0 (or an empty tensor) has no read pass and
// prunes nothing (NaN scores are still errors).
type matrixRows struct {
	rowBase
	passes int // read passes to do: 2, or 0 when nothing is pruned
	k      int // rank of the threshold

	pass  int // read passes done
	mu    sync.Mutex
	hist  [1 << 16]int64
	hi    uint32 // top half of t (after pass 1)
	t     uint32 // the threshold key (after pass 2)
	local sync.Pool
}

func (s *matrixRows) NextPass() bool { return s.pass < s.passes }

func (s *matrixRows) Observe(scores pipeline.Matrix, row0 int) error {
	if err := s.check(nil, scores, row0); err != nil {
		return err
	}
	hp, _ := s.local.Get().(*[1 << 16]uint32)
	if hp == nil {
		hp = new([1 << 16]uint32)
	}
	defer s.local.Put(hp)
	h := hp
	clear(h[:])
	if s.pass == 0 {
		for k, v := range scores.Data {
			if v != v {
				return nanError(s.name, s.info, row0+k/s.cols, k%s.cols)
			}
			h[sortKey(v)>>16]++
		}
	} else {
		hi := s.hi
		for _, v := range scores.Data {
			if x := sortKey(v); x>>16 == hi {
				h[x&0xffff]++
			}
		}
	}
	s.mu.Lock()
	for b, c := range h {
		s.hist[b] += int64(c)
	}
	s.mu.Unlock()
	return nil
}

func (s *matrixRows) EndPass(context.Context) error {
	k := int64(s.k)
	b, cum := 0, int64(0)
	for ; cum+s.hist[b] <= k; b++ {
		cum += s.hist[b]
	}
	if s.pass == 0 {
		s.hi, s.k = uint32(b), int(k-cum)
	} else {
		s.t = s.hi<<16 | uint32(b)
	}
	clear(s.hist[:])
	s.pass++
	return nil
}

func (s *matrixRows) SelectRows(mask *pipeline.Mask, scores pipeline.Matrix, row0 int) error {
	if err := s.check(mask, scores, row0); err != nil {
		return err
	}
	if err := s.nanCheck(scores, row0); err != nil {
		return err
	}
	if s.passes == 0 {
		return nil
	}
	t := s.t
	var bw bitWriter
	bw.start(mask.Bits, 0)
	for _, v := range scores.Data {
		var b uint64
		if sortKey(v) <= t {
			b = 1
		}
		bw.put(b)
	}
	bw.flush()
	return nil
}

// variantRows is Wanda's adaptive-alpha variant over row blocks, with selectVariant's
// arithmetic: the read pass checks the scores, sums each row and writes it sorted into the
// scratch map; EndPass bisects α, recomputing each row's prefix sums from its sorted values
// (the same float64 accumulation rounded to float32 as selectVariant's cum), and keeps each
// row's threshold for the mask pass.
type variantRows struct {
	rowBase
	s      float64
	active bool // s > 0 and the tensor is not empty

	sorted []float32 // [rows, cols] sorted rows (scratch)
	sums   []float32
	nonneg []bool
	thres  []float32
	done   bool
}

func newVariantRows(base rowBase, s float64, env pipeline.RowEnv) (*variantRows, error) {
	v := &variantRows{rowBase: base, s: s, active: s != 0 && base.rows*base.cols != 0}
	if !v.active {
		return v, nil
	}
	if env.Scratch == nil {
		return nil, fmt.Errorf("pattern %s: %s: the adaptive variant needs scratch memory (pipeline.RowEnv.Scratch)", base.name, base.info)
	}
	sorted, err := env.Scratch(base.rows * base.cols)
	if err != nil {
		return nil, fmt.Errorf("pattern %s: %s: %w", base.name, base.info, err)
	}
	if len(sorted) != base.rows*base.cols {
		return nil, fmt.Errorf("pattern %s: %s: scratch of %d values for %d", base.name, base.info, len(sorted), base.rows*base.cols)
	}
	v.sorted = sorted
	v.sums = make([]float32, base.rows)
	v.nonneg = make([]bool, base.rows)
	v.thres = make([]float32, base.rows)
	return v, nil
}

// finiteCheck fails on the first NaN or ±Inf of a block.
func (s *variantRows) finiteCheck(scores pipeline.Matrix, row0 int) error {
	for k, v := range scores.Data {
		if v != v || v-v != 0 {
			return fmt.Errorf("pattern %s: %s: score [%d,%d] = %g (the adaptive variant needs finite scores): %w",
				s.name, s.info, row0+k/s.cols, k%s.cols, v, pipeline.ErrNonFinite)
		}
	}
	return nil
}

func (s *variantRows) NextPass() bool { return s.active && !s.done }

func (s *variantRows) Observe(scores pipeline.Matrix, row0 int) error {
	if err := s.check(nil, scores, row0); err != nil {
		return err
	}
	if err := s.finiteCheck(scores, row0); err != nil {
		return err
	}
	C := s.cols
	sc := rowScratchPool.Get().(*rowScratch)
	defer rowScratchPool.Put(sc)
	sc.keys, sc.tmp = growU32(sc.keys, C), growU32(sc.tmp, C)
	keys, tmp := sc.keys, sc.tmp
	for i := range scores.Rows {
		r := row0 + i
		var sum float64
		nn := true
		for j, v := range scores.Row(i) {
			keys[j] = sortKey(v)
			sum += float64(v)
			nn = nn && v >= 0
		}
		s.sums[r], s.nonneg[r] = float32(sum), nn
		radixSort(keys, tmp)
		srow := s.sorted[r*C : (r+1)*C]
		for j, x := range keys {
			srow[j] = keyValue(x)
		}
	}
	return nil
}

// eval computes every row's threshold for α and returns the fraction pruned.
func (s *variantRows) eval(ctx context.Context, alpha float64) (float32, error) {
	R, C := s.rows, s.cols
	a := float32(alpha)
	var total atomic.Int64
	err := parallelChunks(ctx, R, 1, rowTarget, func(lo, hi int) error {
		n := 0
		for i := lo; i < hi; i++ {
			srow := s.sorted[i*C : (i+1)*C]
			lim := s.sums[i] * a
			// cnt = #{j : cum[j] <= lim}, cum[j] = float32(Σ_{q<=j} srow[q] in float64).
			var cnt int
			var acc float64
			if s.nonneg[i] {
				// cum is non-decreasing: the first j with cum[j] > lim ends the count.
				cnt = C
				for j, v := range srow {
					acc += float64(v)
					if float32(acc) > lim {
						cnt = j
						break
					}
				}
			} else {
				for _, v := range srow {
					acc += float64(v)
					if float32(acc) <= lim {
						cnt++
					}
				}
			}
			idx := cnt - 1
			if idx < 0 {
				idx += C // Python-style wrap of index -1 (see selectVariant)
			}
			th := srow[idx]
			s.thres[i] = th
			n += sort.Search(C, func(j int) bool { return srow[j] > th })
		}
		total.Add(int64(n))
		return nil
	})
	if err != nil {
		return 0, err
	}
	return float32(total.Load()) / float32(R*C), nil
}

func (s *variantRows) EndPass(ctx context.Context) error {
	s32, tol := float32(s.s), float32(0.001)
	alpha, lo, hi := 0.4, 0.0, 0.8
	cur, err := s.eval(ctx, alpha)
	if err != nil {
		return err
	}
	for abs32(cur-s32) > tol && hi-lo >= 0.001 {
		if cur > s32 {
			alpha, hi = (alpha+lo)/2, alpha
		} else {
			alpha, lo = (alpha+hi)/2, alpha
		}
		if cur, err = s.eval(ctx, alpha); err != nil {
			return err
		}
	}
	slog.Debug("wanda variant", "layer", s.info.String(), "alpha", alpha, "sparsity", cur)
	s.done = true
	return nil
}

func (s *variantRows) SelectRows(mask *pipeline.Mask, scores pipeline.Matrix, row0 int) error {
	if err := s.check(mask, scores, row0); err != nil {
		return err
	}
	if err := s.finiteCheck(scores, row0); err != nil {
		return err
	}
	if !s.active {
		return nil
	}
	C := s.cols
	for i := range scores.Rows {
		th := s.thres[row0+i]
		for j, v := range scores.Row(i) {
			if v <= th {
				setBit(mask.Bits, i*C+j)
			}
		}
	}
	return nil
}
