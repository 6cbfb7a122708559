package plugins

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"

	"github.com/wanda-go/wanda/format/dtype"
	"github.com/wanda-go/wanda/pipeline"
	"github.com/wanda-go/wanda/plugins/internal/shm"
	"github.com/wanda-go/wanda/plugins/internal/wire"
	pb "github.com/wanda-go/wanda/plugins/proto"
)

// MaxSummary is the most numbers an allocation plugin may return for one layer.
const MaxSummary = wire.MaxSummary

// Allocator is an allocation plugin seen through pipeline.Allocator. Close ends its process.
type Allocator struct{ c *conn }

var (
	_ pipeline.Allocator = (*Allocator)(nil)
	_ io.Closer          = (*Allocator)(nil)
)

// OpenAllocator starts the allocation plugin at path and checks its handshake (protocol
// version 2 or later) and Info. The returned closer (the same *Allocator) ends the process
// and removes the scratch files; it must be called. ctx bounds only the start.
func OpenAllocator(ctx context.Context, path string, opts HostOptions) (pipeline.Allocator, io.Closer, error) {
	c, err := start(ctx, path, opts, KindAllocation)
	if err != nil {
		return nil, nil, err
	}
	a := &Allocator{c: c}
	return a, a, nil
}

// Name returns "plugin:" and the name the plugin reports.
func (a *Allocator) Name() string { return "plugin:" + a.c.info.Name }

// Info returns what the plugin reported.
func (a *Allocator) Info() Info { return a.c.info }

// String identifies the plugin for a run's checkpoint: name, kind, the executable's SHA-256
// and the arguments.
func (a *Allocator) String() string { return a.c.key() }

// Close ends the plugin process and removes its scratch files.
func (a *Allocator) Close() error { return a.c.Close() }

func protoDType(d dtype.DType) (pb.DType, bool) {
	switch d {
	case dtype.F32:
		return pb.DType_DTYPE_F32, true
	case dtype.BF16:
		return pb.DType_DTYPE_BF16, true
	case dtype.F16:
		return pb.DType_DTYPE_F16, true
	}
	return 0, false
}

// statSlot is one statistic of one input to place in the scratch file.
type statSlot struct {
	name string
	v    []float32
	off  int
	set  func(*pb.Statistics, *pb.TensorDesc)
}

var statFields = []struct {
	kind pipeline.StatsKind
	name string
	get  func(*pipeline.Stats) []float32
	set  func(*pb.Statistics, *pb.TensorDesc)
}{
	{pipeline.StatsSumSq, "sumsq", func(s *pipeline.Stats) []float32 { return s.SumSq }, func(m *pb.Statistics, d *pb.TensorDesc) { m.SumSq = d }},
	{pipeline.StatsSum, "sum", func(s *pipeline.Stats) []float32 { return s.Sum }, func(m *pb.Statistics, d *pb.TensorDesc) { m.Sum = d }},
	{pipeline.StatsVar, "var", func(s *pipeline.Stats) []float32 { return s.Var }, func(m *pb.Statistics, d *pb.TensorDesc) { m.Var = d }},
}

// statSlots lists the statistics of st to send: those in need (each required, of cols
// values) and, when optional is set, the others st has.
func statSlots(st *pipeline.Stats, cols int, need pipeline.StatsKind, optional bool) ([]statSlot, error) {
	var slots []statSlot
	for _, f := range statFields {
		var v []float32
		if st != nil {
			v = f.get(st)
		}
		switch {
		case need.Has(f.kind) && v == nil:
			return nil, fmt.Errorf("%w: no %s statistics", pipeline.ErrShape, f.name)
		case v == nil, !need.Has(f.kind) && !optional:
			continue
		case len(v) != cols:
			return nil, fmt.Errorf("%w: %d %s statistics for %d input columns", pipeline.ErrShape, len(v), f.name, cols)
		}
		slots = append(slots, statSlot{name: f.name, v: v, set: f.set})
	}
	return slots, nil
}

// writeStats copies the statistics into buf at their offsets, checking them, and returns
// their message.
func writeStats(buf []byte, path string, slots []statSlot, st *pipeline.Stats) (*pb.Statistics, error) {
	m := &pb.Statistics{}
	if st != nil {
		m.Samples, m.Tokens = int64(st.N), int64(st.Tokens)
	}
	for _, s := range slots {
		if k, _ := copyFinite(shm.Float32s(buf[s.off:s.off+4*len(s.v)]), s.v); k >= 0 {
			return nil, fmt.Errorf("%w: %s statistic %d is %v", pipeline.ErrNonFinite, s.name, k, s.v[k])
		}
		s.set(m, &pb.TensorDesc{Path: path, Offset: uint64(s.off), Dtype: pb.DType_DTYPE_F32, Shape: dims(len(s.v))})
	}
	return m, nil
}

