package pipeline

// The checks Run makes before any work: every tensor of the checkpoint against config.json,
// and the memory each layer's method will need against the limit.

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/wanda-go/wanda/format/safetensors"
)

// checkTensors compares every tensor of the checkpoint with what config.json implies (when
// the model can list them): a missing tensor, a shape that contradicts the config (also of a
// tensor that is only copied, such as model.norm.weight) or a decoder layer beyond
// num_hidden_layers is refused before any work, naming the file and the tensor. Other extra
// tensors are copied as they are, with a warning.
func (r *run) checkTensors() error {
	tl, ok := r.opt.Model.(TensorLister)
	if !ok {
		return nil
	}
	src := r.opt.Source
	want := map[string]bool{}
	var missing []string
	for _, spec := range tl.Tensors() {
		want[spec.Name] = true
		t, ok := src.Tensor(spec.Name)
		if !ok {
			missing = append(missing, spec.Name)
			continue
		}
		if !slices.Equal(t.Shape, spec.Shape) {
			return fmt.Errorf("%s: tensor %q: shape %v, config.json implies %v: %w", t.File, spec.Name, t.Shape, spec.Shape, ErrShape)
		}
	}
	if len(missing) > 0 {
		if len(missing) > 8 {
			missing = append(missing[:8], fmt.Sprintf("and %d more", len(missing)-8))
		}
		return fmt.Errorf("%s: %w: %s", r.opt.ModelDir, safetensors.ErrMissingTensor, strings.Join(missing, ", "))
	}
	var extra []string
	for _, name := range src.Names() {
		if want[name] || name == "lm_head.weight" && r.cfg.TieWordEmbeddings {
			continue
		}
		if l, ok := layerIndex(name); ok && l >= r.cfg.NumLayers {
			t, _ := src.Tensor(name)
			return fmt.Errorf("%s: tensor %q belongs to layer %d, but config.json has num_hidden_layers %d: %w",
				t.File, name, l, r.cfg.NumLayers, ErrShape)
		}
		extra = append(extra, name)
	}
	if len(extra) > 0 {
		r.log.Warn("tensors config.json does not describe are copied unchanged", "count", len(extra), "first", extra[0])
	}
	return nil
}

// layerIndex is L of a tensor named "model.layers.L.…" (or "….layers.L.…").
func layerIndex(name string) (int, bool) {
	i := strings.Index(name, "layers.")
	if i < 0 {
		return 0, false
	}
	rest := name[i+len("layers."):]
	j := strings.IndexByte(rest, '.')
	if j <= 0 {
		return 0, false
	}
	n, err := strconv.Atoi(rest[:j])
	return n, err == nil
}

// checkMemory refuses the run before it starts when pruning a linear of layer l would need
// more memory than the limit: the tensor's own need (TensorMemory) plus, for a solver, the
// Hessians the layer's dense pass accumulates (one [in, in] float64 per distinct input).
func (r *run) checkMemory(l int) error {
	limit := r.opt.MemoryLimit
	if limit <= 0 {
		return nil
	}
	var hess int64 // the layer's Hessian accumulators, [in, in] float64 per distinct input
	if r.opt.Method.needsHessian() {
		cols := map[int]int{}
		for _, lin := range r.layers[l].Linears {
			if r.pruned[lin.Name] {
				cols[lin.Input] = lin.Cols
			}
		}
		for _, c := range cols {
			hess += int64(c) * int64(c) * 8
		}
	}
	for _, lin := range r.layers[l].Linears {
		if !r.pruned[lin.Name] {
			continue
		}
		if hess >= limit {
			return fmt.Errorf("%w: %s on layer %d needs about %s for the Hessians of its inputs alone (%s is one of them, [%d, %d]), over the limit of %s: "+
				"raise the memory limit on a machine with more RAM, or use a method without a Hessian (wanda, magnitude)",
				ErrMemoryLimit, r.opt.Method.Name, l, gib(hess), lin.Name, lin.Cols, lin.Cols, gib(limit))
		}
		if err := CheckMemory(r.opt.Method, r.target(lin.Name), lin.Name, lin.Rows, lin.Cols, limit-hess); err != nil {
			return err
		}
	}
	return nil
}

// scratchBytes is the most scratch-file space one tensor's pruning needs at once.
func (r *run) scratchBytes() int64 {
	var n int64
	for _, spec := range r.layers {
		for _, lin := range spec.Linears {
			if r.pruned[lin.Name] {
				n = max(n, TensorScratch(r.opt.Method, r.opt.Target, lin.Rows, lin.Cols))
			}
		}
	}
	return n
}
