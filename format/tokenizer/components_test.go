package tokenizer

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

func TestLossyUTF8MatchesPython(t *testing.T) {
	// Expected values: python3 -c "print(ascii(b'...'.decode('utf-8','replace')))"
	// (CPython and Rust's from_utf8_lossy both replace each maximal subpart).
	cases := []struct{ in, want string }{
		{"\xe2\x82", "\ufffd"},
		{"\xe2\x82a", "\ufffda"},
		{"\xff\xfe", "\ufffd\ufffd"},
		{"\xf0\x9f\x98", "\ufffd"},
		{"\xed\xa0\x80", "\ufffd\ufffd\ufffd"},
		{"\xc0\x80", "\ufffd\ufffd"},
		{"a\xf4\x90\x80\x80b", "a\ufffd\ufffd\ufffd\ufffdb"},
		{"\xe0\x80\x80", "\ufffd\ufffd\ufffd"},
		{"\xf0\x9f\x98\x80\x80", "\U0001f600\ufffd"},
		{"ok\xe2\x96\x81", "ok\u2581"},
	}
	for _, c := range cases {
		if got := lossyUTF8([]byte(c.in)); got != c.want {
			t.Errorf("lossy(%q) = %+q, want %+q", c.in, got, c.want)
		}
	}
}

func TestByteLevelAlphabet(t *testing.T) {
	seen := map[rune]bool{}
	for b := 0; b < 256; b++ {
		if got, want := byteToString[b], byteToStringRef(byte(b)); got != want {
			t.Fatalf("byte %#x maps to %q, want %q", b, got, want)
		}
		r := byteToRune[b]
		if seen[r] || runeToByte[r] != byte(b) {
			t.Fatalf("byte %#x: map not a bijection", b)
		}
		seen[r] = true
	}
	// Spot checks from GPT-2's vocabulary: space is Ġ, newline Ċ, tab ĉ.
	if byteToString[' '] != "Ġ" || byteToString['\n'] != "Ċ" || byteToString['\t'] != "ĉ" {
		t.Fatal("GPT-2 spellings of space/newline/tab wrong")
	}
}

func TestDecoders(t *testing.T) {
	bf := byteFallbackDecoder{}
	if got := bf.decodeChain([]string{"<0xE2>", "<0x96>", "<0x81>", "a", "<0x0a>", "<0x+A>"}); !slices.Equal(got, []string{"▁", "a", "\n\n"}) {
		t.Errorf("ByteFallback valid run: %q", got)
	}
	if got := bf.decodeChain([]string{"<0xE2>", "<0x96>", "b"}); !slices.Equal(got, []string{"\ufffd", "\ufffd", "b"}) {
		t.Errorf("ByteFallback invalid run: %q", got)
	}
	if got := bf.decodeChain([]string{"<0xZZ>", "<0x1>"}); !slices.Equal(got, []string{"<0xZZ>", "<0x1>"}) {
		t.Errorf("ByteFallback non-byte tokens: %q", got)
	}
	st := stripDecoder{' ', 1, 2}
	if got := st.decodeChain([]string{"  a  ", " ", "b   "}); !slices.Equal(got, []string{" a", "", "b "}) {
		t.Errorf("Strip: %q", got)
	}
	ms := metaspaceDecoder{'▁', prependAlways}
	if got := ms.decodeChain([]string{"▁▁Hey", "▁there", "x▁"}); !slices.Equal(got, []string{"Hey", " there", "x "}) {
		t.Errorf("Metaspace: %q", got)
	}
	ms.scheme = prependNever
	if got := ms.decodeChain([]string{"▁Hey"}); !slices.Equal(got, []string{" Hey"}) {
		t.Errorf("Metaspace never: %q", got)
	}
	bl := byteLevelDecoder{}
	if got := bl.decodeChain([]string{"Hello", "Ġw", "orld", "Ċ", "<|endoftext|>", "ðŁ", "\u4e2d"}); !slices.Equal(got, []string{"Hello world\n<|endoftext|>\ufffd\u4e2d"}) {
		t.Errorf("ByteLevel: %q", got)
	}
}

