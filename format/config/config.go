package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"

	"github.com/wanda-go/wanda/internal/regfile"
)

// Sentinel errors. Every error returned by Parse and Load wraps one of them.
var (
	// ErrInvalid: the file is not valid JSON, or a field is missing, has the
	// wrong type, or is inconsistent with another field.
	ErrInvalid = errors.New("config: invalid config")
	// ErrUnsupportedArch: model_type names an architecture wanda does not handle
	// (returned by the architecture table, model/arch; Parse accepts any model_type).
	ErrUnsupportedArch = errors.New("config: unsupported architecture")
	// ErrUnsupported: a valid configuration that uses a feature wanda does not
	// implement (an unknown rope_scaling type or torch_dtype here; mlp_bias or an
	// activation the architecture table refuses).
	ErrUnsupported = errors.New("config: unsupported configuration")
)

// Some model_type values (the architecture table, package model/arch, says which are
// supported).
const (
	TypeLlama      = "llama"
	TypeMistral    = "mistral"
	TypeQwen2      = "qwen2"
	TypeQwen3      = "qwen3"
	TypeMixtral    = "mixtral"
	TypeQwen2MoE   = "qwen2_moe"
	TypeQwen3MoE   = "qwen3_moe"
	TypePhi3       = "phi3"
	TypeGemma2     = "gemma2"
	TypeGemma3Text = "gemma3_text"
)

// Attention kinds of LayerTypes.
const (
	FullAttention    = "full_attention"
	SlidingAttention = "sliding_attention"
)

// maxDim bounds every size field so that products of two sizes fit in int64
// and an absurd file fails early instead of exhausting memory.
const maxDim = math.MaxInt32

// maxLayers bounds num_hidden_layers (the largest released LLaMA-family
// models have ~128 layers).
const maxLayers = 1 << 16

// RopeScaling is the rotary-embedding frequency scaling of the model. Type is
// "linear" (positions divided by Factor) or "llama3" (Llama 3.1 wavelength-band
// scaling using all fields). A config without scaling, or with type
// "default", has Config.RopeScaling == nil.
type RopeScaling struct {
	Type                          string  `json:"type"`
	Factor                        float64 `json:"factor"`
	LowFreqFactor                 float64 `json:"low_freq_factor,omitempty"`
	HighFreqFactor                float64 `json:"high_freq_factor,omitempty"`
	OriginalMaxPositionEmbeddings int     `json:"original_max_position_embeddings,omitempty"`
}

// Config is the configuration of a decoder-only model: the typed fields of its
// config.json. Parse fills what the file says (and the defaults every type shares);
// the architecture table (package model/arch) then fills the defaults of the model's
// type and resolves the per-layer fields, so that the code computing with a model reads
// only typed fields, never Raw.
type Config struct {
	ModelType             string   // e.g. "llama", "qwen3_moe", "gemma2"
	Architectures         []string // e.g. ["LlamaForCausalLM"]; may be empty
	HiddenSize            int
	IntermediateSize      int // intermediate_size (the dense MLP's)
	NumLayers             int // num_hidden_layers
	NumHeads              int // num_attention_heads
	NumKVHeads            int // num_key_value_heads; defaults to NumHeads
	HeadDim               int // head_dim; 0 when absent (the type decides)
	VocabSize             int
	MaxPositionEmbeddings int // 0 when absent (the type decides)

	RMSNormEps  float64      // rms_norm_eps; 0 when absent (the type decides)
	RopeTheta   float64      // rope_theta (or rope_parameters.rope_theta); 0 when absent
	RopeScaling *RopeScaling // nil when none
	// PartialRotaryFactor is the fraction of head_dim that rotary embeddings rotate
	// (partial_rotary_factor); 0 when absent (the whole head).
	PartialRotaryFactor float64
	// RopeLocalBaseFreq is rope_local_base_freq (Gemma 3's sliding layers); 0 when absent.
	RopeLocalBaseFreq float64

	TieWordEmbeddings bool   // tie_word_embeddings; false when absent (see Has)
	AttentionBias     bool   // q/k/v projections carry a bias (attention_bias, or qkv_bias)
	MLPBias           bool   // mlp_bias
	HiddenAct         string // hidden_activation, else hidden_act; "" when absent
	TorchDType        string // "bfloat16" | "float16" | "float32", or "" when the file does not say

	BOSTokenID, EOSTokenID int // -1 if absent; a list of eos ids yields the first

	// Sliding-window attention. SlidingWindow is sliding_window (0 when absent or null);
	// once the type has resolved it, it is the span of the layers whose LayerTypes entry
	// is SlidingAttention, and 0 when no layer slides.
	SlidingWindow        int
	UseSlidingWindow     bool     // use_sliding_window
	MaxWindowLayers      int      // max_window_layers; 0 when absent
	SlidingWindowPattern int      // sliding_window_pattern (or _sliding_window_pattern); 0 when absent
	LayerTypes           []string // layer_types; once resolved one entry per layer (FullAttention or SlidingAttention)

	// Gemma's attention and output.
	QueryPreAttnScalar    float64 // query_pre_attn_scalar: attention scale is its -1/2 power; 0 when absent
	AttnLogitSoftcapping  float64 // attn_logit_softcapping; 0 when absent or null (none)
	FinalLogitSoftcapping float64 // final_logit_softcapping; 0 when absent or null (none)

	// Mixture of experts.
	NumExperts                   int   // num_local_experts or num_experts; 0 for a dense model
	NumExpertsPerTok             int   // num_experts_per_tok
	MoEIntermediateSize          int   // moe_intermediate_size (an expert's MLP width; intermediate_size when absent)
	SharedExpertIntermediateSize int   // shared_expert_intermediate_size; 0 when none
	NormTopKProb                 bool  // norm_topk_prob: renormalise the top-k routing weights
	DecoderSparseStep            int   // decoder_sparse_step; 0 when absent
	MLPOnlyLayers                []int // mlp_only_layers: layers with a dense MLP instead of experts

	// Raw is the whole original JSON object. Numbers are json.Number so that
	// re-encoding Raw reproduces them exactly.
	Raw map[string]any
}

