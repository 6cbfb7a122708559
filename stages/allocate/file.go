package allocate

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"regexp"
	"strings"

	"github.com/wanda-go/wanda/internal/regfile"
)

// File is a user's sparsity file (--sparsity-file FILE): per-layer and per-tensor
// sparsities. The format is one JSON object with up to three keys, all optional but not all
// absent:
//
//	{
//	  "default": 0.5,
//	  "layers":  [0.40, 0.45, null, 0.50, 0.55, 0.60],
//	  "tensors": [
//	    {"match": "self_attn\\.[qk]_proj", "sparsity": 0.3},
//	    {"match": "^model\\.layers\\.0\\.mlp\\.down_proj\\.weight$", "sparsity": 0}
//	  ]
//	}
//
// A sparsity is the fraction of weights pruned, a number in [0, 1). "layers" has one entry
// per decoder layer, in order (null: no entry for that layer). "tensors" rules match the full
// Hugging Face tensor name with a Go (RE2) regular expression, unanchored (a rule applies
// when the expression matches anywhere in the name; anchor it with ^…$ for an exact name).
//
// A tensor's sparsity is, in this order: the first "tensors" rule that matches it, its
// layer's "layers" entry, "default", and the fallback the caller passes (the --sparsity
// flag). Unknown keys, values out of range, invalid expressions, a "layers" list whose length
// is not the model's layer count, and rules that match no pruned tensor are errors naming the
// entry (see Check).
type File struct {
	// Path is the file name used in error messages.
	Path string
	// Default applies to tensors no rule and no layer entry covers; nil when absent.
	Default *float64
	// Layers[i] is layer i's sparsity; nil entries (and a nil slice) give no value.
	Layers []*float64
	// Tensors are the per-tensor rules, first match wins.
	Tensors []TensorRule
}

// TensorRule is one "tensors" entry.
type TensorRule struct {
	Match    string
	Sparsity float64
	re       *regexp.Regexp
}

// Source says where a tensor's sparsity came from.
type Source string

// Sources of a resolved sparsity.
const (
	FromTensorRule Source = "tensors"
	FromLayer      Source = "layers"
	FromDefault    Source = "default"
	FromFallback   Source = "fallback"
)

// fileJSON is the file's JSON form; the decoder rejects unknown keys.
type fileJSON struct {
	Default *float64     `json:"default"`
	Layers  []*float64   `json:"layers"`
	Tensors []tensorJSON `json:"tensors"`
}

type tensorJSON struct {
	Match    *string  `json:"match"`
	Sparsity *float64 `json:"sparsity"`
}

// LoadFile reads and parses a sparsity file.
func LoadFile(path string) (*File, error) {
	data, err := regfile.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadFile, err)
	}
	return ParseFile(path, data)
}

