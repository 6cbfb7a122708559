package model

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wanda-go/wanda/format/config"
	"github.com/wanda-go/wanda/format/dtype"
	"github.com/wanda-go/wanda/format/safetensors"
	"github.com/wanda-go/wanda/model/arch"
	"github.com/wanda-go/wanda/tensor"
)

// This file holds an independent, deliberately plain implementation of the
// LLaMA/Qwen2/Mistral forward pass (float64, loops, full T×T attention, rope
// frequencies from the formulas in float64) and compares the package against
// it on small random models written to safetensors files.

// naiveModel holds a model's weights as float64 by tensor name.
type naiveModel struct {
	cfg *config.Config
	w   map[string][]float64
}

func (m *naiveModel) get(name string) []float64 {
	v, ok := m.w[name]
	if !ok {
		panic("naive: missing " + name)
	}
	return v
}

func naiveRMSNorm(x, w []float64, eps float64) []float64 {
	var ss float64
	for _, v := range x {
		ss += v * v
	}
	r := 1 / math.Sqrt(ss/float64(len(x))+eps)
	out := make([]float64, len(x))
	for i, v := range x {
		out[i] = v * r * w[i]
	}
	return out
}

// naiveLinear returns W x (+ b) for W [out, in].
func naiveLinear(w []float64, x []float64, b []float64) []float64 {
	in := len(x)
	out := make([]float64, len(w)/in)
	for o := range out {
		var s float64
		for j := 0; j < in; j++ {
			s += w[o*in+j] * x[j]
		}
		if b != nil {
			s += b[o]
		}
		out[o] = s
	}
	return out
}

// naiveInvFreq follows the published formulas in float64.
func naiveInvFreq(cfg *config.Config) []float64 {
	d := cfg.HeadDim
	inv := make([]float64, d/2)
	for i := range inv {
		inv[i] = 1 / math.Pow(cfg.RopeTheta, float64(2*i)/float64(d))
	}
	rs := cfg.RopeScaling
	if rs == nil {
		return inv
	}
	switch rs.Type {
	case "linear":
		for i := range inv {
			inv[i] /= rs.Factor
		}
	case "llama3":
		old := float64(rs.OriginalMaxPositionEmbeddings)
		for i, f := range inv {
			wl := 2 * math.Pi / f
			switch {
			case wl < old/rs.HighFreqFactor:
			case wl > old/rs.LowFreqFactor:
				inv[i] = f / rs.Factor
			default:
				s := (old/wl - rs.LowFreqFactor) / (rs.HighFreqFactor - rs.LowFreqFactor)
				inv[i] = (1-s)*f/rs.Factor + s*f
			}
		}
	}
	return inv
}

func naiveRope(v []float64, pos int, inv []float64) {
	half := len(inv)
	for i, f := range inv {
		c, s := math.Cos(float64(pos)*f), math.Sin(float64(pos)*f)
		a, b := v[i], v[i+half]
		v[i] = a*c - b*s
		v[i+half] = b*c + a*s
	}
}

// naiveTaps records the inputs of the linears of one layer (float64).
type naiveTaps map[config.Part][][]float64

