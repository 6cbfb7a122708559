package tokenizer

import (
	"encoding/json"
	"fmt"
	"unicode"
	"unicode/utf8"
)

// piece is a stretch of (normalized) text on its way to the model. first
// records whether it starts at original offset 0 (Metaspace "first").
type piece struct {
	s     string
	first bool
}

// preStep is one pre-tokenizer: it splits every input piece into sub-pieces,
// dropping empty ones (as PreTokenizedString::split does).
type preStep interface {
	apply(in, out []piece, sc *scratch) []piece
}

type behavior int

const (
	behRemoved behavior = iota
	behIsolated
	behMergedWithPrevious
	behMergedWithNext
	behContiguous
)

var behaviors = map[string]behavior{
	"Removed":            behRemoved,
	"Isolated":           behIsolated,
	"MergedWithPrevious": behMergedWithPrevious,
	"MergedWithNext":     behMergedWithNext,
	"Contiguous":         behContiguous,
}

// splitPiece applies NormalizedString::split(pattern, behavior) with the
// optional invert of the Split pre-tokenizer.
func splitPiece(p piece, pat pattern, beh behavior, invert bool, out []piece, sc *scratch) []piece {
	buf := pat.spans(p.s, sc.spans[:0])
	sp := buf
	if invert {
		for i := range sp {
			sp[i].match = !sp[i].match
		}
	}
	// Rewrite spans into the kept ranges (match=true now means "remove").
	switch beh {
	case behIsolated:
		for i := range sp {
			sp[i].match = false
		}
	case behContiguous:
		k, prev := 0, false
		for _, x := range sp {
			if x.match == prev && k > 0 {
				sp[k-1].end = x.end
			} else {
				sp[k] = span{x.start, x.end, false}
				k++
			}
			prev = x.match
		}
		sp = sp[:k]
	case behMergedWithPrevious:
		k, prev := 0, false
		for _, x := range sp {
			if x.match && !prev && k > 0 {
				sp[k-1].end = x.end
			} else {
				sp[k] = span{x.start, x.end, false}
				k++
			}
			prev = x.match
		}
		sp = sp[:k]
	case behMergedWithNext:
		// Fold from the right, then the kept spans are in reverse order.
		k, prev := len(sp), false
		for i := len(sp) - 1; i >= 0; i-- {
			x := sp[i]
			if x.match && !prev && k < len(sp) {
				sp[k].start = x.start
			} else {
				k--
				sp[k] = span{x.start, x.end, false}
			}
			prev = x.match
		}
		sp = sp[k:]
	}
	for _, x := range sp {
		if x.match || x.end <= x.start {
			continue
		}
		out = append(out, piece{p.s[x.start:x.end], p.first && x.start == 0})
	}
	sc.spans = buf[:0]
	return out
}

type splitStep struct {
	pat    pattern
	beh    behavior
	invert bool
}

func (st splitStep) apply(in, out []piece, sc *scratch) []piece {
	for _, p := range in {
		out = splitPiece(p, st.pat, st.beh, st.invert, out, sc)
	}
	return out
}

// byteLevelStep is the ByteLevel pre-tokenizer's splitting part: optional
// prefix space and the GPT-2 regex. The byte -> unicode mapping itself is
// done by the model stage (ByteLevel must be the last pre-tokenizer).
type byteLevelStep struct {
	addPrefixSpace bool
	useRegex       bool
}

var gpt2Regex = regexMatcher{regexGPT2}

func (st byteLevelStep) apply(in, out []piece, sc *scratch) []piece {
	for _, p := range in {
		if st.addPrefixSpace && p.s != "" && p.s[0] != ' ' {
			p.s = " " + p.s
		}
		if st.useRegex {
			out = splitPiece(p, gpt2Regex, behIsolated, false, out, sc)
		} else if p.s != "" {
			out = append(out, p)
		}
	}
	return out
}

type prependScheme int

const (
	prependAlways prependScheme = iota
	prependFirst
	prependNever
)

type metaspaceStep struct {
	repl   string
	replR  rune
	scheme prependScheme
	split  bool
}