// ParseFile parses the contents of a sparsity file; path names it in errors.
func ParseFile(path string, data []byte) (*File, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrBadFile, path, fmt.Sprintf(format, args...))
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var raw fileJSON
	if err := dec.Decode(&raw); err != nil {
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &se):
			line, col := position(data, se.Offset)
			return nil, bad("line %d column %d: %v", line, col, se)
		case errors.As(err, &te):
			line, col := position(data, te.Offset)
			field := te.Field
			if field == "" {
				field = "the file"
			}
			return nil, bad("line %d column %d: %s: want %s, got a JSON %s", line, col, field, jsonKind(te.Type), te.Value)
		case errors.Is(err, io.EOF):
			return nil, bad("empty file (want a JSON object)")
		}
		if strings.HasPrefix(err.Error(), "json: unknown field") {
			return nil, bad("%s (known keys: default, layers, tensors; in a tensors entry: match, sparsity)",
				strings.TrimPrefix(err.Error(), "json: "))
		}
		return nil, bad("%v", err)
	}
	if dec.More() {
		return nil, bad("more than one JSON value")
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, bad("trailing data after the JSON object")
	}
	f := &File{Path: path, Default: raw.Default, Layers: raw.Layers}
	if f.Default == nil && f.Layers == nil && raw.Tensors == nil {
		return nil, bad(`no "default", "layers" or "tensors": the file sets no sparsity`)
	}
	if f.Default != nil {
		if err := checkSparsity(*f.Default); err != nil {
			return nil, bad("default: %v", err)
		}
	}
	for i, s := range f.Layers {
		if s == nil {
			continue
		}
		if err := checkSparsity(*s); err != nil {
			return nil, bad("layers[%d]: %v", i, err)
		}
	}
	for i, t := range raw.Tensors {
		if t.Match == nil {
			return nil, bad(`tensors[%d]: no "match"`, i)
		}
		if t.Sparsity == nil {
			return nil, bad(`tensors[%d] (%q): no "sparsity"`, i, *t.Match)
		}
		if *t.Match == "" {
			return nil, bad(`tensors[%d]: empty "match" (it would match every tensor; use "default")`, i)
		}
		re, err := regexp.Compile(*t.Match)
		if err != nil {
			return nil, bad("tensors[%d]: match %q: %v", i, *t.Match, err)
		}
		if err := checkSparsity(*t.Sparsity); err != nil {
			return nil, bad("tensors[%d] (%q): %v", i, *t.Match, err)
		}
		f.Tensors = append(f.Tensors, TensorRule{Match: *t.Match, Sparsity: *t.Sparsity, re: re})
	}
	return f, nil
}

// jsonKind names the JSON value a Go type decodes from.
func jsonKind(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Slice:
		return "a list"
	case reflect.Struct, reflect.Map:
		return "an object"
	}
	return t.String()
}

func checkSparsity(s float64) error {
	if !(s >= 0 && s < 1) || math.IsInf(s, 0) {
		return fmt.Errorf("sparsity %v out of range [0, 1)", s)
	}
	return nil
}

// position converts a byte offset (as encoding/json reports it: the bytes read so far) into
// a 1-based line and column.
func position(data []byte, off int64) (line, col int) {
	off = min(max(off, 0), int64(len(data)))
	before := data[:off]
	line = 1 + bytes.Count(before, []byte{'\n'})
	col = int(off) - (bytes.LastIndexByte(before, '\n') + 1)
	return line, max(col, 1)
}

// Check validates f against a model: "layers" must have exactly numLayers entries (when
// present), and every "tensors" rule must match at least one of tensors (the names of the
// tensors that will be pruned), so that a mistyped expression is reported rather than
// silently ignored.
func (f *File) Check(numLayers int, tensors []string) error {
	if f.Layers != nil && len(f.Layers) != numLayers {
		return fmt.Errorf("%w: %s: layers has %d entries, the model has %d decoder layers (use null for a layer without a value)",
			ErrBadFile, f.Path, len(f.Layers), numLayers)
	}
	for i, r := range f.Tensors {
		hit := false
		for _, name := range tensors {
			if r.re.MatchString(name) {
				hit = true
				break
			}
		}
		if !hit {
			return fmt.Errorf("%w: %s: tensors[%d] (%q) matches none of the %d tensors to prune (e.g. %q)",
				ErrBadFile, f.Path, i, r.Match, len(tensors), example(tensors))
		}
	}
	return nil
}

func example(names []string) string {
	if len(names) == 0 {
		return ""
	}
	return names[0]
}

// Sparsity resolves the sparsity of tensor (its full name) in decoder layer layer: the
// first matching rule, the layer's entry, the default, or fallback.
func (f *File) Sparsity(layer int, tensor string, fallback float64) (float64, Source) {
	for _, r := range f.Tensors {
		if r.re.MatchString(tensor) {
			return r.Sparsity, FromTensorRule
		}
	}
	if layer >= 0 && layer < len(f.Layers) && f.Layers[layer] != nil {
		return *f.Layers[layer], FromLayer
	}
	if f.Default != nil {
		return *f.Default, FromDefault
	}
	return fallback, FromFallback
}
