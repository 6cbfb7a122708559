package modelgen

import (
	"math"
	"strings"
	"sync"

	"github.com/wanda-go/wanda/format/config"
	"github.com/wanda-go/wanda/format/dtype"
	"github.com/wanda-go/wanda/format/safetensors"
)

// chunkElems is how many elements one worker generates and writes at a time:
// 2 Mi elements hold 8 MiB of float32 plus 4 MiB of bf16, per worker. Values
// are indexed by element, so the files do not depend on it (the tests lower it
// to force many chunks on a tiny model).
var chunkElems int64 = 2 << 20

// tensorKind selects the distribution of a tensor's values.
type tensorKind uint8

const (
	kindLinear    tensorKind = iota // linears, biases, lm_head: N(0, 0.02²)
	kindEmbed                       // outlier columns have std 0.02·EmbedOutlierScale
	kindFinalNorm                   // 1 + N(0, 0.02²) (every norm without outliers)
	kindLayerNorm                   // 1 + N(0, 0.02²); outlier channels NormOutlierScale + N(0, 0.02²)
)

// kindOf is the distribution of tensor name: the embeddings; the norms whose output
// feeds linears of the residual stream (input_layernorm, post_attention_layernorm,
// pre_feedforward_layernorm) carry the outlier channels; the other norms (the final
// one, q/k norms, post_feedforward_layernorm) are plain; everything else is a linear or
// a bias.
func kindOf(name string) tensorKind {
	switch {
	case name == config.EmbedTokens:
		return kindEmbed
	case name == config.FinalNorm:
		return kindFinalNorm
	case !strings.HasPrefix(name, "model.layers."):
		return kindLinear
	case strings.HasSuffix(name, ".input_layernorm.weight"), strings.HasSuffix(name, ".post_attention_layernorm.weight"),
		strings.HasSuffix(name, ".pre_feedforward_layernorm.weight"):
		return kindLayerNorm
	case strings.HasSuffix(name, "norm.weight"):
		return kindFinalNorm
	}
	return kindLinear
}

// plan is one tensor being generated: its random stream and how to shape it.
type plan struct {
	name  string
	numel int64
	kind  tensorKind
	state uint64 // the SplitMix64 state before the tensor's first draw
	// onePlus: the model applies its norms as x·(1+w) (Gemma), so norm weights are
	// stored minus one (the effective weights are those of the other models).
	onePlus bool
	colStd  []float64 // kindEmbed: std of every hidden column
	tw      *safetensors.TensorWriter
	mu      sync.Mutex
	left    int64 // chunks not yet written
}

type chunk struct {
	p      *plan
	lo, hi int64 // element range
}

// writeTensors generates every tensor in chunks of chunkElems elements with
// o.Workers goroutines and writes each chunk at its place through a
// safetensors.TensorWriter, so memory holds o.Workers chunks, never a whole
// tensor. Each element's value depends only on the seed, the tensor's name
// and the element's index (the stream is jumped to the element, see
// fillRange), so the bytes are those of generating the tensor sequentially.
func (o Options) writeTensors(w *safetensors.Writer, expected []config.TensorSpec, dt dtype.DType, onePlus bool) error {
	outliers := o.outliers()
	embedStd := make([]float64, o.Hidden)
	for i := range embedStd {
		embedStd[i] = weightStd
	}
	for _, c := range outliers {
		embedStd[c] *= EmbedOutlierScale // at run time, as the sequential generator did
	}

	jobs := make(chan chunk, o.Workers)
	var (
		errMu    sync.Mutex
		firstErr error
		failed   = make(chan struct{})
	)
	fail := func(err error) {
		errMu.Lock()
		defer errMu.Unlock()
		if firstErr == nil {
			firstErr = err
			close(failed)
		}
	}
	var wg sync.WaitGroup
	for range o.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var f32 []float32
			var raw []byte
			for c := range jobs {
				n := int(c.hi - c.lo)
				if cap(f32) < n {
					f32 = make([]float32, n)
					raw = make([]byte, n*dt.Size())
				}
				vals, b := f32[:n], raw[:n*dt.Size()]
				o.fillRange(vals, c.p, c.lo, outliers)
				if err := dtype.FromFloat32(b, vals, dt); err != nil {
					fail(err)
					continue
				}
				if _, err := c.p.tw.WriteAt(b, c.lo*int64(dt.Size())); err != nil {
					fail(err)
					continue
				}
				c.p.mu.Lock()
				c.p.left--
				last := c.p.left == 0
				c.p.mu.Unlock()
				if last {
					if err := c.p.tw.Close(); err != nil {
						fail(err)
					}
				}
			}
		}()
	}