// Has reports whether config.json sets key to something other than null.
func (c *Config) Has(key string) bool {
	v, ok := c.Raw[key]
	return ok && v != nil
}

// Load reads and parses the config.json at path. Errors are prefixed with path.
func Load(path string) (*Config, error) {
	data, err := regfile.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// Parse parses the bytes of a config.json: every field it knows, checked for type and
// range. It accepts any model_type; whether wanda supports it is the architecture
// table's business (model/arch), as are the defaults that depend on the type.
func Parse(data []byte) (*Config, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var raw map[string]any
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("%w: not a JSON object: %w", ErrInvalid, err)
	}
	if raw == nil {
		return nil, fmt.Errorf("%w: not a JSON object: null", ErrInvalid)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: trailing data after the JSON object", ErrInvalid)
	}
	f := fields{m: raw}
	c := &Config{Raw: raw, BOSTokenID: -1, EOSTokenID: -1}

	mt, ok, err := f.str("model_type")
	if err != nil {
		return nil, err
	}
	if !ok || mt == "" {
		return nil, fmt.Errorf("%w: model_type: missing", ErrInvalid)
	}
	c.ModelType = mt
	if c.Architectures, err = f.strList("architectures"); err != nil {
		return nil, err
	}

	for _, r := range []struct {
		key string
		dst *int
	}{
		{"hidden_size", &c.HiddenSize},
		{"intermediate_size", &c.IntermediateSize},
		{"num_hidden_layers", &c.NumLayers},
		{"num_attention_heads", &c.NumHeads},
		{"vocab_size", &c.VocabSize},
	} {
		v, ok, err := f.posInt(r.key)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, fmt.Errorf("%w: %s: missing", ErrInvalid, r.key)
		}
		*r.dst = v
	}
	if c.NumLayers > maxLayers {
		return nil, fmt.Errorf("%w: num_hidden_layers: %d is implausibly large (max %d)", ErrInvalid, c.NumLayers, maxLayers)
	}

	kv, ok, err := f.posInt("num_key_value_heads")
	if err != nil {
		return nil, err
	}
	if !ok {
		kv = c.NumHeads
	}
	if c.NumHeads%kv != 0 {
		return nil, fmt.Errorf("%w: num_attention_heads %d is not divisible by num_key_value_heads %d",
			ErrInvalid, c.NumHeads, kv)
	}
	c.NumKVHeads = kv

	hd, _, err := f.posInt("head_dim")
	if err != nil {
		return nil, err
	}
	if int64(hd)*int64(c.NumHeads) > maxDim {
		return nil, fmt.Errorf("%w: head_dim %d × num_attention_heads %d is implausibly large", ErrInvalid, hd, c.NumHeads)
	}
	c.HeadDim = hd

	for _, r := range []struct {
		key string
		dst *int
	}{
		{"max_position_embeddings", &c.MaxPositionEmbeddings},
		{"max_window_layers", &c.MaxWindowLayers},
		{"decoder_sparse_step", &c.DecoderSparseStep},
		{"num_experts_per_tok", &c.NumExpertsPerTok},
		{"moe_intermediate_size", &c.MoEIntermediateSize},
	} {
		if *r.dst, err = f.nonNegInt(r.key); err != nil {
			return nil, err
		}
	}
	for _, key := range []string{"num_local_experts", "num_experts"} {
		if n, err := f.nonNegInt(key); err != nil {
			return nil, err
		} else if n > 0 {
			c.NumExperts = n
			break
		}
	}
	if c.SharedExpertIntermediateSize, err = f.nonNegInt("shared_expert_intermediate_size"); err != nil {
		return nil, err
	}
	for _, key := range []string{"sliding_window_pattern", "_sliding_window_pattern"} {
		if n, err := f.nonNegInt(key); err != nil {
			return nil, err
		} else if n > 0 && c.SlidingWindowPattern == 0 {
			c.SlidingWindowPattern = n
		}
	}
	if c.MLPOnlyLayers, err = f.intList("mlp_only_layers"); err != nil {
		return nil, err
	}
	if c.LayerTypes, err = f.strList("layer_types"); err != nil {
		return nil, err
	}

	for _, r := range []struct {
		key string
		dst *float64
	}{
		{"rms_norm_eps", &c.RMSNormEps},
		{"partial_rotary_factor", &c.PartialRotaryFactor},
		{"rope_local_base_freq", &c.RopeLocalBaseFreq},
		{"query_pre_attn_scalar", &c.QueryPreAttnScalar},
		{"attn_logit_softcapping", &c.AttnLogitSoftcapping},
		{"final_logit_softcapping", &c.FinalLogitSoftcapping},
	} {
		if *r.dst, err = f.posFloat(r.key, 0); err != nil {
			return nil, err
		}
	}
	if c.PartialRotaryFactor > 1 {
		return nil, fmt.Errorf("%w: partial_rotary_factor: %g exceeds 1", ErrInvalid, c.PartialRotaryFactor)
	}

	// transformers 5 may move rope_theta and the scaling into "rope_parameters".
	ropeParams, hasRopeParams := raw["rope_parameters"].(map[string]any)
	if _, present := raw["rope_theta"]; !present && hasRopeParams {
		if c.RopeTheta, err = (fields{m: ropeParams, prefix: "rope_parameters."}).posFloat("rope_theta", 0); err != nil {
			return nil, err
		}
	} else if c.RopeTheta, err = f.posFloat("rope_theta", 0); err != nil {
		return nil, err
	}
	if v, present := raw["rope_scaling"]; present && v != nil {
		if c.RopeScaling, err = parseRopeScaling("rope_scaling", v); err != nil {
			return nil, err
		}
	} else if hasRopeParams {
		if c.RopeScaling, err = parseRopeScaling("rope_parameters", ropeParams); err != nil {
			return nil, err
		}
	}

	for _, r := range []struct {
		key string
		dst *bool
	}{
		{"tie_word_embeddings", &c.TieWordEmbeddings},
		{"attention_bias", &c.AttentionBias},
		{"mlp_bias", &c.MLPBias},
		{"use_sliding_window", &c.UseSlidingWindow},
		{"norm_topk_prob", &c.NormTopKProb},
	} {
		if *r.dst, err = f.boolean(r.key, false); err != nil {
			return nil, err
		}
	}
	if f.m["qkv_bias"] != nil {
		if c.AttentionBias, err = f.boolean("qkv_bias", false); err != nil {
			return nil, err
		}
	}
	for _, key := range []string{"hidden_activation", "hidden_act"} {
		act, ok, err := f.str(key)
		if err != nil {
			return nil, err
		}
		if ok && c.HiddenAct == "" {
			c.HiddenAct = act
		}
	}

	key := "torch_dtype"
	if _, present := raw[key]; !present {
		key = "dtype"
	}
	dt, ok, err := f.str(key)
	if err != nil {
		return nil, err
	}
	if ok {
		switch dt {
		case "bfloat16", "float16", "float32":
			c.TorchDType = dt
		default:
			return nil, fmt.Errorf("%w: %s %q (want \"bfloat16\", \"float16\" or \"float32\")", ErrUnsupported, key, dt)
		}
	}

	if c.BOSTokenID, err = f.tokenID("bos_token_id"); err != nil {
		return nil, err
	}
	if c.EOSTokenID, err = f.tokenID("eos_token_id"); err != nil {
		return nil, err
	}
	if c.SlidingWindow, err = f.nonNegInt("sliding_window"); err != nil {
		return nil, err
	}
	return c, nil
}

