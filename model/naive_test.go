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
	if err := safetensors.WriteFile(filepath.Join(dir, "model.safetensors"), specs, data, map[string]string{"format": "pt"}); err != nil {
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

			h := runModel(t, set, cfg, ids, v.nseq, v.seqlen)
			head, err := LoadHead(set, cfg)
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

// TestTapsAndLinearViews checks the inputs a Tap sees against the naive
// model's, that Linear views alias the loaded weights, and that zeroing
// weights through a view changes Forward exactly as zeroing them in the model.
func TestTapsAndLinearViews(t *testing.T) {
	v := variants[3] // GQA, bf16
	m, set := writeRandomModel(t, v.json, v.dt, 42)
	cfg := m.cfg
	r := rand.New(rand.NewPCG(9, 9))
	T := 21
	ids := randIDs(r, T, cfg.VocabSize)
	H := cfg.HiddenSize

	b, err := LoadBlock(set, cfg, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range config.Linears {
		lin := b.Linear(p)
		out, in := cfg.LinearShape(p)
		if lin.Rows != out || lin.Cols != in {
			t.Fatalf("%v: view %d×%d, want %d×%d", p, lin.Rows, lin.Cols, out, in)
		}
		want := m.get(config.LayerTensor(0, p))
		for i := range want {
			if float64(lin.Data[i]) != want[i] {
				t.Fatalf("%v: view[%d] = %g, weight %g", p, i, lin.Data[i], want[i])
			}
		}
	}
	// Prune every third weight of each linear through the views, and the same in the naive model.
	for _, p := range config.Linears {
		lin := b.Linear(p)
		w := m.w[config.LayerTensor(0, p)]
		for i := 0; i < len(lin.Data); i += 3 {
			lin.Data[i] = 0
			w[i] = 0
		}
	}

	h := make([]float32, T*H)
	if err := Embed(set, cfg, ids, h); err != nil {
		t.Fatal(err)
	}
	hs := make([][]float64, T)
	for i := range hs {
		hs[i] = make([]float64, H)
		for j := range H {
			hs[i][j] = float64(h[i*H+j])
		}
	}
	got := map[config.Part][]float32{}
	b.Forward(h, 1, T, NewRope(cfg, T), func(p config.Part, x []float32, rows, cols int) {
		if len(x) != rows*cols || rows != T {
			t.Errorf("%v: tap with %d values for %d×%d", p, len(x), rows, cols)
		}
		if _, dup := got[p]; dup {
			t.Errorf("%v: tapped twice", p)
		}
		got[p] = append([]float32(nil), x...)
	}, nil)
	taps := naiveTaps{}
	m.naiveLayer(0, hs, 0, taps)
	for _, p := range []config.Part{config.PartQ, config.PartO, config.PartGate, config.PartDown} {
		var flat []float64
		for _, row := range taps[p] {
			flat = append(flat, row...)
		}
		if len(got[p]) != len(flat) {
			t.Fatalf("%v: tap saw %d values, want %d", p, len(got[p]), len(flat))
		}
		if e := relErr(got[p], flat); e > 1e-5 {
			t.Errorf("%v: tap input differs from the naive model by %.3g", p, e)
		}
	}
	var flat []float64
	for _, row := range hs {
		flat = append(flat, row...)
	}
	if e := relErr(h, flat); e > 1e-5 {
		t.Errorf("pruned block output differs from the naive model by %.3g", e)
	}
}

func TestLoadBlockErrors(t *testing.T) {
	v := variants[0]
	m, _ := writeRandomModel(t, v.json, v.dt, 3)
	cfg := m.cfg
	get := func(bad string, shape []int64) Getter {
		return func(name string) ([]float32, []int64, error) {
			w, ok := m.w[name]
			if !ok || name == bad && shape == nil {
				return nil, nil, fmt.Errorf("tensor %q: %w", name, safetensors.ErrMissingTensor)
			}
			_, p, _ := config.ParseLayerTensor(name)
			sh := cfg.PartShape(p)
			if name == bad {
				sh = shape
			}
			f := make([]float32, len(w))
			for i := range w {
				f[i] = float32(w[i])
			}
			return f, sh, nil
		}
	}
	k := config.LayerTensor(1, config.PartK)
	if _, err := NewBlock(cfg, 1, get(k, []int64{64, 32})); err == nil {
		t.Fatal("wrong shape accepted")
	} else if !errors.Is(err, ErrShape) || !strings.Contains(err.Error(), k) || !strings.Contains(err.Error(), "layer 1") {
		t.Fatalf("error %q should name layer 1 and %s and wrap ErrShape", err, k)
	}
	if _, err := NewBlock(cfg, 1, get(k, nil)); err == nil || !errors.Is(err, safetensors.ErrMissingTensor) {
		t.Fatalf("missing tensor: error %v", err)
	}
	if _, err := NewBlock(cfg, 1, get("", nil)); err != nil {
		t.Fatal(err)
	}
}

// TestLoadBlockInto: reloading into an old block gives the same weights as a
// fresh load, across layers and across models of other sizes.
func TestLoadBlockInto(t *testing.T) {
	mA, setA := writeRandomModel(t, variants[8].json, variants[8].dt, 11) // qwen2, biases
	mB, setB := writeRandomModel(t, variants[4].json, variants[4].dt, 12) // MQA, head_dim 24
	var b *Block
	var err error
	for _, step := range []struct {
		m     *naiveModel
		set   *safetensors.Set
		layer int
	}{{mA, setA, 0}, {mA, setA, 1}, {mB, setB, 1}, {mA, setA, 0}} {
		b, err = LoadBlockInto(b, step.set, step.m.cfg, step.layer)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range config.Linears {
			want := step.m.get(config.LayerTensor(step.layer, p))
			got := b.Linear(p).Data
			if len(got) != len(want) {
				t.Fatalf("layer %d %v: %d values, want %d", step.layer, p, len(got), len(want))
			}
			for i := range want {
				if float64(got[i]) != want[i] {
					t.Fatalf("layer %d %v[%d] = %g, want %g", step.layer, p, i, got[i], want[i])
				}
			}
		}
		if (b.bqkv != nil) != step.m.cfg.AttentionBias {
			t.Fatalf("bias present %v, config %v", b.bqkv != nil, step.m.cfg.AttentionBias)
		}
		if b.bqkv != nil {
			want := step.m.get(config.LayerTensor(step.layer, config.PartVBias))
			got := b.bqkv[len(b.bqkv)-len(want):]
			for i := range want {
				if float64(got[i]) != want[i] {
					t.Fatalf("v bias[%d] = %g, want %g", i, got[i], want[i])
				}
			}
		}
	}
}
