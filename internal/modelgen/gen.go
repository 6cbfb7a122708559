package modelgen

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"sort"

	"github.com/wanda-go/wanda/format/config"
	"github.com/wanda-go/wanda/format/dtype"
	"github.com/wanda-go/wanda/format/safetensors"
	"github.com/wanda-go/wanda/model/arch"
)

// Scales of the outlier channels (see the package documentation).
const (
	EmbedOutlierScale = 8.0 // std multiplier of the outlier embedding columns
	NormOutlierScale  = 4.0 // mean of the outlier norm weights (the others are ~1)
	weightStd         = 0.02
	rmsNormEps        = 1e-5
	ropeTheta         = 10000.0
	minMagnitude      = 1e-4 // smaller magnitudes are raised to this (no exact zeros)
)

// ErrOptions is wrapped by every error about invalid Options.
var ErrOptions = errors.New("gen: invalid options")

// Options describes the model to write. A zero field takes its value from
// Default(), except: HeadDim 0 means Hidden/Heads; KVHeads 0 means Heads when
// Heads is set (multi-head attention) and Default's KVHeads otherwise; Seed 0
// is simply seed 0.
type Options struct {
	Arch          string // "llama" (default), "mistral" or "qwen2" (q/k/v biases)
	Layers        int
	Hidden        int
	Intermediate  int
	Heads         int
	KVHeads       int
	HeadDim       int
	Vocab         int    // config vocab_size; at least TokenizerSize()
	MaxPos        int    // max_position_embeddings
	DType         string // "bf16" (default), "f16" or "f32"
	Tied          bool   // tie_word_embeddings (no lm_head.weight)
	RopeScaling   string // "none" (default), "linear" (factor 2) or "llama3" (factor 8, low 1, high 4, original MaxPos/4)
	MaxShardBytes int64  // 0: one model.safetensors; otherwise shards of at most this many data bytes + index
	Seed          uint64

	// Fields for the full-size presets (see Preset); zero keeps the tiny
	// defaults, so existing Options write exactly the same files as before.
	RopeTheta          float64 // rope_theta; 0: 10000
	RMSNormEps         float64 // rms_norm_eps; 0: 1e-5
	RopeOriginalMaxPos int     // llama3 rope scaling's original_max_position_embeddings; 0: MaxPos/4
	SlidingWindow      int     // mistral sliding_window; 0: null (qwen2 always writes MaxPos, unused)

	// Workers is the number of goroutines generating values; 0 means
	// runtime.GOMAXPROCS(0). The files do not depend on it.
	Workers int
}

// Default is the tiny default model: llama, 2 layers, hidden 64, intermediate
// 128, 4 heads with 2 KV heads (GQA, head_dim 16), vocab 576 (the 563
// tokenizer tokens rounded up to a multiple of 64), 256 positions, bf16,
// untied, no rope scaling, one file, seed 0.
func Default() Options {
	return Options{
		Arch: config.TypeLlama, Layers: 2, Hidden: 64, Intermediate: 128, Heads: 4, KVHeads: 2,
		Vocab: 576, MaxPos: 256, DType: "bf16", RopeScaling: "none",
	}
}

