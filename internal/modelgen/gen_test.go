package modelgen

// Part of go test ./... since the package moved out of testdata/.

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"hash/fnv"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/wanda-go/wanda/format/config"
	"github.com/wanda-go/wanda/format/dtype"
	"github.com/wanda-go/wanda/format/safetensors"
)

// refStream is a plain sequential reimplementation of the documented
// generator: SplitMix64 seeded with seed XOR FNV-1a-64(name), advanced once,
// normals as the Irwin–Hall sum of 12 uniforms minus 6.
type refStream struct{ s uint64 }

func newRef(seed uint64, name string) *refStream {
	h := fnv.New64a()
	h.Write([]byte(name))
	r := &refStream{seed ^ h.Sum64()}
	r.u64()
	return r
}

func (r *refStream) u64() uint64 {
	r.s += 0x9e3779b97f4a7c15
	z := r.s
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

func (r *refStream) normal(std float64) float32 {
	s := 0.0
	for range 12 {
		s += float64(r.u64()>>11) / (1 << 53)
	}
	return float32(std * (s - 6))
}

// refTensor computes a whole tensor sequentially, as documented in doc.go.
func refTensor(o Options, name string, n int, outliers []int) []float32 {
	r := newRef(o.Seed, name)
	v := make([]float32, n)
	layerNorm := strings.HasSuffix(name, ".input_layernorm.weight") || strings.HasSuffix(name, ".post_attention_layernorm.weight") ||
		strings.HasSuffix(name, ".pre_feedforward_layernorm.weight")
	otherNorm := strings.HasPrefix(name, "model.layers.") && strings.HasSuffix(name, "norm.weight") && !layerNorm
	onePlus := o.Arch == config.TypeGemma2 || o.Arch == config.TypeGemma3Text
	isOut := map[int]bool{}
	for _, c := range outliers {
		isOut[c] = true
	}
	switch {
	case name == config.EmbedTokens:
		for i := range v {
			std := 0.02
			if isOut[i%o.Hidden] {
				std *= EmbedOutlierScale
			}
			v[i] = r.normal(std)
		}
	case name == config.FinalNorm || layerNorm || otherNorm:
		for i := range v {
			v[i] = 1 + r.normal(0.02)
		}
		if layerNorm {
			for _, c := range outliers {
				v[c] = NormOutlierScale + r.normal(0.02)
			}
		}
		if onePlus { // Gemma stores norm weights as offsets from one
			for i := range v {
				v[i]--
			}
		}
	default:
		for i := range v {
			v[i] = r.normal(0.02)
		}
	}
	for i, x := range v {
		if math.Abs(float64(x)) < 1e-4 {
			v[i] = float32(math.Copysign(1e-4, float64(x)))
		}
	}
	return v
}

// TestChunkedMatchesSequential writes models in many small chunks (sizes
// that do not divide the rows) from several goroutines and compares every
// tensor's bytes with the sequential reference narrowed to the dtype.
func TestChunkedMatchesSequential(t *testing.T) {
	defer func(c int64) { chunkElems = c }(chunkElems)
	cases := []struct {
		name  string
		opt   Options
		chunk int64
	}{
		{"default", Options{Workers: 3}, 997},
		{"qwen2-f16-sharded", Options{Arch: config.TypeQwen2, DType: "f16", Hidden: 96, Heads: 6, KVHeads: 2,
			Intermediate: 200, Seed: 7, MaxShardBytes: 30000, Workers: 2}, 61},
		{"f32-tied", Options{DType: "f32", Tied: true, Seed: 1 << 40, Workers: 1}, 1 << 20},
		{"gemma3-qnorm", Options{Arch: config.TypeGemma3Text, HeadDim: 32, Seed: 5, Workers: 2}, 331},
		{"qwen2_moe-experts", Options{Arch: config.TypeQwen2MoE, Experts: 3, Seed: 6, Workers: 3}, 509},
		{"llama3-shape-preset", func() Options {
			o, _ := Preset("llama3-8b")
			o.Layers, o.Hidden, o.Intermediate, o.Heads, o.KVHeads, o.Vocab = 1, 128, 96, 4, 2, 700
			return o
		}(), 4096},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			chunkElems = c.chunk
			dir := t.TempDir()
			if err := Write(dir, c.opt); err != nil {
				t.Fatal(err)
			}
			o, _ := c.opt.resolve()
			dt, _ := o.dtype()
			outl, err := OutlierChannels(c.opt)
			if err != nil {
				t.Fatal(err)
			}
			s, err := safetensors.OpenDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			for _, name := range s.Names() {
				tn, _ := s.Tensor(name)
				want := refTensor(o, name, int(tn.Numel()), outl)
				wb := make([]byte, len(want)*dt.Size())
				if err := dtype.FromFloat32(wb, want, dt); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(tn.Bytes(), wb) {
					t.Errorf("%s: bytes differ from the sequential reference", name)
				}
			}
		})
	}
}

