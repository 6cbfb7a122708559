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
	ErrInvalid = errors.New("invalid config")
	// ErrUnsupportedArch: model_type names an architecture wanda does not handle.
	ErrUnsupportedArch = errors.New("unsupported architecture")
	// ErrUnsupported: a valid configuration that uses a feature wanda does not
	// implement (mlp_bias, an activation other than silu, an unknown rope_scaling type).
	ErrUnsupported = errors.New("unsupported configuration")
)

// Supported model_type values.
const (
	TypeLlama   = "llama"
	TypeMistral = "mistral"
	TypeQwen2   = "qwen2"
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

// Config is the validated configuration of a LLaMA-family decoder-only model.
type Config struct {
	ModelType             string   // "llama" | "mistral" | "qwen2"
	Architectures         []string // e.g. ["LlamaForCausalLM"]; may be empty
	HiddenSize            int
	IntermediateSize      int
	NumLayers             int // num_hidden_layers
	NumHeads              int // num_attention_heads
	NumKVHeads            int // num_key_value_heads; defaults to NumHeads
	HeadDim               int // head_dim; defaults to HiddenSize/NumHeads
	VocabSize             int
	MaxPositionEmbeddings int // defaults per model_type as in transformers (2048, 131072, 32768)

	RMSNormEps  float64      // rms_norm_eps; default 1e-6
	RopeTheta   float64      // rope_theta; default 10000
	RopeScaling *RopeScaling // nil when none

	TieWordEmbeddings bool   // default false; when true lm_head reuses embed_tokens
	AttentionBias     bool   // q/k/v projections carry a bias: qwen2 always, llama per "attention_bias", mistral never
	MLPBias           bool   // always false after a successful Parse (true is rejected)
	TorchDType        string // "bfloat16" | "float16" | "float32", or "" when the file does not say

	BOSTokenID, EOSTokenID int // -1 if absent; a list of eos ids yields the first
	SlidingWindow          int // mistral/qwen2 sliding-window attention span, 0 if none (informational)

	// Raw is the whole original JSON object. Numbers are json.Number so that
	// re-encoding Raw reproduces them exactly.
	Raw map[string]any
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

// Parse parses and validates the bytes of a config.json.
func Parse(data []byte) (*Config, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var raw map[string]any
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("%w: not a JSON object: %v", ErrInvalid, err)
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
	if !ok {
		return nil, fmt.Errorf("%w: model_type: missing", ErrInvalid)
	}
	switch mt {
	case TypeLlama, TypeMistral, TypeQwen2:
		c.ModelType = mt
	default:
		return nil, fmt.Errorf("%w: model_type %q (wanda handles %q, %q and %q)",
			ErrUnsupportedArch, mt, TypeLlama, TypeMistral, TypeQwen2)
	}
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

	hd, ok, err := f.posInt("head_dim")
	if err != nil {
		return nil, err
	}
	if !ok {
		if c.HiddenSize%c.NumHeads != 0 {
			return nil, fmt.Errorf("%w: head_dim: missing and hidden_size %d is not divisible by num_attention_heads %d",
				ErrInvalid, c.HiddenSize, c.NumHeads)
		}
		hd = c.HiddenSize / c.NumHeads
	}
	if int64(hd)*int64(c.NumHeads) > maxDim {
		return nil, fmt.Errorf("%w: head_dim %d × num_attention_heads %d is implausibly large", ErrInvalid, hd, c.NumHeads)
	}
	c.HeadDim = hd

	mp, ok, err := f.posInt("max_position_embeddings")
	if err != nil {
		return nil, err
	}
	if !ok {
		mp = map[string]int{TypeLlama: 2048, TypeMistral: 4096 * 32, TypeQwen2: 32768}[c.ModelType]
	}
	c.MaxPositionEmbeddings = mp

	if c.RMSNormEps, err = f.posFloat("rms_norm_eps", 1e-6); err != nil {
		return nil, err
	}

	// transformers 5 may move rope_theta and the scaling into "rope_parameters".
	ropeParams, hasRopeParams := raw["rope_parameters"].(map[string]any)
	if _, present := raw["rope_theta"]; !present && hasRopeParams {
		if c.RopeTheta, err = (fields{m: ropeParams, prefix: "rope_parameters."}).posFloat("rope_theta", 10000); err != nil {
			return nil, err
		}
	} else if c.RopeTheta, err = f.posFloat("rope_theta", 10000); err != nil {
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

	if c.TieWordEmbeddings, err = f.boolean("tie_word_embeddings", false); err != nil {
		return nil, err
	}
	switch c.ModelType {
	case TypeQwen2:
		c.AttentionBias = true
	case TypeLlama:
		if c.AttentionBias, err = f.boolean("attention_bias", false); err != nil {
			return nil, err
		}
	}
	if c.MLPBias, err = f.boolean("mlp_bias", false); err != nil {
		return nil, err
	}
	if c.MLPBias {
		return nil, fmt.Errorf("%w: mlp_bias: true (MLP projections with bias are not supported)", ErrUnsupported)
	}
	act, ok, err := f.str("hidden_act")
	if err != nil {
		return nil, err
	}
	if ok && act != "silu" {
		return nil, fmt.Errorf("%w: hidden_act %q (only \"silu\" is supported)", ErrUnsupported, act)
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

	switch c.ModelType {
	case TypeMistral:
		if c.SlidingWindow, err = f.nonNegInt("sliding_window"); err != nil {
			return nil, err
		}
	case TypeQwen2:
		use, err := f.boolean("use_sliding_window", false)
		if err != nil {
			return nil, err
		}
		if use {
			if c.SlidingWindow, err = f.nonNegInt("sliding_window"); err != nil {
				return nil, err
			}
		}
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
