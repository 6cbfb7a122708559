package tokenizer

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// span is one piece of a string produced by a pattern: [start, end) and
// whether it is a match of the pattern.
type span struct {
	start, end int
	match      bool
}

// pattern finds matches in a string, like tokenizers' Pattern::find_matches:
// the returned spans cover s completely, in order (empty s gives one empty
// non-match span).
type pattern interface {
	spans(s string, dst []span) []span
}

// finder is a pattern expressed as "first match at or after from".
type finder interface {
	find(s string, from int) (start, end int, ok bool)
}

func finderSpans(f finder, s string, dst []span) []span {
	if s == "" {
		return append(dst, span{0, 0, false})
	}
	prev := 0
	for pos := 0; pos < len(s); {
		st, en, ok := f.find(s, pos)
		if !ok {
			break
		}
		if st > prev {
			dst = append(dst, span{prev, st, false})
		}
		dst = append(dst, span{st, en, true})
		prev = en
		if en > pos {
			pos = en
		} else { // empty match: step one char (not produced by our finders)
			_, w := utf8.DecodeRuneInString(s[pos:])
			pos += w
		}
	}
	if prev < len(s) {
		dst = append(dst, span{prev, len(s), false})
	}
	return dst
}

// literalPattern matches a fixed non-empty string (String patterns, which HF
// escapes into a regex; leftmost non-overlapping occurrences).
type literalPattern struct{ lit string }

func (p literalPattern) find(s string, from int) (int, int, bool) {
	i := strings.Index(s[from:], p.lit)
	if i < 0 {
		return 0, 0, false
	}
	return from + i, from + i + len(p.lit), true
}

func (p literalPattern) spans(s string, dst []span) []span { return finderSpans(p, s, dst) }

// charPattern matches single characters satisfying a predicate, each char
// being its own match (tokenizers' `impl Pattern for Fn(char) -> bool`).
type charPattern func(rune) bool

func (p charPattern) spans(s string, dst []span) []span {
	if s == "" {
		return append(dst, span{0, 0, false})
	}
	last := 0
	for i, r := range s {
		if p(r) {
			w := utf8.RuneLen(r)
			if r == utf8.RuneError {
				_, w = utf8.DecodeRuneInString(s[i:])
			}
			if last < i {
				dst = append(dst, span{last, i, false})
			}
			dst = append(dst, span{i, i + w, true})
			last = i + w
		}
	}
	if last < len(s) {
		dst = append(dst, span{last, len(s), false})
	}
	return dst
}

// regexKind identifies a known pre-tokenization regex.
type regexKind int

const (
	regexGPT2      regexKind = iota // GPT-2, also ByteLevel's built-in regex
	regexGPT2NoWS                   // GPT-2 without the trailing `|\s+`
	regexLlama3                     // Llama-3 / cl100k: (?i:...) contractions, \p{N}{1,3}
	regexLlama3Cls                  // Llama-3 spelled with explicit '[sS]' classes
	regexQwen2                      // Qwen2: like Llama-3 with single \p{N}
)

// Pattern strings exactly as they appear (JSON-decoded) in tokenizer.json.
const (
	patGPT2      = `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
	patGPT2NoWS  = `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)`
	patLlama3    = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	patLlama3Cls = `(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	patQwen2     = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
)

var knownRegexes = map[string]regexKind{
	patGPT2:      regexGPT2,
	patGPT2NoWS:  regexGPT2NoWS,
	patLlama3:    regexLlama3,
	patLlama3Cls: regexLlama3Cls,
	patQwen2:     regexQwen2,
}

// regexPattern returns the hand-written matcher for a known regex string.
func regexPattern(re string) (pattern, error) {
	k, ok := knownRegexes[re]
	if !ok {
		// A regex without metacharacters is a plain literal.
		if re != "" && !strings.ContainsAny(re, `\.+*?()|[]{}^$`) {
			return literalPattern{re}, nil
		}
		return nil, fmt.Errorf("regex %q is not one of the known GPT-2/Llama-3/Qwen2 patterns: %w", re, ErrUnsupported)
	}
	return regexMatcher{k}, nil
}

type regexMatcher struct{ kind regexKind }

func (m regexMatcher) spans(s string, dst []span) []span { return finderSpans(m, s, dst) }

func (m regexMatcher) find(s string, from int) (int, int, bool) {
	for i := from; i < len(s); {
		var end int
		switch m.kind {
		case regexGPT2, regexGPT2NoWS:
			end = gpt2At(s, i, m.kind == regexGPT2)
		case regexLlama3:
			end = llama3At(s, i, 3, true)
		case regexLlama3Cls:
			end = llama3At(s, i, 3, false)
		default:
			end = llama3At(s, i, 1, true)
		}
		if end > i {
			return i, end, true
		}
		_, w := utf8.DecodeRuneInString(s[i:])
		i += w
	}
	return 0, 0, false
}

// Character classes. \s is Unicode White_Space (as in Oniguruma), \p{L} and
// \p{N} the general categories. Invalid UTF-8 bytes decode to U+FFFD, which
// is neither (class "other").

const (
	clsOther = iota
	clsSpace
	clsLetter
	clsNumber
)

var asciiClass [utf8.RuneSelf]uint8

func init() {
	for c := 0; c < utf8.RuneSelf; c++ {
		r := rune(c)
		switch {
		case unicode.IsSpace(r):
			asciiClass[c] = clsSpace
		case unicode.IsLetter(r):
			asciiClass[c] = clsLetter
		case unicode.IsNumber(r):
			asciiClass[c] = clsNumber
		default:
			asciiClass[c] = clsOther
		}
	}
}