// TestGoldenDefault pins the default model's weight file: fixtures generated
// before chunked writing was introduced must stay byte-identical (other
// tests may rely on them).
func TestGoldenDefault(t *testing.T) {
	dir := t.TempDir()
	if err := Write(dir, Default()); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, safetensors.SingleName))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	const want = "d39f7fedf60426b1aca6ba31be9962589a276c264875a309ceaf9391c16afb1c"
	if got := hex.EncodeToString(sum[:]); got != want {
		t.Errorf("default model.safetensors sha256 %s, want %s", got, want)
	}
}

// TestPresets checks each preset's config against the published
// configuration of the checkpoint it imitates, and its parameter count
// against the published total.
func TestPresets(t *testing.T) {
	cases := []struct {
		name     string
		params   int64
		arch     string
		kv       int
		theta    float64
		scaling  string
		bias     bool
		maxPos   int
		eps      float64
		window   int
		wantDims [4]int // layers, hidden, intermediate, vocab
	}{
		{"llama-7b", 6738415616, "llama", 32, 10000, "", false, 4096, 1e-5, 0, [4]int{32, 4096, 11008, 32000}},
		{"llama-13b", 13015864320, "llama", 40, 10000, "", false, 4096, 1e-5, 0, [4]int{40, 5120, 13824, 32000}},
		{"llama3-8b", 8030261248, "llama", 8, 500000, "llama3", false, 131072, 1e-5, 0, [4]int{32, 4096, 14336, 128256}},
		{"mistral-7b", 7241732096, "mistral", 8, 10000, "", false, 32768, 1e-5, 4096, [4]int{32, 4096, 14336, 32000}},
		{"qwen2-7b", 7615616512, "qwen2", 4, 1e6, "", true, 131072, 1e-6, 0, [4]int{28, 3584, 18944, 152064}},
		{"llama3-70b", 70553706496, "llama", 8, 500000, "llama3", false, 131072, 1e-5, 0, [4]int{80, 8192, 28672, 128256}},
		{"llama3-405b", 405853388800, "llama", 8, 500000, "llama3", false, 131072, 1e-5, 0, [4]int{126, 16384, 53248, 128256}},
		{"qwen3-8b", 8190735360, "qwen3", 8, 1e6, "", false, 40960, 1e-6, 0, [4]int{36, 4096, 12288, 151936}},
		{"phi3-medium", 13960238080, "phi3", 10, 10000, "", false, 4096, 1e-5, 2047, [4]int{40, 5120, 17920, 32064}},
		{"gemma2-27b", 27227128320, "gemma2", 16, 10000, "", false, 8192, 1e-6, 4096, [4]int{46, 4608, 36864, 256000}},
		// Published totals of these include other parts or vocabularies: shapes only.
		{"gemma3-27b", -1, "gemma3_text", 16, 1e6, "linear", false, 131072, 1e-6, 1024, [4]int{62, 5376, 21504, 262208}},
		{"qwen2-57b-a14b", -1, "qwen2_moe", 4, 1e6, "", true, 131072, 1e-6, 0, [4]int{28, 3584, 18944, 151936}},
		{"mixtral-8x7b", 46702792704, "mixtral", 8, 1e6, "", false, 32768, 1e-5, 0, [4]int{32, 4096, 14336, 32000}},
		{"mixtral-8x22b", 140620634112, "mixtral", 8, 1e6, "", false, 65536, 1e-5, 0, [4]int{56, 6144, 16384, 32000}},
		{"qwen3-30b-a3b", 30532122624, "qwen3_moe", 4, 1e6, "", false, 40960, 1e-6, 0, [4]int{48, 2048, 6144, 151936}},
	}
	if got := len(Presets()); got != len(cases) {
		t.Errorf("%d presets, test knows %d", got, len(cases))
	}
	for _, c := range cases {
		o, err := Preset(c.name)
		if err != nil {
			t.Fatal(err)
		}
		if o.DType != "bf16" || o.MaxShardBytes != 5_000_000_000 {
			t.Errorf("%s: dtype %s, shards %d", c.name, o.DType, o.MaxShardBytes)
		}
		n, err := NumParams(o)
		if err != nil {
			t.Fatal(err)
		}
		if c.params >= 0 && n != c.params {
			t.Errorf("%s: %d parameters, want %d", c.name, n, c.params)
		}
		r, _ := o.resolve()
		cfg, _, err := r.parsedConfig()
		if err != nil {
			t.Fatal(err)
		}
		if cfg.ModelType != c.arch || cfg.NumKVHeads != c.kv || cfg.RopeTheta != c.theta || cfg.AttentionBias != c.bias ||
			cfg.MaxPositionEmbeddings != c.maxPos || cfg.RMSNormEps != c.eps || cfg.HeadDim != 128 ||
			[4]int{cfg.NumLayers, cfg.HiddenSize, cfg.IntermediateSize, cfg.VocabSize} != c.wantDims {
			t.Errorf("%s: config %+v", c.name, cfg)
		}
		if cfg.SlidingWindow != c.window {
			t.Errorf("%s: sliding window %d, want %d", c.name, cfg.SlidingWindow, c.window)
		}
		switch {
		case c.scaling == "" && cfg.RopeScaling != nil:
			t.Errorf("%s: unexpected rope scaling %+v", c.name, cfg.RopeScaling)
		case c.scaling == "linear":
			if rs := cfg.RopeScaling; rs == nil || rs.Type != "linear" || rs.Factor != 8 {
				t.Errorf("%s: rope scaling %+v", c.name, rs)
			}
		case c.scaling != "":
			rs := cfg.RopeScaling
			if rs == nil || rs.Type != c.scaling || rs.Factor != 8 || rs.LowFreqFactor != 1 || rs.HighFreqFactor != 4 ||
				rs.OriginalMaxPositionEmbeddings != 8192 {
				t.Errorf("%s: rope scaling %+v", c.name, rs)
			}
		}
	}
	if _, err := Preset("gpt-2"); err == nil {
		t.Error("unknown preset accepted")
	}
}

