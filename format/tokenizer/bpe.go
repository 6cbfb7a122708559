package tokenizer

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"sync"
	"unicode/utf8"
)

const (
	// maxCachedWord is the longest word (in bytes) kept in the word cache.
	maxCachedWord = 256
	// maxCacheEntries bounds the word cache; it is cleared when full.
	maxCacheEntries = 1 << 16
	// spaceMark is SentencePiece's word-boundary mark U+2581.
	spaceMark = "\u2581"
)

// bpeModel is tokenizers' models::bpe::BPE without dropout.
type bpeModel struct {
	vocab        map[string]int32
	merges       *mergeTable
	unkID        int32 // -1: no unk token
	fuseUnk      bool
	byteFallback bool
	ignoreMerges bool
	prefix       string // continuing_subword_prefix ("" = none)
	suffix       string // end_of_word_suffix ("" = none)

	asciiTok [128]int32     // single-char ASCII tokens, -1 if absent
	runeTok  map[rune]int32 // single-char non-ASCII tokens
	byteTok  [256]int32     // <0xNN> byte-fallback tokens, -1 if absent
	blTok    [256]int32     // byte-level: token of byte b's mapped char

	// spaceSplit: words may be cut before every "▁" that follows another
	// char without changing the result, because no merge joins a token
	// ending in another char with one starting with "▁" (checked at load).
	spaceSplit bool

	mu    sync.Mutex
	cache map[string][]int32
}

type bpeJSON struct {
	Type                    string           `json:"type"`
	Dropout                 *float64         `json:"dropout"`
	UnkToken                *string          `json:"unk_token"`
	ContinuingSubwordPrefix *string          `json:"continuing_subword_prefix"`
	EndOfWordSuffix         *string          `json:"end_of_word_suffix"`
	FuseUnk                 bool             `json:"fuse_unk"`
	ByteFallback            bool             `json:"byte_fallback"`
	IgnoreMerges            bool             `json:"ignore_merges"`
	Vocab                   map[string]int64 `json:"vocab"`
	Merges                  []any            `json:"merges"`
}

// maxID bounds token ids so that hostile files cannot make us allocate
// absurd tables.
const maxID = math.MaxInt32 - 1