// naiveLayer runs decoder layer l on one sequence hs [T][hidden] in place.
func (m *naiveModel) naiveLayer(l int, hs [][]float64, window int, taps naiveTaps) {
	cfg := m.cfg
	T, H := len(hs), cfg.HiddenSize
	nh, nkv, hd := cfg.NumHeads, cfg.NumKVHeads, cfg.HeadDim
	name := func(p config.Part) string { return config.LayerTensor(l, p) }
	var qb, kb, vb []float64
	if cfg.AttentionBias {
		qb, kb, vb = m.get(name(config.PartQBias)), m.get(name(config.PartKBias)), m.get(name(config.PartVBias))
	}
	inv := naiveInvFreq(cfg)
	q := make([][]float64, T)
	k := make([][]float64, T)
	v := make([][]float64, T)
	for t := range T {
		x := naiveRMSNorm(hs[t], m.get(name(config.PartInputNorm)), cfg.RMSNormEps)
		if taps != nil {
			taps[config.PartQ] = append(taps[config.PartQ], x)
		}
		q[t] = naiveLinear(m.get(name(config.PartQ)), x, qb)
		k[t] = naiveLinear(m.get(name(config.PartK)), x, kb)
		v[t] = naiveLinear(m.get(name(config.PartV)), x, vb)
		for h := range nh {
			naiveRope(q[t][h*hd:(h+1)*hd], t, inv)
		}
		for h := range nkv {
			naiveRope(k[t][h*hd:(h+1)*hd], t, inv)
		}
	}
	attn := make([][]float64, T)
	for i := range T {
		attn[i] = make([]float64, nh*hd)
		for h := range nh {
			g := h / (nh / nkv)
			scores := make([]float64, T)
			mx := math.Inf(-1)
			for j := range T {
				scores[j] = math.Inf(-1)
				if j > i || (window > 0 && i-j >= window) {
					continue
				}
				var s float64
				for e := range hd {
					s += q[i][h*hd+e] * k[j][g*hd+e]
				}
				scores[j] = s / math.Sqrt(float64(hd))
				mx = math.Max(mx, scores[j])
			}
			var z float64
			for j := range T {
				scores[j] = math.Exp(scores[j] - mx)
				z += scores[j]
			}
			for j := range T {
				p := scores[j] / z
				for e := range hd {
					attn[i][h*hd+e] += p * v[j][g*hd+e]
				}
			}
		}
	}
	for t := range T {
		if taps != nil {
			taps[config.PartO] = append(taps[config.PartO], attn[t])
		}
		o := naiveLinear(m.get(name(config.PartO)), attn[t], nil)
		for i := range H {
			hs[t][i] += o[i]
		}
		x := naiveRMSNorm(hs[t], m.get(name(config.PartPostAttnNorm)), cfg.RMSNormEps)
		if taps != nil {
			taps[config.PartGate] = append(taps[config.PartGate], x)
		}
		g := naiveLinear(m.get(name(config.PartGate)), x, nil)
		u := naiveLinear(m.get(name(config.PartUp)), x, nil)
		for i := range g {
			g[i] = g[i] / (1 + math.Exp(-g[i])) * u[i]
		}
		if taps != nil {
			taps[config.PartDown] = append(taps[config.PartDown], g)
		}
		dn := naiveLinear(m.get(name(config.PartDown)), g, nil)
		for i := range H {
			hs[t][i] += dn[i]
		}
	}
}

// naiveLogits returns the logits [T][vocab] of one sequence.
func (m *naiveModel) naiveLogits(ids []int32, window func(layer int) int) [][]float64 {
	cfg := m.cfg
	H := cfg.HiddenSize
	emb := m.get(config.EmbedTokens)
	hs := make([][]float64, len(ids))
	for t, id := range ids {
		hs[t] = append([]float64(nil), emb[int(id)*H:(int(id)+1)*H]...)
	}
	for l := range cfg.NumLayers {
		m.naiveLayer(l, hs, window(l), nil)
	}
	lm := config.LMHead
	if cfg.TieWordEmbeddings {
		lm = config.EmbedTokens
	}
	out := make([][]float64, len(ids))
	for t := range hs {
		out[t] = naiveLinear(m.get(lm), naiveRMSNorm(hs[t], m.get(config.FinalNorm), cfg.RMSNormEps), nil)
	}
	return out
}

func naiveNLL(logits [][]float64, ids []int32) float64 {
	var s float64
	for t := 0; t+1 < len(ids); t++ {
		mx := math.Inf(-1)
		for _, v := range logits[t] {
			mx = math.Max(mx, v)
		}
		var z float64
		for _, v := range logits[t] {
			z += math.Exp(v - mx)
		}
		s += mx + math.Log(z) - logits[t][ids[t+1]]
	}
	return s / float64(len(ids)-1)
}

// randExact returns a value m·2^-shift with |m| < 256, exactly representable
// in bf16, f16 and f32, so that the naive model and the file agree exactly
// whatever the dtype on disk.
func randExact(r *rand.Rand, shift int) float32 {
	return float32(r.IntN(511)-255) / float32(int(1)<<shift)
}

