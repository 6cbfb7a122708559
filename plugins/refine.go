package plugins

import (
	"context"
	"fmt"
	"io"
	"math/bits"
	"sync"

	"github.com/wanda-go/wanda/pipeline"
	"github.com/wanda-go/wanda/plugins/internal/shm"
	pb "github.com/wanda-go/wanda/plugins/proto"
)

// Refiner is a refine plugin seen through pipeline.Refiner. Close ends its process.
type Refiner struct {
	c *conn

	mu      sync.Mutex
	applies map[appliesKey]appliesResult
}

type appliesKey struct {
	layer, expert int
	tensor        string
}

type appliesResult struct {
	ok  bool
	err error
}

var (
	_ pipeline.Refiner = (*Refiner)(nil)
	_ io.Closer        = (*Refiner)(nil)
)

// OpenRefiner starts the refine plugin at path and checks its handshake (protocol version 2
// or later) and Info. The returned closer (the same *Refiner) ends the process and removes
// the scratch files; it must be called. ctx bounds only the start.
func OpenRefiner(ctx context.Context, path string, opts HostOptions) (pipeline.Refiner, io.Closer, error) {
	c, err := start(ctx, path, opts, KindRefine)
	if err != nil {
		return nil, nil, err
	}
	r := &Refiner{c: c, applies: map[appliesKey]appliesResult{}}
	return r, r, nil
}

// Name returns "plugin:" and the name the plugin reports.
func (r *Refiner) Name() string { return "plugin:" + r.c.info.Name }

// Info returns what the plugin reported.
func (r *Refiner) Info() Info { return r.c.info }

// String identifies the plugin for a run's checkpoint: name, kind, the executable's SHA-256
// and the arguments.
func (r *Refiner) String() string { return r.c.key() }

// Close ends the plugin process and removes its scratch files.
func (r *Refiner) Close() error { return r.c.Close() }

// NeedsStats returns the statistics the plugin reported it reads (for its arguments).
func (r *Refiner) NeedsStats() pipeline.StatsKind { return r.c.stats }

// Applies asks the plugin, once per tensor, whether it refines the tensor. A failed call
// answers true and makes the tensor's Refine return the failure, so that nothing is
// skipped silently.
func (r *Refiner) Applies(info pipeline.LayerInfo) bool {
	key := appliesKey{info.Layer, info.Expert, info.Tensor}
	r.mu.Lock()
	res, ok := r.applies[key]
	r.mu.Unlock()
	if ok {
		return res.ok
	}
	res = r.ask(info)
	r.mu.Lock()
	r.applies[key] = res
	r.mu.Unlock()
	return res.ok
}

func (r *Refiner) ask(info pipeline.LayerInfo) appliesResult {
	c := r.c
	c.mu.RLock()
	defer c.mu.RUnlock()
	if err := c.deadErr(); err != nil {
		return appliesResult{ok: true, err: c.closedErr("applies", &info, err)}
	}
	var resp *pb.AppliesResponse
	err := c.call(context.Background(), "applies", &info, func(ctx context.Context) (err error) {
		resp, err = c.rpc.Refine.Applies(ctx, &pb.AppliesRequest{Layer: layerMsg(info), Args: c.args})
		return err
	})
	if err != nil {
		return appliesResult{ok: true, err: err}
	}
	return appliesResult{ok: resp.Applies}
}