func parseBPE(raw json.RawMessage) (*bpeModel, error) {
	if isNull(raw) {
		return nil, fmt.Errorf("model: missing: %w", ErrMalformed)
	}
	var t typed
	if err := json.Unmarshal(raw, &t); err != nil {
		return nil, fmt.Errorf("model: %w: %w", err, ErrMalformed)
	}
	switch t.Type {
	case "BPE":
	case "":
		// Old files omit the tag; tokenizers then recognises BPE by its merges.
		var probe map[string]json.RawMessage
		_ = json.Unmarshal(raw, &probe)
		if _, ok := probe["merges"]; !ok {
			return nil, fmt.Errorf("model: no \"type\" and no \"merges\": %w", ErrMalformed)
		}
	default:
		return nil, fmt.Errorf("model: type %q (only BPE is implemented): %w", t.Type, ErrUnsupported)
	}
	var j bpeJSON
	if err := json.Unmarshal(raw, &j); err != nil {
		return nil, fmt.Errorf("model: %w: %w", err, ErrMalformed)
	}
	if j.Vocab == nil {
		return nil, fmt.Errorf("model: missing \"vocab\": %w", ErrMalformed)
	}
	if j.Dropout != nil && *j.Dropout != 0 {
		return nil, fmt.Errorf("model: dropout %v (non-deterministic): %w", *j.Dropout, ErrUnsupported)
	}
	m := &bpeModel{
		vocab:        make(map[string]int32, len(j.Vocab)),
		unkID:        -1,
		fuseUnk:      j.FuseUnk,
		byteFallback: j.ByteFallback,
		ignoreMerges: j.IgnoreMerges,
		runeTok:      map[rune]int32{},
		cache:        map[string][]int32{},
	}
	if j.ContinuingSubwordPrefix != nil {
		m.prefix = *j.ContinuingSubwordPrefix
	}
	if j.EndOfWordSuffix != nil {
		m.suffix = *j.EndOfWordSuffix
	}
	for tok, id := range j.Vocab {
		if id < 0 || id > maxID {
			return nil, fmt.Errorf("model: vocab: token %q has id %d out of range: %w", tok, id, ErrMalformed)
		}
		m.vocab[tok] = int32(id)
	}
	for i := range m.asciiTok {
		m.asciiTok[i] = -1
	}
	for i := range m.byteTok {
		m.byteTok[i] = -1
		m.blTok[i] = -1
	}
	for tok, id := range m.vocab {
		if r, w := utf8.DecodeRuneInString(tok); w == len(tok) && tok != "" {
			if r < utf8.RuneSelf {
				m.asciiTok[r] = id
			} else if r != utf8.RuneError || w > 1 {
				m.runeTok[r] = id
			}
		}
	}
	for b := 0; b < 256; b++ {
		if id, ok := m.vocab[fmt.Sprintf("<0x%02X>", b)]; ok {
			m.byteTok[b] = id
		}
		if id, ok := m.vocab[byteToString[b]]; ok {
			m.blTok[b] = id
		}
	}
	if j.UnkToken != nil {
		id, ok := m.vocab[*j.UnkToken]
		if !ok {
			return nil, fmt.Errorf("model: unk_token %q: %w", *j.UnkToken, ErrUnknownToken)
		}
		m.unkID = id
	}

	m.merges = newMergeTable(len(j.Merges))
	crossing := false // some merge joins "...x" + "▁..." with x != ▁
	for i, e := range j.Merges {
		var a, b string
		switch v := e.(type) {
		case string:
			var ok bool
			a, b, ok = strings.Cut(v, " ")
			if !ok {
				return nil, fmt.Errorf("model: merges[%d] %q: not \"a b\": %w", i, v, ErrMalformed)
			}
		case []any:
			if len(v) != 2 {
				return nil, fmt.Errorf("model: merges[%d]: want a pair, got %d items: %w", i, len(v), ErrMalformed)
			}
			sa, ok1 := v[0].(string)
			sb, ok2 := v[1].(string)
			if !ok1 || !ok2 {
				return nil, fmt.Errorf("model: merges[%d]: pair items must be strings: %w", i, ErrMalformed)
			}
			a, b = sa, sb
		default:
			return nil, fmt.Errorf("model: merges[%d]: want \"a b\" or [a, b]: %w", i, ErrMalformed)
		}
		ida, ok := m.vocab[a]
		if !ok {
			return nil, fmt.Errorf("model: merges[%d] (%q, %q): %q: %w", i, a, b, a, ErrUnknownToken)
		}
		idb, ok := m.vocab[b]
		if !ok {
			return nil, fmt.Errorf("model: merges[%d] (%q, %q): %q: %w", i, a, b, b, ErrUnknownToken)
		}
		rb := b
		if m.prefix != "" {
			if len(b) < len(m.prefix) {
				return nil, fmt.Errorf("model: merges[%d] (%q, %q): right part shorter than continuing_subword_prefix: %w", i, a, b, ErrMalformed)
			}
			rb = b[len(m.prefix):]
		}
		merged := a + rb
		idn, ok := m.vocab[merged]
		if !ok {
			return nil, fmt.Errorf("model: merges[%d] (%q, %q): merged token %q: %w", i, a, b, merged, ErrUnknownToken)
		}
		m.merges.put(ida, idb, int32(i), idn)
		if strings.HasPrefix(b, spaceMark) && !strings.HasSuffix(a, spaceMark) {
			crossing = true
		}
	}
	_, hasMark := m.vocab[spaceMark]
	unkEndsWithMark := false
	if j.UnkToken != nil {
		unkEndsWithMark = strings.HasSuffix(*j.UnkToken, spaceMark)
	}
	m.spaceSplit = hasMark && !crossing && !unkEndsWithMark && m.prefix == "" && m.suffix == ""
	return m, nil
}

// scratch holds per-call buffers (pooled by the Tokenizer).
type scratch struct {
	syms   []symbol
	heap   []heapItem
	spans  []span
	pa, pb []piece
	buf    []byte
}

type symbol struct {
	id, prev, next int32
	gone           bool
}

type heapItem struct {
	rank, pos, newID int32
}

func less(a, b heapItem) bool {
	if a.rank != b.rank {
		return a.rank < b.rank
	}
	return a.pos < b.pos
}