// resolve fills zero fields and validates.
func (o Options) resolve() (Options, error) {
	d := Default()
	if o.KVHeads == 0 {
		if o.Heads != 0 {
			o.KVHeads = o.Heads
		} else {
			o.KVHeads = d.KVHeads
		}
	}
	if o.Arch == "" {
		o.Arch = d.Arch
	}
	for _, f := range []struct {
		dst *int
		def int
	}{
		{&o.Layers, d.Layers}, {&o.Hidden, d.Hidden}, {&o.Intermediate, d.Intermediate},
		{&o.Heads, d.Heads}, {&o.Vocab, d.Vocab}, {&o.MaxPos, d.MaxPos},
	} {
		if *f.dst == 0 {
			*f.dst = f.def
		}
	}
	if o.DType == "" {
		o.DType = d.DType
	}
	if o.RopeScaling == "" {
		o.RopeScaling = d.RopeScaling
	}
	switch o.Arch {
	case config.TypeLlama, config.TypeMistral, config.TypeQwen2:
	default:
		return o, fmt.Errorf("%w: Arch %q (want llama, mistral or qwen2)", ErrOptions, o.Arch)
	}
	for _, f := range []struct {
		name string
		v    int
	}{{"Layers", o.Layers}, {"Hidden", o.Hidden}, {"Intermediate", o.Intermediate}, {"Heads", o.Heads},
		{"KVHeads", o.KVHeads}, {"Vocab", o.Vocab}, {"MaxPos", o.MaxPos}} {
		if f.v <= 0 {
			return o, fmt.Errorf("%w: %s must be positive, got %d", ErrOptions, f.name, f.v)
		}
	}
	if o.HeadDim < 0 {
		return o, fmt.Errorf("%w: HeadDim must not be negative, got %d", ErrOptions, o.HeadDim)
	}
	if o.HeadDim == 0 {
		if o.Hidden%o.Heads != 0 {
			return o, fmt.Errorf("%w: Hidden %d is not divisible by Heads %d (set HeadDim)", ErrOptions, o.Hidden, o.Heads)
		}
		o.HeadDim = o.Hidden / o.Heads
	}
	if o.Heads%o.KVHeads != 0 {
		return o, fmt.Errorf("%w: Heads %d is not divisible by KVHeads %d", ErrOptions, o.Heads, o.KVHeads)
	}
	if n := TokenizerSize(); o.Vocab < n {
		return o, fmt.Errorf("%w: Vocab %d is smaller than the tokenizer's %d tokens", ErrOptions, o.Vocab, n)
	}
	if _, err := o.dtype(); err != nil {
		return o, err
	}
	switch o.RopeScaling {
	case "none", "linear", "llama3":
	default:
		return o, fmt.Errorf("%w: RopeScaling %q (want none, linear or llama3)", ErrOptions, o.RopeScaling)
	}
	if o.MaxShardBytes < 0 {
		return o, fmt.Errorf("%w: MaxShardBytes must not be negative, got %d", ErrOptions, o.MaxShardBytes)
	}
	if o.RopeTheta == 0 {
		o.RopeTheta = ropeTheta
	}
	if o.RMSNormEps == 0 {
		o.RMSNormEps = rmsNormEps
	}
	if o.RopeOriginalMaxPos == 0 {
		o.RopeOriginalMaxPos = max(1, o.MaxPos/4)
	}
	for _, f := range []struct {
		name string
		v    float64
	}{{"RopeTheta", o.RopeTheta}, {"RMSNormEps", o.RMSNormEps},
		{"RopeOriginalMaxPos", float64(o.RopeOriginalMaxPos)}, {"SlidingWindow", float64(o.SlidingWindow) + 1}, {"Workers", float64(o.Workers) + 1}} {
		if !(f.v > 0) || math.IsInf(f.v, 0) {
			return o, fmt.Errorf("%w: %s out of range", ErrOptions, f.name)
		}
	}
	if o.Workers == 0 {
		o.Workers = runtime.GOMAXPROCS(0)
	}
	return o, nil
}

func (o Options) dtype() (dtype.DType, error) {
	switch o.DType {
	case "bf16":
		return dtype.BF16, nil
	case "f16":
		return dtype.F16, nil
	case "f32":
		return dtype.F32, nil
	}
	return dtype.Invalid, fmt.Errorf("%w: DType %q (want bf16, f16 or f32)", ErrOptions, o.DType)
}

func (o Options) torchDType() string {
	return map[string]string{"bf16": "bfloat16", "f16": "float16", "f32": "float32"}[o.DType]
}

// OutlierChannels returns the sorted hidden channels that get large-scale
// embeddings and norm weights in the model Write makes for opt.
func OutlierChannels(opt Options) ([]int, error) {
	o, err := opt.resolve()
	if err != nil {
		return nil, err
	}
	return o.outliers(), nil
}

func (o Options) outliers() []int {
	n := max(2, o.Hidden/32)
	n = min(n, o.Hidden)
	ch := newRNG(o.Seed, "outlier channels").perm(o.Hidden)[:n]
	out := append([]int(nil), ch...)
	sort.Ints(out)
	return out
}

