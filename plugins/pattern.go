package plugins

import (
	"context"
	"fmt"
	"io"

	"github.com/wanda-go/wanda/pipeline"
	"github.com/wanda-go/wanda/plugins/internal/shm"
	pb "github.com/wanda-go/wanda/plugins/proto"
)

// Pattern is a pattern plugin seen through pipeline.Pattern. Close ends its process.
type Pattern struct{ c *conn }

var (
	_ pipeline.Pattern = (*Pattern)(nil)
	_ io.Closer        = (*Pattern)(nil)
)

// OpenPattern starts the pattern plugin at path and checks its handshake and Info. The
// returned closer (the same *Pattern) ends the process and removes the scratch files; it must
// be called. ctx bounds only the start.
func OpenPattern(ctx context.Context, path string, opts HostOptions) (pipeline.Pattern, io.Closer, error) {
	c, err := start(ctx, path, opts, KindPattern)
	if err != nil {
		return nil, nil, err
	}
	p := &Pattern{c: c}
	return p, p, nil
}

// Name returns "plugin:" and the name the plugin reports.
func (p *Pattern) Name() string { return "plugin:" + p.c.info.Name }

// Info returns what the plugin reported.
func (p *Pattern) Info() Info { return p.c.info }

// String identifies the plugin for a run's checkpoint: name, kind, the executable's SHA-256
// and the arguments.
func (p *Pattern) String() string { return p.c.key() }

// Close ends the plugin process and removes its scratch files.
func (p *Pattern) Close() error { return p.c.Close() }

func groupMsg(g pipeline.Group) (pb.Group, error) {
	switch g {
	case pipeline.GroupRow:
		return pb.Group_GROUP_ROW, nil
	case pipeline.GroupMatrix:
		return pb.Group_GROUP_MATRIX, nil
	case pipeline.GroupColumn:
		return pb.Group_GROUP_COLUMN, nil
	}
	return 0, fmt.Errorf("%w: unknown group %v", pipeline.ErrBadTarget, g)
}

// Select validates t, sends the scores to the plugin and returns its mask, after checking
// its shape and that every entry is 0 or 1.
func (p *Pattern) Select(ctx context.Context, scores pipeline.Matrix, t pipeline.Target, info pipeline.LayerInfo) (*pipeline.Mask, error) {
	c := p.c
	li := &info
	if scores.Rows < 0 || scores.Cols < 0 || len(scores.Data) != scores.Rows*scores.Cols {
		return nil, c.errf("select", li, pipeline.ErrShape,
			fmt.Errorf("scores %dx%d have %d values", scores.Rows, scores.Cols, len(scores.Data)))
	}
	if err := t.Validate(scores.Cols); err != nil {
		return nil, c.errf("select", li, err)
	}
	g, err := groupMsg(t.Group)
	if err != nil {
		return nil, c.errf("select", li, err)
	}
	n := scores.Rows * scores.Cols
	if n == 0 {
		return pipeline.NewMask(scores.Rows, scores.Cols), nil
	}

	c.mu.RLock()
	defer c.mu.RUnlock()
	if err := c.deadErr(); err != nil {
		return nil, c.closedErr("select", li, err)
	}
	in, err := c.pool.Get(4 * n)
	if err != nil {
		return nil, c.errf("select", li, fmt.Errorf("scratch file: %w", err))
	}
	defer c.pool.Put(in)
	out, err := c.pool.Get(n)
	if err != nil {
		return nil, c.errf("select", li, fmt.Errorf("scratch file: %w", err))
	}
	defer c.pool.Put(out)

	if k := copyNoNaN(shm.Float32s(in.Bytes()[:4*n]), scores.Data); k >= 0 {
		return nil, c.errf("select", li, pipeline.ErrNonFinite,
			fmt.Errorf("score (%d, %d) is NaN", k/scores.Cols, k%scores.Cols))
	}
	res := out.Bytes()[:n]
	fillBytes(res, 0xff) // an entry the plugin does not write is rejected
	req := &pb.SelectRequest{
		Layer:  layerMsg(info),
		Scores: &pb.TensorDesc{Path: in.Path(), Dtype: pb.DType_DTYPE_F32, Shape: dims(scores.Rows, scores.Cols)},
		Target: &pb.Target{Sparsity: t.Sparsity, N: int64(t.N), M: int64(t.M), Group: g, Variant: t.Variant},
		Result: &pb.TensorDesc{Path: out.Path(), Dtype: pb.DType_DTYPE_U8, Shape: dims(scores.Rows, scores.Cols)},
		Args:   c.args,
	}
	var resp *pb.SelectResponse
	if err := c.call(ctx, "select", li, func(ctx context.Context) (err error) {
		resp, err = c.rpc.Pattern.Select(ctx, req)
		return err
	}); err != nil {
		return nil, err
	}
	if err := checkResult(resp.GetResult(), req.Result); err != nil {
		return nil, c.errf("select", li, ErrResult, err)
	}
	mask := pipeline.NewMask(scores.Rows, scores.Cols)
	for k, v := range res {
		switch v {
		case 0:
		case 1:
			mask.Bits[k>>6] |= 1 << (uint(k) & 63)
		default:
			return nil, c.errf("select", li, ErrResult,
				fmt.Errorf("mask entry (%d, %d) is %d, want 0 (keep) or 1 (prune)", k/scores.Cols, k%scores.Cols, v))
		}
	}
	return mask, nil
}

func fillBytes(b []byte, v byte) {
	if len(b) == 0 {
		return
	}
	b[0] = v
	for n := 1; n < len(b); n *= 2 {
		copy(b[n:], b[:n])
	}
}

// copyNoNaN copies src to dst and returns the index of the first NaN, or -1. ±Inf pass:
// they order like any other score.
func copyNoNaN(dst, src []float32) int {
	dst = dst[:len(src)]
	first := -1
	for k, v := range src {
		dst[k] = v
		if v != v && first < 0 {
			first = k
		}
	}
	return first
}
