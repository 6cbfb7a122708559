package sparse

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// QuantMethod and CTVersion are written to quantization_config: the
// compressed-tensors release whose loaders read these layouts (the sparse
// compressors were removed in 0.15.0).
const (
	QuantMethod = "compressed-tensors"
	CTVersion   = "0.14.0"
)

// Sparsity structures written to sparsity_config.sparsity_structure.
const (
	Structure24           = "2:4"
	StructureUnstructured = "unstructured"
)

// ErrConfig: config.json is not an object, or its quantization_config is not
// what wanda writes or can undo.
var ErrConfig = errors.New("sparse: config.json")

// SparsityConfig is compressed-tensors' SparsityCompressionConfig.
type SparsityConfig struct {
	Format            Format   `json:"format"`
	GlobalSparsity    float64  `json:"global_sparsity"`
	SparsityStructure string   `json:"sparsity_structure"`
	Targets           []string `json:"targets"`
	Ignore            []string `json:"ignore"`
}

type quantizationConfig struct {
	QuantMethod     string          `json:"quant_method"`
	Version         string          `json:"version"`
	SparsityConfig  *SparsityConfig `json:"sparsity_config"`
	TransformConfig map[string]any  `json:"transform_config"`
}

func decodeTop(configJSON []byte) (map[string]json.RawMessage, error) {
	var top map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(configJSON))
	if err := dec.Decode(&top); err != nil {
		return nil, fmt.Errorf("%w: not a JSON object: %w", ErrConfig, err)
	}
	if top == nil {
		return nil, fmt.Errorf("%w: not a JSON object", ErrConfig)
	}
	return top, nil
}

// encodeTop writes the object like transformers does (sorted keys, 2-space
// indent, trailing newline); values are re-indented but otherwise kept verbatim
// (numbers keep their spelling).
func encodeTop(top map[string]json.RawMessage) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(top); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	return buf.Bytes(), nil
}

// WithSparsityConfig returns configJSON with a quantization_config announcing
// sc ({"quant_method": "compressed-tensors", "version": "0.14.0",
// "sparsity_config": sc, "transform_config": {}}). It refuses a config that
// already has a quantization_config.
func WithSparsityConfig(configJSON []byte, sc SparsityConfig) ([]byte, error) {
	top, err := decodeTop(configJSON)
	if err != nil {
		return nil, err
	}
	if q, ok := top["quantization_config"]; ok && string(bytes.TrimSpace(q)) != "null" {
		return nil, fmt.Errorf("%w: already has a quantization_config (packing a quantized or packed model is not supported)", ErrConfig)
	}
	if sc.Targets == nil {
		sc.Targets = []string{}
	}
	if sc.Ignore == nil {
		sc.Ignore = []string{}
	}
	q, err := json.Marshal(quantizationConfig{QuantMethod: QuantMethod, Version: CTVersion, SparsityConfig: &sc, TransformConfig: map[string]any{}})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	top["quantization_config"] = q
	return encodeTop(top)
}

// ReadSparsityConfig returns the sparsity_config of configJSON, or nil when it
// has no quantization_config. A quantization_config that is not
// compressed-tensors, or that also quantizes (config_groups), is refused.
func ReadSparsityConfig(configJSON []byte) (*SparsityConfig, error) {
	top, err := decodeTop(configJSON)
	if err != nil {
		return nil, err
	}
	raw, ok := top["quantization_config"]
	if !ok || string(bytes.TrimSpace(raw)) == "null" {
		return nil, nil
	}
	var q map[string]json.RawMessage
	if err := json.Unmarshal(raw, &q); err != nil || q == nil {
		return nil, fmt.Errorf("%w: quantization_config is not an object", ErrConfig)
	}
	var method string
	if err := json.Unmarshal(q["quant_method"], &method); err != nil || method != QuantMethod {
		return nil, fmt.Errorf("%w: quantization_config.quant_method is %s, want %q", ErrConfig, bytes.TrimSpace(q["quant_method"]), QuantMethod)
	}
	if cg, ok := q["config_groups"]; ok {
		s := string(bytes.TrimSpace(cg))
		if s != "null" && s != "{}" {
			return nil, fmt.Errorf("%w: quantization_config has config_groups (quantized weights are not supported)", ErrConfig)
		}
	}
	scRaw, ok := q["sparsity_config"]
	if !ok || string(bytes.TrimSpace(scRaw)) == "null" {
		return nil, fmt.Errorf("%w: quantization_config has no sparsity_config", ErrConfig)
	}
	var sc SparsityConfig
	if err := json.Unmarshal(scRaw, &sc); err != nil {
		return nil, fmt.Errorf("%w: quantization_config.sparsity_config: %w", ErrConfig, err)
	}
	if _, err := ParseFormat(string(sc.Format)); err != nil {
		return nil, fmt.Errorf("%w: quantization_config.sparsity_config: %w", ErrConfig, err)
	}
	return &sc, nil
}

// StripSparsityConfig returns configJSON without its quantization_config and
// the sparsity_config it held (nil, with configJSON re-encoded, when there was
// none). It refuses what ReadSparsityConfig refuses.
func StripSparsityConfig(configJSON []byte) ([]byte, *SparsityConfig, error) {
	sc, err := ReadSparsityConfig(configJSON)
	if err != nil {
		return nil, nil, err
	}
	top, err := decodeTop(configJSON)
	if err != nil {
		return nil, nil, err
	}
	delete(top, "quantization_config")
	out, err := encodeTop(top)
	if err != nil {
		return nil, nil, err
	}
	return out, sc, nil
}
