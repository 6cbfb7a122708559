package pipeline

import (
	"context"
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/wanda-go/wanda/format/dtype"
	"github.com/wanda-go/wanda/format/safetensors"
	"github.com/wanda-go/wanda/tensor"
)

// layer prunes decoder layer l: a dense forward pass over the calibration windows gathers
// the statistics of every linear's input, every prunable linear is pruned and exported, a
// forward pass of the pruned layer gives the next layer's input, and with a work directory
// the layer is checkpointed.
func (r *run) layer(ctx context.Context, l int) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("interrupted before layer %d: %w", l, err)
	}
	spec := r.layers[l]
	r.label = fmt.Sprintf("layer %d/%d", l+1, r.cfg.NumLayers)
	lt := time.Now()
	lr := LayerReport{Layer: l}

	var acc *accumulator
	if r.needFwd {
		t0 := time.Now()
		var err error
		if acc, err = r.denseForward(ctx, spec); err != nil {
			return err
		}
		lr.DenseSeconds = time.Since(t0).Seconds()
	}

	t1 := time.Now()
	pruned, zeros, params, err := r.pruneLinears(ctx, spec, acc)
	defer func() {
		for _, m := range pruned {
			m.Close()
		}
	}()
	if err != nil {
		return err
	}
	lr.PruneSeconds = time.Since(t1).Seconds()

	if r.needFwd && l < r.cfg.NumLayers-1 {
		t2 := time.Now()
		if err := r.prunedForward(ctx, spec, pruned); err != nil {
			return err
		}
		lr.PrunedFwdSec = time.Since(t2).Seconds()
	}
	r.opt.Model.ReleaseBlock(l)
	for _, lin := range spec.Linears {
		r.opt.Source.Release(lin.Name)
	}
	r.meter.Sample()

	lr.Sparsity = float64(zeros) / float64(max(params, 1))
	lr.Seconds = time.Since(lt).Seconds()
	r.rep.Layers = append(r.rep.Layers, lr)
	r.zeros += zeros
	r.params += params
	if r.opt.WorkDir != "" {
		lw := r.layerFile
		r.layerFile = nil // checkpoint closes it
		if err := checkpoint(r.opt.WorkDir, l, r.cfg.NumLayers, r.fp, r.in, r.needFwd, lw, r.rep, r.zeros, r.params, r.sums); err != nil {
			return err
		}
		crashPoint("between", l)
	}
	r.log.Info("layer pruned", "layer", l, "sparsity", fmt.Sprintf("%.4f", lr.Sparsity), "seconds", fmt.Sprintf("%.2f", lr.Seconds))
	return nil
}

// denseForward runs layer spec's source weights over every calibration window, a chunk of
// windows at a time, and returns the statistics of its linears' inputs. The block's output
// is not needed (the pruned pass computes the next layer's input), so only what the
// statistics need is computed.
func (r *run) denseForward(ctx context.Context, spec LayerSpec) (*accumulator, error) {
	l := spec.Index
	blk, err := r.opt.Model.LoadBlock(l, r.src)
	if err != nil {
		return nil, fmt.Errorf("layer %d: %w", l, err)
	}
	acc := newAccumulator(len(spec.Inputs), r.opt.Method.needsHessian())
	H := r.cfg.HiddenSize
	if need := r.chunk * r.seqlen * H; cap(r.scratch) < need {
		r.scratch = make([]float32, need)
	}
	for i := 0; i < r.in.N; i += r.chunk {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("interrupted in layer %d: %w", l, err)
		}
		j := min(r.in.N, i+r.chunk)
		buf := r.scratch[:(j-i)*r.seqlen*H]
		copy(buf, r.in.Samples(i, j))
		blk.ForwardStats(buf, j-i, r.seqlen, acc.tap)
		acc.n += j - i
		r.step()
		crashPoint("forward", l)
	}
	return acc, nil
}

// prunedForward runs the pruned layer over every calibration window into the next store,
// which then becomes the input of the next layer.
func (r *run) prunedForward(ctx context.Context, spec LayerSpec, pruned map[string]*safetensors.Mapped) error {
	l := spec.Index
	over := &overlay{base: r.src, over: map[string]tensor.Mat{}}
	for _, lin := range spec.Linears {
		if m, ok := pruned[lin.Name]; ok {
			t, _ := r.opt.Source.Tensor(lin.Name)
			mat, err := TensorMat(lin.Name, t.DType, t.Shape, m.Bytes())
			if err != nil {
				return err
			}
			over.over[lin.Name] = mat
		}
	}
	blk, err := r.opt.Model.LoadBlock(l, over)
	if err != nil {
		return fmt.Errorf("layer %d: %w", l, err)
	}
	for i := 0; i < r.in.N; i += r.chunk {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("interrupted in layer %d: %w", l, err)
		}
		j := min(r.in.N, i+r.chunk)
		buf := r.next.Samples(i, j)
		copy(buf, r.in.Samples(i, j))
		blk.Forward(buf, j-i, r.seqlen, nil)
		r.step()
	}
	r.in, r.next = r.next, r.in
	return nil
}

