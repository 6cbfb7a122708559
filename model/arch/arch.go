package arch

import (
	"encoding/json"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/wanda-go/wanda/format/config"
	"github.com/wanda-go/wanda/internal/regfile"
)

// Names of the tensors outside the decoder layers (every supported type).
const (
	EmbedTokens = config.EmbedTokens // [vocab, hidden]
	FinalNorm   = config.FinalNorm   // [hidden]
	LMHead      = config.LMHead      // [vocab, hidden]; absent when the embeddings are tied
)

// NormKind is how an RMSNorm applies its weight w to the normalised x.
type NormKind int

const (
	// NormWeight: x·w (LLaMA, Qwen, Mistral, Phi-3).
	NormWeight NormKind = iota
	// NormOnePlus: x·(1+w), the weight stored as an offset from one (Gemma).
	NormOnePlus
)

// Activations the MLP kernels implement (Config.HiddenAct).
const (
	ActSiLU      = "silu"
	ActGELUTanh  = "gelu_pytorch_tanh"
	actGELUTanh2 = "gelu_tanh" // an alias some configs use
)

// Arch is one architecture's entry in the table.
type Arch struct {
	// Type is the model_type it handles.
	Type string
	// Defaults are the values transformers' configuration class gives the fields a
	// config.json omits.
	Defaults Defaults
	// Configure, when not nil, applies what is particular to the type after the
	// defaults: the bias rule, the per-layer attention pattern (Config.LayerTypes
	// and SlidingWindow), routing flags. It returns errors wrapping config.ErrInvalid
	// or config.ErrUnsupported.
	Configure func(c *config.Config) error
	// Names are the module paths inside a decoder layer.
	Names Names
	// Norm is the kind of every RMSNorm of the model.
	Norm NormKind
	// EmbedScale multiplies the embeddings by √hidden (in float32, as transformers
	// does when it computes in float32).
	EmbedScale bool
	// SandwichNorms: the attention output and the MLP output are normalised before
	// their residual additions (post_attention_layernorm, post_feedforward_layernorm),
	// and the MLP input by pre_feedforward_layernorm (Gemma 2/3).
	SandwichNorms bool
	// QKNorm: q and k are RMS-normalised per head (q_norm, k_norm over head_dim)
	// before the rotary embedding (Qwen3, Gemma 3).
	QKNorm bool
	// LocalRope: sliding-window layers rotate with rope_local_base_freq and no
	// scaling, full-attention layers with rope_theta and rope_scaling (Gemma 3).
	LocalRope bool
	// Sparse reports whether decoder layer l has experts instead of a dense MLP; nil
	// for a dense architecture.
	Sparse func(c *config.Config, l int) bool
	// SharedExpert: sparse layers also have a shared expert whose output is gated by
	// sigmoid(shared_expert_gate(x)) (Qwen2-MoE).
	SharedExpert bool
}

// Defaults are a type's values for the fields a config.json omits (zero: no default).
type Defaults struct {
	MaxPositionEmbeddings int
	RMSNormEps            float64
	RopeTheta             float64
	// HeadDim 0: hidden_size / num_attention_heads.
	HeadDim           int
	HiddenAct         string
	TieWordEmbeddings bool
	// Sliding window span when the file omits sliding_window (whether it is used is
	// the type's Configure rule).
	SlidingWindow         int
	SlidingWindowPattern  int
	MaxWindowLayers       int
	QueryPreAttnScalar    float64
	AttnLogitSoftcapping  float64
	FinalLogitSoftcapping float64
	RopeLocalBaseFreq     float64
	// Mixture of experts.
	NumExperts, NumExpertsPerTok int
	MoEIntermediateSize          int
	SharedExpertIntermediateSize int
	DecoderSparseStep            int
}