produce:
	for _, e := range expected {
		p := &plan{name: e.Name, numel: 1, state: newRNG(o.Seed, e.Name).state}
		for _, d := range e.Shape {
			p.numel *= d
		}
		p.kind = kindOf(e.Name)
		if p.kind == kindEmbed {
			p.colStd = embedStd
		}
		p.onePlus = onePlus
		tw, err := w.OpenTensor(e.Name)
		if err != nil {
			fail(err)
			break
		}
		p.tw = tw
		p.left = (p.numel + chunkElems - 1) / chunkElems
		if p.left == 0 {
			if err := tw.Close(); err != nil {
				fail(err)
				break
			}
			continue
		}
		for lo := int64(0); lo < p.numel; lo += chunkElems {
			select {
			case jobs <- chunk{p, lo, min(p.numel, lo+chunkElems)}:
			case <-failed:
				break produce
			}
		}
	}
	close(jobs)
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	return nil
}

// SplitMix64 constants (see rng.go).
const (
	smGamma = 0x9e3779b97f4a7c15
	smMul1  = 0xbf58476d1ce4e5b9
	smMul2  = 0x94d049bb133111eb
)

// fillRange generates elements [lo, lo+len(dst)) of p, exactly as
// rng.normal drawn sequentially from the start of the tensor would: element
// i uses draws 12i+1 … 12i+12 of the tensor's stream, and the k-th outlier
// channel of a layer norm the 12 draws after all numel elements'. The
// SplitMix64 state after d draws is state0 + d·gamma (mod 2⁶⁴), so the
// stream jumps straight to lo.
func (o Options) fillRange(dst []float32, p *plan, lo int64, outliers []int) {
	state := p.state + uint64(lo)*12*smGamma
	switch p.kind {
	case kindEmbed:
		hidden := int64(len(p.colStd))
		col := lo % hidden
		for i := range dst {
			var s float64
			s, state = normal12(state)
			dst[i] = float32(p.colStd[col] * s)
			if col++; col == hidden {
				col = 0
			}
		}
	case kindFinalNorm, kindLayerNorm:
		for i := range dst {
			var s float64
			s, state = normal12(state)
			dst[i] = 1 + float32(weightStd*s)
		}
		if p.kind == kindLayerNorm {
			for k, c := range outliers {
				if i := int64(c) - lo; i >= 0 && i < int64(len(dst)) {
					s, _ := normal12(p.state + uint64(p.numel+int64(k))*12*smGamma)
					dst[i] = NormOutlierScale + float32(weightStd*s)
				}
			}
		}
	default:
		for i := range dst {
			var s float64
			s, state = normal12(state)
			dst[i] = float32(weightStd * s)
		}
	}
	if p.onePlus && p.kind != kindLinear && p.kind != kindEmbed {
		for i := range dst {
			dst[i]--
		}
	}
	// Keep every value away from zero so that a fresh model has no exact
	// zeros in any dtype (f16 flushes magnitudes below ~6e-8 to zero).
	for i, v := range dst {
		if v > -minMagnitude && v < minMagnitude {
			dst[i] = float32(math.Copysign(minMagnitude, float64(v)))
		}
	}
}

// normal12 returns an approximately standard normal number drawn from the
// SplitMix64 stream at state (held in a register) and the advanced state: the
// Irwin–Hall sum of the next 12 uniforms in [0, 1) (the top 53 bits of each
// draw) minus 6, so mean 0, variance 1, support [-6, 6]. It needs no
// transcendental functions, so it is bit-identical on every platform.
func normal12(state uint64) (float64, uint64) {
	s := 0.0
	for range 12 {
		state += smGamma
		z := state
		z = (z ^ (z >> 30)) * smMul1
		z = (z ^ (z >> 27)) * smMul2
		z ^= z >> 31
		// z>>11 < 2⁵³, so the signed conversion is exact and avoids the
		// unsigned one's branch.
		s += float64(int64(z>>11)) / (1 << 53)
	}
	return s - 6, state
}
