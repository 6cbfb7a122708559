package stagetest

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/wanda-go/wanda/pipeline"
)

// Option adjusts what the suite checks.
type Option func(*config)

type config struct {
	lowerIndexTies bool
	strictErrors   bool
	seed           uint64
	meanTol        float64
}

// LowerIndexTies also checks the built-ins' unstructured tie rule: among equal scores the
// lower index (column for row groups, row for column groups) is pruned first. (N:M ties follow
// PyTorch's CPU topk order, which the N:M checks take from the reference.)
func LowerIndexTies() Option { return func(c *config) { c.lowerIndexTies = true } }

// StrictErrors also checks that errors wrap the pipeline sentinels (ErrNonFinite for NaN
// inputs, ErrBadTarget for invalid targets, ErrShape for shape mismatches). Without it
// any non-nil error is accepted, since sentinels may not survive a process boundary.
func StrictErrors() Option { return func(c *config) { c.strictErrors = true } }

// Seed changes the seed of the random inputs (default 1).
func Seed(s uint64) Option { return func(c *config) { c.seed = s } }

func newConfig(opts []Option) *config {
	c := &config{seed: 1}
	for _, o := range opts {
		o(c)
	}
	return c
}

func (c *config) rng(salt uint64) *rand.Rand { return rand.New(rand.NewPCG(c.seed, salt)) }

// wantErr reports a missing or (in strict mode) mis-wrapped error.
func (c *config) wantErr(t *testing.T, what string, err, sentinel error) {
	t.Helper()
	switch {
	case err == nil:
		t.Errorf("%s: no error", what)
	case c.strictErrors && !errors.Is(err, sentinel):
		t.Errorf("%s: error %q does not wrap %q", what, err, sentinel)
	}
}

func testInfo(rows, cols int) pipeline.LayerInfo {
	return pipeline.LayerInfo{
		Layer: 0, Tensor: "model.layers.0.mlp.down_proj.weight", Part: "down_proj",
		ModelType: "llama", Hidden: rows, Intermediate: cols, NumLayers: 1,
	}
}

func cloneMatrix(m pipeline.Matrix) pipeline.Matrix {
	return pipeline.Matrix{Rows: m.Rows, Cols: m.Cols, Data: slices.Clone(m.Data)}
}

func cloneStats(st *pipeline.Stats) *pipeline.Stats {
	if st == nil {
		return nil
	}
	c := *st
	c.SumSq = slices.Clone(st.SumSq)
	c.Hessian = slices.Clone(st.Hessian)
	return &c
}

// sameBits32 reports whether a and b are bit-identical.
func sameBits32(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}

func sameBits64(a, b []float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float64bits(a[i]) != math.Float64bits(b[i]) {
			return false
		}
	}
	return true
}

func sameStats(a, b *pipeline.Stats) bool {
	if (a == nil) != (b == nil) {
		return false
	}
	if a == nil {
		return true
	}
	return a.N == b.N && a.Tokens == b.Tokens && sameBits32(a.SumSq, b.SumSq) && sameBits64(a.Hessian, b.Hessian)
}

func sameMask(a, b *pipeline.Mask) bool {
	return a.Rows == b.Rows && a.Cols == b.Cols && slices.Equal(a.Bits, b.Bits)
}

// checkMaskShape verifies the mask's dimensions and that no bit past Rows·Cols is set.
func checkMaskShape(m *pipeline.Mask, rows, cols int) error {
	if m == nil {
		return errors.New("nil mask")
	}
	if m.Rows != rows || m.Cols != cols {
		return fmt.Errorf("mask is %d×%d, want %d×%d", m.Rows, m.Cols, rows, cols)
	}
	n := rows * cols
	if len(m.Bits) != (n+63)/64 {
		return fmt.Errorf("mask has %d words, want %d", len(m.Bits), (n+63)/64)
	}
	if n%64 != 0 && m.Bits[len(m.Bits)-1]>>(uint(n)%64) != 0 {
		return errors.New("mask has bits set past rows·cols")
	}
	return nil
}

// pyIntMul is Python's int(n*s).
func pyIntMul(n int, s float64) int { return min(max(int(float64(n)*s), 0), n) }

func randNormal32(r *rand.Rand, n int, scale float64) []float32 {
	d := make([]float32, n)
	for i := range d {
		d[i] = float32(r.NormFloat64() * scale)
	}
	return d
}

// randStats draws nseq sequences of seqlen tokens of cols correlated features and returns
// X [tokens, cols] (float64) with the Stats the pipeline would accumulate from it:
// SumSq_j = (1/N)·Σ x_j² and Hessian = (2/N)·Σ x xᵀ. deadCol >= 0 makes that feature zero.
func randStats(r *rand.Rand, cols, nseq, seqlen, deadCol int) ([]float64, *pipeline.Stats) {
	tokens := nseq * seqlen
	// A few shared factors make the features correlated (a non-diagonal Hessian), and a
	// per-feature scale spreads the column norms, as in real activations.
	const factors = 8
	load := make([]float64, factors*cols)
	for i := range load {
		load[i] = r.NormFloat64()
	}
	scale := make([]float64, cols)
	for j := range scale {
		scale[j] = math.Exp(r.NormFloat64() * 0.7)
	}
	x := make([]float64, tokens*cols)
	f := make([]float64, factors)
	for t := range tokens {
		for q := range f {
			f[q] = r.NormFloat64()
		}
		for j := range cols {
			v := r.NormFloat64()
			for q := range f {
				v += 0.6 * f[q] * load[q*cols+j]
			}
			if j == deadCol {
				v = 0
			}
			x[t*cols+j] = float32ify(v * scale[j])
		}
	}
	st := &pipeline.Stats{N: nseq, Tokens: tokens, SumSq: make([]float32, cols), Hessian: make([]float64, cols*cols)}
	for j := range cols {
		var s float64
		for t := range tokens {
			s += x[t*cols+j] * x[t*cols+j]
		}
		st.SumSq[j] = float32(s / float64(nseq))
	}
	for a := range cols {
		for b := 0; b <= a; b++ {
			var s float64
			for t := range tokens {
				s += x[t*cols+a] * x[t*cols+b]
			}
			s *= 2 / float64(nseq)
			st.Hessian[a*cols+b], st.Hessian[b*cols+a] = s, s
		}
	}
	return x, st
}

// float32ify rounds v to float32 precision (activations are float32 in the pipeline).
func float32ify(v float64) float64 { return float64(float32(v)) }