// writeRandomModel writes a random model for cfgJSON in dtype dt to a temp
// directory and returns it with the same weights as float64.
func writeRandomModel(t testing.TB, cfgJSON string, dt dtype.DType, seed uint64) (*naiveModel, *safetensors.Set) {
	t.Helper()
	cfg, _, err := arch.Parse([]byte(cfgJSON))
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(seed, 7))
	m := &naiveModel{cfg: cfg, w: map[string][]float64{}}
	var specs []safetensors.Spec
	var data [][]byte
	for _, ts := range cfg.ExpectedTensors() {
		n := 1
		for _, d := range ts.Shape {
			n *= int(d)
		}
		v := make([]float32, n)
		_, part, isLayer := config.ParseLayerTensor(ts.Name)
		for i := range v {
			switch {
			case ts.Name == config.FinalNorm || isLayer && (part == config.PartInputNorm || part == config.PartPostAttnNorm):
				v[i] = float32(128+r.IntN(65)-32) / 128
			case ts.Name == config.EmbedTokens:
				v[i] = randExact(r, 8)
			case isLayer && (part == config.PartQBias || part == config.PartKBias || part == config.PartVBias):
				v[i] = randExact(r, 9)
			default:
				// std ≈ 0.14, about 1/sqrt(in) for the widths used here.
				v[i] = randExact(r, 10)
			}
		}
		f64 := make([]float64, n)
		for i, x := range v {
			f64[i] = float64(x)
		}
		m.w[ts.Name] = f64
		b := make([]byte, n*dt.Size())
		if err := dtype.FromFloat32(b, v, dt); err != nil {
			t.Fatal(err)
		}
		specs = append(specs, safetensors.Spec{Name: ts.Name, DType: dt, Shape: ts.Shape})
		data = append(data, b)
	}
	dir := t.TempDir()
	if err := safetensors.WriteFile(filepath.Join(dir, safetensors.SingleName), specs, data, map[string]string{"format": "pt"}); err != nil {
		t.Fatal(err)
	}
	set, err := safetensors.OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { set.Close() })
	return m, set
}

// variant is one model configuration tested against the naive implementation.
type variant struct {
	name   string
	json   string
	dt     dtype.DType
	nseq   int
	seqlen int
	window int // sliding-window span the naive model applies (0 = none)
	// windowFrom is the first layer the window applies to.
	windowFrom int
}

func llamaJSON(extra string) string {
	return `{"model_type":"llama","hidden_size":64,"intermediate_size":96,"num_hidden_layers":2,
	"num_attention_heads":4,"num_key_value_heads":4,"vocab_size":97,"max_position_embeddings":512,
	"rms_norm_eps":1e-5,"rope_theta":10000.0` + extra + `}`
}

var variants = []variant{
	{"llama-mha-f32", llamaJSON(``), dtype.F32, 2, 37, 0, 0},
	{"llama-mha-bf16", llamaJSON(``), dtype.BF16, 2, 37, 0, 0},
	{"llama-mha-f16", llamaJSON(``), dtype.F16, 2, 37, 0, 0},
	{"llama-gqa", llamaJSON(`,"num_key_value_heads":2`), dtype.BF16, 2, 37, 0, 0},
	{"llama-mqa-headdim", llamaJSON(`,"num_key_value_heads":1,"head_dim":24`), dtype.F32, 1, 29, 0, 0},
	{"llama-tied", llamaJSON(`,"tie_word_embeddings":true`), dtype.BF16, 2, 19, 0, 0},
	{"llama-linear-rope", llamaJSON(`,"rope_scaling":{"type":"linear","factor":4.0}`), dtype.F32, 1, 41, 0, 0},
	// head_dim 16: wavelengths 6.3, 19.9, 62.8, 199, ... against 64/4 and 64/1:
	// one frequency kept, two interpolated, five divided by the factor.
	{"llama3-rope", llamaJSON(`,"num_attention_heads":4,"head_dim":16,"rope_theta":10000.0,
		"rope_scaling":{"rope_type":"llama3","factor":8.0,"low_freq_factor":1.0,"high_freq_factor":4.0,"original_max_position_embeddings":64}`), dtype.BF16, 2, 33, 0, 0},
	{"qwen2-bias-tied", `{"model_type":"qwen2","hidden_size":64,"intermediate_size":96,"num_hidden_layers":2,
		"num_attention_heads":4,"num_key_value_heads":2,"vocab_size":97,"max_position_embeddings":512,
		"rms_norm_eps":1e-6,"rope_theta":1000000.0,"tie_word_embeddings":true}`, dtype.BF16, 2, 23, 0, 0},
	// Longer than one attention tile (128 rows), with a sliding window that
	// starts to bite inside the second tile.
	{"llama-long", llamaJSON(`,"num_key_value_heads":2`), dtype.F32, 1, 300, 0, 0},
	{"mistral-window", `{"model_type":"mistral","hidden_size":64,"intermediate_size":96,"num_hidden_layers":2,
		"num_attention_heads":4,"num_key_value_heads":2,"vocab_size":97,"max_position_embeddings":512,
		"rms_norm_eps":1e-5,"rope_theta":10000.0,"sliding_window":150}`, dtype.F32, 1, 300, 150, 0},
	// qwen2 windows only the layers from max_window_layers on.
	{"qwen2-window", `{"model_type":"qwen2","hidden_size":64,"intermediate_size":96,"num_hidden_layers":2,
		"num_attention_heads":4,"num_key_value_heads":2,"vocab_size":97,"max_position_embeddings":512,
		"rms_norm_eps":1e-6,"rope_theta":1000000.0,"use_sliding_window":true,"sliding_window":70,
		"max_window_layers":1}`, dtype.BF16, 1, 200, 70, 1},
}

