package plugins

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"

	"github.com/wanda-go/wanda/pipeline"
	"github.com/wanda-go/wanda/plugins/internal/shm"
	pb "github.com/wanda-go/wanda/plugins/proto"
)

// Metric is a metric plugin seen through pipeline.Metric. Close ends its process.
type Metric struct{ c *conn }

var (
	_ pipeline.Metric = (*Metric)(nil)
	_ io.Closer       = (*Metric)(nil)
)

// OpenMetric starts the metric plugin at path and checks its handshake and Info. The returned
// closer (the same *Metric) ends the process and removes the scratch files; it must be called.
// ctx bounds only the start.
func OpenMetric(ctx context.Context, path string, opts HostOptions) (pipeline.Metric, io.Closer, error) {
	c, err := start(ctx, path, opts, KindMetric)
	if err != nil {
		return nil, nil, err
	}
	m := &Metric{c: c}
	return m, m, nil
}

// Name returns "plugin:" and the name the plugin reports.
func (m *Metric) Name() string { return "plugin:" + m.c.info.Name }

// Info returns what the plugin reported.
func (m *Metric) Info() Info { return m.c.info }

// String identifies the plugin for a run's checkpoint: name, kind, the executable's SHA-256
// and the arguments.
func (m *Metric) String() string { return m.c.key() }

// NeedsStats reports whether the plugin reads activation statistics.
func (m *Metric) NeedsStats() bool { return m.c.info.NeedsStats }

// Close ends the plugin process and removes its scratch files.
func (m *Metric) Close() error { return m.c.Close() }

// Score sends W (and the statistics' SumSq, if the plugin needs them) to the plugin and
// returns its scores, after checking their shape and that every score is finite.
func (m *Metric) Score(ctx context.Context, w pipeline.Matrix, st *pipeline.Stats, info pipeline.LayerInfo) (pipeline.Matrix, error) {
	c := m.c
	li := &info
	if w.Rows < 0 || w.Cols < 0 || len(w.Data) != w.Rows*w.Cols {
		return pipeline.Matrix{}, c.errf("score", li, pipeline.ErrShape,
			fmt.Errorf("weight %dx%d has %d values", w.Rows, w.Cols, len(w.Data)))
	}
	var sumSq []float32
	if c.info.NeedsStats {
		if st == nil || st.SumSq == nil {
			return pipeline.Matrix{}, c.errf("score", li, errors.New("the plugin needs activation statistics and none were given"))
		}
		if len(st.SumSq) != w.Cols {
			return pipeline.Matrix{}, c.errf("score", li, pipeline.ErrShape,
				fmt.Errorf("statistics have %d channels, weight has %d input columns", len(st.SumSq), w.Cols))
		}
		sumSq = st.SumSq
	}
	if w.Rows*w.Cols == 0 {
		return pipeline.NewMatrix(w.Rows, w.Cols), nil
	}

	c.mu.RLock()
	defer c.mu.RUnlock()
	if err := c.deadErr(); err != nil {
		return pipeline.Matrix{}, c.closedErr("score", li, err)
	}
	wBytes := 4 * len(w.Data)
	sOff := shm.AlignUp(wBytes)
	in, err := c.pool.Get(sOff + 4*len(sumSq))
	if err != nil {
		return pipeline.Matrix{}, c.errf("score", li, fmt.Errorf("scratch file: %w", err))
	}
	defer c.pool.Put(in)
	out, err := c.pool.Get(wBytes)
	if err != nil {
		return pipeline.Matrix{}, c.errf("score", li, fmt.Errorf("scratch file: %w", err))
	}
	defer c.pool.Put(out)

	if k, bad := copyFinite(shm.Float32s(in.Bytes()[:wBytes]), w.Data); k >= 0 {
		return pipeline.Matrix{}, c.errf("score", li, pipeline.ErrNonFinite,
			fmt.Errorf("weight (%d, %d) is %v (%d non-finite weights)", k/w.Cols, k%w.Cols, w.Data[k], bad))
	}
	req := &pb.ScoreRequest{
		Layer:  layerMsg(info),
		Weight: &pb.TensorDesc{Path: in.Path(), Offset: 0, Dtype: pb.DType_DTYPE_F32, Shape: dims(w.Rows, w.Cols)},
		Result: &pb.TensorDesc{Path: out.Path(), Offset: 0, Dtype: pb.DType_DTYPE_F32, Shape: dims(w.Rows, w.Cols)},
		Args:   c.args,
	}
	if st != nil {
		req.Samples, req.Tokens = int64(st.N), int64(st.Tokens)
	}
	if sumSq != nil {
		if k, _ := copyFinite(shm.Float32s(in.Bytes()[sOff:sOff+4*len(sumSq)]), sumSq); k >= 0 {
			return pipeline.Matrix{}, c.errf("score", li, pipeline.ErrNonFinite,
				fmt.Errorf("activation statistic %d is %v", k, sumSq[k]))
		}
		req.SumSq = &pb.TensorDesc{Path: in.Path(), Offset: uint64(sOff), Dtype: pb.DType_DTYPE_F32, Shape: dims(len(sumSq))}
	}
	res := out.Bytes()[:wBytes]
	fillNaN(res) // a score the plugin does not write reads as NaN and is rejected

	var resp *pb.ScoreResponse
	if err := c.call(ctx, "score", li, func(ctx context.Context) (err error) {
		resp, err = c.rpc.Metric.Score(ctx, req)
		return err
	}); err != nil {
		return pipeline.Matrix{}, err
	}
	if err := checkResult(resp.GetResult(), req.Result); err != nil {
		return pipeline.Matrix{}, c.errf("score", li, ErrResult, err)
	}
	scores := pipeline.NewMatrix(w.Rows, w.Cols)
	if k, bad := copyFinite(scores.Data, shm.Float32s(res)); k >= 0 {
		return pipeline.Matrix{}, c.errf("score", li, ErrResult, pipeline.ErrNonFinite,
			fmt.Errorf("score (%d, %d) is %v (%d non-finite scores)", k/w.Cols, k%w.Cols, scores.Data[k], bad))
	}
	return scores, nil
}