// configJSON is the model's config.json.
func (o Options) configJSON() ([]byte, error) {
	archName := map[string]string{
		config.TypeLlama: "LlamaForCausalLM", config.TypeMistral: "MistralForCausalLM", config.TypeQwen2: "Qwen2ForCausalLM",
	}[o.Arch]
	var rope any
	switch o.RopeScaling {
	case "linear":
		rope = obj{{"rope_type", "linear"}, {"factor", 2.0}}
	case "llama3":
		rope = obj{{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0}, {"high_freq_factor", 4.0},
			{"original_max_position_embeddings", o.RopeOriginalMaxPos}}
	}
	c := obj{
		{"architectures", []string{archName}},
		{"model_type", o.Arch},
		{"vocab_size", o.Vocab},
		{"hidden_size", o.Hidden},
		{"intermediate_size", o.Intermediate},
		{"num_hidden_layers", o.Layers},
		{"num_attention_heads", o.Heads},
		{"num_key_value_heads", o.KVHeads},
		{"head_dim", o.HeadDim},
		{"max_position_embeddings", o.MaxPos},
		{"rms_norm_eps", o.RMSNormEps},
		{"rope_theta", o.RopeTheta},
		{"rope_scaling", rope},
		{"tie_word_embeddings", o.Tied},
		{"bos_token_id", BOSID},
		{"eos_token_id", EOSID},
		{"hidden_act", "silu"},
		{"attention_dropout", 0.0},
		{"initializer_range", weightStd},
		{"use_cache", true},
		{"torch_dtype", o.torchDType()},
	}
	switch o.Arch {
	case config.TypeLlama:
		c = append(c, kv{"attention_bias", false}, kv{"mlp_bias", false}, kv{"pretraining_tp", 1})
	case config.TypeMistral:
		var sw any // null
		if o.SlidingWindow > 0 {
			sw = o.SlidingWindow
		}
		c = append(c, kv{"sliding_window", sw})
	case config.TypeQwen2:
		c = append(c, kv{"use_sliding_window", false}, kv{"sliding_window", o.MaxPos}, kv{"max_window_layers", o.Layers})
	}
	return marshalIndent(c)
}

// Write writes the model described by opt into dir (created if needed).
// Files of the same names are replaced, and any earlier model*.safetensors
// and index in dir are removed first so two models never mix.
func Write(dir string, opt Options) error {
	o, err := opt.resolve()
	if err != nil {
		return err
	}
	dt, _ := o.dtype()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("gen: %w", err)
	}
	cfgBytes, err := o.configJSON()
	if err != nil {
		return fmt.Errorf("gen: config.json: %w", err)
	}
	// The tensor list comes from format/config's name table, reading back the
	// config just produced, so the fixture and the reader cannot disagree.
	cfg, a, err := arch.Parse(cfgBytes)
	if err != nil {
		return fmt.Errorf("gen: generated config.json does not parse: %w", err)
	}
	tokBytes, err := TokenizerJSON()
	if err != nil {
		return fmt.Errorf("gen: tokenizer.json: %w", err)
	}
	tokCfg, err := tokenizerConfigJSON(o.MaxPos)
	if err != nil {
		return fmt.Errorf("gen: tokenizer_config.json: %w", err)
	}
	genCfg, err := marshalIndent(obj{{"bos_token_id", BOSID}, {"eos_token_id", EOSID}})
	if err != nil {
		return fmt.Errorf("gen: generation_config.json: %w", err)
	}
	for _, f := range []struct {
		name string
		data []byte
	}{
		{"config.json", cfgBytes}, {"generation_config.json", genCfg},
		{"tokenizer.json", tokBytes}, {"tokenizer_config.json", tokCfg},
	} {
		if err := os.WriteFile(filepath.Join(dir, f.name), f.data, 0o644); err != nil {
			return fmt.Errorf("gen: %w", err)
		}
	}
	// Remove weight files of an earlier model in dir so the new one is not mixed with them.
	old, _ := filepath.Glob(filepath.Join(dir, "model*.safetensors"))
	old = append(old, filepath.Join(dir, safetensors.IndexName))
	for _, p := range old {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("gen: %w", err)
		}
	}

	expected := a.Tensors(cfg)
	specs := make([]safetensors.Spec, len(expected))
	for i, e := range expected {
		specs[i] = safetensors.Spec{Name: e.Name, DType: dt, Shape: e.Shape}
	}
	w, err := safetensors.Create(dir, specs, safetensors.WriterOptions{
		MaxShardBytes: o.MaxShardBytes,
		Metadata:      map[string]string{"format": "pt"},
	})
	if err != nil {
		return fmt.Errorf("gen: %w", err)
	}
	if err := o.writeTensors(w, expected, dt); err != nil {
		w.Abort()
		return fmt.Errorf("gen: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("gen: %w", err)
	}
	return nil
}