// ObserveLayer sends layer l's prunable linears (weights in their stored dtype, and their
// input statistics) to the plugin and returns its summary, after checking that it has at
// most MaxSummary values, all finite.
func (a *Allocator) ObserveLayer(ctx context.Context, l int, linears []pipeline.AllocInput) ([]float64, error) {
	c := a.c
	li := &pipeline.LayerInfo{Layer: l, Tensor: fmt.Sprintf("(%d linears)", len(linears)), Expert: -1}
	type placed struct {
		in    pipeline.AllocInput
		dt    pb.DType
		off   int
		slots []statSlot
	}
	ps := make([]placed, len(linears))
	size := 0
	for i, in := range linears {
		info := in.Info
		if err := in.W.Check(); err != nil {
			return nil, c.errf("observe", &info, pipeline.ErrShape, err)
		}
		dt, ok := protoDType(in.W.DType)
		if !ok {
			return nil, c.errf("observe", &info, pipeline.ErrShape, fmt.Errorf("weight dtype %s", in.W.DType))
		}
		slots, err := statSlots(in.Stats, in.W.Cols, pipeline.StatsSumSq, true)
		if err != nil {
			return nil, c.errf("observe", &info, err)
		}
		ps[i] = placed{in: in, dt: dt, off: size}
		size = shm.AlignUp(size + len(in.W.Raw))
		for k := range slots {
			slots[k].off = size
			size = shm.AlignUp(size + 4*len(slots[k].v))
		}
		ps[i].slots = slots
	}

	c.mu.RLock()
	defer c.mu.RUnlock()
	if err := c.deadErr(); err != nil {
		return nil, c.closedErr("observe", li, err)
	}
	req := &pb.ObserveRequest{Layer: int64(l), Args: c.args}
	f, err := c.pool.Get(size)
	if err != nil {
		return nil, c.errf("observe", li, fmt.Errorf("scratch file: %w", err))
	}
	defer c.pool.Put(f)
	buf := f.Bytes()
	for _, p := range ps {
		info := p.in.Info
		w := p.in.W
		if k := copyFiniteRaw(buf[p.off:p.off+len(w.Raw)], w.Raw, w.DType); k >= 0 {
			return nil, c.errf("observe", &info, pipeline.ErrNonFinite,
				fmt.Errorf("weight (%d, %d) is not finite", k/w.Cols, k%w.Cols))
		}
		stats, err := writeStats(buf, f.Path(), p.slots, p.in.Stats)
		if err != nil {
			return nil, c.errf("observe", &info, err)
		}
		req.Linears = append(req.Linears, &pb.AllocLinear{
			Layer:  layerMsg(info),
			Weight: &pb.TensorDesc{Path: f.Path(), Offset: uint64(p.off), Dtype: p.dt, Shape: dims(w.Rows, w.Cols)},
			Stats:  stats,
		})
	}
	var resp *pb.ObserveResponse
	if err := c.call(ctx, "observe", li, func(ctx context.Context) (err error) {
		resp, err = c.rpc.Allocation.Observe(ctx, req)
		return err
	}); err != nil {
		return nil, err
	}
	sum := resp.GetSummary()
	if len(sum) > MaxSummary {
		return nil, c.errf("observe", li, ErrResult, pipeline.ErrShape,
			fmt.Errorf("summary of %d values (at most %d)", len(sum), MaxSummary))
	}
	for k, v := range sum {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, c.errf("observe", li, ErrResult, pipeline.ErrNonFinite, fmt.Errorf("summary value %d is %v", k, v))
		}
	}
	if sum == nil {
		sum = []float64{}
	}
	return sum, nil
}

