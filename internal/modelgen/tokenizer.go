package modelgen

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"
)

// Ids of the special tokens of the fixture tokenizer (the Llama-2 layout).
const (
	UnkID = 0 // <unk>
	BOSID = 1 // <s>
	EOSID = 2 // </s>
)

// NumMerges is the number of BPE merges the fixture tokenizer learns from the
// built-in text (fewer only if the text ran out of pairs seen twice).
const NumMerges = 256

const spaceMark = "▁" // U+2581, SentencePiece's word-start mark

// bpeVocab is the learned tokenizer: tokens in id order and merges in rank order.
type bpeVocab struct {
	tokens []string
	merges [][2]string
}

var (
	tokOnce sync.Once
	tok     *bpeVocab
)

// fixtureTokenizer returns the (fixed, seed-independent) learned tokenizer.
func fixtureTokenizer() *bpeVocab {
	tokOnce.Do(func() { tok = trainBPE(trainingText, NumMerges) })
	return tok
}

// TokenizerSize is the number of tokens in the fixture tokenizer.json; a
// model's vocab_size must be at least this.
func TokenizerSize() int { return len(fixtureTokenizer().tokens) }

// trainBPE learns a SentencePiece-style BPE vocabulary from text: the text is
// normalized as the tokenizer will normalize input (prepend "▁", spaces ->
// "▁"), split into words that each begin at a "▁", and the most frequent
// adjacent symbol pair (ties: the lexicographically smallest pair) is merged
// repeatedly, up to maxMerges times and while the best pair occurs at least
// twice. Because words never contain "▁" after their first symbol, no merge
// crosses a word boundary, so applying the merges to a whole string (as a
// tokenizer without pre-tokenizer does) equals applying them word by word.
//
// Vocabulary order: <unk>, <s>, </s>, the 256 byte tokens <0x00>..<0xFF>,
// the text's characters (by decreasing frequency, then code point), then the
// merged tokens in the order they were learned.
func trainBPE(text string, maxMerges int) *bpeVocab {
	norm := spaceMark + strings.ReplaceAll(text, " ", spaceMark)
	wordFreq := map[string]int{}
	for _, piece := range strings.Split(norm, spaceMark)[1:] {
		wordFreq[spaceMark+piece]++
	}
	words := make([]string, 0, len(wordFreq))
	for w := range wordFreq {
		words = append(words, w)
	}
	sort.Strings(words)

	charFreq := map[string]int{}
	syms := make([][]string, len(words))
	freq := make([]int, len(words))
	for i, w := range words {
		freq[i] = wordFreq[w]
		for _, r := range w {
			syms[i] = append(syms[i], string(r))
			charFreq[string(r)] += freq[i]
		}
	}
	chars := make([]string, 0, len(charFreq))
	for c := range charFreq {
		chars = append(chars, c)
	}
	sort.Slice(chars, func(i, j int) bool {
		if charFreq[chars[i]] != charFreq[chars[j]] {
			return charFreq[chars[i]] > charFreq[chars[j]]
		}
		return chars[i] < chars[j]
	})

	v := &bpeVocab{tokens: []string{"<unk>", "<s>", "</s>"}}
	for b := 0; b < 256; b++ {
		v.tokens = append(v.tokens, fmt.Sprintf("<0x%02X>", b))
	}
	have := map[string]bool{}
	for _, t := range v.tokens {
		have[t] = true
	}
	for _, c := range chars {
		if !have[c] {
			have[c] = true
			v.tokens = append(v.tokens, c)
		}
	}

	for len(v.merges) < maxMerges {
		counts := map[[2]string]int{}
		for i, s := range syms {
			for j := 0; j+1 < len(s); j++ {
				counts[[2]string{s[j], s[j+1]}] += freq[i]
			}
		}
		var best [2]string
		bestN := 0
		for p, n := range counts {
			if n > bestN || (n == bestN && (p[0] < best[0] || (p[0] == best[0] && p[1] < best[1]))) {
				best, bestN = p, n
			}
		}
		if bestN < 2 {
			break
		}
		merged := best[0] + best[1]
		v.merges = append(v.merges, best)
		if !have[merged] {
			have[merged] = true
			v.tokens = append(v.tokens, merged)
		}
		for i, s := range syms {
			out := s[:0]
			for j := 0; j < len(s); j++ {
				if j+1 < len(s) && s[j] == best[0] && s[j+1] == best[1] {
					out = append(out, merged)
					j++
				} else {
					out = append(out, s[j])
				}
			}
			syms[i] = out
		}
	}
	return v
}

