package tokenizer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"sync"

	"github.com/wanda-go/wanda/internal/regfile"
)

// Tokenizer encodes and decodes text like Hugging Face tokenizers for a BPE
// tokenizer.json. It is immutable after Parse and safe for concurrent use.
type Tokenizer struct {
	model     *bpeModel
	norm      normalizer
	pre       []preStep
	byteLevel bool // the pre-tokenizer ends with ByteLevel
	post      postProcessor
	dec       decoder

	added      []*addedToken
	addedByID  map[int32]*addedToken
	special    map[string]bool // contents of special added tokens
	rawSet     *matchSet       // added tokens with normalized=false
	normSet    *matchSet       // added tokens with normalized=true
	idToTok    []string
	idKnown    []bool
	byContent  map[string]int32 // added token content -> id (first wins)
	vocabSize  int
	eos        int32
	hasEOS     bool
	scratchers sync.Pool
}

type fileJSON struct {
	AddedTokens   []addedTokenJSON `json:"added_tokens"`
	Normalizer    json.RawMessage  `json:"normalizer"`
	PreTokenizer  json.RawMessage  `json:"pre_tokenizer"`
	PostProcessor json.RawMessage  `json:"post_processor"`
	Decoder       json.RawMessage  `json:"decoder"`
	Model         json.RawMessage  `json:"model"`
}

type addedTokenJSON struct {
	ID         *int64  `json:"id"`
	Content    *string `json:"content"`
	SingleWord bool    `json:"single_word"`
	LStrip     bool    `json:"lstrip"`
	RStrip     bool    `json:"rstrip"`
	Normalized *bool   `json:"normalized"`
	Special    bool    `json:"special"`
}

// Load reads and parses a tokenizer.json file. Errors name the file.
func Load(path string) (*Tokenizer, error) {
	data, err := regfile.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	t, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}

// Parse builds a Tokenizer from the contents of a tokenizer.json. Only BPE
// models are supported; errors wrap ErrMalformed, ErrUnsupported or
// ErrUnknownToken and name the offending field.
func Parse(data []byte) (*Tokenizer, error) {
	var f fileJSON
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("invalid JSON: %w: %w", err, ErrMalformed)
	}
	if bytes.HasPrefix(bytes.TrimSpace(data), []byte("null")) {
		return nil, fmt.Errorf("top level is null: %w", ErrMalformed)
	}
	m, err := parseBPE(f.Model)
	if err != nil {
		return nil, err
	}
	t := &Tokenizer{model: m, addedByID: map[int32]*addedToken{}, byContent: map[string]int32{}, special: map[string]bool{}}
	if t.norm, err = parseNormalizer(f.Normalizer, "normalizer"); err != nil {
		return nil, err
	}
	if t.pre, t.byteLevel, err = parsePreTokenizer(f.PreTokenizer, "pre_tokenizer"); err != nil {
		return nil, err
	}
	if t.post, err = parsePostProcessor(f.PostProcessor, "post_processor"); err != nil {
		return nil, err
	}
	if t.dec, err = parseDecoder(f.Decoder, "decoder"); err != nil {
		return nil, err
	}

	maxSeen := int32(-1)
	for _, id := range m.vocab {
		maxSeen = max(maxSeen, id)
	}
	t.rawSet, t.normSet = newMatchSet(), newMatchSet()
	for i, a := range f.AddedTokens {
		if a.ID == nil || a.Content == nil {
			return nil, fmt.Errorf("added_tokens[%d]: needs \"id\" and \"content\": %w", i, ErrMalformed)
		}
		if *a.ID < 0 || *a.ID > maxID {
			return nil, fmt.Errorf("added_tokens[%d] %q: id %d out of range: %w", i, *a.Content, *a.ID, ErrMalformed)
		}
		tok := &addedToken{
			id: int32(*a.ID), content: *a.Content, special: a.Special,
			lstrip: a.LStrip, rstrip: a.RStrip, singleWord: a.SingleWord,
			normalized: !a.Special,
		}
		if a.Normalized != nil {
			tok.normalized = *a.Normalized
		}
		t.added = append(t.added, tok)
		if _, dup := t.addedByID[tok.id]; !dup {
			t.addedByID[tok.id] = tok
		}
		if _, dup := t.byContent[tok.content]; !dup {
			t.byContent[tok.content] = tok.id
		}
		if tok.special {
			t.special[tok.content] = true
		}
		maxSeen = max(maxSeen, tok.id)
		if tok.content == "" {
			continue
		}
		if tok.normalized {
			pat := tok.content
			if t.norm != nil {
				pat = t.norm.normalize(pat)
			}
			t.normSet.add(pat, tok)
		} else {
			t.rawSet.add(tok.content, tok)
		}
	}
	for _, id := range append(append([]int32(nil), t.post.prefix...), t.post.suffix...) {
		maxSeen = max(maxSeen, id)
	}
	t.vocabSize = int(maxSeen) + 1
	if t.vocabSize > 16*(len(m.vocab)+len(t.added))+1<<20 {
		return nil, fmt.Errorf("largest token id %d is far beyond the %d tokens defined: %w", maxSeen, len(m.vocab)+len(t.added), ErrMalformed)
	}
	t.idToTok = make([]string, t.vocabSize)
	t.idKnown = make([]bool, t.vocabSize)
	for tok, id := range m.vocab {
		t.idToTok[id] = tok
		t.idKnown[id] = true
	}
	t.findEOS()
	return t, nil
}