// Allocate sends every layer's summary and the target to the plugin and returns its
// sparsities, after checking that there is one per layer, each in [0, 1).
func (a *Allocator) Allocate(ctx context.Context, summaries [][]float64, t pipeline.Target) ([]float64, error) {
	c := a.c
	if t.Structured() {
		return nil, c.errf("allocate", nil, pipeline.ErrBadTarget, fmt.Errorf("an allocation sets unstructured sparsities, not %s", t))
	}
	if err := t.Validate(0); err != nil {
		return nil, c.errf("allocate", nil, err)
	}
	g, err := groupMsg(t.Group)
	if err != nil {
		return nil, c.errf("allocate", nil, err)
	}
	if len(summaries) == 0 {
		return nil, c.errf("allocate", nil, pipeline.ErrShape, errors.New("no layers"))
	}
	req := &pb.AllocateRequest{
		Target: &pb.Target{Sparsity: t.Sparsity, Group: g, Variant: t.Variant},
		Args:   c.args,
	}
	bytes := 0
	for i, s := range summaries {
		for k, v := range s {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return nil, c.errf("allocate", nil, pipeline.ErrNonFinite, fmt.Errorf("layer %d: summary value %d is %v", i, k, v))
			}
		}
		bytes += 8*len(s) + 16
		req.Summaries = append(req.Summaries, &pb.LayerSummary{Values: s})
	}
	if bytes > wire.MaxMsgSize/2 {
		return nil, c.errf("allocate", nil, pipeline.ErrShape,
			fmt.Errorf("the summaries of %d layers take %d bytes (at most %d)", len(summaries), bytes, wire.MaxMsgSize/2))
	}
	var resp *pb.AllocateResponse
	if err := c.call(ctx, "allocate", nil, func(ctx context.Context) (err error) {
		resp, err = c.rpc.Allocation.Allocate(ctx, req)
		return err
	}); err != nil {
		return nil, err
	}
	// The pre-pass is over: give back the scratch space of a whole layer's weights.
	if err := c.pool.Trim(); err != nil {
		c.log.Warn("plugin: removing scratch files", "plugin", c.name, "err", err)
	}
	sp := resp.GetSparsities()
	if len(sp) != len(summaries) {
		return nil, c.errf("allocate", nil, ErrResult, pipeline.ErrShape,
			fmt.Errorf("%d sparsities for %d layers", len(sp), len(summaries)))
	}
	for l, s := range sp {
		switch {
		case math.IsNaN(s) || math.IsInf(s, 0):
			return nil, c.errf("allocate", nil, ErrResult, pipeline.ErrNonFinite, fmt.Errorf("layer %d: sparsity %v", l, s))
		case !(s >= 0 && s < 1):
			return nil, c.errf("allocate", nil, ErrResult, pipeline.ErrBadTarget,
				fmt.Errorf("layer %d: sparsity %v out of range [0, 1)", l, s))
		}
	}
	return sp, nil
}

// copyFiniteRaw copies the raw little-endian elements src of type d to dst and returns the
// index of the first NaN or ±Inf, or -1.
func copyFiniteRaw(dst, src []byte, d dtype.DType) int {
	copy(dst, src)
	switch d {
	case dtype.F32:
		k, _ := firstNonFinite(shm.Float32s(dst[:len(src)]))
		return k
	case dtype.BF16, dtype.F16:
		// A 16-bit float is NaN or ±Inf when its exponent bits are all set. Four at a time:
		// x has a zero lane exactly where a value's exponent is all ones.
		exp := uint64(0x7f80) // bfloat16: 8 exponent bits
		if d == dtype.F16 {
			exp = 0x7c00 // binary16: 5 exponent bits
		}
		e4 := exp * 0x0001000100010001
		n := len(src) / 8 * 8
		for k := 0; k < n; k += 8 {
			x := binary.LittleEndian.Uint64(src[k:])&e4 ^ e4
			if (x-0x0001000100010001)&^x&0x8000800080008000 != 0 {
				n = k // locate it below
				break
			}
		}
		for k := n; k+1 < len(src); k += 2 {
			if h := uint64(binary.LittleEndian.Uint16(src[k:])); h&exp == exp {
				return k / 2
			}
		}
	}
	return -1
}

// firstNonFinite returns the index of the first NaN or ±Inf of x (and their count), or -1.
func firstNonFinite(x []float32) (int, int) {
	const chunk = 8192
	for lo := 0; lo < len(x); lo += chunk {
		if !allFinite(x[lo:min(lo+chunk, len(x))]) {
			first, n := -1, 0
			for k := lo; k < len(x); k++ {
				if v := x[k]; v-v != 0 {
					if first < 0 {
						first = k
					}
					n++
				}
			}
			return first, n
		}
	}
	return -1, 0
}