func (st metaspaceStep) apply(in, out []piece, sc *scratch) []piece {
	for _, p := range in {
		s := replaceByte(p.s, ' ', st.repl)
		if s != "" && !startsWithRune(s, st.replR) {
			if st.scheme == prependAlways || (st.scheme == prependFirst && p.first) {
				s = st.repl + s
			}
		}
		q := piece{s, p.first}
		if st.split {
			r := st.replR
			out = splitPiece(q, charPattern(func(c rune) bool { return c == r }), behMergedWithNext, false, out, sc)
		} else if s != "" {
			out = append(out, q)
		}
	}
	return out
}

func startsWithRune(s string, r rune) bool {
	c, _ := utf8.DecodeRuneInString(s)
	return c == r && s != ""
}

func replaceByte(s string, b byte, with string) string {
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] == b {
			n++
		}
	}
	if n == 0 {
		return s
	}
	buf := make([]byte, 0, len(s)+n*(len(with)-1))
	for i := 0; i < len(s); i++ {
		if s[i] == b {
			buf = append(buf, with...)
		} else {
			buf = append(buf, s[i])
		}
	}
	return string(buf)
}

// isWordChar approximates the Unicode \w class of Rust's regex crate.
func isWordChar(r rune) bool {
	return unicode.IsLetter(r) || unicode.IsMark(r) || unicode.IsDigit(r) ||
		unicode.Is(unicode.Pc, r) || unicode.Is(unicode.Nl, r) || r == 0x200C || r == 0x200D
}

// whitespaceFinder matches \w+|[^\w\s]+.
type whitespaceFinder struct{}

func (whitespaceFinder) find(s string, from int) (int, int, bool) {
	for i := from; i < len(s); {
		r, w := utf8.DecodeRuneInString(s[i:])
		if unicode.IsSpace(r) {
			i += w
			continue
		}
		word := isWordChar(r)
		j := i + w
		for j < len(s) {
			r2, w2 := utf8.DecodeRuneInString(s[j:])
			if unicode.IsSpace(r2) || isWordChar(r2) != word {
				break
			}
			j += w2
		}
		return i, j, true
	}
	return 0, 0, false
}

func (f whitespaceFinder) spans(s string, dst []span) []span { return finderSpans(f, s, dst) }

