package stagetest

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/wanda-go/wanda/format/dtype"
	"github.com/wanda-go/wanda/pipeline"
	"github.com/wanda-go/wanda/tensor"
)

// AllocLayer is one decoder layer's prunable linears, as the allocation pre-pass shows them.
type AllocLayer []pipeline.AllocInput

// AllocModel returns a small random LLaMA-shaped model for allocators: layers decoder
// layers of seven linears (q, k, v, o: hidden×hidden; gate, up: 2·hidden×hidden; down:
// hidden×2·hidden), weights stored as F32, BF16 and F16 in turn (layer l in the l-th of
// those), a few large outlier weights in some rows (more in some layers than in others) and
// input statistics SumSq from correlated activations. The same seed gives the same model.
func AllocModel(seed uint64, layers, hidden int) []AllocLayer {
	r := rand.New(rand.NewPCG(seed, 77))
	parts := []struct {
		module   string
		out, in  int
		statsFor int // which input's statistics: 0 attention input, 1 o_proj, 2 MLP input, 3 down_proj
	}{
		{"self_attn.q_proj", hidden, hidden, 0}, {"self_attn.k_proj", hidden, hidden, 0},
		{"self_attn.v_proj", hidden, hidden, 0}, {"self_attn.o_proj", hidden, hidden, 1},
		{"mlp.gate_proj", 2 * hidden, hidden, 2}, {"mlp.up_proj", 2 * hidden, hidden, 2},
		{"mlp.down_proj", hidden, 2 * hidden, 3},
	}
	dts := []dtype.DType{dtype.F32, dtype.BF16, dtype.F16}
	model := make([]AllocLayer, layers)
	for l := range layers {
		dt := dts[l%len(dts)]
		var inputs [4]*pipeline.Stats
		for k, cols := range []int{hidden, hidden, hidden, 2 * hidden} {
			_, st := randStats(r, cols, 2, 8, -1)
			st.Hessian = nil
			inputs[k] = st
		}
		outlierRate := 0.002 * float64(1+l%3) * float64(1+l%2)
		for _, p := range parts {
			w := randNormal32(r, p.out*p.in, 0.02)
			for k := range w {
				if r.Float64() < outlierRate {
					w[k] *= 40
				}
			}
			raw := make([]byte, len(w)*dt.Size())
			if err := dtype.FromFloat32(raw, w, dt); err != nil {
				panic(err)
			}
			part := p.module[len("self_attn."):]
			if p.module[:3] == "mlp" {
				part = p.module[len("mlp."):]
			}
			model[l] = append(model[l], pipeline.AllocInput{
				Info: pipeline.LayerInfo{Layer: l, Tensor: fmt.Sprintf("model.layers.%d.%s.weight", l, p.module), Part: part,
					Expert: -1, ModelType: "llama", Hidden: hidden, Intermediate: 2 * hidden, NumLayers: layers},
				W:     tensor.Mat{Rows: p.out, Cols: p.in, DType: dt, Raw: raw},
				Stats: inputs[p.statsFor],
			})
		}
	}
	return model
}

// MeanTarget also checks that the sparsities of an allocation average the target within tol
// (unweighted mean over layers) — OWL's rule when no layer hits its floor.
func MeanTarget(tol float64) Option { return func(c *config) { c.meanTol = tol } }