// kv and obj build JSON objects whose keys keep their insertion order.
type kv struct {
	K string
	V any
}

type obj []kv

func (o obj) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, e := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		k, err := marshalNoEscape(e.K)
		if err != nil {
			return nil, err
		}
		val, err := marshalNoEscape(e.V)
		if err != nil {
			return nil, err
		}
		b.Write(k)
		b.WriteByte(':')
		b.Write(val)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// marshalNoEscape is json.Marshal without HTML escaping (keeps "<s>" readable).
func marshalNoEscape(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(b.Bytes(), "\n"), nil
}

// marshalIndent is json.MarshalIndent without HTML escaping, with a final newline.
func marshalIndent(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// TokenizerJSON returns the fixture tokenizer.json: a Llama-2-style
// SentencePiece BPE (normalizer Prepend "▁" then Replace " " -> "▁", no
// pre-tokenizer, byte_fallback and fuse_unk, <unk>=0 <s>=1 </s>=2, byte tokens
// <0x00>..<0xFF> at ids 3..258, a TemplateProcessing post-processor that
// prepends <s>, and the matching decoder).
func TokenizerJSON() ([]byte, error) {
	v := fixtureTokenizer()
	special := func(id int, content string) obj {
		return obj{{"id", id}, {"content", content}, {"single_word", false}, {"lstrip", false},
			{"rstrip", false}, {"normalized", false}, {"special", true}}
	}
	vocab := make(obj, len(v.tokens))
	for id, t := range v.tokens {
		vocab[id] = kv{t, id}
	}
	merges := make([]string, len(v.merges))
	for i, m := range v.merges {
		merges[i] = m[0] + " " + m[1]
	}
	seq := func(id string, typ int) obj { return obj{{"Sequence", obj{{"id", id}, {"type_id", typ}}}} }
	bos := func(typ int) obj { return obj{{"SpecialToken", obj{{"id", "<s>"}, {"type_id", typ}}}} }
	doc := obj{
		{"version", "1.0"},
		{"truncation", nil},
		{"padding", nil},
		{"added_tokens", []obj{special(UnkID, "<unk>"), special(BOSID, "<s>"), special(EOSID, "</s>")}},
		{"normalizer", obj{{"type", "Sequence"}, {"normalizers", []obj{
			{{"type", "Prepend"}, {"prepend", spaceMark}},
			{{"type", "Replace"}, {"pattern", obj{{"String", " "}}}, {"content", spaceMark}},
		}}}},
		{"pre_tokenizer", nil},
		{"post_processor", obj{
			{"type", "TemplateProcessing"},
			{"single", []obj{bos(0), seq("A", 0)}},
			{"pair", []obj{bos(0), seq("A", 0), bos(1), seq("B", 1)}},
			{"special_tokens", obj{{"<s>", obj{{"id", "<s>"}, {"ids", []int{BOSID}}, {"tokens", []string{"<s>"}}}}}},
		}},
		{"decoder", obj{{"type", "Sequence"}, {"decoders", []obj{
			{{"type", "Replace"}, {"pattern", obj{{"String", spaceMark}}}, {"content", " "}},
			{{"type", "ByteFallback"}},
			{{"type", "Fuse"}},
			{{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}},
		}}}},
		{"model", obj{
			{"type", "BPE"},
			{"dropout", nil},
			{"unk_token", "<unk>"},
			{"continuing_subword_prefix", nil},
			{"end_of_word_suffix", nil},
			{"fuse_unk", true},
			{"byte_fallback", true},
			{"ignore_merges", false},
			{"vocab", vocab},
			{"merges", merges},
		}},
	}
	return marshalIndent(doc)
}

// tokenizerConfigJSON is the tokenizer_config.json that goes with TokenizerJSON.
func tokenizerConfigJSON(maxPos int) ([]byte, error) {
	return marshalIndent(obj{
		{"tokenizer_class", "PreTrainedTokenizerFast"},
		{"bos_token", "<s>"},
		{"eos_token", "</s>"},
		{"unk_token", "<unk>"},
		{"add_bos_token", true},
		{"add_eos_token", false},
		{"legacy", false},
		{"model_max_length", maxPos},
		{"clean_up_tokenization_spaces", false},
	})
}