func parseRopeScaling(field string, v any) (*RopeScaling, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%w: %s: want an object or null, got %s", ErrInvalid, field, jsonKind(v))
	}
	f := fields{m: m, prefix: field + "."}
	typ, ok, err := f.str("rope_type")
	if err == nil && !ok {
		typ, ok, err = f.str("type")
	}
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("%w: %s: missing \"rope_type\" (or \"type\")", ErrInvalid, field)
	}
	need := func(key string) (float64, error) {
		x, err := f.posFloat(key, math.NaN())
		if err != nil {
			return 0, err
		}
		if math.IsNaN(x) {
			return 0, fmt.Errorf("%w: %s.%s: missing (required by rope type %q)", ErrInvalid, field, key, typ)
		}
		return x, nil
	}
	rs := &RopeScaling{Type: typ}
	switch typ {
	case "default":
		return nil, nil
	case "linear":
		if rs.Factor, err = need("factor"); err != nil {
			return nil, err
		}
	case "llama3":
		if rs.Factor, err = need("factor"); err != nil {
			return nil, err
		}
		if rs.LowFreqFactor, err = need("low_freq_factor"); err != nil {
			return nil, err
		}
		if rs.HighFreqFactor, err = need("high_freq_factor"); err != nil {
			return nil, err
		}
		if rs.HighFreqFactor <= rs.LowFreqFactor {
			return nil, fmt.Errorf("%w: %s: high_freq_factor %g must exceed low_freq_factor %g",
				ErrInvalid, field, rs.HighFreqFactor, rs.LowFreqFactor)
		}
		n, ok, err := f.posInt("original_max_position_embeddings")
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, fmt.Errorf("%w: %s.original_max_position_embeddings: missing (required by rope type %q)", ErrInvalid, field, typ)
		}
		rs.OriginalMaxPositionEmbeddings = n
	default:
		return nil, fmt.Errorf("%w: %s type %q (wanda implements \"linear\" and \"llama3\")", ErrUnsupported, field, typ)
	}
	return rs, nil
}