// Names are the module paths inside decoder layer "model.layers.<l>." (without
// ".weight"); an empty name means the layer has no such module.
type Names struct {
	Q, K, V string // e.g. "self_attn.q_proj"
	QKV     string // fused q|k|v rows (Phi-3), instead of Q, K, V
	O       string
	QNorm   string // with Arch.QKNorm
	KNorm   string

	InputNorm    string
	PostAttnNorm string
	PreFFNorm    string // with Arch.SandwichNorms
	PostFFNorm   string

	Gate, Up, Down string // the dense MLP
	GateUp         string // fused gate|up rows (Phi-3), instead of Gate and Up

	Router string // sparse layers: the router (never pruned)
	// Expert is the path of expert e, a format with one %d (e.g. "mlp.experts.%d").
	Expert                           string
	ExpertGate, ExpertUp, ExpertDown string // inside an expert, e.g. "w1", "w3", "w2"
	SharedGate, SharedUp, SharedDown string // the shared expert (Arch.SharedExpert)
	SharedExpertGate                 string // its sigmoid gate (never pruned)
	// FusedExperts are the 3-D parameters transformers 5 fuses a sparse layer's experts
	// into in memory (gate|up, then down), the names PEFT's target_parameters use.
	FusedExperts []string
}

var (
	mu    sync.RWMutex
	table = map[string]*Arch{}
)

// Register adds an entry to the table. It panics on a duplicate type or an entry
// without a type (programmer errors), as image.RegisterFormat's callers would.
func Register(a *Arch) {
	mu.Lock()
	defer mu.Unlock()
	if a == nil || a.Type == "" {
		panic("arch: Register without a type")
	}
	if _, dup := table[a.Type]; dup {
		panic("arch: Register called twice for " + a.Type)
	}
	table[a.Type] = a
}

