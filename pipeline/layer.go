package pipeline

import (
	"context"
	"fmt"
	"time"

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
		if acc, err = r.denseForward(ctx, spec, &lr); err != nil {
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
		if err := r.checkpoint(l, lw); err != nil {
			return err
		}
		testPoint("between", l)
	}
	r.log.Info("layer pruned", "layer", l, "sparsity", fmt.Sprintf("%.4f", lr.Sparsity), "seconds", fmt.Sprintf("%.2f", lr.Seconds))
	return nil
}

// denseForward runs layer spec's source weights over every calibration window, a chunk of
// windows at a time, and returns the statistics of its linears' inputs. The block's output
// is not needed (the pruned pass computes the next layer's input), so only what the
// statistics need is computed.
func (r *run) denseForward(ctx context.Context, spec LayerSpec, lr *LayerReport) (*accumulator, error) {
	l := spec.Index
	blk, err := r.opt.Model.LoadBlock(l, r.src)
	if err != nil {
		return nil, fmt.Errorf("layer %d: %w", l, err)
	}
	acc := newAccumulator(len(spec.Inputs), r.opt.Method.needsHessian())
	acc.seqlen, acc.running = r.seqlen, r.opt.RunningStats
	if r.channel != nil {
		acc.channel = r.channel[l]
	}
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
		testPoint("forward", l)
	}
	if acc.err != nil {
		return nil, fmt.Errorf("layer %d: %w", l, acc.err)
	}
	if ec, ok := blk.(ExpertCounter); ok {
		lr.ExpertTokens = ec.ExpertTokens()
		for e, n := range lr.ExpertTokens {
			if n == 0 {
				lr.EmptyExperts = append(lr.EmptyExperts, e)
			}
		}
		if len(lr.EmptyExperts) > 0 {
			r.log.Warn("experts got no calibration token: their statistics are zero", "layer", l, "experts", fmt.Sprint(lr.EmptyExperts))
		}
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
		info := r.info(l, lin)
		var st *Stats
		if acc != nil {
			st = acc.stats(lin.Input, lin.Cols)
		}
		z, err := r.pruneTensor(ctx, lin, st, info)
		if err != nil {
			return pruned, 0, 0, err
		}
		testPoint("export", l)
		m, err := r.w.Map(lin.Name)
		if err != nil {
			return pruned, 0, 0, err
		}
		pruned[lin.Name] = m
		r.step()
		zeros += z
		params += lin.Rows * lin.Cols
		tr := TensorReport{Name: lin.Name, Layer: l, Shape: []int{lin.Rows, lin.Cols}, Zeros: z,
			Sparsity: float64(z) / float64(lin.Rows*lin.Cols)}
		if t, ok := r.targets[lin.Name]; ok {
			tr.Target, tr.Source = &t.Sparsity, r.sources[lin.Name]
		}
		r.rep.Tensors = append(r.rep.Tensors, tr)
	}
	return pruned, zeros, params, nil
}

// pruneTensor prunes one linear in row blocks (PruneTensor), streaming the pruned rows into
// the output and, with a work directory, the layer's checkpoint file.
func (r *run) pruneTensor(ctx context.Context, lin LinearSpec, st *Stats, info LayerInfo) (int, error) {
	src, err := r.src.Mat(lin.Name)
	if err != nil {
		return 0, err
	}
	out, err := r.w.OpenTensor(lin.Name)
	if err != nil {
		return 0, err
	}
	sinks := teeWriterAt{out}
	if r.layerFile != nil {
		ck, err := r.layerFile.OpenTensor(lin.Name)
		if err != nil {
			return 0, fmt.Errorf("%w: layer %d: %w", ErrCheckpoint, info.Layer, err)
		}
		sinks = append(sinks, ck)
	}
	res, err := PruneTensor(ctx, r.opt.Method, TensorJob{W: src, Stats: st, Target: r.target(lin.Name), Info: info,
		Out: sinks, ScratchDir: r.opt.ScratchDir})
	if err != nil {
		return 0, err
	}
	for _, tw := range sinks {
		if err := tw.Close(); err != nil {
			return 0, err
		}
	}
	return int(res.Zeros), nil
}

// teeWriterAt writes every block to each of its tensor writers.
type teeWriterAt []*safetensors.TensorWriter

func (t teeWriterAt) WriteAt(p []byte, off int64) (int, error) {
	for _, w := range t {
		if n, err := w.WriteAt(p, off); err != nil {
			return n, err
		}
	}
	return len(p), nil
}
