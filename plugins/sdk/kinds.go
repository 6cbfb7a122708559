package sdk

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/wanda-go/wanda/format/dtype"
	"github.com/wanda-go/wanda/plugins/internal/shm"
	"github.com/wanda-go/wanda/plugins/internal/testhook"
	"github.com/wanda-go/wanda/plugins/internal/wire"
	pb "github.com/wanda-go/wanda/plugins/proto"
)

// Weights is a read-only [Rows, Cols] weight matrix in the model's stored dtype ("F32",
// "BF16" or "F16"): Raw holds the little-endian elements row-major, element (i, j) at byte
// (i·Cols + j)·size. It is a view of a memory-mapped file: writing to it crashes the plugin.
// RowsF32 and F32 widen it to float32.
type Weights struct {
	Rows, Cols int
	DType      string
	Raw        []byte
}

func (w Weights) dt() dtype.DType {
	switch w.DType {
	case "BF16":
		return dtype.BF16
	case "F16":
		return dtype.F16
	}
	return dtype.F32
}

// RowsF32 widens rows [r0, r1) into dst ((r1−r0)·Cols values), exactly.
func (w Weights) RowsF32(dst []float32, r0, r1 int) {
	d := w.dt()
	es := d.Size()
	n := (r1 - r0) * w.Cols
	if r0 < 0 || r1 > w.Rows || r0 > r1 || len(dst) < n {
		panic(fmt.Sprintf("sdk: RowsF32 [%d, %d) of %d rows into %d values", r0, r1, w.Rows, len(dst)))
	}
	if err := dtype.ToFloat32(dst[:n], w.Raw[r0*w.Cols*es:r1*w.Cols*es], d); err != nil {
		panic("sdk: " + err.Error())
	}
}

// F32 returns the whole matrix widened to float32 (a new [Rows, Cols] tensor).
func (w Weights) F32() Tensor {
	t := NewTensor(w.Rows, w.Cols)
	w.RowsF32(t.Data, 0, w.Rows)
	return t
}

// Stats are per-input-channel statistics of a linear layer's input, accumulated over the
// calibration windows; each slice has one value per input column j, or is empty when it was
// not gathered:
//
//	SumSq[j] = (1/Samples) · Σ over tokens of x_j²   (Wanda's activation statistic)
//	Sum[j]   = (1/Samples) · Σ over tokens of x_j    (divided by sequences, not tokens)
//	Var[j]   = Σ over sequences of (tokens in it) · (its biased variance of x_j around its
//	           own mean), divided by Tokens          (the pooled within-sequence variance)
//
// The slices are read-only views of memory-mapped files.
type Stats struct {
	SumSq, Sum, Var []float32
	// Samples is the number of calibration sequences, Tokens the number of token rows.
	Samples, Tokens int
}

// Stat names one of the statistics in Stats.
type Stat int

// The statistics a refine plugin can ask for.
const (
	StatSumSq Stat = iota + 1
	StatSum
	StatVar
)

func (s Stat) msg() (pb.Stat, error) {
	switch s {
	case StatSumSq:
		return pb.Stat_STAT_SUM_SQ, nil
	case StatSum:
		return pb.Stat_STAT_SUM, nil
	case StatVar:
		return pb.Stat_STAT_VAR, nil
	}
	return 0, fmt.Errorf("sdk: unknown statistic %d", int(s))
}

// openStats maps the statistics of a request, each of cols values; close unmaps them.
func openStats(m *pb.Statistics, cols int) (st Stats, close func(), err error) {
	var regions []*shm.Region
	close = func() {
		for _, r := range regions {
			r.Close()
		}
	}
	if m == nil {
		return Stats{}, close, nil
	}
	st.Samples, st.Tokens = int(m.Samples), int(m.Tokens)
	for _, f := range []struct {
		name string
		d    *pb.TensorDesc
		dst  *[]float32
	}{{"sum_sq", m.SumSq, &st.SumSq}, {"sum", m.Sum, &st.Sum}, {"var", m.Var, &st.Var}} {
		if f.d == nil {
			continue
		}
		if len(f.d.Shape) != 1 || int(f.d.Shape[0]) != cols {
			close()
			return Stats{}, nil, fmt.Errorf("%s: shape %v, want [%d]", f.name, f.d.Shape, cols)
		}
		r, err := shm.Open(f.d, pb.DType_DTYPE_F32, false)
		if err != nil {
			close()
			return Stats{}, nil, fmt.Errorf("%s: %w", f.name, err)
		}
		regions = append(regions, r)
		*f.dst = r.Float32()
	}
	return st, close, nil
}

// Linear is one prunable linear layer of a decoder layer in the allocation pre-pass.
type Linear struct {
	Info  LayerInfo // the tensor (Info.Args holds the plugin arguments)
	W     Weights   // [out, in] as stored
	Stats Stats     // SumSq at least
}