// pruneLinears prunes every prunable linear of the layer in order, writes each to the
// output (and the layer's checkpoint file) and returns read-only maps of the written
// tensors for the pruned forward pass.
func (r *run) pruneLinears(ctx context.Context, spec LayerSpec, acc *accumulator) (map[string]*safetensors.Mapped, int, int, error) {
	l := spec.Index
	pruned := map[string]*safetensors.Mapped{}
	if r.opt.WorkDir != "" {
		var specs []safetensors.Spec
		for _, lin := range spec.Linears {
			if r.pruned[lin.Name] {
				t, _ := r.opt.Source.Tensor(lin.Name)
				specs = append(specs, safetensors.Spec{Name: lin.Name, DType: t.DType, Shape: t.Shape})
			}
		}
		lw, err := createLayerFile(r.opt.WorkDir, l, specs)
		if err != nil {
			return pruned, 0, 0, err
		}
		r.layerFile = lw
	}
	var zeros, params int
	for _, lin := range spec.Linears {
		if !r.pruned[lin.Name] {
			continue
		}
		info := LayerInfo{Layer: l, Tensor: lin.Name, Part: path.Base(lin.Module), ModelType: r.cfg.ModelType,
			Hidden: r.cfg.HiddenSize, Intermediate: r.cfg.IntermediateSize, NumLayers: r.cfg.NumLayers}
		var st *Stats
		if acc != nil {
			st = acc.stats(lin.Input, lin.Cols)
		}
		raw, z, err := r.pruneTensor(ctx, lin, st, info)
		if err != nil {
			return pruned, 0, 0, err
		}
		if err := r.w.Write(lin.Name, raw); err != nil {
			return pruned, 0, 0, err
		}
		crashPoint("export", l)
		if r.layerFile != nil {
			if err := r.layerFile.Write(lin.Name, raw); err != nil {
				return pruned, 0, 0, fmt.Errorf("%w: layer %d: %w", ErrCheckpoint, l, err)
			}
		}
		m, err := r.w.Map(lin.Name)
		if err != nil {
			return pruned, 0, 0, err
		}
		pruned[lin.Name] = m
		r.step()
		zeros += z
		params += lin.Rows * lin.Cols
		r.rep.Tensors = append(r.rep.Tensors, TensorReport{Name: lin.Name, Layer: l, Shape: []int{lin.Rows, lin.Cols},
			Zeros: z, Sparsity: float64(z) / float64(lin.Rows*lin.Cols)})
	}
	return pruned, zeros, params, nil
}

// pruneTensor prunes one linear and returns its bytes in the source dtype (pruned entries
// +0.0) and the number of zeros.
func (r *run) pruneTensor(ctx context.Context, lin LinearSpec, st *Stats, info LayerInfo) ([]byte, int, error) {
	src, err := r.src.Mat(lin.Name)
	if err != nil {
		return nil, 0, err
	}
	wm := NewMatrix(lin.Rows, lin.Cols)
	src.RowsF32(wm.Data, 0, lin.Rows)
	if err := prune(ctx, r.opt.Method, r.opt.Target, wm, st, info); err != nil {
		return nil, 0, err
	}
	// The exported weights are the source dtype: the pruned forward must see exactly them.
	roundTo(wm.Data, src.DType)
	zeros := 0
	for k, v := range wm.Data {
		if v == 0 {
			wm.Data[k] = 0 // -0.0 -> +0.0
			zeros++
		}
	}
	raw := make([]byte, len(wm.Data)*src.DType.Size())
	if err := dtype.FromFloat32(raw, wm.Data, src.DType); err != nil {
		return nil, 0, fmt.Errorf("%s: %w", lin.Name, err)
	}
	return raw, zeros, nil
}

// prune runs the method on one weight matrix in place.
func prune(ctx context.Context, m Method, t Target, w Matrix, st *Stats, info LayerInfo) error {
	if m.Solver != nil {
		mask, err := m.Solver.Solve(ctx, w, st, t, info)
		if err != nil {
			return stageErr(info, "solver "+m.Solver.Name(), err)
		}
		if mask == nil || mask.Rows != w.Rows || mask.Cols != w.Cols {
			return fmt.Errorf("%s: solver %s: %w: mask of the wrong shape", info, m.Solver.Name(), ErrShape)
		}
		mask.Apply(w)
		return nil
	}
	scores, err := m.Metric.Score(ctx, w, st, info)
	if err != nil {
		return stageErr(info, "metric "+m.Metric.Name(), err)
	}
	if scores.Rows != w.Rows || scores.Cols != w.Cols || len(scores.Data) != len(w.Data) {
		return fmt.Errorf("%s: metric %s: %w: scores %dx%d for weight %dx%d", info, m.Metric.Name(), ErrShape,
			scores.Rows, scores.Cols, w.Rows, w.Cols)
	}
	mask, err := m.Pattern.Select(ctx, scores, t, info)
	if err != nil {
		return stageErr(info, "pattern "+m.Pattern.Name(), err)
	}
	if mask == nil || mask.Rows != w.Rows || mask.Cols != w.Cols || len(mask.Bits) != (w.Rows*w.Cols+63)/64 {
		return fmt.Errorf("%s: pattern %s: %w: mask of the wrong shape", info, m.Pattern.Name(), ErrShape)
	}
	mask.Apply(w)
	return nil
}

// stageErr gives a stage's error its context: the layer and tensor, then the stage. Neither
// is repeated when the stage's error already names it (a plugin's error names the layer;
// the built-in stages name themselves).
func stageErr(info LayerInfo, stage string, err error) error {
	msg := err.Error()
	if strings.HasPrefix(msg, stage+":") {
		stage = ""
	}
	switch {
	case strings.Contains(msg, info.String()) && stage == "":
		return err
	case strings.Contains(msg, info.String()):
		return fmt.Errorf("%s: %w", stage, err)
	case stage == "":
		return fmt.Errorf("%s: %w", info, err)
	}
	return fmt.Errorf("%s: %s: %w", info, stage, err)
}

// roundTo rounds fp32 values to what dtype d stores, in place.
func roundTo(x []float32, d dtype.DType) {
	switch d {
	case dtype.BF16:
		for i, v := range x {
			x[i] = dtype.BF16ToF32(dtype.F32ToBF16(v))
		}
	case dtype.F16:
		for i, v := range x {
			x[i] = dtype.F16ToF32(dtype.F32ToF16(v))
		}
	}
}