func randIDs(r *rand.Rand, n, vocab int) []int32 {
	ids := make([]int32, n)
	for i := range ids {
		ids[i] = int32(r.IntN(vocab))
	}
	return ids
}

// relErr is max|a-b| / max(1, max|b|).
func relErr(a []float32, b []float64) float64 {
	var d, s float64
	for i := range b {
		d = math.Max(d, math.Abs(float64(a[i])-b[i]))
		s = math.Max(s, math.Abs(b[i]))
	}
	return d / math.Max(1, s)
}

func TestAgainstNaive(t *testing.T) {
	for i, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			m, set := writeRandomModel(t, v.json, v.dt, uint64(i+1))
			cfg := m.cfg
			r := rand.New(rand.NewPCG(uint64(100+i), 1))
			ids := randIDs(r, v.nseq*v.seqlen, cfg.VocabSize)
			window := func(l int) int {
				if l < v.windowFrom {
					return 0
				}
				return v.window
			}

			mod, h := runModel(t, set, cfg, ids, v.nseq, v.seqlen)
			head, err := mod.Head()
			if err != nil {
				t.Fatal(err)
			}
			V := cfg.VocabSize
			got := make([]float32, len(ids)*V)
			head.Logits(h, len(ids), got)
			nll := head.NLL(h, ids, v.nseq, v.seqlen)
			var worst float64
			for s := range v.nseq {
				seq := ids[s*v.seqlen : (s+1)*v.seqlen]
				want := m.naiveLogits(seq, window)
				flat := make([]float64, 0, len(want)*V)
				for _, row := range want {
					flat = append(flat, row...)
				}
				e := relErr(got[s*v.seqlen*V:(s+1)*v.seqlen*V], flat)
				worst = math.Max(worst, e)
				wantNLL := naiveNLL(want, seq)
				if d := math.Abs(nll[s] - wantNLL); d > 1e-4*math.Max(1, wantNLL) {
					t.Errorf("sequence %d: NLL %.7f, naive %.7f", s, nll[s], wantNLL)
				}
			}
			t.Logf("max relative logit error %.2g", worst)
			if worst > 1e-4 {
				t.Errorf("logits differ from the naive model by %.3g (relative)", worst)
			}
		})
	}
}

// prunedWeights serves the tensors of a set with every third weight of each linear of
// layer 0 zeroed (as float32 copies), the way the pipeline's pruned pass serves the
// pruned tensors over the source.
type prunedWeights struct {
	base interface {
		Mat(string) (tensor.Mat, error)
	}
	over map[string]tensor.Mat
}

func (w prunedWeights) Mat(name string) (tensor.Mat, error) {
	if m, ok := w.over[name]; ok {
		return m, nil
	}
	return w.base.Mat(name)
}