// knownEOS lists end-of-sequence spellings tried, in order, when the
// post-processor does not append one.
var knownEOS = []string{"</s>", "<|end_of_text|>", "<|endoftext|>", "<|im_end|>", "<eos>"}

func (t *Tokenizer) findEOS() {
	if len(t.post.suffix) > 0 {
		t.eos, t.hasEOS = t.post.suffix[0], true
		return
	}
	for _, s := range knownEOS {
		if id, ok := t.TokenToID(s); ok {
			t.eos, t.hasEOS = id, true
			return
		}
	}
}

// BOS returns the id the post-processor prepends when addSpecial is true
// (the first one if it prepends several), if any.
func (t *Tokenizer) BOS() (int32, bool) {
	if len(t.post.prefix) == 0 {
		return 0, false
	}
	return t.post.prefix[0], true
}

// EOS returns the id the post-processor appends, if any; otherwise the id of
// the first of "</s>", "<|end_of_text|>", "<|endoftext|>", "<|im_end|>",
// "<eos>" that the vocabulary has.
func (t *Tokenizer) EOS() (int32, bool) { return t.eos, t.hasEOS }

// VocabSize is one more than the largest token id (vocabulary, added tokens
// and post-processor ids), i.e. the size an embedding table needs.
func (t *Tokenizer) VocabSize() int { return t.vocabSize }

// TokenToID returns the id of a token string (added tokens first, as HF).
func (t *Tokenizer) TokenToID(tok string) (int32, bool) {
	if id, ok := t.byContent[tok]; ok {
		return id, true
	}
	id, ok := t.model.vocab[tok]
	return id, ok
}

// IDToToken returns the token string of an id (added tokens first, as HF).
func (t *Tokenizer) IDToToken(id int32) (string, bool) {
	if a, ok := t.addedByID[id]; ok {
		return a.content, true
	}
	if id >= 0 && int(id) < len(t.idToTok) && t.idKnown[id] {
		return t.idToTok[id], true
	}
	return "", false
}

func (t *Tokenizer) getScratch() *scratch {
	if s, ok := t.scratchers.Get().(*scratch); ok {
		return s
	}
	return &scratch{}
}

// Encode tokenizes text. With addSpecial the post-processor's special
// tokens (e.g. BOS) are added, as HF's encode(text, add_special_tokens=...).
func (t *Tokenizer) Encode(text string, addSpecial bool) []int32 {
	sc := t.getScratch()
	defer t.scratchers.Put(sc)
	out := make([]int32, 0, len(text)/3+len(t.post.prefix)+len(t.post.suffix)+1)
	if addSpecial {
		out = append(out, t.post.prefix...)
	}
	emitTok := func(a *addedToken) { out = append(out, a.id) }
	if t.rawSet.empty() {
		out = t.encodePart(text, true, out, sc)
	} else {
		t.rawSet.split(text, func(start, end int) {
			out = t.encodePart(text[start:end], start == 0, out, sc)
		}, emitTok)
	}
	if addSpecial {
		out = append(out, t.post.suffix...)
	}
	return out
}

// encodePart normalizes one stretch between non-normalized added tokens,
// splits out normalized added tokens, and encodes the rest.
func (t *Tokenizer) encodePart(s string, first bool, out []int32, sc *scratch) []int32 {
	if t.norm != nil {
		s = t.norm.normalize(s)
	}
	if t.normSet.empty() {
		return t.encodePiece(piece{s, first}, out, sc)
	}
	t.normSet.split(s, func(start, end int) {
		out = t.encodePiece(piece{s[start:end], first && start == 0}, out, sc)
	}, func(a *addedToken) { out = append(out, a.id) })
	return out
}

// encodePiece pre-tokenizes a normalized piece and runs the model.
func (t *Tokenizer) encodePiece(p piece, out []int32, sc *scratch) []int32 {
	if p.s == "" {
		return out
	}
	if len(t.pre) == 0 {
		return t.model.encodeWord(p.s, t.byteLevel, out, sc)
	}
	a := append(sc.pa[:0], p)
	b := sc.pb[:0]
	for _, st := range t.pre {
		b = st.apply(a, b[:0], sc)
		a, b = b, a
	}
	for _, w := range a {
		out = t.model.encodeWord(w.s, t.byteLevel, out, sc)
	}
	sc.pa, sc.pb = a[:0], b[:0]
	return out
}

// Decode turns ids back into text like HF's decode(ids,
// skip_special_tokens). Unknown ids are skipped.
func (t *Tokenizer) Decode(ids []int32, skipSpecial bool) string {
	tokens := make([]string, 0, len(ids))
	for _, id := range ids {
		tok, ok := t.IDToToken(id)
		if !ok {
			continue
		}
		if skipSpecial && t.special[tok] {
			continue
		}
		tokens = append(tokens, tok)
	}
	if t.dec == nil {
		return strings.Join(tokens, " ")
	}
	return strings.Join(t.dec.decodeChain(tokens), "")
}