func heapPush(h []heapItem, x heapItem) []heapItem {
	h = append(h, x)
	i := len(h) - 1
	for i > 0 {
		p := (i - 1) / 2
		if !less(h[i], h[p]) {
			break
		}
		h[i], h[p] = h[p], h[i]
		i = p
	}
	return h
}

func heapPop(h []heapItem) (heapItem, []heapItem) {
	top := h[0]
	n := len(h) - 1
	h[0] = h[n]
	h = h[:n]
	i := 0
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		c := l
		if r := l + 1; r < n && less(h[r], h[l]) {
			c = r
		}
		if !less(h[c], h[i]) {
			break
		}
		h[i], h[c] = h[c], h[i]
		i = c
	}
	return top, h
}

// encodeWord appends the ids of one pre-tokenized word. byteLevel words are
// raw bytes that the model sees through GPT-2's byte -> unicode map.
func (m *bpeModel) encodeWord(w string, byteLevel bool, out []int32, sc *scratch) []int32 {
	if w == "" {
		return out
	}
	if byteLevel {
		return m.cached(w, true, out, sc)
	}
	if m.ignoreMerges {
		if id, ok := m.vocab[w]; ok {
			return append(out, id)
		}
	}
	if !m.spaceSplit {
		return m.cached(w, false, out, sc)
	}
	// Cut before each "▁" that follows a different char.
	start := 0
	for i := 1; i < len(w); {
		k := strings.Index(w[i:], spaceMark)
		if k < 0 {
			break
		}
		i += k
		if !strings.HasSuffix(w[:i], spaceMark) {
			out = m.cached(w[start:i], false, out, sc)
			start = i
		}
		i += len(spaceMark)
	}
	return m.cached(w[start:], false, out, sc)
}

func (m *bpeModel) cached(w string, byteLevel bool, out []int32, sc *scratch) []int32 {
	if len(w) > maxCachedWord {
		return m.mergeWord(w, byteLevel, out, sc)
	}
	m.mu.Lock()
	ids, ok := m.cache[w]
	m.mu.Unlock()
	if ok {
		return append(out, ids...)
	}
	n := len(out)
	out = m.mergeWord(w, byteLevel, out, sc)
	ids = append([]int32(nil), out[n:]...)
	key := strings.Clone(w)
	m.mu.Lock()
	if len(m.cache) >= maxCacheEntries {
		clear(m.cache)
	}
	m.cache[key] = ids
	m.mu.Unlock()
	return out
}

// symbolBuilder collects a word's initial symbols with HF's unk handling.
type symbolBuilder struct {
	m          *bpeModel
	syms       []symbol
	pendingUnk bool
}

func (b *symbolBuilder) push(id int32) {
	n := int32(len(b.syms))
	b.syms = append(b.syms, symbol{id: id, prev: n - 1, next: n + 1})
}

func (b *symbolBuilder) known(id int32) {
	if b.pendingUnk {
		b.push(b.m.unkID)
		b.pendingUnk = false
	}
	b.push(id)
}

// missing handles a char (as the model spells it) absent from the vocab:
// byte fallback if every byte has a <0xNN> token (without flushing a pending
// unk, as HF does), else unk (fused with a pending one when fuse_unk), else
// the char is dropped.
func (b *symbolBuilder) missing(ch string) {
	m := b.m
	if m.byteFallback {
		all := true
		for i := 0; i < len(ch); i++ {
			if m.byteTok[ch[i]] < 0 {
				all = false
				break
			}
		}
		if all {
			for i := 0; i < len(ch); i++ {
				b.push(m.byteTok[ch[i]])
			}
			return
		}
	}
	if m.unkID < 0 {
		return
	}
	if b.pendingUnk && !m.fuseUnk {
		b.push(m.unkID)
	}
	b.pendingUnk = true
}

func (b *symbolBuilder) finish() []symbol {
	if b.pendingUnk {
		b.push(b.m.unkID)
		b.pendingUnk = false
	}
	if n := len(b.syms); n > 0 {
		b.syms[n-1].next = -1
	}
	return b.syms
}