// TestTapsAndPrunedWeights checks the inputs the taps see against the naive model's,
// and that a block loaded over pruned weights computes what the naive model computes
// with the same weights zeroed.
func TestTapsAndPrunedWeights(t *testing.T) {
	v := variants[3] // GQA, bf16
	m, set := writeRandomModel(t, v.json, v.dt, 42)
	cfg := m.cfg
	r := rand.New(rand.NewPCG(9, 9))
	T := 21
	ids := randIDs(r, T, cfg.VocabSize)
	H := cfg.HiddenSize
	mod, err := New(set, cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	// Prune every third weight of each linear, in the model and in the naive model.
	pw := prunedWeights{base: mod.Weights(), over: map[string]tensor.Mat{}}
	for _, lin := range mod.Layer(0).Linears {
		w := m.w[lin.Name]
		data := make([]float32, len(w))
		for i := range w {
			if i%3 == 0 {
				w[i] = 0
			}
			data[i] = float32(w[i])
		}
		pw.over[lin.Name] = tensor.F32Mat(lin.Rows, lin.Cols, data)
	}
	b, err := mod.LoadBlock(0, pw)
	if err != nil {
		t.Fatal(err)
	}

	h := make([]float32, T*H)
	if err := mod.Embed(ids, h); err != nil {
		t.Fatal(err)
	}
	hs := make([][]float64, T)
	for i := range hs {
		hs[i] = make([]float64, H)
		for j := range H {
			hs[i][j] = float64(h[i*H+j])
		}
	}
	got := map[int][]float32{}
	b.Forward(h, 1, T, func(in int, x []float32, rows, cols int) {
		if len(x) != rows*cols || rows != T {
			t.Errorf("tap %d with %d values for %d×%d", in, len(x), rows, cols)
		}
		if _, dup := got[in]; dup {
			t.Errorf("tap %d twice", in)
		}
		got[in] = append([]float32(nil), x...)
	})
	taps := naiveTaps{}
	m.naiveLayer(0, hs, 0, taps)
	spec := mod.Layer(0)
	for _, lin := range spec.Linears {
		_, p, _ := config.ParseLayerTensor(lin.Name)
		if p != config.PartQ && p != config.PartO && p != config.PartGate && p != config.PartDown {
			continue
		}
		var flat []float64
		for _, row := range taps[p] {
			flat = append(flat, row...)
		}
		if len(got[lin.Input]) != len(flat) {
			t.Fatalf("%v (tap %d %s): saw %d values, want %d", p, lin.Input, spec.Inputs[lin.Input], len(got[lin.Input]), len(flat))
		}
		if e := relErr(got[lin.Input], flat); e > 1e-5 {
			t.Errorf("%v: tap input differs from the naive model by %.3g", p, e)
		}
	}
	if len(got) != 4 {
		t.Errorf("%d taps, want 4", len(got))
	}
	var flat []float64
	for _, row := range hs {
		flat = append(flat, row...)
	}
	if e := relErr(h, flat); e > 1e-5 {
		t.Errorf("pruned block output differs from the naive model by %.3g", e)
	}
}

// badWeights serves a set's tensors but one with a wrong shape or missing.
type badWeights struct {
	base  prunedWeights
	name  string
	shape [2]int // {0, 0}: missing
}

func (w badWeights) Mat(name string) (tensor.Mat, error) {
	if name != w.name {
		return w.base.Mat(name)
	}
	if w.shape == [2]int{} {
		return tensor.Mat{}, fmt.Errorf("tensor %q: %w", name, safetensors.ErrMissingTensor)
	}
	return tensor.F32Mat(w.shape[0], w.shape[1], make([]float32, w.shape[0]*w.shape[1])), nil
}

func TestLoadBlockErrors(t *testing.T) {
	v := variants[0]
	_, set := writeRandomModel(t, v.json, v.dt, 3)
	cfg, _, err := arch.Parse([]byte(v.json))
	if err != nil {
		t.Fatal(err)
	}
	mod, err := New(set, cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	base := prunedWeights{base: mod.Weights()}
	k := config.LayerTensor(1, config.PartK)
	if _, err := mod.LoadBlock(1, badWeights{base, k, [2]int{64, 32}}); err == nil {
		t.Fatal("wrong shape accepted")
	} else if !errors.Is(err, ErrShape) || !strings.Contains(err.Error(), k) || !strings.Contains(err.Error(), "layer 1") {
		t.Fatalf("error %q should name layer 1 and %s and wrap ErrShape", err, k)
	}
	n := config.LayerTensor(1, config.PartInputNorm)
	if _, err := mod.LoadBlock(1, badWeights{base, n, [2]int{1, 63}}); err == nil || !errors.Is(err, ErrShape) || !strings.Contains(err.Error(), n) {
		t.Fatalf("wrong norm shape: error %v", err)
	}
	if _, err := mod.LoadBlock(1, badWeights{base, k, [2]int{}}); err == nil || !errors.Is(err, safetensors.ErrMissingTensor) {
		t.Fatalf("missing tensor: error %v", err)
	}
	if _, err := mod.LoadBlock(1, base); err != nil {
		t.Fatal(err)
	}
}