// fields reads typed values out of a decoded JSON object (numbers are
// json.Number); prefix ("" or e.g. "rope_scaling.") is put before key names
// in error messages.
type fields struct {
	m      map[string]any
	prefix string
}

func jsonKind(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case json.Number:
		return "number " + x.String()
	case string:
		return fmt.Sprintf("string %q", x)
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

// str returns a string field; absent or null gives ok == false.
func (f fields) str(key string) (string, bool, error) {
	v, present := f.m[key]
	if !present || v == nil {
		return "", false, nil
	}
	s, ok := v.(string)
	if !ok {
		return "", false, fmt.Errorf("%w: %s: want a string, got %s", ErrInvalid, f.prefix+key, jsonKind(v))
	}
	return s, true, nil
}

func (f fields) strList(key string) ([]string, error) {
	v, present := f.m[key]
	if !present || v == nil {
		return nil, nil
	}
	list, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("%w: %s: want an array of strings, got %s", ErrInvalid, f.prefix+key, jsonKind(v))
	}
	out := make([]string, len(list))
	for i, e := range list {
		s, ok := e.(string)
		if !ok {
			return nil, fmt.Errorf("%w: %s[%d]: want a string, got %s", ErrInvalid, f.prefix+key, i, jsonKind(e))
		}
		out[i] = s
	}
	return out, nil
}

// integer converts a JSON value to an int, accepting integral numbers written
// with a fraction or exponent (64.0, 6.4e1).
func integer(key string, v any) (int64, error) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, fmt.Errorf("%w: %s: want an integer, got %s", ErrInvalid, key, jsonKind(v))
	}
	if i, err := n.Int64(); err == nil {
		return i, nil
	}
	x, err := n.Float64()
	if err != nil || x != math.Trunc(x) || math.Abs(x) > 1<<62 {
		return 0, fmt.Errorf("%w: %s: want an integer, got %s", ErrInvalid, key, n)
	}
	return int64(x), nil
}