// TestLargeTensorsStream writes a model whose embedding and lm_head are
// 128256×256 (32.8 Mi elements each: 125 MiB as float32) and checks that the
// generator allocated far less than one such tensor, i.e. that it streams.
func TestLargeTensorsStream(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	o := Options{Layers: 1, Hidden: 256, Intermediate: 256, Heads: 4, KVHeads: 4, Vocab: 128256, MaxShardBytes: 40 << 20}
	dir := t.TempDir()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	if err := Write(dir, o); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	alloc := after.TotalAlloc - before.TotalAlloc
	workers := uint64(runtime.GOMAXPROCS(0))
	// Each worker holds one chunk: 12 bytes per element (float32 + bf16).
	limit := workers*uint64(chunkElems)*12 + 16<<20
	if alloc > limit {
		t.Errorf("allocated %d bytes, want at most %d (one float32 embedding is %d)", alloc, limit, 128256*256*4)
	}
	s, err := safetensors.OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if len(s.Shards()) < 2 {
		t.Errorf("%d shards, want several", len(s.Shards()))
	}
	emb, err := s.Get(config.EmbedTokens)
	if err != nil {
		t.Fatal(err)
	}
	// Spot-check the last row against the sequential reference.
	full := refTensor(func() Options { r, _ := o.resolve(); return r }(), config.EmbedTokens, 128256*256, mustOutliers(t, o))
	got, err := emb.Float32()
	if err != nil {
		t.Fatal(err)
	}
	for i := len(full) - 256; i < len(full); i++ {
		if w := dtype.BF16ToF32(dtype.F32ToBF16(full[i])); got[i] != w {
			t.Fatalf("embedding[%d] = %v, want %v", i, got[i], w)
		}
	}
}

func mustOutliers(t *testing.T, o Options) []int {
	t.Helper()
	c, err := OutlierChannels(o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
