package peft

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// File names of a PEFT adapter directory.
const (
	ConfigName     = "adapter_config.json"
	WeightsName    = "adapter_model.safetensors"
	LegacyBinName  = "adapter_model.bin"
	keyPrefix      = "base_model.model."
	loraA, loraB   = "lora_A", "lora_B"
	weightSuffix   = ".weight"
	defaultPattern = "layers"
)

// Sentinel errors; messages name the file and the module or key.
var (
	ErrMissingFile = errors.New("peft: missing file")
	ErrInvalid     = errors.New("peft: invalid adapter")
	ErrUnsupported = errors.New("peft: unsupported adapter")
	ErrMismatch    = errors.New("peft: adapter does not fit the model")
)

// Config is the part of adapter_config.json wanda uses.
type Config struct {
	PeftType    string
	TaskType    string
	R           int
	LoraAlpha   float64
	LoraDropout float64
	// TargetModules is the list form of target_modules; TargetRegex is set
	// instead when target_modules is a string (a regular expression that must
	// match the whole module name, or "all-linear").
	TargetModules []string
	TargetRegex   string
	// TargetParameters is target_parameters: nn.Parameters adapted directly
	// (PEFT's ParamWrapper), e.g. "mlp.experts.gate_up_proj"; an entry t selects the
	// parameter with path k when k == t or k ends with "." + t.
	TargetParameters []string
	// PeftVersion is peft_version (written since PEFT 0.18), "" when absent.
	PeftVersion         string
	ExcludeModules      []string
	ExcludeRegex        string
	LayersToTransform   []int
	LayersPattern       []string
	FanInFanOut         bool
	Bias                string
	UseRSLoRA           bool
	UseDoRA             bool
	RankPattern         map[string]int
	AlphaPattern        map[string]float64
	ModulesToSave       []string
	BaseModelNameOrPath string
	Raw                 map[string]any
}