// classAt returns the class of the char starting at s[i], the char and its width.
func classAt(s string, i int) (uint8, rune, int) {
	c := s[i]
	if c < utf8.RuneSelf {
		return asciiClass[c], rune(c), 1
	}
	r, w := utf8.DecodeRuneInString(s[i:])
	switch {
	case unicode.IsSpace(r):
		return clsSpace, r, w
	case unicode.IsLetter(r):
		return clsLetter, r, w
	case unicode.IsNumber(r):
		return clsNumber, r, w
	}
	return clsOther, r, w
}

// runEnd returns the end of the run of chars of class cls starting at i.
func runEnd(s string, i int, cls uint8) int {
	for i < len(s) {
		c, _, w := classAt(s, i)
		if c != cls {
			break
		}
		i += w
	}
	return i
}

// runEndLimit is runEnd stopping after at most max chars.
func runEndLimit(s string, i int, cls uint8, max int) int {
	for n := 0; i < len(s) && n < max; n++ {
		c, _, w := classAt(s, i)
		if c != cls {
			break
		}
		i += w
	}
	return i
}

func isCRLF(b byte) bool { return b == '\r' || b == '\n' }

// contraction matches 's|'t|'re|'ve|'m|'ll|'d right after an apostrophe at
// s[i-1], returning the length matched after the apostrophe (0 if none).
// foldASCII accepts upper-case ASCII letters; longS (full (?i) matching)
// also lets 's' match U+017F (ſ), which case-folds to 's'.
func contraction(s string, i int, foldASCII, longS bool) int {
	if i >= len(s) {
		return 0
	}
	eq := func(j int, lower byte) (int, bool) {
		if j >= len(s) {
			return 0, false
		}
		c := s[j]
		if c == lower || (foldASCII && c == lower-'a'+'A') {
			return 1, true
		}
		if longS && lower == 's' && strings.HasPrefix(s[j:], "\u017f") {
			return 2, true
		}
		return 0, false
	}
	for _, alt := range [...]string{"s", "t", "re", "ve", "m", "ll", "d"} {
		j := i
		ok := true
		for k := 0; k < len(alt); k++ {
			w, m := eq(j, alt[k])
			if !m {
				ok = false
				break
			}
			j += w
		}
		if ok {
			return j - i
		}
	}
	return 0
}

// trailingSpaceEnd implements `\s+(?!\S)` followed (optionally) by `\s+` for
// a whitespace char at i: the whole run if it reaches the end of s, else the
// run minus its last char if that leaves at least one char, else (with
// fallback) the single-char run.
func trailingSpaceEnd(s string, i int, fallback bool) int {
	j := runEnd(s, i, clsSpace)
	if j == len(s) {
		return j
	}
	_, lastW := utf8.DecodeLastRuneInString(s[:j])
	if j-lastW > i {
		return j - lastW
	}
	if fallback {
		return j
	}
	return -1
}

// gpt2At matches GPT-2's pattern at i (Oniguruma leftmost-first
// alternation): 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+|
// ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+. Returns the match end or -1.
func gpt2At(s string, i int, trailingWS bool) int {
	cls, r, w := classAt(s, i)
	if r == '\'' {
		if n := contraction(s, i+1, false, false); n > 0 {
			return i + 1 + n
		}
	}
	if r == ' ' && i+1 < len(s) {
		if c2, _, _ := classAt(s, i+1); c2 != clsSpace {
			return runEnd(s, i+1, c2)
		}
	}
	if cls != clsSpace {
		return runEnd(s, i+w, cls)
	}
	return trailingSpaceEnd(s, i, trailingWS)
}

// llama3At matches the Llama-3 (maxDigits 3) or Qwen2 (maxDigits 1) pattern
// at i: (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
// ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+. Returns the end or -1.
func llama3At(s string, i int, maxDigits int, longS bool) int {
	cls, r, w := classAt(s, i)
	if r == '\'' {
		if n := contraction(s, i+1, true, longS); n > 0 {
			return i + 1 + n
		}
	}
	// [^\r\n\p{L}\p{N}]?\p{L}+
	if cls == clsLetter {
		return runEnd(s, i+w, clsLetter)
	}
	if cls != clsNumber && r != '\r' && r != '\n' && i+w < len(s) {
		if c2, _, _ := classAt(s, i+w); c2 == clsLetter {
			return runEnd(s, i+w, clsLetter)
		}
	}
	// \p{N}{1,maxDigits}
	if cls == clsNumber {
		return runEndLimit(s, i, clsNumber, maxDigits)
	}
	// ?[^\s\p{L}\p{N}]+[\r\n]*
	start := -1
	if r == ' ' && i+1 < len(s) {
		if c2, _, _ := classAt(s, i+1); c2 == clsOther {
			start = i + 1
		}
	}
	if cls == clsOther {
		start = i
	}
	if start >= 0 {
		j := runEnd(s, start, clsOther)
		for j < len(s) && isCRLF(s[j]) {
			j++
		}
		return j
	}
	// cls == clsSpace from here on.
	// \s*[\r\n]+ : up to and including the last \r or \n of the whitespace run.
	j := runEnd(s, i, clsSpace)
	for k := j - 1; k >= i; k-- {
		if isCRLF(s[k]) {
			return k + 1
		}
	}
	return trailingSpaceEnd(s, i, true)
}
