package pipeline

import (
	"context"
	"fmt"
	"time"
)

// allocate runs the allocation pre-pass when the run has an Allocator: the dense model over
// the calibration windows, layer by layer (each layer's dense output is the next one's
// input; nothing is pruned), showing the allocator every layer's prunable linears with the
// statistics of their inputs; then the allocator's sparsities become the layers' targets. A
// resumed run continues the pre-pass where its checkpoint stopped, or reuses its result.
func (r *run) allocate(ctx context.Context) error {
	a := r.opt.Allocator
	if a == nil {
		return nil
	}
	L := r.cfg.NumLayers
	first := 0
	if st := r.state; st != nil {
		if st.Allocation != nil {
			r.steps += int64(L) * int64((len(r.opt.Calib)+r.chunk-1)/r.chunk+1)
			return r.applyAllocation(st.Summaries, st.Allocation)
		}
		if st.PrePassNext > 0 {
			first, r.summaries = st.PrePassNext, st.Summaries
			if err := readActs(preActsFile(r.opt.WorkDir, first), r.in.Samples(0, r.in.N), r.sums); err != nil {
				return err
			}
			r.steps += int64(first) * int64((len(r.opt.Calib)+r.chunk-1)/r.chunk+1)
			r.log.Info("resuming the allocation pre-pass", "workdir", r.opt.WorkDir, "next_layer", first)
		}
	}
	t0 := time.Now()
	var layerSeconds []float64
	for l := first; l < L; l++ {
		tl := time.Now()
		if err := r.observeLayer(ctx, l); err != nil {
			return err
		}
		layerSeconds = append(layerSeconds, time.Since(tl).Seconds())
		if l+1 < L && r.opt.WorkDir != "" {
			if err := r.checkpointPrePass(l + 1); err != nil {
				return err
			}
		}
	}
	sp, err := a.Allocate(ctx, r.summaries, r.opt.Target)
	if err != nil {
		return fmt.Errorf("allocation %s: %w", a.Name(), err)
	}
	if err := r.applyAllocation(r.summaries, sp); err != nil {
		return err
	}
	r.rep.Allocation.PrePassSeconds, r.rep.Allocation.LayerSeconds = time.Since(t0).Seconds(), layerSeconds
	if r.opt.WorkDir != "" {
		if err := r.checkpointPrePass(L); err != nil {
			return err
		}
	}
	// The pruning pass starts again from the embeddings.
	return r.embed()
}

// observeLayer runs dense layer l over the windows (into the next store, which becomes the
// input of layer l+1) and gives the allocator the layer's linears and statistics.
func (r *run) observeLayer(ctx context.Context, l int) error {
	a, spec := r.opt.Allocator, r.layers[l]
	r.label = fmt.Sprintf("allocation %d/%d", l+1, r.cfg.NumLayers)
	blk, err := r.opt.Model.LoadBlock(l, r.src)
	if err != nil {
		return fmt.Errorf("layer %d: %w", l, err)
	}
	acc := newAccumulator(len(spec.Inputs), false)
	acc.seqlen, acc.running = r.seqlen, r.opt.RunningStats
	if r.opt.RunningStats {
		acc.channel = make([]StatsKind, len(spec.Inputs))
		for i := range acc.channel {
			acc.channel[i] = StatsSumSq
		}
	}
	for i := 0; i < r.in.N; i += r.chunk {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("interrupted in the allocation pre-pass, layer %d: %w", l, err)
		}
		j := min(r.in.N, i+r.chunk)
		buf := r.next.Samples(i, j)
		copy(buf, r.in.Samples(i, j))
		if l == r.cfg.NumLayers-1 {
			blk.ForwardStats(buf, j-i, r.seqlen, acc.tap) // the last layer's output is not needed
		} else {
			blk.Forward(buf, j-i, r.seqlen, acc.tap)
		}
		acc.n += j - i
		r.step()
	}
	if acc.err != nil {
		return fmt.Errorf("layer %d: %w", l, acc.err)
	}
	var inputs []AllocInput
	for _, lin := range spec.Linears {
		if !r.pruned[lin.Name] {
			continue
		}
		w, err := r.src.Mat(lin.Name)
		if err != nil {
			return err
		}
		inputs = append(inputs, AllocInput{Info: r.info(l, lin), W: w, Stats: acc.stats(lin.Input, lin.Cols)})
	}
	summary, err := a.ObserveLayer(ctx, l, inputs)
	if err != nil {
		return fmt.Errorf("layer %d: allocation %s: %w", l, a.Name(), err)
	}
	r.summaries = append(r.summaries, summary)
	r.step()
	testPoint("prepass", l)
	r.in, r.next = r.next, r.in
	r.opt.Model.ReleaseBlock(l)
	for _, lin := range spec.Linears {
		r.opt.Source.Release(lin.Name)
	}
	return nil
}

// applyAllocation makes the layers' sparsities the targets of their tensors.
func (r *run) applyAllocation(summaries [][]float64, sp []float64) error {
	a := r.opt.Allocator
	if len(sp) != r.cfg.NumLayers {
		return fmt.Errorf("allocation %s: %d sparsities for %d layers: %w", a.Name(), len(sp), r.cfg.NumLayers, ErrBadTarget)
	}
	for l, spec := range r.layers {
		for _, lin := range spec.Linears {
			if !r.pruned[lin.Name] {
				continue
			}
			t := r.opt.Target
			t.Sparsity = sp[l]
			if err := t.Validate(lin.Cols); err != nil {
				return fmt.Errorf("allocation %s: layer %d: %w", a.Name(), l, err)
			}
			r.targets[lin.Name], r.sources[lin.Name] = t, "allocation "+a.Name()
		}
	}
	r.summaries, r.allocation = summaries, sp
	r.rep.Allocation = &AllocationReport{Name: a.Name(), Summaries: summaries, Sparsities: sp}
	r.log.Info("allocation", "name", a.Name(), "sparsities", fmt.Sprint(sp))
	return nil
}