// AllocationInfo describes an allocation plugin.
type AllocationInfo struct {
	Name        string // short name, e.g. "owl"
	Description string // one line
	// Args are the accepted --allocation-arg keys; nil accepts any.
	Args []Arg
	// CheckArgs, if set, validates the arguments when the host connects.
	CheckArgs func(args map[string]string) error
}

// ObserveFunc summarises decoder layer `layer` of the dense model from all its prunable
// linears, in a few finite numbers (at most MaxSummary) that Allocate later receives. It
// must depend on its arguments only: a resumed run calls it for the remaining layers in a
// new process.
type ObserveFunc func(layer int, linears []Linear, args map[string]string) ([]float64, error)

// AllocateFunc returns every layer's sparsity, each in [0, 1), from the summaries of all
// layers (summaries[l] is layer l's) and the model-wide target.
type AllocateFunc func(summaries [][]float64, t Target, args map[string]string) ([]float64, error)

// MaxSummary is the most numbers a layer's summary may hold.
const MaxSummary = wire.MaxSummary

// ServeAllocation serves observe and allocate as an allocation plugin until the host
// disconnects, then exits. Allocation plugins need a host speaking protocol version 2.
func ServeAllocation(info AllocationInfo, observe ObserveFunc, allocate AllocateFunc) {
	if observe == nil || allocate == nil {
		panic("sdk: nil ObserveFunc or AllocateFunc")
	}
	resp := infoResponse(info.Name, info.Description, pb.Kind_KIND_ALLOCATION, info.Args)
	serve(resp, infoServer{check: info.CheckArgs}, func(s *wire.Stage) {
		s.Allocation = &allocationServer{observe: observe, allocate: allocate}
	})
}

type allocationServer struct {
	pb.UnimplementedAllocationServer
	observe  ObserveFunc
	allocate AllocateFunc
}

func weightDType(d pb.DType) (string, bool) {
	switch d {
	case pb.DType_DTYPE_F32:
		return "F32", true
	case pb.DType_DTYPE_BF16:
		return "BF16", true
	case pb.DType_DTYPE_F16:
		return "F16", true
	}
	return "", false
}

func (s *allocationServer) Observe(_ context.Context, req *pb.ObserveRequest) (*pb.ObserveResponse, error) {
	var closers []func()
	defer func() {
		for _, c := range closers {
			c()
		}
	}()
	args := req.Args
	if args == nil {
		args = map[string]string{}
	}
	lins := make([]Linear, len(req.Linears))
	for i, l := range req.Linears {
		rows, cols, err := matrixShape(l.Weight, "weight")
		if err != nil {
			return nil, badRequest(fmt.Errorf("linear %d: %w", i, err))
		}
		dt, ok := weightDType(l.Weight.Dtype)
		if !ok {
			return nil, badRequest(fmt.Errorf("linear %d: weight dtype %v (want F32, BF16 or F16)", i, l.Weight.Dtype))
		}
		wr, err := shm.Open(l.Weight, l.Weight.Dtype, false)
		if err != nil {
			return nil, badRequest(fmt.Errorf("linear %d: weight: %w", i, err))
		}
		closers = append(closers, func() { wr.Close() })
		st, closeStats, err := openStats(l.Stats, cols)
		if err != nil {
			return nil, badRequest(fmt.Errorf("linear %d: %w", i, err))
		}
		closers = append(closers, closeStats)
		info := layerInfo(l.Layer, args)
		info.Samples, info.Tokens = st.Samples, st.Tokens
		lins[i] = Linear{Info: info, W: Weights{Rows: rows, Cols: cols, DType: dt, Raw: wr.Bytes()}, Stats: st}
	}
	var sum []float64
	if err := call(func() (err error) { sum, err = s.observe(int(req.Layer), lins, args); return err }); err != nil {
		return nil, userError(err)
	}
	return &pb.ObserveResponse{Summary: sum}, nil
}

func (s *allocationServer) Allocate(_ context.Context, req *pb.AllocateRequest) (*pb.AllocateResponse, error) {
	t, err := target(req.Target)
	if err != nil {
		return nil, badRequest(err)
	}
	sums := make([][]float64, len(req.Summaries))
	for i, l := range req.Summaries {
		if l != nil {
			sums[i] = l.Values
		}
	}
	args := req.Args
	if args == nil {
		args = map[string]string{}
	}
	var sp []float64
	if err := call(func() (err error) { sp, err = s.allocate(sums, t, args); return err }); err != nil {
		return nil, userError(err)
	}
	return &pb.AllocateResponse{Sparsities: sp}, nil
}