// mergeWord is BPE::merge_word followed by Word::merge_all.
func (m *bpeModel) mergeWord(w string, byteLevel bool, out []int32, sc *scratch) []int32 {
	if byteLevel && m.ignoreMerges {
		sc.buf = appendByteLevel(sc.buf[:0], w)
		if id, ok := m.vocab[string(sc.buf)]; ok {
			return append(out, id)
		}
	}
	b := symbolBuilder{m: m, syms: sc.syms[:0]}
	switch {
	case m.prefix != "" || m.suffix != "":
		m.symbolsGeneral(w, byteLevel, &b, sc)
	case byteLevel:
		for i := 0; i < len(w); i++ {
			if id := m.blTok[w[i]]; id >= 0 {
				b.known(id)
			} else {
				b.missing(byteToString[w[i]])
			}
		}
	default:
		for i := 0; i < len(w); {
			c := w[i]
			if c < utf8.RuneSelf {
				if id := m.asciiTok[c]; id >= 0 {
					b.known(id)
				} else {
					b.missing(w[i : i+1])
				}
				i++
				continue
			}
			r, size := utf8.DecodeRuneInString(w[i:])
			id, ok := m.runeTok[r]
			if ok && (r != utf8.RuneError || size > 1) {
				b.known(id)
			} else {
				b.missing(w[i : i+size])
			}
			i += size
		}
	}
	syms := b.finish()
	sc.syms = syms
	m.mergeAll(syms, sc)
	for i := range syms {
		if !syms[i].gone {
			out = append(out, syms[i].id)
		}
	}
	return out
}

func appendByteLevel(dst []byte, w string) []byte {
	for i := 0; i < len(w); i++ {
		dst = append(dst, byteToString[w[i]]...)
	}
	return dst
}

// symbolsGeneral builds symbols char by char with continuing_subword_prefix
// and end_of_word_suffix, exactly as merge_word spells them.
func (m *bpeModel) symbolsGeneral(w string, byteLevel bool, b *symbolBuilder, sc *scratch) {
	s := w
	if byteLevel {
		sc.buf = appendByteLevel(sc.buf[:0], w)
		s = string(sc.buf)
	}
	for i := 0; i < len(s); {
		_, size := utf8.DecodeRuneInString(s[i:])
		ch := s[i : i+size]
		if i > 0 && m.prefix != "" {
			ch = m.prefix + ch
		}
		if i+size == len(s) && m.suffix != "" {
			ch += m.suffix
		}
		if id, ok := m.vocab[ch]; ok {
			b.known(id)
		} else {
			b.missing(ch)
		}
		i += size
	}
}

// mergeAll applies merges lowest rank first (ties: leftmost), exactly as
// tokenizers' Word::merge_all, including its stale-entry check.
func (m *bpeModel) mergeAll(syms []symbol, sc *scratch) {
	h := sc.heap[:0]
	for i := 0; i+1 < len(syms); i++ {
		if rank, nid, ok := m.merges.get(syms[i].id, syms[i+1].id); ok {
			h = append(h, heapItem{rank, int32(i), nid})
		}
	}
	// Heapify.
	for i := len(h)/2 - 1; i >= 0; i-- {
		j := i
		for {
			l := 2*j + 1
			if l >= len(h) {
				break
			}
			c := l
			if r := l + 1; r < len(h) && less(h[r], h[l]) {
				c = r
			}
			if !less(h[c], h[j]) {
				break
			}
			h[j], h[c] = h[c], h[j]
			j = c
		}
	}
	for len(h) > 0 {
		var top heapItem
		top, h = heapPop(h)
		s := &syms[top.pos]
		if s.gone || s.next < 0 {
			continue
		}
		nx := s.next
		right := syms[nx]
		if _, nid, ok := m.merges.get(s.id, right.id); !ok || nid != top.newID {
			continue
		}
		s.id = top.newID
		s.next = right.next
		syms[nx].gone = true
		if right.next >= 0 {
			syms[right.next].prev = top.pos
		}
		if s.prev >= 0 {
			if rank, nid, ok := m.merges.get(syms[s.prev].id, s.id); ok {
				h = heapPush(h, heapItem{rank, s.prev, nid})
			}
		}
		if s.next >= 0 {
			if rank, nid, ok := m.merges.get(s.id, syms[s.next].id); ok {
				h = heapPush(h, heapItem{rank, top.pos, nid})
			}
		}
	}
	sc.heap = h
}