// ParseConfig parses adapter_config.json. Only LoRA is accepted.
func ParseConfig(data []byte) (*Config, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var raw map[string]any
	if err := dec.Decode(&raw); err != nil || raw == nil {
		return nil, fmt.Errorf("%w: not a JSON object: %w", ErrInvalid, err)
	}
	c := &Config{Raw: raw, Bias: "none"}
	var err error
	str := func(k string) (string, bool) {
		v, ok := raw[k]
		if !ok || v == nil {
			return "", false
		}
		s, isStr := v.(string)
		if !isStr {
			err = errors.Join(err, fmt.Errorf("%w: %s: want a string, got %v", ErrInvalid, k, v))
		}
		return s, isStr
	}
	num := func(k string) (float64, bool) {
		v, ok := raw[k]
		if !ok || v == nil {
			return 0, false
		}
		n, isNum := v.(json.Number)
		f, e := n.Float64()
		if !isNum || e != nil || math.IsInf(f, 0) || math.IsNaN(f) {
			err = errors.Join(err, fmt.Errorf("%w: %s: want a number, got %v", ErrInvalid, k, v))
			return 0, false
		}
		return f, true
	}
	boolean := func(k string) bool {
		v, ok := raw[k]
		if !ok || v == nil {
			return false
		}
		b, isBool := v.(bool)
		if !isBool {
			err = errors.Join(err, fmt.Errorf("%w: %s: want true or false, got %v", ErrInvalid, k, v))
		}
		return b
	}
	// list-or-string fields
	strs := func(k string) (list []string, regex string) {
		v, ok := raw[k]
		if !ok || v == nil {
			return nil, ""
		}
		switch x := v.(type) {
		case string:
			return nil, x
		case []any:
			list = []string{}
			for i, e := range x {
				s, ok := e.(string)
				if !ok {
					err = errors.Join(err, fmt.Errorf("%w: %s[%d]: want a string, got %v", ErrInvalid, k, i, e))
					continue
				}
				list = append(list, s)
			}
			return list, ""
		}
		err = errors.Join(err, fmt.Errorf("%w: %s: want a string or a list of strings, got %v", ErrInvalid, k, v))
		return nil, ""
	}

	pt, ok := str("peft_type")
	if !ok && err == nil {
		return nil, fmt.Errorf("%w: peft_type: missing", ErrInvalid)
	}
	c.PeftType = pt
	if err == nil && strings.ToUpper(pt) != "LORA" {
		return nil, fmt.Errorf("%w: peft_type %q (only LORA adapters can be merged)", ErrUnsupported, pt)
	}
	c.TaskType, _ = str("task_type")
	c.BaseModelNameOrPath, _ = str("base_model_name_or_path")
	if b, ok := str("bias"); ok {
		c.Bias = b
	}
	if r, ok := num("r"); ok {
		if r != math.Trunc(r) || r < 1 || r > 1<<20 {
			err = errors.Join(err, fmt.Errorf("%w: r: want a positive integer, got %v", ErrInvalid, r))
		}
		c.R = int(r)
	} else if err == nil {
		c.R = 8 // PEFT's default
	}
	c.LoraAlpha = 8 // PEFT's default
	if a, ok := num("lora_alpha"); ok {
		c.LoraAlpha = a
	}
	c.LoraDropout, _ = num("lora_dropout")
	c.FanInFanOut = boolean("fan_in_fan_out")
	c.UseRSLoRA = boolean("use_rslora")
	c.UseDoRA = boolean("use_dora")
	c.TargetModules, c.TargetRegex = strs("target_modules")
	var tpRegex string
	if c.TargetParameters, tpRegex = strs("target_parameters"); tpRegex != "" {
		err = errors.Join(err, fmt.Errorf("%w: target_parameters: want a list of parameter names, got the string %q", ErrInvalid, tpRegex))
	}
	c.PeftVersion, _ = str("peft_version")
	c.ExcludeModules, c.ExcludeRegex = strs("exclude_modules")
	c.ModulesToSave, _ = strs("modules_to_save")
	if lp, lps := strs("layers_pattern"); lps != "" {
		c.LayersPattern = []string{lps}
	} else {
		c.LayersPattern = lp
	}
	if v, ok := raw["layers_to_transform"]; ok && v != nil {
		switch x := v.(type) {
		case json.Number:
			i, e := strconv.Atoi(x.String())
			if e != nil {
				err = errors.Join(err, fmt.Errorf("%w: layers_to_transform: %v", ErrInvalid, x))
			}
			c.LayersToTransform = []int{i}
		case []any:
			for _, e := range x {
				n, ok := e.(json.Number)
				i, e2 := strconv.Atoi(n.String())
				if !ok || e2 != nil {
					err = errors.Join(err, fmt.Errorf("%w: layers_to_transform: %v", ErrInvalid, e))
					continue
				}
				c.LayersToTransform = append(c.LayersToTransform, i)
			}
		default:
			err = errors.Join(err, fmt.Errorf("%w: layers_to_transform: %v", ErrInvalid, v))
		}
	}
	if rp, ok := raw["rank_pattern"].(map[string]any); ok {
		c.RankPattern = map[string]int{}
		for k, v := range rp {
			n, _ := v.(json.Number)
			i, e := strconv.Atoi(n.String())
			if e != nil || i < 1 {
				err = errors.Join(err, fmt.Errorf("%w: rank_pattern[%q]: want a positive integer, got %v", ErrInvalid, k, v))
				continue
			}
			c.RankPattern[k] = i
		}
	} else if v := raw["rank_pattern"]; v != nil {
		err = errors.Join(err, fmt.Errorf("%w: rank_pattern: want an object", ErrInvalid))
	}
	if ap, ok := raw["alpha_pattern"].(map[string]any); ok {
		c.AlphaPattern = map[string]float64{}
		for k, v := range ap {
			n, _ := v.(json.Number)
			f, e := n.Float64()
			if e != nil {
				err = errors.Join(err, fmt.Errorf("%w: alpha_pattern[%q]: want a number, got %v", ErrInvalid, k, v))
				continue
			}
			c.AlphaPattern[k] = f
		}
	} else if v := raw["alpha_pattern"]; v != nil {
		err = errors.Join(err, fmt.Errorf("%w: alpha_pattern: want an object", ErrInvalid))
	}
	if err != nil {
		return nil, err
	}
	for _, re := range []string{c.TargetRegex, c.ExcludeRegex} {
		if re != "" && re != "all-linear" {
			if _, e := regexp.Compile(re); e != nil {
				return nil, fmt.Errorf("%w: target/exclude regular expression %q: %w", ErrUnsupported, re, e)
			}
		}
	}
	for _, pats := range []map[string]int{c.RankPattern} {
		for k := range pats {
			if _, e := patternRE(k); e != nil {
				return nil, fmt.Errorf("%w: rank_pattern key %q: %w", ErrUnsupported, k, e)
			}
		}
	}
	for k := range c.AlphaPattern {
		if _, e := patternRE(k); e != nil {
			return nil, fmt.Errorf("%w: alpha_pattern key %q: %w", ErrUnsupported, k, e)
		}
	}
	switch {
	case c.FanInFanOut:
		return nil, fmt.Errorf("%w: fan_in_fan_out is true (weights stored [in, out], as for GPT-2 Conv1D); LLaMA-family linears need false", ErrUnsupported)
	case c.UseDoRA:
		return nil, fmt.Errorf("%w: use_dora is true (DoRA magnitude vectors cannot be merged as plain LoRA)", ErrUnsupported)
	case c.Bias != "none":
		return nil, fmt.Errorf("%w: bias %q (only \"none\" is supported)", ErrUnsupported, c.Bias)
	}
	return c, nil
}