// RefineInfo describes a refine plugin.
type RefineInfo struct {
	Name        string // short name, e.g. "dsnot"
	Description string // one line
	// Args are the accepted --refine-arg keys; nil accepts any.
	Args []Arg
	// CheckArgs, if set, validates the arguments when the host connects.
	CheckArgs func(args map[string]string) error
	// Needs lists the statistics RefineFunc reads; the others are empty in its Stats.
	Needs []Stat
	// NeedsFor, if set, replaces Needs with a list that depends on the arguments.
	NeedsFor func(args map[string]string) ([]Stat, error)
	// Applies, if set, says whether a tensor is refined at all (its masks are otherwise left
	// as chosen, and no statistics are gathered for it); info.Args holds the arguments. Nil
	// refines every tensor.
	Applies func(info LayerInfo) bool
}

// RefineFunc refines the mask chosen for a block of rows of one linear layer: w is [rows,
// in] (the dense weights the mask was chosen on; read-only), mask the chosen mask (a copy
// the function may change and return). The returned mask must have mask's shape and, in
// every row, as many pruned entries as mask (for N:M targets: in every group of M columns of
// every row); the host refuses it otherwise. Rows are independent: the host calls the
// function on any block of a tensor's rows, several concurrently.
type RefineFunc func(w Tensor, mask Mask, st Stats, t Target, info LayerInfo) (Mask, error)

// ServeRefine serves f as a refine plugin until the host disconnects, then exits. Refine
// plugins need a host speaking protocol version 2.
func ServeRefine(info RefineInfo, f RefineFunc) {
	if f == nil {
		panic("sdk: nil RefineFunc")
	}
	resp := infoResponse(info.Name, info.Description, pb.Kind_KIND_REFINE, info.Args)
	needs := info.NeedsFor
	if needs == nil {
		static := info.Needs
		needs = func(map[string]string) ([]Stat, error) { return static, nil }
	}
	serve(resp, infoServer{check: info.CheckArgs, stats: needs}, func(s *wire.Stage) {
		s.Refine = &refineServer{f: f, applies: info.Applies}
	})
}

type refineServer struct {
	pb.UnimplementedRefineServer
	f       RefineFunc
	applies func(LayerInfo) bool
}

func (s *refineServer) Applies(_ context.Context, req *pb.AppliesRequest) (*pb.AppliesResponse, error) {
	if s.applies == nil {
		return &pb.AppliesResponse{Applies: true}, nil
	}
	var ok bool
	if err := call(func() error { ok = s.applies(layerInfo(req.Layer, req.Args)); return nil }); err != nil {
		return nil, userError(err)
	}
	return &pb.AppliesResponse{Applies: ok}, nil
}

func (s *refineServer) Refine(_ context.Context, req *pb.RefineRequest) (*pb.RefineResponse, error) {
	rows, cols, err := matrixShape(req.Weight, "weight")
	if err != nil {
		return nil, badRequest(err)
	}
	if mr, mc, err := matrixShape(req.Mask, "mask"); err != nil || mr != rows || mc != cols {
		return nil, badRequest(fmt.Errorf("mask: shape %v, want [%d %d]", req.Mask.GetShape(), rows, cols))
	}
	wr, err := shm.Open(req.Weight, pb.DType_DTYPE_F32, false)
	if err != nil {
		return nil, badRequest(fmt.Errorf("weight: %w", err))
	}
	defer wr.Close()
	mr, err := shm.Open(req.Mask, pb.DType_DTYPE_U8, false)
	if err != nil {
		return nil, badRequest(fmt.Errorf("mask: %w", err))
	}
	defer mr.Close()
	st, closeStats, err := openStats(req.Stats, cols)
	if err != nil {
		return nil, badRequest(err)
	}
	defer closeStats()
	if req.Result == nil {
		return nil, badRequest(errors.New("missing result descriptor"))
	}
	out, err := shm.Open(req.Result, pb.DType_DTYPE_U8, true)
	if err != nil {
		return nil, badRequest(fmt.Errorf("result: %w", err))
	}
	defer out.Close()
	t, err := target(req.Target)
	if err != nil {
		return nil, badRequest(err)
	}
	in := NewMask(rows, cols)
	for k, b := range mr.Bytes() {
		in.Pruned[k] = b != 0
	}
	w := Tensor{Shape: []int{rows, cols}, Data: wr.Float32()}
	info := layerInfo(req.Layer, req.Args)
	info.Samples, info.Tokens = st.Samples, st.Tokens

	var m Mask
	if err := call(func() (err error) { m, err = s.f(w, in, st, t, info); return err }); err != nil {
		return nil, userError(err)
	}
	if len(m.Pruned) != product(m.Shape) {
		return nil, status.Errorf(codes.Internal, "plugin returned a mask of shape %v with %d values", m.Shape, len(m.Pruned))
	}
	if sameShape(m.Shape, req.Result.Shape) && !testhook.Hooks.SkipWrite {
		b := out.Bytes()
		for k, p := range m.Pruned {
			if p {
				b[k] = 1
			} else {
				b[k] = 0
			}
		}
	}
	return &pb.RefineResponse{Result: resultDesc(req.Result, m.Shape)}, nil
}