// TestAllocator checks a on AllocModel models (6 layers and 1 layer):
//
//   - ObserveLayer succeeds on every layer (weights stored as F32, BF16 and F16) and returns
//     finite numbers; it does not modify the weights or the statistics; its summary depends
//     only on its arguments (observing layers again, in another order, gives the same
//     summaries bit for bit: a resumed run observes the remaining layers in a new process);
//   - Allocate, for targets 0.5, 0.7 and 0.3, returns one sparsity per layer, each in [0, 1)
//     and finite, the same twice, without modifying the summaries (and, with MeanTarget,
//     averaging the target);
//   - errors: a NaN or ±Inf weight, a NaN statistic, statistics of the wrong length, no
//     layers, and target sparsities 1, 1.5, −0.1 and NaN. Only a non-nil error is required
//     (the built-in reports its own sentinels); with StrictErrors the NaN and shape errors
//     of ObserveLayer must wrap ErrNonFinite and ErrShape.
//
// It returns the sparsities of the 6-layer model at target 0.5.
func TestAllocator(t *testing.T, a pipeline.Allocator, opts ...Option) []float64 {
	t.Helper()
	c := newConfig(opts)
	ctx := context.Background()
	if a.Name() == "" {
		t.Errorf("allocator has an empty Name")
	}
	model := AllocModel(c.seed, 6, 32)
	observe := func(l int, lins AllocLayer) []float64 {
		t.Helper()
		raws := make([][]byte, len(lins))
		sums := make([]*pipeline.Stats, len(lins))
		for i, in := range lins {
			raws[i], sums[i] = slices.Clone(in.W.Raw), cloneStats(in.Stats)
		}
		s, err := a.ObserveLayer(ctx, l, lins)
		if err != nil {
			t.Fatalf("ObserveLayer(%d): %v", l, err)
		}
		for k, v := range s {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				t.Errorf("ObserveLayer(%d): summary value %d is %v", l, k, v)
			}
		}
		for i, in := range lins {
			if !slices.Equal(in.W.Raw, raws[i]) {
				t.Errorf("ObserveLayer(%d) modified the weights of %s", l, in.Info.Tensor)
			}
			if !sameStats(in.Stats, sums[i]) {
				t.Errorf("ObserveLayer(%d) modified the statistics of %s", l, in.Info.Tensor)
			}
		}
		return s
	}
	var sums [][]float64
	for l, lins := range model {
		sums = append(sums, observe(l, lins))
	}
	t.Run("stateless", func(t *testing.T) {
		for _, l := range []int{4, 0, 2} {
			if again := observe(l, model[l]); !sameBits64(again, sums[l]) {
				t.Errorf("layer %d observed again: %v, first %v", l, again, sums[l])
			}
		}
	})

	var result []float64
	for _, s := range []float64{0.5, 0.7, 0.3} {
		t.Run(fmt.Sprintf("allocate %g", s), func(t *testing.T) {
			sp := c.allocateChecked(t, ctx, a, sums, s)
			if s == 0.5 {
				result = sp
			}
		})
	}
	t.Run("one layer", func(t *testing.T) {
		one := AllocModel(c.seed+1, 1, 16)
		c.allocateChecked(t, ctx, a, [][]float64{observe(0, one[0])}, 0.5)
	})

	t.Run("errors", func(t *testing.T) {
		r := c.rng(7000)
		lins := model[0] // stored as F32
		with := func(i int, f func(in *pipeline.AllocInput)) AllocLayer {
			cp := slices.Clone(lins)
			in := cp[i]
			in.W.Raw = slices.Clone(in.W.Raw)
			in.Stats = cloneStats(in.Stats)
			f(&in)
			cp[i] = in
			return cp
		}
		for _, bad := range []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1))} {
			i := r.IntN(len(lins))
			bl := with(i, func(in *pipeline.AllocInput) {
				k := r.IntN(in.W.Rows * in.W.Cols)
				dtype.FromFloat32(in.W.Raw[4*k:4*k+4], []float32{bad}, dtype.F32)
			})
			_, err := a.ObserveLayer(ctx, 0, bl)
			c.wantErr(t, fmt.Sprintf("weight %g in %s", bad, lins[i].Info.Tensor), err, pipeline.ErrNonFinite)
		}
		bl := with(3, func(in *pipeline.AllocInput) { in.Stats.SumSq[r.IntN(len(in.Stats.SumSq))] = float32(math.NaN()) })
		_, err := a.ObserveLayer(ctx, 0, bl)
		c.wantErr(t, "SumSq NaN", err, pipeline.ErrNonFinite)
		bl = with(6, func(in *pipeline.AllocInput) { in.Stats.SumSq = in.Stats.SumSq[1:] })
		_, err = a.ObserveLayer(ctx, 0, bl)
		c.wantErr(t, "SumSq shorter than Cols", err, pipeline.ErrShape)

		if _, err := a.Allocate(ctx, nil, pipeline.Target{Sparsity: 0.5}); err == nil {
			t.Errorf("Allocate without layers: no error")
		}
		for _, s := range []float64{1, 1.5, -0.1, math.NaN()} {
			if sp, err := a.Allocate(ctx, sums, pipeline.Target{Sparsity: s}); err == nil {
				t.Errorf("Allocate at target %g: no error, %v", s, sp)
			}
		}
	})
	return result
}

// allocateChecked allocates twice at target s and checks the result.
func (c *config) allocateChecked(t *testing.T, ctx context.Context, a pipeline.Allocator, sums [][]float64, s float64) []float64 {
	t.Helper()
	before := make([][]float64, len(sums))
	for i, x := range sums {
		before[i] = slices.Clone(x)
	}
	sp, err := a.Allocate(ctx, sums, pipeline.Target{Sparsity: s})
	if err != nil {
		t.Fatalf("Allocate: %v", err)
	}
	if len(sp) != len(sums) {
		t.Fatalf("%d sparsities for %d layers", len(sp), len(sums))
	}
	var mean float64
	for l, v := range sp {
		if !(v >= 0 && v < 1) {
			t.Errorf("layer %d: sparsity %v", l, v)
		}
		mean += v
	}
	mean /= float64(len(sp))
	if c.meanTol > 0 && math.Abs(mean-s) > c.meanTol {
		t.Errorf("sparsities %v average %v, target %v", sp, mean, s)
	}
	for i := range sums {
		if !sameBits64(sums[i], before[i]) {
			t.Errorf("Allocate modified the summary of layer %d", i)
		}
	}
	again, err := a.Allocate(ctx, sums, pipeline.Target{Sparsity: s})
	if err != nil || !sameBits64(again, sp) {
		t.Errorf("second Allocate: %v, %v (first %v)", again, err, sp)
	}
	return sp
}