func dims(d ...int) []uint64 {
	s := make([]uint64, len(d))
	for i, v := range d {
		s[i] = uint64(v)
	}
	return s
}

func layerMsg(li pipeline.LayerInfo) *pb.LayerInfo {
	m := &pb.LayerInfo{
		Layer: int64(li.Layer), Tensor: li.Tensor, Part: li.Part, ModelType: li.ModelType,
		Hidden: int64(li.Hidden), Intermediate: int64(li.Intermediate), NumLayers: int64(li.NumLayers),
	}
	if li.Expert >= 0 {
		e := int64(li.Expert)
		m.Expert = &e
	}
	return m
}

// checkResult compares the descriptor a plugin says it wrote with the one requested.
func checkResult(got, want *pb.TensorDesc) error {
	if got == nil {
		return errors.New("reply without a result descriptor")
	}
	if !slices.Equal(got.Shape, want.Shape) {
		return fmt.Errorf("%w: result shape %v, want %v", pipeline.ErrShape, got.Shape, want.Shape)
	}
	if got.Dtype != want.Dtype || got.Path != want.Path || got.Offset != want.Offset {
		return fmt.Errorf("result written as %v at %s+%d, want %v at %s+%d",
			got.Dtype, got.Path, got.Offset, want.Dtype, want.Path, want.Offset)
	}
	return nil
}

// fillNaN fills b (a float32 buffer) with quiet NaNs.
func fillNaN(b []byte) {
	f := shm.Float32s(b)
	if len(f) == 0 {
		return
	}
	f[0] = float32(math.NaN())
	for n := 1; n < len(f); n *= 2 {
		copy(f[n:], f[:n])
	}
}

// copyFinite copies src to dst and returns the index of the first NaN or ±Inf and how many
// there are, or -1, 0. It copies and checks a cache-sized chunk at a time.
func copyFinite(dst, src []float32) (first, count int) {
	first = -1
	dst = dst[:len(src)]
	const chunk = 8192
	for lo := 0; lo < len(src); lo += chunk {
		hi := min(lo+chunk, len(src))
		copy(dst[lo:hi], src[lo:hi])
		if allFinite(dst[lo:hi]) {
			continue
		}
		for k := lo; k < len(src); k++ { // rare: locate and count
			if v := src[k]; v-v != 0 {
				if first < 0 {
					first = k
				}
				count++
			}
		}
		copy(dst[hi:], src[hi:])
		return first, count
	}
	return -1, 0
}

// allFinite reports whether x has no NaN or ±Inf: v-v is +0 for every finite v and NaN
// otherwise, and a NaN term makes the sum NaN. Four sums keep the adds independent.
func allFinite(x []float32) bool {
	var a0, a1, a2, a3 float32
	for len(x) >= 4 {
		a0 += x[0] - x[0]
		a1 += x[1] - x[1]
		a2 += x[2] - x[2]
		a3 += x[3] - x[3]
		x = x[4:]
	}
	for _, v := range x {
		a0 += v - v
	}
	return a0+a1+a2+a3 == 0
}
