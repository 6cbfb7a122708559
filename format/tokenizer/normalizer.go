package tokenizer

import (
	"encoding/json"
	"fmt"
	"strings"
	"unicode"

	"golang.org/x/text/unicode/norm"
)

// normalizer rewrites a piece of text (tokenizers' Normalizer; offsets are
// not tracked because only ids are produced).
type normalizer interface {
	normalize(s string) string
}

type seqNormalizer []normalizer

func (q seqNormalizer) normalize(s string) string {
	for _, n := range q {
		s = n.normalize(s)
	}
	return s
}

// prependNormalizer prepends a string to non-empty input.
type prependNormalizer struct{ prefix string }

func (p prependNormalizer) normalize(s string) string {
	if s == "" {
		return s
	}
	return p.prefix + s
}

// replaceNormalizer replaces every non-overlapping occurrence of a literal.
type replaceNormalizer struct{ from, to string }

func (r replaceNormalizer) normalize(s string) string { return strings.ReplaceAll(s, r.from, r.to) }

type unicodeNormalizer struct{ form norm.Form }

func (u unicodeNormalizer) normalize(s string) string { return u.form.String(s) }

// stripNormalizer removes leading and/or trailing Unicode whitespace.
type stripNormalizer struct{ left, right bool }

func (st stripNormalizer) normalize(s string) string {
	if st.left {
		s = strings.TrimLeftFunc(s, unicode.IsSpace)
	}
	if st.right {
		s = strings.TrimRightFunc(s, unicode.IsSpace)
	}
	return s
}

type typed struct {
	Type string `json:"type"`
}

// stringPattern decodes a tokenizers Pattern {"String": s} or {"Regex": r}.
type stringPattern struct {
	String *string `json:"String"`
	Regex  *string `json:"Regex"`
}

// parseSequence parses the components of a Sequence (a normalizer's or a decoder's), listed
// at where[0], where[1], ..., with parse, and drops the null ones.
func parseSequence[T comparable](list []json.RawMessage, where string, parse func(json.RawMessage, string) (T, error)) ([]T, error) {
	var q []T
	var null T
	for i, r := range list {
		c, err := parse(r, fmt.Sprintf("%s[%d]", where, i))
		if err != nil {
			return nil, err
		}
		if c != null {
			q = append(q, c)
		}
	}
	return q, nil
}

func parseNormalizer(raw json.RawMessage, where string) (normalizer, error) {
	if isNull(raw) {
		return nil, nil
	}
	var t typed
	if err := json.Unmarshal(raw, &t); err != nil {
		return nil, fmt.Errorf("%s: %w: %w", where, err, ErrMalformed)
	}
	switch t.Type {
	case "Sequence":
		var v struct {
			Normalizers []json.RawMessage `json:"normalizers"`
		}
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, fmt.Errorf("%s: %w: %w", where, err, ErrMalformed)
		}
		q, err := parseSequence(v.Normalizers, where+".normalizers", parseNormalizer)
		if err != nil {
			return nil, err
		}
		return seqNormalizer(q), nil
	case "Prepend":
		var v struct {
			Prepend *string `json:"prepend"`
		}
		if err := json.Unmarshal(raw, &v); err != nil || v.Prepend == nil {
			return nil, fmt.Errorf("%s: Prepend needs a string \"prepend\": %w", where, ErrMalformed)
		}
		return prependNormalizer{*v.Prepend}, nil
	case "Replace":
		from, to, err := parseReplace(raw, where)
		if err != nil {
			return nil, err
		}
		return replaceNormalizer{from, to}, nil
	case "NFC":
		return unicodeNormalizer{norm.NFC}, nil
	case "NFD":
		return unicodeNormalizer{norm.NFD}, nil
	case "NFKC":
		return unicodeNormalizer{norm.NFKC}, nil
	case "NFKD":
		return unicodeNormalizer{norm.NFKD}, nil
	case "Strip":
		var v struct {
			Left  bool `json:"strip_left"`
			Right bool `json:"strip_right"`
		}
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, fmt.Errorf("%s: %w: %w", where, err, ErrMalformed)
		}
		return stripNormalizer{v.Left, v.Right}, nil
	case "":
		return nil, fmt.Errorf("%s: missing \"type\": %w", where, ErrMalformed)
	default:
		return nil, fmt.Errorf("%s: normalizer type %q: %w", where, t.Type, ErrUnsupported)
	}
}

// parseReplace decodes {"pattern": {"String": from}, "content": to}. Only
// literal patterns are supported (a Regex without metacharacters counts).
func parseReplace(raw json.RawMessage, where string) (string, string, error) {
	var v struct {
		Pattern stringPattern `json:"pattern"`
		Content *string       `json:"content"`
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return "", "", fmt.Errorf("%s: %w: %w", where, err, ErrMalformed)
	}
	if v.Content == nil {
		return "", "", fmt.Errorf("%s: Replace needs a string \"content\": %w", where, ErrMalformed)
	}
	var from string
	switch {
	case v.Pattern.String != nil:
		from = *v.Pattern.String
	case v.Pattern.Regex != nil:
		from = *v.Pattern.Regex
		if strings.ContainsAny(from, `\.+*?()|[]{}^$`) {
			return "", "", fmt.Errorf("%s: Replace regex %q: %w", where, from, ErrUnsupported)
		}
	default:
		return "", "", fmt.Errorf("%s: Replace needs pattern {\"String\": ...}: %w", where, ErrMalformed)
	}
	if from == "" {
		return "", "", fmt.Errorf("%s: Replace with an empty pattern: %w", where, ErrUnsupported)
	}
	return from, *v.Content, nil
}

func isNull(raw json.RawMessage) bool {
	s := strings.TrimSpace(string(raw))
	return s == "" || s == "null"
}