// posInt returns a positive integer field (at most maxDim); absent or null gives ok == false.
func (f fields) posInt(key string) (int, bool, error) {
	v, present := f.m[key]
	if !present || v == nil {
		return 0, false, nil
	}
	i, err := integer(f.prefix+key, v)
	if err != nil {
		return 0, false, err
	}
	if i <= 0 {
		return 0, false, fmt.Errorf("%w: %s: must be positive, got %d", ErrInvalid, f.prefix+key, i)
	}
	if i > maxDim {
		return 0, false, fmt.Errorf("%w: %s: %d is implausibly large (max %d)", ErrInvalid, f.prefix+key, i, maxDim)
	}
	return int(i), true, nil
}

// nonNegInt returns a non-negative integer field, 0 when absent or null.
func (f fields) nonNegInt(key string) (int, error) {
	v, present := f.m[key]
	if !present || v == nil {
		return 0, nil
	}
	i, err := integer(f.prefix+key, v)
	if err != nil {
		return 0, err
	}
	if i < 0 || i > maxDim {
		return 0, fmt.Errorf("%w: %s: out of range: %d", ErrInvalid, f.prefix+key, i)
	}
	return int(i), nil
}

// posFloat returns a finite positive number field, def when absent or null.
func (f fields) posFloat(key string, def float64) (float64, error) {
	v, present := f.m[key]
	if !present || v == nil {
		return def, nil
	}
	n, ok := v.(json.Number)
	if !ok {
		return 0, fmt.Errorf("%w: %s: want a number, got %s", ErrInvalid, f.prefix+key, jsonKind(v))
	}
	x, err := n.Float64()
	if err != nil || math.IsInf(x, 0) || math.IsNaN(x) {
		return 0, fmt.Errorf("%w: %s: not a finite number: %s", ErrInvalid, f.prefix+key, n)
	}
	if x <= 0 {
		return 0, fmt.Errorf("%w: %s: must be positive, got %s", ErrInvalid, f.prefix+key, n)
	}
	return x, nil
}

func (f fields) boolean(key string, def bool) (bool, error) {
	v, present := f.m[key]
	if !present || v == nil {
		return def, nil
	}
	b, ok := v.(bool)
	if !ok {
		return false, fmt.Errorf("%w: %s: want true or false, got %s", ErrInvalid, f.prefix+key, jsonKind(v))
	}
	return b, nil
}

// tokenID reads a token id that may be an integer, null, or a list of
// integers (the first is taken). Absent, null or an empty list gives -1.
func (f fields) tokenID(key string) (int, error) {
	v, present := f.m[key]
	if !present || v == nil {
		return -1, nil
	}
	if list, ok := v.([]any); ok {
		if len(list) == 0 {
			return -1, nil
		}
		for i, e := range list {
			if _, err := checkID(fmt.Sprintf("%s[%d]", f.prefix+key, i), e); err != nil {
				return 0, err
			}
		}
		return checkID(f.prefix+key+"[0]", list[0])
	}
	return checkID(f.prefix+key, v)
}

func checkID(key string, v any) (int, error) {
	i, err := integer(key, v)
	if err != nil {
		return 0, err
	}
	if i < 0 || i > maxDim {
		return 0, fmt.Errorf("%w: %s: out of range: %d", ErrInvalid, key, i)
	}
	return int(i), nil
}

// String is a one-line summary, e.g.
// "llama: 6 layers, hidden 384, mlp 1024, heads 6/6 (head_dim 64), vocab 4096, bfloat16".
func (c *Config) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %d layers, hidden %d, mlp %d, heads %d/%d (head_dim %d), vocab %d",
		c.ModelType, c.NumLayers, c.HiddenSize, c.IntermediateSize, c.NumHeads, c.NumKVHeads, c.HeadDim, c.VocabSize)
	if c.TorchDType != "" {
		b.WriteString(", " + c.TorchDType)
	}
	return b.String()
}

// intList reads a list of non-negative integers; absent or null gives nil.
func (f fields) intList(key string) ([]int, error) {
	v, present := f.m[key]
	if !present || v == nil {
		return nil, nil
	}
	list, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("%w: %s: want an array of integers, got %s", ErrInvalid, f.prefix+key, jsonKind(v))
	}
	out := make([]int, len(list))
	for i, e := range list {
		n, err := integer(fmt.Sprintf("%s[%d]", f.prefix+key, i), e)
		if err != nil {
			return nil, err
		}
		if n < 0 || n > maxDim {
			return nil, fmt.Errorf("%w: %s[%d]: out of range: %d", ErrInvalid, f.prefix+key, i, n)
		}
		out[i] = int(n)
	}
	return out, nil
}