func patternRE(key string) (*regexp.Regexp, error) {
	return regexp.Compile(`^(?:.*\.)?(?:` + key + `)$`)
}

// patternKey is PEFT's get_pattern_key: an exact key wins, else the first key
// (in sorted order, for determinism) whose pattern matches module.
func patternKey(keys []string, module string) (string, bool) {
	for _, k := range keys {
		if k == module {
			return k, true
		}
	}
	for _, k := range keys {
		if re, err := patternRE(k); err == nil && re.MatchString(module) {
			return k, true
		}
	}
	return "", false
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// RankAlpha returns the rank and alpha of module (rank_pattern and
// alpha_pattern honoured).
func (c *Config) RankAlpha(module string) (r int, alpha float64) {
	r, alpha = c.R, c.LoraAlpha
	if k, ok := patternKey(sortedKeys(c.RankPattern), module); ok {
		r = c.RankPattern[k]
	}
	if k, ok := patternKey(sortedKeys(c.AlphaPattern), module); ok {
		alpha = c.AlphaPattern[k]
	}
	return r, alpha
}

// Scale is the LoRA scaling of module: alpha/r, or alpha/sqrt(r) with use_rslora.
func (c *Config) Scale(module string) float64 {
	r, alpha := c.RankAlpha(module)
	if c.UseRSLoRA {
		return alpha / math.Sqrt(float64(r))
	}
	return alpha / float64(r)
}

// matchList is PEFT's list rule: module equals an entry or ends with "." + entry.
func matchList(list []string, module string) bool {
	for _, t := range list {
		if module == t || strings.HasSuffix(module, "."+t) {
			return true
		}
	}
	return false
}

// Targets reports whether target_modules (minus exclude_modules, restricted to
// layers_to_transform) selects module. With no target_modules every module is
// accepted. "all-linear" selects every module except lm_head.
func (c *Config) Targets(module string) bool {
	if c.ExcludeRegex != "" {
		if re, err := regexp.Compile(`^(?:` + c.ExcludeRegex + `)$`); err == nil && re.MatchString(module) {
			return false
		}
	}
	if matchList(c.ExcludeModules, module) {
		return false
	}
	switch {
	case c.TargetRegex == "all-linear":
		if module == "lm_head" || strings.HasSuffix(module, ".lm_head") {
			return false
		}
	case c.TargetRegex != "":
		re, err := regexp.Compile(`^(?:` + c.TargetRegex + `)$`)
		if err != nil || !re.MatchString(module) {
			return false
		}
		return true // PEFT ignores layers_to_transform for a regex target
	case c.TargetModules != nil:
		if !matchList(c.TargetModules, module) {
			return false
		}
	}
	if len(c.LayersToTransform) > 0 {
		layer, ok := c.layerIndex(module)
		if !ok {
			return false
		}
		found := false
		for _, l := range c.LayersToTransform {
			found = found || l == layer
		}
		return found
	}
	return true
}

// layerIndex extracts the layer number following a layers_pattern component.
func (c *Config) layerIndex(module string) (int, bool) {
	pats := c.LayersPattern
	if len(pats) == 0 {
		pats = []string{defaultPattern}
	}
	parts := strings.Split(module, ".")
	for i := 0; i+1 < len(parts); i++ {
		for _, p := range pats {
			if parts[i] == p {
				if n, err := strconv.Atoi(parts[i+1]); err == nil {
					return n, true
				}
			}
		}
	}
	return 0, false
}

// TargetsParam reports whether target_parameters selects the parameter with
// path key (PEFT's rule: key equals an entry or ends with "." + entry).
func (c *Config) TargetsParam(key string) bool {
	return matchList(c.TargetParameters, key)
}

// VersionAtLeast reports whether peft_version is at least major.minor.patch
// (false when absent or unparsable).
func (c *Config) VersionAtLeast(major, minor, patch int) bool {
	var v [3]int
	parts := strings.SplitN(c.PeftVersion, ".", 3)
	if len(parts) < 2 {
		return false
	}
	for i, p := range parts {
		// "0.21.0.dev0" and "0.20.0+abc" count by their leading digits.
		end := 0
		for end < len(p) && p[end] >= '0' && p[end] <= '9' {
			end++
		}
		if end == 0 {
			return false
		}
		v[i], _ = strconv.Atoi(p[:end])
	}
	for i, want := range [3]int{major, minor, patch} {
		if v[i] != want {
			return v[i] > want
		}
	}
	return true
}
