package tokenizer

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
)

// Synthetic tokenizers for tests and benchmarks that must run without
// ../shared. They are trained here with a naive BPE trainer on generated
// text; they check plumbing and properties (round trips, no panics), never
// HF-exactness, which only the reference files in ../shared can show.

var benchWords = strings.Fields(`the of and to in a is was for on that with as by at from his her it
an were which are this be had has their not but also first one after its new other time
year two government city war world school team season film album song game music work
people history state national league university company number station river village
during between however although several because later early known including called
united british american french german new york london paris century modern ancient`)

// generatedEnglish returns about n bytes of deterministic English-like text
// with punctuation, numbers and newlines.
func generatedEnglish(n int) string {
	var sb strings.Builder
	x := uint32(12345)
	next := func() uint32 {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		return x
	}
	for sb.Len() < n {
		words := 6 + int(next()%14)
		for i := 0; i < words; i++ {
			w := benchWords[next()%uint32(len(benchWords))]
			if i == 0 {
				w = strings.ToUpper(w[:1]) + w[1:]
			}
			if i > 0 {
				sb.WriteByte(' ')
			}
			sb.WriteString(w)
			switch next() % 23 {
			case 0:
				sb.WriteString(",")
			case 1:
				fmt.Fprintf(&sb, " %d", next()%3000)
			}
		}
		sb.WriteString(". ")
		if next()%7 == 0 {
			sb.WriteString("\n\n")
		}
	}
	return sb.String()
}

// trainMerges learns up to k merges over words given as symbol sequences.
func trainMerges(words [][]string, k int) [][2]string {
	var merges [][2]string
	for len(merges) < k {
		counts := map[[2]string]int{}
		for _, w := range words {
			for i := 0; i+1 < len(w); i++ {
				counts[[2]string{w[i], w[i+1]}]++
			}
		}
		var best [2]string
		bestN := 1
		for p, c := range counts {
			if c > bestN || (c == bestN && bestN > 1 && (p[0]+"\x00"+p[1]) < (best[0]+"\x00"+best[1])) {
				best, bestN = p, c
			}
		}
		if bestN < 2 {
			break
		}
		merges = append(merges, best)
		for wi, w := range words {
			var nw []string
			for i := 0; i < len(w); i++ {
				if i+1 < len(w) && w[i] == best[0] && w[i+1] == best[1] {
					nw = append(nw, best[0]+best[1])
					i++
				} else {
					nw = append(nw, w[i])
				}
			}
			words[wi] = nw
		}
	}
	return merges
}

func chars(s string) []string {
	var out []string
	for _, r := range s {
		out = append(out, string(r))
	}
	return out
}

func buildVocab(base []string, merges [][2]string) map[string]int {
	vocab := map[string]int{}
	for _, s := range base {
		if _, ok := vocab[s]; !ok {
			vocab[s] = len(vocab)
		}
	}
	for _, m := range merges {
		if _, ok := vocab[m[0]+m[1]]; !ok {
			vocab[m[0]+m[1]] = len(vocab)
		}
	}
	return vocab
}

func trainingWords(text string) []string {
	return strings.Fields(text)
}

var (
	spmOnce, blOnce sync.Once
	spmJSON, blJSON []byte
)

// syntheticSPM is a Llama-2-style tokenizer.json (Prepend/Replace
// normalizer, byte fallback, TemplateProcessing with <s>), built once.
func syntheticSPM() []byte {
	spmOnce.Do(func() { spmJSON = buildSyntheticSPM() })
	return spmJSON
}

// syntheticByteLevel is a GPT-2-style tokenizer.json (ByteLevel everywhere,
// pair-form merges, <|endoftext|> added token), built once.
func syntheticByteLevel() []byte {
	blOnce.Do(func() { blJSON = buildSyntheticByteLevel() })
	return blJSON
}