// tinyJSON assembles a tokenizer.json from parts for behaviour tests.
func tinyJSON(t *testing.T, parts map[string]any) *Tokenizer {
	t.Helper()
	doc := map[string]any{"version": "1.0", "added_tokens": []any{}}
	for k, v := range parts {
		doc[k] = v
	}
	data, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func charVocab(extra ...string) map[string]int {
	v := map[string]int{}
	for _, s := range append(strings.Split("<unk> a b c x y ▁ <mask> ab", " "), extra...) {
		if _, ok := v[s]; !ok {
			v[s] = len(v)
		}
	}
	return v
}

func TestUnkFusion(t *testing.T) {
	for _, fuse := range []bool{true, false} {
		tok := tinyJSON(t, map[string]any{"model": map[string]any{
			"type": "BPE", "vocab": charVocab(), "merges": []string{"a b"}, "unk_token": "<unk>", "fuse_unk": fuse,
		}})
		// "zzab qz": z,z unknown; ' ' and q unknown too (no normalizer).
		got := tok.Encode("zzabqz", false)
		want := []int32{0, 8, 0} // fused: <unk> ab <unk>
		if !fuse {
			want = []int32{0, 0, 8, 0, 0}
		}
		if !slices.Equal(got, want) {
			t.Errorf("fuse_unk=%v: %v, want %v", fuse, got, want)
		}
	}
	// Without unk_token unknown chars vanish.
	tok := tinyJSON(t, map[string]any{"model": map[string]any{"type": "BPE", "vocab": charVocab(), "merges": []string{}}})
	if got := tok.Encode("zaz", false); !slices.Equal(got, []int32{1}) {
		t.Errorf("no unk: %v", got)
	}
}

func TestByteFallbackKeepsPendingUnk(t *testing.T) {
	// 'é' (C3 A9) has byte tokens, 'z' has none and 'q' has none: HF emits
	// the pending unk only when the next known char arrives, i.e. after the
	// byte tokens of 'é'.
	v := charVocab("<0xC3>", "<0xA9>")
	tok := tinyJSON(t, map[string]any{"model": map[string]any{
		"type": "BPE", "vocab": v, "merges": []string{}, "unk_token": "<unk>", "fuse_unk": true, "byte_fallback": true,
	}})
	got := tok.Encode("zéa", false)
	want := []int32{int32(v["<0xC3>"]), int32(v["<0xA9>"]), 0, 1}
	if !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestAddedTokenOptions(t *testing.T) {
	v := charVocab()
	model := map[string]any{"type": "BPE", "vocab": v, "merges": []string{"a b"}, "unk_token": "<unk>"}
	mk := func(tokOpts map[string]any) *Tokenizer {
		at := map[string]any{"id": v["<mask>"], "content": "<mask>", "special": true, "normalized": false}
		for k, x := range tokOpts {
			at[k] = x
		}
		return tinyJSON(t, map[string]any{"added_tokens": []any{at}, "model": model,
			"pre_tokenizer": map[string]any{"type": "WhitespaceSplit"}})
	}
	mask := int32(v["<mask>"])
	// lstrip+rstrip swallow the spaces around the token; WhitespaceSplit
	// would drop them anyway, so use a visible effect: "a <mask>b" with
	// lstrip only.
	tok := mk(map[string]any{"lstrip": true, "rstrip": true})
	if got := tok.Encode("ab <mask> c", false); !slices.Equal(got, []int32{8, mask, 3}) {
		t.Errorf("lstrip/rstrip: %v", got)
	}
	// single_word: not matched inside a word.
	tok = mk(map[string]any{"single_word": true})
	if got := tok.Encode("x<mask>", false); slices.Contains(got, mask) {
		t.Errorf("single_word matched inside a word: %v", got)
	}
	if got := tok.Encode("x <mask> y", false); !slices.Equal(got, []int32{4, mask, 5}) {
		t.Errorf("single_word standalone: %v", got)
	}
	// Decode: skipSpecial drops it; no decoder joins tokens with spaces.
	if got := tok.Decode([]int32{8, mask, 3}, true); got != "ab c" {
		t.Errorf("Decode skip special = %q", got)
	}
	if got := tok.Decode([]int32{8, mask, 3, 999}, false); got != "ab <mask> c" {
		t.Errorf("Decode = %q", got)
	}
}

func TestMetaspacePrependFirst(t *testing.T) {
	v := charVocab("<s>", "▁a", "▁b")
	tok := tinyJSON(t, map[string]any{
		"added_tokens":  []any{map[string]any{"id": v["<s>"], "content": "<s>", "special": true, "normalized": false}},
		"pre_tokenizer": map[string]any{"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": true},
		"decoder":       map[string]any{"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": true},
		"model":         map[string]any{"type": "BPE", "vocab": v, "merges": []string{"▁ a", "▁ b"}, "unk_token": "<unk>"},
	})
	s, a, b, sp, sa, sb := int32(v["<s>"]), int32(v["a"]), int32(v["b"]), int32(v["▁"]), int32(v["▁a"]), int32(v["▁b"])
	cases := []struct {
		in   string
		want []int32
	}{
		{"a b", []int32{sa, sb}},
		{" a", []int32{sa}},           // starts with ▁ already: no extra prepend
		{"a  b", []int32{sa, sp, sb}}, // "▁a▁▁b" split before each ▁
		{"<s>a b", []int32{s, a, sb}}, // not at offset 0: no prepend
		{"ab", []int32{sa, b}},
	}
	for _, c := range cases {
		if got := tok.Encode(c.in, false); !slices.Equal(got, c.want) {
			t.Errorf("Encode(%q) = %v, want %v", c.in, got, c.want)
		}
	}
	if got := tok.Decode([]int32{sa, sp, sb}, false); got != "a  b" {
		t.Errorf("Decode = %q", got)
	}
}

func TestTemplateBOSEOS(t *testing.T) {
	v := charVocab("<s>", "</s>")
	tmpl := map[string]any{
		"type": "TemplateProcessing",
		"single": []any{
			map[string]any{"SpecialToken": map[string]any{"id": "<s>", "type_id": 0}},
			map[string]any{"Sequence": map[string]any{"id": "A", "type_id": 0}},
			map[string]any{"SpecialToken": map[string]any{"id": "</s>", "type_id": 0}},
		},
		"special_tokens": map[string]any{
			"<s>":  map[string]any{"id": "<s>", "ids": []int{v["<s>"]}, "tokens": []string{"<s>"}},
			"</s>": map[string]any{"id": "</s>", "ids": []int{v["</s>"]}, "tokens": []string{"</s>"}},
		},
	}
	tok := tinyJSON(t, map[string]any{"post_processor": tmpl,
		"model": map[string]any{"type": "BPE", "vocab": v, "merges": []string{}}})
	if got := tok.Encode("ab", true); !slices.Equal(got, []int32{int32(v["<s>"]), 1, 2, int32(v["</s>"])}) {
		t.Errorf("Encode with special = %v", got)
	}
	if id, ok := tok.BOS(); !ok || id != int32(v["<s>"]) {
		t.Errorf("BOS = %d %v", id, ok)
	}
	if id, ok := tok.EOS(); !ok || id != int32(v["</s>"]) {
		t.Errorf("EOS = %d %v", id, ok)
	}
	if tok.VocabSize() != len(v) {
		t.Errorf("VocabSize = %d, want %d", tok.VocabSize(), len(v))
	}
}

func TestSharedBOSEOS(t *testing.T) {
	llama, err := Load(sharedFile(t, "models/tiny-llama-a/tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	if id, ok := llama.BOS(); !ok || id != 1 {
		t.Errorf("tiny-llama-a BOS = %d %v, want 1", id, ok)
	}
	if id, ok := llama.EOS(); !ok || id != 2 {
		t.Errorf("tiny-llama-a EOS = %d %v, want 2", id, ok)
	}
	if llama.VocabSize() != 4096 {
		t.Errorf("tiny-llama-a VocabSize = %d", llama.VocabSize())
	}
	gpt2, err := Load(sharedFile(t, "reference/tokenizers/gpt2/tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := gpt2.BOS(); ok {
		t.Error("gpt2 has no BOS in its post-processor")
	}
	if id, ok := gpt2.EOS(); !ok || id != 50256 {
		t.Errorf("gpt2 EOS = %d %v, want 50256", id, ok)
	}
	if gpt2.VocabSize() != 50257 {
		t.Errorf("gpt2 VocabSize = %d", gpt2.VocabSize())
	}
}

// naiveBPE is the textbook definition: repeatedly merge the adjacent pair
// of lowest rank (leftmost on ties) until none is mergeable.
func naiveBPE(ids []int32, rank map[[2]int32]int, merged map[[2]int32]int32) []int32 {
	ids = slices.Clone(ids)
	for {
		best, at := -1, -1
		for i := 0; i+1 < len(ids); i++ {
			if r, ok := rank[[2]int32{ids[i], ids[i+1]}]; ok && (best < 0 || r < best) {
				best, at = r, i
			}
		}
		if at < 0 {
			return ids
		}
		nid := merged[[2]int32{ids[at], ids[at+1]}]
		ids = append(ids[:at], append([]int32{nid}, ids[at+2:]...)...)
	}
}

// TestHeapBPEMatchesNaive compares the heap-driven merge with the textbook
// algorithm on random words over the synthetic vocabulary.
func TestHeapBPEMatchesNaive(t *testing.T) {
	data := syntheticSPM()
	tok := mustParse(t, data)
	var doc struct {
		Model struct {
			Vocab  map[string]int32 `json:"vocab"`
			Merges []string         `json:"merges"`
		} `json:"model"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	rank := map[[2]int32]int{}
	merged := map[[2]int32]int32{}
	for i, m := range doc.Model.Merges {
		a, b, _ := strings.Cut(m, " ")
		p := [2]int32{doc.Model.Vocab[a], doc.Model.Vocab[b]}
		rank[p] = i
		merged[p] = doc.Model.Vocab[a+b]
	}
	letters := []rune("etaoinshrdlucmfwypvbgkqjxz▁▁▁,.0é")
	rng := rand.New(rand.NewPCG(1, 2))
	sc := &scratch{}
	for n := 0; n < 3000; n++ {
		var sb strings.Builder
		for k := 1 + rng.IntN(20); k > 0; k-- {
			sb.WriteRune(letters[rng.IntN(len(letters))])
		}
		w := sb.String()
		var init []int32
		for _, r := range w {
			if id, ok := doc.Model.Vocab[string(r)]; ok {
				init = append(init, id)
				continue
			}
			for _, c := range []byte(string(r)) {
				init = append(init, doc.Model.Vocab[fmt.Sprintf("<0x%02X>", c)])
			}
		}
		want := naiveBPE(init, rank, merged)
		got := tok.model.mergeWord(w, false, nil, sc)
		if !slices.Equal(got, want) {
			t.Fatalf("word %q: heap %v, naive %v", w, got, want)
		}
		// And through the chunking + cache path.
		if got := tok.model.encodeWord(w, false, nil, sc); !slices.Equal(got, want) {
			t.Fatalf("word %q: encodeWord %v, naive %v", w, got, want)
		}
	}
}

func TestIgnoreMergesAndLlama3Pipeline(t *testing.T) {
	v := map[string]int{}
	for b := 0; b < 256; b++ {
		v[byteToStringRef(byte(b))] = b
	}
	v["ab"] = 256
	v["abc"] = 257
	v["Ġab"] = 258
	pre := map[string]any{"type": "Sequence", "pretokenizers": []any{
		map[string]any{"type": "Split", "pattern": map[string]any{"Regex": patLlama3}, "behavior": "Isolated", "invert": false},
		map[string]any{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false},
	}}
	for _, ignore := range []bool{false, true} {
		tok := tinyJSON(t, map[string]any{
			"pre_tokenizer": pre,
			"decoder":       map[string]any{"type": "ByteLevel"},
			"model": map[string]any{"type": "BPE", "vocab": v, "merges": [][2]string{{"a", "b"}, {"Ġ", "ab"}},
				"ignore_merges": ignore},
		})
		// Llama-3 split of "abc abc123": "abc", " abc", "123".
		got := tok.Encode("abc abc123", false)
		want := []int32{256, 'c', 258, 'c', '1', '2', '3'}
		if ignore {
			want = []int32{257, 258, 'c', '1', '2', '3'} // only whole words in vocab bypass merges
		}
		if !slices.Equal(got, want) {
			t.Errorf("ignore_merges=%v: %v, want %v", ignore, got, want)
		}
		if d := tok.Decode(got, false); d != "abc abc123" {
			t.Errorf("decode %q", d)
		}
	}
}

// TestConcurrentEncode: concurrent Encode calls (shared cache and scratch
// pool) give the same ids as serial calls.
func TestConcurrentEncode(t *testing.T) {
	tok := mustParse(t, syntheticSPM())
	text := generatedEnglish(20000)
	lines := strings.Split(text, ". ")
	want := make([][]int32, len(lines))
	for i, l := range lines {
		want[i] = tok.Encode(l, true)
	}
	tok = mustParse(t, syntheticSPM()) // fresh cache
	errs := make(chan error, 4)
	for g := 0; g < 4; g++ {
		go func(g int) {
			for k := range lines {
				i := (k*7 + g*13) % len(lines)
				if got := tok.Encode(lines[i], true); !slices.Equal(got, want[i]) {
					errs <- fmt.Errorf("line %d: %v vs %v", i, got, want[i])
					return
				}
			}
			errs <- nil
		}(g)
	}
	for g := 0; g < 4; g++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

// TestSplitBehaviors follows NormalizedString::split for each delimiter
// behaviour on "a-b--c-" with the literal pattern "-".
func TestSplitBehaviors(t *testing.T) {
	cases := []struct {
		beh    behavior
		invert bool
		want   []string
	}{
		{behRemoved, false, []string{"a", "b", "c"}},
		{behIsolated, false, []string{"a", "-", "b", "-", "-", "c", "-"}},
		{behMergedWithPrevious, false, []string{"a-", "b-", "-", "c-"}},
		{behMergedWithNext, false, []string{"a", "-b", "-", "-c", "-"}},
		{behContiguous, false, []string{"a", "-", "b", "--", "c", "-"}},
		{behRemoved, true, []string{"-", "-", "-", "-"}},
	}
	sc := &scratch{}
	for _, c := range cases {
		var got []string
		for _, p := range splitPiece(piece{"a-b--c-", true}, literalPattern{"-"}, c.beh, c.invert, nil, sc) {
			got = append(got, p.s)
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("behavior %d invert %v: %q, want %q", c.beh, c.invert, got, c.want)
		}
	}
	// Digits (individual) and an empty piece.
	var got []string
	for _, p := range splitPiece(piece{"ab12c", false}, charPattern(func(r rune) bool { return r >= '0' && r <= '9' }), behIsolated, false, nil, sc) {
		got = append(got, p.s)
	}
	if !slices.Equal(got, []string{"ab", "1", "2", "c"}) {
		t.Errorf("digits: %q", got)
	}
	if out := splitPiece(piece{"", true}, literalPattern{"-"}, behIsolated, false, nil, sc); len(out) != 0 {
		t.Errorf("empty piece gave %v", out)
	}
}