// parsePreTokenizer flattens a (possibly Sequence) pre-tokenizer into steps.
// byteLevel reports whether a ByteLevel pre-tokenizer ends the list.
func parsePreTokenizer(raw json.RawMessage, where string) (steps []preStep, byteLevel bool, err error) {
	if isNull(raw) {
		return nil, false, nil
	}
	var t typed
	if err := json.Unmarshal(raw, &t); err != nil {
		return nil, false, fmt.Errorf("%s: %w: %w", where, err, ErrMalformed)
	}
	bad := func(e error) ([]preStep, bool, error) {
		return nil, false, fmt.Errorf("%s: %w: %w", where, e, ErrMalformed)
	}
	switch t.Type {
	case "Sequence":
		var v struct {
			Pre []json.RawMessage `json:"pretokenizers"`
		}
		if err := json.Unmarshal(raw, &v); err != nil {
			return bad(err)
		}
		for i, r := range v.Pre {
			if byteLevel {
				return nil, false, fmt.Errorf("%s.pretokenizers[%d]: a pre-tokenizer after ByteLevel: %w", where, i, ErrUnsupported)
			}
			s, bl, err := parsePreTokenizer(r, fmt.Sprintf("%s.pretokenizers[%d]", where, i))
			if err != nil {
				return nil, false, err
			}
			steps = append(steps, s...)
			byteLevel = bl
		}
		return steps, byteLevel, nil
	case "ByteLevel":
		v := struct {
			AddPrefixSpace *bool `json:"add_prefix_space"`
			UseRegex       *bool `json:"use_regex"`
		}{}
		if err := json.Unmarshal(raw, &v); err != nil {
			return bad(err)
		}
		st := byteLevelStep{addPrefixSpace: true, useRegex: true}
		if v.AddPrefixSpace != nil {
			st.addPrefixSpace = *v.AddPrefixSpace
		}
		if v.UseRegex != nil {
			st.useRegex = *v.UseRegex
		}
		return []preStep{st}, true, nil
	case "Split":
		var v struct {
			Pattern  stringPattern `json:"pattern"`
			Behavior string        `json:"behavior"`
			Invert   bool          `json:"invert"`
		}
		if err := json.Unmarshal(raw, &v); err != nil {
			return bad(err)
		}
		beh, ok := behaviors[v.Behavior]
		if !ok {
			return nil, false, fmt.Errorf("%s: Split behavior %q: %w", where, v.Behavior, ErrUnsupported)
		}
		var pat pattern
		switch {
		case v.Pattern.String != nil:
			if *v.Pattern.String == "" {
				return nil, false, fmt.Errorf("%s: Split with an empty pattern: %w", where, ErrUnsupported)
			}
			pat = literalPattern{*v.Pattern.String}
		case v.Pattern.Regex != nil:
			pat, err = regexPattern(*v.Pattern.Regex)
			if err != nil {
				return nil, false, fmt.Errorf("%s: %w", where, err)
			}
		default:
			return nil, false, fmt.Errorf("%s: Split needs pattern {\"Regex\": ...} or {\"String\": ...}: %w", where, ErrMalformed)
		}
		return []preStep{splitStep{pat, beh, v.Invert}}, false, nil
	case "Metaspace":
		st, err := parseMetaspace(raw, where)
		if err != nil {
			return nil, false, err
		}
		return []preStep{st}, false, nil
	case "Digits":
		var v struct {
			Individual bool `json:"individual_digits"`
		}
		if err := json.Unmarshal(raw, &v); err != nil {
			return bad(err)
		}
		beh := behContiguous
		if v.Individual {
			beh = behIsolated
		}
		return []preStep{splitStep{charPattern(unicode.IsNumber), beh, false}}, false, nil
	case "WhitespaceSplit":
		return []preStep{splitStep{charPattern(unicode.IsSpace), behRemoved, false}}, false, nil
	case "Whitespace":
		return []preStep{splitStep{whitespaceFinder{}, behRemoved, true}}, false, nil
	case "":
		return nil, false, fmt.Errorf("%s: missing \"type\": %w", where, ErrMalformed)
	default:
		return nil, false, fmt.Errorf("%s: pre-tokenizer type %q: %w", where, t.Type, ErrUnsupported)
	}
}

func parseMetaspace(raw json.RawMessage, where string) (metaspaceStep, error) {
	var v struct {
		Replacement    *string `json:"replacement"`
		StrRep         *string `json:"str_rep"`
		AddPrefixSpace *bool   `json:"add_prefix_space"`
		PrependScheme  *string `json:"prepend_scheme"`
		Split          *bool   `json:"split"`
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return metaspaceStep{}, fmt.Errorf("%s: %w: %w", where, err, ErrMalformed)
	}
	repl := "\u2581"
	if v.Replacement != nil {
		repl = *v.Replacement
	} else if v.StrRep != nil {
		repl = *v.StrRep
	}
	r, w := utf8.DecodeRuneInString(repl)
	if repl == "" || w != len(repl) || r == utf8.RuneError {
		return metaspaceStep{}, fmt.Errorf("%s: Metaspace replacement %q must be one character: %w", where, repl, ErrMalformed)
	}
	st := metaspaceStep{repl: repl, replR: r, scheme: prependAlways, split: true}
	if v.Split != nil {
		st.split = *v.Split
	}
	switch {
	case v.PrependScheme != nil:
		switch *v.PrependScheme {
		case "always":
			st.scheme = prependAlways
		case "first":
			st.scheme = prependFirst
		case "never":
			st.scheme = prependNever
		default:
			return metaspaceStep{}, fmt.Errorf("%s: Metaspace prepend_scheme %q: %w", where, *v.PrependScheme, ErrUnsupported)
		}
	case v.AddPrefixSpace != nil && !*v.AddPrefixSpace:
		st.scheme = prependNever
	}
	return st, nil
}