func buildSyntheticSPM() []byte {
	text := generatedEnglish(16000)
	base := []string{"<unk>", "<s>", "</s>"}
	for b := 0; b < 256; b++ {
		base = append(base, fmt.Sprintf("<0x%02X>", b))
	}
	base = append(base, "▁")
	seen := map[rune]bool{}
	for _, r := range text {
		if r != ' ' && r != '\n' && !seen[r] {
			seen[r] = true
		}
	}
	var rs []string
	for r := range seen {
		rs = append(rs, string(r))
	}
	sort.Strings(rs)
	base = append(base, rs...)
	var words [][]string
	for _, w := range trainingWords(text) {
		words = append(words, chars("▁"+w))
	}
	merges := trainMerges(words, 250)
	vocab := buildVocab(base, merges)
	var ms []string
	for _, m := range merges {
		ms = append(ms, m[0]+" "+m[1])
	}
	doc := map[string]any{
		"version": "1.0",
		"added_tokens": []any{
			map[string]any{"id": 0, "content": "<unk>", "special": true, "normalized": false},
			map[string]any{"id": 1, "content": "<s>", "special": true, "normalized": false},
			map[string]any{"id": 2, "content": "</s>", "special": true, "normalized": false},
		},
		"normalizer": map[string]any{"type": "Sequence", "normalizers": []any{
			map[string]any{"type": "Prepend", "prepend": "▁"},
			map[string]any{"type": "Replace", "pattern": map[string]any{"String": " "}, "content": "▁"},
		}},
		"pre_tokenizer": nil,
		"post_processor": map[string]any{
			"type":           "TemplateProcessing",
			"single":         []any{map[string]any{"SpecialToken": map[string]any{"id": "<s>", "type_id": 0}}, map[string]any{"Sequence": map[string]any{"id": "A", "type_id": 0}}},
			"special_tokens": map[string]any{"<s>": map[string]any{"id": "<s>", "ids": []int{1}, "tokens": []string{"<s>"}}},
		},
		"decoder": map[string]any{"type": "Sequence", "decoders": []any{
			map[string]any{"type": "Replace", "pattern": map[string]any{"String": "▁"}, "content": " "},
			map[string]any{"type": "ByteFallback"},
			map[string]any{"type": "Fuse"},
			map[string]any{"type": "Strip", "content": " ", "start": 1, "stop": 0},
		}},
		"model": map[string]any{
			"type": "BPE", "unk_token": "<unk>", "fuse_unk": true, "byte_fallback": true,
			"vocab": vocab, "merges": ms,
		},
	}
	data, err := json.Marshal(doc)
	if err != nil {
		panic(err)
	}
	return data
}

func buildSyntheticByteLevel() []byte {
	text := generatedEnglish(16000)
	var base []string
	for b := 0; b < 256; b++ {
		base = append(base, byteToStringRef(byte(b)))
	}
	var words [][]string
	for i, w := range trainingWords(text) {
		if i > 0 {
			w = " " + w
		}
		var syms []string
		for j := 0; j < len(w); j++ {
			syms = append(syms, byteToStringRef(w[j]))
		}
		words = append(words, syms)
	}
	merges := trainMerges(words, 250)
	vocab := buildVocab(base, merges)
	vocab["<|endoftext|>"] = len(vocab)
	doc := map[string]any{
		"version": "1.0",
		"added_tokens": []any{
			map[string]any{"id": vocab["<|endoftext|>"], "content": "<|endoftext|>", "special": true, "normalized": true},
		},
		"normalizer":     nil,
		"pre_tokenizer":  map[string]any{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
		"post_processor": map[string]any{"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true},
		"decoder":        map[string]any{"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
		"model": map[string]any{
			"type": "BPE", "unk_token": nil, "fuse_unk": false, "byte_fallback": false,
			"continuing_subword_prefix": "", "end_of_word_suffix": "",
			"vocab": vocab, "merges": merges,
		},
	}
	data, err := json.Marshal(doc)
	if err != nil {
		panic(err)
	}
	return data
}

// byteToStringRef is GPT-2's bytes_to_unicode written out independently of
// the package's table (printable Latin-1 kept, the rest shifted to U+0100+).
func byteToStringRef(b byte) string {
	n := 0
	for c := 0; c < int(b); c++ {
		if !(c >= '!' && c <= '~') && !(c >= 0xA1 && c <= 0xAC) && !(c >= 0xAE && c <= 0xFF) {
			n++
		}
	}
	if (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE {
		return string(rune(b))
	}
	return string(rune(256 + n))
}

func mustParse(tb testing.TB, data []byte) *Tokenizer {
	tb.Helper()
	t, err := Parse(data)
	if err != nil {
		tb.Fatal(err)
	}
	return t
}