// Refine sends a block of rows — the dense weights w, the chosen mask and the statistics the
// plugin reads — and replaces mask with the plugin's refined mask, after checking its shape,
// that every entry is 0 or 1, and that every row (for N:M targets, every group of M columns
// of every row) prunes as many weights as before. On any error mask is left unchanged.
func (r *Refiner) Refine(ctx context.Context, w pipeline.Matrix, mask *pipeline.Mask, st *pipeline.Stats, t pipeline.Target, info pipeline.LayerInfo) error {
	c := r.c
	li := &info
	r.mu.Lock()
	res, asked := r.applies[appliesKey{info.Layer, info.Expert, info.Tensor}]
	r.mu.Unlock()
	if asked && res.err != nil {
		return res.err
	}
	if w.Rows < 0 || w.Cols < 0 || len(w.Data) != w.Rows*w.Cols {
		return c.errf("refine", li, pipeline.ErrShape, fmt.Errorf("weight %dx%d has %d values", w.Rows, w.Cols, len(w.Data)))
	}
	n := w.Rows * w.Cols
	if mask == nil || mask.Rows != w.Rows || mask.Cols != w.Cols || len(mask.Bits) != (n+63)/64 {
		return c.errf("refine", li, pipeline.ErrShape, fmt.Errorf("the mask does not fit the %dx%d weight", w.Rows, w.Cols))
	}
	if err := t.Validate(w.Cols); err != nil {
		return c.errf("refine", li, err)
	}
	g, err := groupMsg(t.Group)
	if err != nil {
		return c.errf("refine", li, err)
	}
	slots, err := statSlots(st, w.Cols, c.stats, false)
	if err != nil {
		return c.errf("refine", li, err)
	}
	if n == 0 {
		return nil
	}
	mOff := shm.AlignUp(4 * n)
	size := shm.AlignUp(mOff + n)
	for k := range slots {
		slots[k].off = size
		size = shm.AlignUp(size + 4*len(slots[k].v))
	}

	c.mu.RLock()
	defer c.mu.RUnlock()
	if err := c.deadErr(); err != nil {
		return c.closedErr("refine", li, err)
	}
	in, err := c.pool.Get(size)
	if err != nil {
		return c.errf("refine", li, fmt.Errorf("scratch file: %w", err))
	}
	defer c.pool.Put(in)
	out, err := c.pool.Get(n)
	if err != nil {
		return c.errf("refine", li, fmt.Errorf("scratch file: %w", err))
	}
	defer c.pool.Put(out)

	buf := in.Bytes()
	if k, bad := copyFinite(shm.Float32s(buf[:4*n]), w.Data); k >= 0 {
		return c.errf("refine", li, pipeline.ErrNonFinite,
			fmt.Errorf("weight (%d, %d) is %v (%d non-finite weights)", k/w.Cols, k%w.Cols, w.Data[k], bad))
	}
	mb := buf[mOff : mOff+n]
	for k := range mb {
		mb[k] = byte(mask.Bits[k>>6] >> (uint(k) & 63) & 1)
	}
	stats, err := writeStats(buf, in.Path(), slots, st)
	if err != nil {
		return c.errf("refine", li, err)
	}
	resBytes := out.Bytes()[:n]
	fillBytes(resBytes, 0xff) // an entry the plugin does not write is rejected
	req := &pb.RefineRequest{
		Layer:  layerMsg(info),
		Weight: &pb.TensorDesc{Path: in.Path(), Dtype: pb.DType_DTYPE_F32, Shape: dims(w.Rows, w.Cols)},
		Mask:   &pb.TensorDesc{Path: in.Path(), Offset: uint64(mOff), Dtype: pb.DType_DTYPE_U8, Shape: dims(w.Rows, w.Cols)},
		Stats:  stats,
		Target: &pb.Target{Sparsity: t.Sparsity, N: int64(t.N), M: int64(t.M), Group: g, Variant: t.Variant},
		Result: &pb.TensorDesc{Path: out.Path(), Dtype: pb.DType_DTYPE_U8, Shape: dims(w.Rows, w.Cols)},
		Args:   c.args,
	}
	var resp *pb.RefineResponse
	if err := c.call(ctx, "refine", li, func(ctx context.Context) (err error) {
		resp, err = c.rpc.Refine.Refine(ctx, req)
		return err
	}); err != nil {
		return err
	}
	if err := checkResult(resp.GetResult(), req.Result); err != nil {
		return c.errf("refine", li, ErrResult, err)
	}
	if err := checkRefined(resBytes, mb, w.Rows, w.Cols, t); err != nil {
		return c.errf("refine", li, ErrResult, err)
	}
	clear(mask.Bits)
	for k, v := range resBytes {
		mask.Bits[k>>6] |= uint64(v) << (uint(k) & 63)
	}
	return nil
}

// checkRefined checks a refined mask (u8, row-major) against the chosen one: entries 0 or
// 1, and the same number pruned in every row, and in every group of t.M columns for N:M.
func checkRefined(got, was []byte, rows, cols int, t pipeline.Target) error {
	for k, v := range got {
		if v > 1 {
			return fmt.Errorf("mask entry (%d, %d) is %d, want 0 (keep) or 1 (prune)", k/cols, k%cols, v)
		}
	}
	group := cols
	if t.Structured() {
		group = t.M
	}
	for i := range rows {
		for g0 := 0; g0 < cols; g0 += group {
			a, b := got[i*cols+g0:i*cols+g0+group], was[i*cols+g0:i*cols+g0+group]
			if na, nb := count1(a), count1(b); na != nb {
				where := fmt.Sprintf("row %d", i)
				if group != cols {
					where += fmt.Sprintf(" columns [%d, %d)", g0, g0+group)
				}
				return fmt.Errorf("%s of the block prunes %d weights, the chosen mask %d (a refinement keeps the count)",
					where, na, nb)
			}
		}
	}
	return nil
}

// count1 counts the ones of a 0/1 byte slice.
func count1(b []byte) int {
	n := 0
	for len(b) >= 8 {
		n += bits.OnesCount64(uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 |
			uint64(b[4])<<32 | uint64(b[5])<<40 | uint64(b[6])<<48 | uint64(b[7])<<56)
		b = b[8:]
	}
	for _, v := range b {
		n += int(v)
	}
	return n
}