// Supported lists the model_type values in the table, sorted.
func Supported() []string {
	mu.RLock()
	defer mu.RUnlock()
	out := make([]string, 0, len(table))
	for t := range table {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

// Lookup returns the entry of modelType, or an error wrapping
// config.ErrUnsupportedArch that lists the supported types.
func Lookup(modelType string) (*Arch, error) {
	mu.RLock()
	a, ok := table[modelType]
	mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("%w: model_type %q (wanda supports %s)", config.ErrUnsupportedArch, modelType,
			strings.Join(Supported(), ", "))
	}
	return a, nil
}

// Load reads config.json at path, completes it with its type's entry and returns both.
// Errors name the file.
func Load(path string) (*config.Config, *Arch, error) {
	data, err := regfile.ReadFile(path) // a FIFO in its place must not block
	if err != nil {
		return nil, nil, fmt.Errorf("config: %w", err)
	}
	c, a, err := Parse(data)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, a, nil
}

// LoadDir is Load of dir/config.json.
func LoadDir(dir string) (*config.Config, *Arch, error) {
	return Load(filepath.Join(dir, "config.json"))
}

// Parse is config.Parse followed by Complete. An unsupported model_type is reported as
// such even when the rest of the file is not what wanda's types need.
func Parse(data []byte) (*config.Config, *Arch, error) {
	var head struct {
		ModelType any `json:"model_type"`
	}
	if json.Unmarshal(data, &head) == nil {
		if t, ok := head.ModelType.(string); ok && t != "" {
			if _, err := Lookup(t); err != nil {
				return nil, nil, err
			}
		}
	}
	c, err := config.Parse(data)
	if err != nil {
		return nil, nil, err
	}
	a, err := Complete(c)
	if err != nil {
		return nil, nil, err
	}
	return c, a, nil
}

// Complete looks up c's type and completes c in place: the type's defaults for the
// fields the file omitted, its Configure rule, then the checks every type shares
// (sizes, head_dim, activation, biases, experts, layer types). Calling it again on a
// completed config changes nothing.
func Complete(c *config.Config) (*Arch, error) {
	a, err := Lookup(c.ModelType)
	if err != nil {
		return nil, err
	}
	a.applyDefaults(c)
	if a.Configure != nil {
		if err := a.Configure(c); err != nil {
			return nil, err
		}
	}
	if err := a.validate(c); err != nil {
		return nil, err
	}
	return a, nil
}

func (a *Arch) applyDefaults(c *config.Config) {
	d := a.Defaults
	setInt := func(dst *int, key string, v int) {
		if !c.Has(key) && *dst == 0 {
			*dst = v
		}
	}
	setFloat := func(dst *float64, key string, v float64) {
		if !c.Has(key) && *dst == 0 {
			*dst = v
		}
	}
	setInt(&c.MaxPositionEmbeddings, "max_position_embeddings", d.MaxPositionEmbeddings)
	setFloat(&c.RMSNormEps, "rms_norm_eps", d.RMSNormEps)
	if c.RopeTheta == 0 {
		c.RopeTheta = cmpOr(d.RopeTheta, 10000)
	}
	if c.HeadDim == 0 {
		if d.HeadDim > 0 {
			c.HeadDim = d.HeadDim
		} else if c.HiddenSize%c.NumHeads == 0 {
			c.HeadDim = c.HiddenSize / c.NumHeads
		}
	}
	if c.HiddenAct == "" {
		c.HiddenAct = cmpOr(d.HiddenAct, ActSiLU)
	}
	if !c.Has("tie_word_embeddings") {
		c.TieWordEmbeddings = d.TieWordEmbeddings
	}
	if _, present := c.Raw["sliding_window"]; !present && c.SlidingWindow == 0 { // null means none
		c.SlidingWindow = d.SlidingWindow
	}
	setInt(&c.SlidingWindowPattern, "sliding_window_pattern", d.SlidingWindowPattern)
	setInt(&c.MaxWindowLayers, "max_window_layers", d.MaxWindowLayers)
	setFloat(&c.QueryPreAttnScalar, "query_pre_attn_scalar", d.QueryPreAttnScalar)
	for _, f := range []struct {
		dst *float64
		key string
		v   float64
	}{{&c.AttnLogitSoftcapping, "attn_logit_softcapping", d.AttnLogitSoftcapping},
		{&c.FinalLogitSoftcapping, "final_logit_softcapping", d.FinalLogitSoftcapping}} {
		if _, present := c.Raw[f.key]; !present && *f.dst == 0 { // null means none
			*f.dst = f.v
		}
	}
	setFloat(&c.RopeLocalBaseFreq, "rope_local_base_freq", d.RopeLocalBaseFreq)
	if a.Sparse != nil {
		if c.NumExperts == 0 && !c.Has("num_experts") && !c.Has("num_local_experts") {
			c.NumExperts = d.NumExperts
		}
		setInt(&c.NumExpertsPerTok, "num_experts_per_tok", d.NumExpertsPerTok)
		setInt(&c.MoEIntermediateSize, "moe_intermediate_size", d.MoEIntermediateSize)
		setInt(&c.SharedExpertIntermediateSize, "shared_expert_intermediate_size", d.SharedExpertIntermediateSize)
		setInt(&c.DecoderSparseStep, "decoder_sparse_step", d.DecoderSparseStep)
	}
}

func cmpOr[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

func (a *Arch) validate(c *config.Config) error {
	if c.HeadDim <= 0 {
		return fmt.Errorf("%w: head_dim: missing and hidden_size %d is not divisible by num_attention_heads %d",
			config.ErrInvalid, c.HiddenSize, c.NumHeads)
	}
	if rd := RotaryDim(c); rd <= 0 || rd%2 != 0 {
		return fmt.Errorf("%w: rotary dimension %d (head_dim %d × partial_rotary_factor) must be even and positive",
			config.ErrUnsupported, rd, c.HeadDim)
	}
	if c.MaxPositionEmbeddings <= 0 {
		return fmt.Errorf("%w: max_position_embeddings: missing", config.ErrInvalid)
	}
	if !(c.RMSNormEps > 0) || !(c.RopeTheta > 0) {
		return fmt.Errorf("%w: rms_norm_eps %g and rope_theta %g must be positive", config.ErrInvalid, c.RMSNormEps, c.RopeTheta)
	}
	if c.MLPBias {
		return fmt.Errorf("%w: mlp_bias: true (MLP projections with bias are not supported)", config.ErrUnsupported)
	}
	switch c.HiddenAct {
	case ActSiLU, ActGELUTanh:
	case actGELUTanh2:
		c.HiddenAct = ActGELUTanh
	default:
		return fmt.Errorf("%w: hidden_act %q (%s supports %q and %q)", config.ErrUnsupported, c.HiddenAct, a.Type, ActSiLU, ActGELUTanh)
	}
	if len(c.LayerTypes) != c.NumLayers {
		return fmt.Errorf("%w: layer_types has %d entries for %d layers", config.ErrInvalid, len(c.LayerTypes), c.NumLayers)
	}
	for i, t := range c.LayerTypes {
		if t != config.FullAttention && t != config.SlidingAttention {
			return fmt.Errorf("%w: layer_types[%d] = %q (want %q or %q)", config.ErrUnsupported, i, t,
				config.FullAttention, config.SlidingAttention)
		}
		if t == config.SlidingAttention && c.SlidingWindow <= 0 {
			return fmt.Errorf("%w: layer %d slides but sliding_window is not set", config.ErrInvalid, i)
		}
	}
	if c.QueryPreAttnScalar < 0 || c.AttnLogitSoftcapping < 0 || c.FinalLogitSoftcapping < 0 {
		return fmt.Errorf("%w: negative attention scalar or soft-cap", config.ErrInvalid)
	}
	if a.LocalRope && !(c.RopeLocalBaseFreq > 0) {
		return fmt.Errorf("%w: rope_local_base_freq: missing", config.ErrInvalid)
	}
	if a.Sparse != nil {
		if c.NumExperts <= 0 || c.NumExpertsPerTok <= 0 || c.NumExpertsPerTok > c.NumExperts {
			return fmt.Errorf("%w: %d experts, %d per token", config.ErrInvalid, c.NumExperts, c.NumExpertsPerTok)
		}
		if c.MoEIntermediateSize <= 0 {
			return fmt.Errorf("%w: moe_intermediate_size: missing", config.ErrInvalid)
		}
		if a.SharedExpert && c.SharedExpertIntermediateSize <= 0 {
			return fmt.Errorf("%w: shared_expert_intermediate_size: missing", config.ErrInvalid)
		}
		if c.DecoderSparseStep <= 0 {
			return fmt.Errorf("%w: decoder_sparse_step must be positive", config.ErrInvalid)
		}
	}
	return nil
}

// RotaryDim is the number of leading dimensions of each head that the rotary
// embedding rotates: head_dim × partial_rotary_factor (the whole head when absent).
func RotaryDim(c *config.Config) int {
	if c.PartialRotaryFactor == 0 {
		return c.HeadDim
	}
	return int(float64(c.HeadDim) * c.PartialRotaryFactor)
}

// SlidingLayers sets c.LayerTypes, when the file does not list them, by
// sliding(l); makes every layer full when c.SlidingWindow is 0, and zeroes
// c.SlidingWindow when no layer slides. It is the helper of the
// entries' Configure.
func SlidingLayers(c *config.Config, sliding func(l int) bool) {
	if !c.Has("layer_types") {
		c.LayerTypes = make([]string, c.NumLayers)
		for l := range c.LayerTypes {
			c.LayerTypes[l] = config.FullAttention
			if c.SlidingWindow > 0 && sliding(l) {
				c.LayerTypes[l] = config.SlidingAttention
			}
		}
	}
	if c.SlidingWindow == 0 {
		// layer_types may mark layers sliding while the window is off (Qwen without
		// use_sliding_window): transformers then attends to every earlier token.
		for l := range c.LayerTypes {
			c.LayerTypes[l] = config.FullAttention
		}
	}
	if !slices.Contains(c.LayerTypes, config.SlidingAttention) {
		c.SlidingWindow = 0
	}
}

// noOBias refuses attention_bias for the types whose attention_bias also gives
// o_proj a bias, which wanda does not compute.
func noOBias(c *config.Config) error {
	if c.AttentionBias {
		return fmt.Errorf("%w: %s with attention_bias (o_proj.bias) is not supported", config.ErrUnsupported, c.ModelType)
	}
	return nil
}

// AttnScale is the factor of q·k in layer attention: 1/√query_pre_attn_scalar when
// the config sets it (Gemma), else 1/√head_dim.
func AttnScale(c *config.Config) float64 {
	if c.QueryPreAttnScalar > 0 {
		return 1 / math.Sqrt(c.QueryPreAttnScalar)
	}
	return 1 / math.Sqrt(float64(c.HeadDim))
}
