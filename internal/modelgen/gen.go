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
var ErrOptions = errors.New("modelgen: invalid options")

// Options describes the model to write. A zero field takes its value from
// Default(), except: HeadDim 0 means Hidden/Heads; KVHeads 0 means Heads when
// Heads is set (multi-head attention) and Default's KVHeads otherwise; Seed 0
// is simply seed 0.
type Options struct {
	Arch          string // a model_type of the architecture table (model/arch); "llama" by default
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
	SlidingWindow      int     // sliding_window (mistral, mixtral, phi3, gemma); 0: null (qwen* write MaxPos, unused); gemma: 4096
	RopeFactor         float64 // the rope scaling factor; 0: 2 for linear, 8 for llama3

	// Mixture of experts (mixtral, qwen2_moe, qwen3_moe); zero: 4 experts, 2 per token,
	// expert width Intermediate/2 (mixtral: Intermediate), shared expert Intermediate.
	Experts            int
	ExpertsPerTok      int
	MoEIntermediate    int
	SharedIntermediate int
	NormTopK           bool // norm_topk_prob (qwen*_moe)

	// Gemma: query_pre_attn_scalar (0: head_dim), soft-caps (0: none), Gemma 3's
	// sliding-window pattern (0: 6) and local rope base (0: 10000).
	QueryPreAttnScalar float64
	AttnSoftcap        float64
	FinalSoftcap       float64
	SlidingPattern     int
	RopeLocalBaseFreq  float64

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
	a, err := arch.Lookup(o.Arch)
	if err != nil {
		return o, fmt.Errorf("%w: Arch: %w", ErrOptions, err)
	}
	if a.Sparse != nil {
		if o.Experts == 0 {
			o.Experts = 4
		}
		if o.ExpertsPerTok == 0 {
			o.ExpertsPerTok = min(2, o.Experts)
		}
		if o.MoEIntermediate == 0 {
			o.MoEIntermediate = max(1, o.Intermediate/2)
			if o.Arch == config.TypeMixtral {
				o.MoEIntermediate = o.Intermediate
			}
		}
		if o.SharedIntermediate == 0 && a.SharedExpert {
			o.SharedIntermediate = o.Intermediate
		}
		if o.ExpertsPerTok < 1 || o.ExpertsPerTok > o.Experts || o.MoEIntermediate < 1 || o.SharedIntermediate < 0 {
			return o, fmt.Errorf("%w: %d experts, %d per token, width %d", ErrOptions, o.Experts, o.ExpertsPerTok, o.MoEIntermediate)
		}
	}
	if o.Arch == config.TypeGemma2 || o.Arch == config.TypeGemma3Text {
		if o.SlidingWindow == 0 {
			o.SlidingWindow = 4096
		}
		if o.SlidingPattern == 0 {
			o.SlidingPattern = 6
		}
		if o.RopeLocalBaseFreq == 0 {
			o.RopeLocalBaseFreq = 10000
		}
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
	if o.RopeFactor == 0 {
		o.RopeFactor = map[string]float64{"linear": 2, "llama3": 8}[o.RopeScaling]
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
		{"RopeOriginalMaxPos", float64(o.RopeOriginalMaxPos)}, {"SlidingWindow", float64(o.SlidingWindow) + 1}, {"Workers", float64(o.Workers) + 1},
		{"RopeFactor", o.RopeFactor + 1}, {"QueryPreAttnScalar", o.QueryPreAttnScalar + 1}, {"AttnSoftcap", o.AttnSoftcap + 1},
		{"FinalSoftcap", o.FinalSoftcap + 1}, {"SlidingPattern", float64(o.SlidingPattern) + 1}, {"RopeLocalBaseFreq", o.RopeLocalBaseFreq + 1}} {
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

// configJSON is the model's config.json: the keys released checkpoints of the type
// write (the LLaMA family's are unchanged from the first version of this package).
func (o Options) configJSON() ([]byte, error) {
	archName := map[string]string{
		config.TypeLlama: "LlamaForCausalLM", config.TypeMistral: "MistralForCausalLM", config.TypeQwen2: "Qwen2ForCausalLM",
		config.TypeQwen3: "Qwen3ForCausalLM", config.TypeMixtral: "MixtralForCausalLM", config.TypeQwen2MoE: "Qwen2MoeForCausalLM",
		config.TypeQwen3MoE: "Qwen3MoeForCausalLM", config.TypePhi3: "Phi3ForCausalLM", config.TypeGemma2: "Gemma2ForCausalLM",
		config.TypeGemma3Text: "Gemma3ForCausalLM",
	}[o.Arch]
	var rope any
	switch o.RopeScaling {
	case "linear":
		rope = obj{{"rope_type", "linear"}, {"factor", o.RopeFactor}}
	case "llama3":
		rope = obj{{"rope_type", "llama3"}, {"factor", o.RopeFactor}, {"low_freq_factor", 1.0}, {"high_freq_factor", 4.0},
			{"original_max_position_embeddings", o.RopeOriginalMaxPos}}
	}
	act := "silu"
	gemma := o.Arch == config.TypeGemma2 || o.Arch == config.TypeGemma3Text
	if gemma {
		act = "gelu_pytorch_tanh"
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
		{"hidden_act", act},
		{"attention_dropout", 0.0},
		{"initializer_range", weightStd},
		{"use_cache", true},
		{"torch_dtype", o.torchDType()},
	}
	window := func() any {
		if o.SlidingWindow > 0 {
			return o.SlidingWindow
		}
		return nil // null
	}
	qwenWindow := obj{{"use_sliding_window", false}, {"sliding_window", o.MaxPos}, {"max_window_layers", o.Layers}}
	moe := obj{{"num_experts", o.Experts}, {"num_experts_per_tok", o.ExpertsPerTok}, {"moe_intermediate_size", o.MoEIntermediate},
		{"norm_topk_prob", o.NormTopK}, {"decoder_sparse_step", 1}, {"mlp_only_layers", []int{}}, {"router_aux_loss_coef", 0.001},
		{"output_router_logits", false}}
	switch o.Arch {
	case config.TypeLlama:
		c = append(c, kv{"attention_bias", false}, kv{"mlp_bias", false}, kv{"pretraining_tp", 1})
	case config.TypeMistral:
		c = append(c, kv{"sliding_window", window()})
	case config.TypeQwen2:
		c = append(c, qwenWindow...)
	case config.TypeQwen3:
		c = append(c, kv{"attention_bias", false})
		c = append(c, qwenWindow...)
	case config.TypeMixtral:
		c = append(c, kv{"num_local_experts", o.Experts}, kv{"num_experts_per_tok", o.ExpertsPerTok},
			kv{"sliding_window", window()}, kv{"router_aux_loss_coef", 0.02}, kv{"router_jitter_noise", 0.0},
			kv{"output_router_logits", false})
	case config.TypeQwen2MoE:
		c = append(c, qwenWindow...)
		c = append(c, moe...)
		c = append(c, kv{"shared_expert_intermediate_size", o.SharedIntermediate})
	case config.TypeQwen3MoE:
		c = append(c, kv{"attention_bias", false})
		c = append(c, qwenWindow...)
		c = append(c, moe...)
	case config.TypePhi3:
		c = append(c, kv{"attention_bias", false}, kv{"sliding_window", window()}, kv{"original_max_position_embeddings", o.MaxPos},
			kv{"embd_pdrop", 0.0}, kv{"resid_pdrop", 0.0}, kv{"pad_token_id", 0})
	case config.TypeGemma2, config.TypeGemma3Text:
		scalar := o.QueryPreAttnScalar
		if scalar == 0 {
			scalar = float64(o.HeadDim)
		}
		capOrNull := func(v float64) any {
			if v > 0 {
				return v
			}
			return nil
		}
		c = append(c, kv{"hidden_activation", act}, kv{"query_pre_attn_scalar", scalar}, kv{"sliding_window", o.SlidingWindow},
			kv{"attn_logit_softcapping", capOrNull(o.AttnSoftcap)}, kv{"final_logit_softcapping", capOrNull(o.FinalSoftcap)},
			kv{"attention_bias", false}, kv{"pad_token_id", 0})
		if o.Arch == config.TypeGemma3Text {
			types := make([]string, o.Layers)
			for l := range types {
				types[l] = config.FullAttention
				if (l+1)%o.SlidingPattern != 0 {
					types[l] = config.SlidingAttention
				}
			}
			c = append(c, kv{"sliding_window_pattern", o.SlidingPattern}, kv{"layer_types", types},
				kv{"rope_local_base_freq", o.RopeLocalBaseFreq})
		}
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
		return fmt.Errorf("modelgen: %w", err)
	}
	cfgBytes, err := o.configJSON()
	if err != nil {
		return fmt.Errorf("modelgen: config.json: %w", err)
	}
	// The tensor list comes from format/config's name table, reading back the
	// config just produced, so the fixture and the reader cannot disagree.
	cfg, a, err := arch.Parse(cfgBytes)
	if err != nil {
		return fmt.Errorf("modelgen: generated config.json does not parse: %w", err)
	}
	tokBytes, err := TokenizerJSON()
	if err != nil {
		return fmt.Errorf("modelgen: tokenizer.json: %w", err)
	}
	tokCfg, err := tokenizerConfigJSON(o.MaxPos)
	if err != nil {
		return fmt.Errorf("modelgen: tokenizer_config.json: %w", err)
	}
	genCfg, err := marshalIndent(obj{{"bos_token_id", BOSID}, {"eos_token_id", EOSID}})
	if err != nil {
		return fmt.Errorf("modelgen: generation_config.json: %w", err)
	}
	for _, f := range []struct {
		name string
		data []byte
	}{
		{"config.json", cfgBytes}, {"generation_config.json", genCfg},
		{"tokenizer.json", tokBytes}, {"tokenizer_config.json", tokCfg},
	} {
		if err := os.WriteFile(filepath.Join(dir, f.name), f.data, 0o644); err != nil {
			return fmt.Errorf("modelgen: %w", err)
		}
	}
	// Remove weight files of an earlier model in dir so the new one is not mixed with them.
	old, _ := filepath.Glob(filepath.Join(dir, "model*.safetensors"))
	old = append(old, filepath.Join(dir, safetensors.IndexName))
	for _, p := range old {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("modelgen: %w", err)
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
		return fmt.Errorf("modelgen: %w", err)
	}
	if err := o.writeTensors(w, expected, dt, a.Norm == arch.NormOnePlus); err != nil {
		w.Abort()
		return fmt.Errorf("modelgen: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("modelgen: %w", err)
	}
	return nil
}
