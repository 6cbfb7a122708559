package tokenizer

import (
	"unicode"
	"unicode/utf8"
)

// addedToken is one entry of tokenizer.json "added_tokens".
type addedToken struct {
	id         int32
	content    string
	special    bool
	lstrip     bool
	rstrip     bool
	singleWord bool
	normalized bool
}

// matchSet finds added tokens in text with leftmost-longest semantics (as
// tokenizers' aho-corasick MatchKind::LeftmostLongest does).
type matchSet struct {
	first  [256]bool
	nodes  []trieNode
	tokens []*addedToken // by pattern index
}

type trieNode struct {
	next map[byte]int32
	tok  int32 // index into tokens, -1 if no pattern ends here
}

func newMatchSet() *matchSet {
	return &matchSet{nodes: []trieNode{{tok: -1}}}
}

func (m *matchSet) add(pat string, tok *addedToken) {
	if pat == "" {
		return
	}
	n := int32(0)
	for i := 0; i < len(pat); i++ {
		c := pat[i]
		nx, ok := m.nodes[n].next[c]
		if !ok {
			if m.nodes[n].next == nil {
				m.nodes[n].next = map[byte]int32{}
			}
			nx = int32(len(m.nodes))
			m.nodes = append(m.nodes, trieNode{tok: -1})
			m.nodes[n].next[c] = nx
		}
		n = nx
	}
	if m.nodes[n].tok < 0 { // the first token with this content wins
		m.nodes[n].tok = int32(len(m.tokens))
		m.tokens = append(m.tokens, tok)
	}
	m.first[pat[0]] = true
}

func (m *matchSet) empty() bool { return len(m.tokens) == 0 }

// find returns the leftmost-longest match at or after from.
func (m *matchSet) find(s string, from int) (start, end int, tok *addedToken) {
	for i := from; i < len(s); i++ {
		if !m.first[s[i]] {
			continue
		}
		n, best := int32(0), int32(-1)
		bestEnd := 0
		for j := i; j < len(s); j++ {
			nx, ok := m.nodes[n].next[s[j]]
			if !ok {
				break
			}
			n = nx
			if t := m.nodes[n].tok; t >= 0 {
				best, bestEnd = t, j+1
			}
		}
		if best >= 0 {
			return i, bestEnd, m.tokens[best]
		}
	}
	return 0, 0, nil
}

// split walks s, calling text(start, end) for stretches that are not added
// tokens and tok(t) for each added token, following AddedVocabulary's
// find_matches (single_word, lstrip and rstrip included).
func (m *matchSet) split(s string, text func(start, end int), tok func(t *addedToken)) {
	offset := 0
	for pos := 0; pos < len(s); {
		start, stop, t := m.find(s, pos)
		if t == nil {
			break
		}
		pos = stop
		if t.singleWord {
			startSpace := start == 0 || !endsWithWord(s[:start])
			stopSpace := stop == len(s) || !startsWithWord(s[stop:])
			if !startSpace || !stopSpace {
				continue
			}
		}
		if t.lstrip {
			ns := start
			for ns > 0 {
				r, w := utf8.DecodeLastRuneInString(s[:ns])
				if !unicode.IsSpace(r) {
					break
				}
				ns -= w
			}
			start = max(ns, offset)
		}
		if t.rstrip {
			for stop < len(s) {
				r, w := utf8.DecodeRuneInString(s[stop:])
				if !unicode.IsSpace(r) {
					break
				}
				stop += w
			}
		}
		if start > offset {
			text(offset, start)
		}
		tok(t)
		offset = stop
	}
	if offset < len(s) {
		text(offset, len(s))
	}
}

func endsWithWord(s string) bool {
	r, _ := utf8.DecodeLastRuneInString(s)
	return s != "" && isWordChar(r)
}

func startsWithWord(s string) bool {
	r, _ := utf8.DecodeRuneInString(s)
	return s != "" && isWordChar(r)
}
