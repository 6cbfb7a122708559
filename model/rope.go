package model

import (
	"math"

	"github.com/wanda-go/wanda/format/config"
)

// RopeSpec says how a layer rotates q and k: base frequency, scaling (nil for none)
// and the number of leading dimensions of each head that rotate (the whole head_dim
// unless partial_rotary_factor says less).
type RopeSpec struct {
	Theta   float64
	Scaling *config.RopeScaling
	Dim     int
}

func (s RopeSpec) key() RopeSpec {
	if s.Scaling != nil {
		c := *s.Scaling
		s.Scaling = &c
	}
	return s
}

func (s RopeSpec) same(o RopeSpec) bool {
	if s.Theta != o.Theta || s.Dim != o.Dim || (s.Scaling == nil) != (o.Scaling == nil) {
		return false
	}
	return s.Scaling == nil || *s.Scaling == *o.Scaling
}

// Rope holds the rotary-embedding tables for positions 0..SeqLen-1: cos and sin of
// position·inv_freq[i], [SeqLen, Dim/2] (transformers concatenates the frequencies
// with themselves, so the second half of each row of its tables repeats the first).
type Rope struct {
	Spec   RopeSpec
	SeqLen int
	// InvFreq are the Dim/2 inverse frequencies after scaling.
	InvFreq  []float32
	cos, sin []float32
}

// InvFreq computes the rotary inverse frequencies of spec as transformers'
// rope-initialisation functions do, in float32: inv_freq[i] = 1 / theta^(2i/d) (the
// exponent is float32(2i)/float32(d)), then divided by the factor for "linear"
// scaling, or banded by wavelength for "llama3" (_compute_llama3_parameters:
// wavelengths above original/low_freq_factor are divided by factor, those below
// original/high_freq_factor are kept, the band between is interpolated smoothly).
func InvFreq(spec RopeSpec) []float32 {
	d := spec.Dim
	half := d / 2
	inv := make([]float32, half)
	base := float32(spec.Theta)
	for i := range inv {
		e := float32(2*i) / float32(d)
		p := float32(math.Pow(float64(base), float64(e)))
		inv[i] = 1 / p
	}
	rs := spec.Scaling
	if rs == nil {
		return inv
	}
	switch rs.Type {
	case "linear":
		f := float32(rs.Factor)
		for i := range inv {
			inv[i] /= f
		}
	case "llama3":
		factor := float32(rs.Factor)
		low := float32(rs.LowFreqFactor)
		old := float64(rs.OriginalMaxPositionEmbeddings)
		lowWavelen := float32(old / rs.LowFreqFactor)
		highWavelen := float32(old / rs.HighFreqFactor)
		twoPi := float32(2 * math.Pi)
		oldF := float32(old)
		denom := float32(rs.HighFreqFactor - rs.LowFreqFactor)
		for i, f := range inv {
			// torch evaluates scalar / tensor as reciprocal(tensor) * scalar.
			wavelen := (1 / f) * twoPi
			il := f
			if wavelen > lowWavelen {
				il = f / factor
			}
			if !(wavelen < highWavelen) && !(wavelen > lowWavelen) {
				smooth := ((1/wavelen)*oldF - low) / denom
				il = (1-smooth)*il/factor + smooth*il
			}
			inv[i] = il
		}
	}
	return inv
}

// NewRope builds the tables of spec for positions 0..seqlen-1. The angles are
// float32(position) · inv_freq in float32, and cos/sin are rounded to float32, as
// transformers' rotary embeddings compute them (attention scaling is 1 for the
// default, linear and llama3 types).
func NewRope(spec RopeSpec, seqlen int) *Rope {
	inv := InvFreq(spec)
	half := len(inv)
	r := &Rope{Spec: spec.key(), SeqLen: seqlen, InvFreq: inv,
		cos: make([]float32, seqlen*half), sin: make([]float32, seqlen*half)}
	for p := 0; p < seqlen; p++ {
		fp := float32(p)
		for i, f := range inv {
			a := float64(fp * f)
			r.cos[p*half+i] = float32(math.Cos(a))
			r.sin[p*half+i] = float32(math.Sin(a))
		}
	}
	return r
}

// Apply rotates nheads heads at x (head h is x[h*stride : h*stride+stride]) for
// position pos, in place: the first Dim values of each head become
// x·cos + rotate_half(x)·sin, with rotate_half(x) = cat(-x2, x1); the rest pass.
func (r *Rope) Apply(x []float32, nheads, stride, pos int) {
	half := r.Spec.Dim / 2
	c := r.cos[pos*half : (pos+1)*half]
	s := r.sin[pos*half : (pos+1)*half]
	for h := 0; h < nheads; h++ {
		v := x[h*stride : h*stride+2*half]
		lo, hi := v[:half], v[half:]
		for i := range half {
			a, b := lo[i], hi[i]
			lo[i] = a*c[i] + (-b)*s[i]
			hi[i] = b*c[i] + a*s[i]
		}
	}
}
