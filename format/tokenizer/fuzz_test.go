package tokenizer

import (
	"strings"
	"sync"
	"testing"
	"unicode/utf8"
)

// FuzzTokenizerJSON: Parse must never panic, and a tokenizer it accepts must
// encode and decode without panicking.
func FuzzTokenizerJSON(f *testing.F) {
	f.Add([]byte(minimalFile("null", "null", "null", "null", minimalModel)))
	f.Add([]byte(`{"model":{"type":"BPE","vocab":{"a":0},"merges":[["a","a"]]}}`))
	f.Add([]byte(`{"added_tokens":[{"id":0,"content":"a","lstrip":true,"rstrip":true,"single_word":true}],"model":{"vocab":{"a":0},"merges":[]}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		tok, err := Parse(data)
		if err != nil {
			if tok != nil {
				t.Fatal("non-nil tokenizer with an error")
			}
			return
		}
		for _, s := range []string{"", " ", "a b", "<s>x</s> \n\t", "é\u2581\xff", string(data[:min(len(data), 64)])} {
			ids := tok.Encode(s, true)
			tok.Decode(ids, false)
			tok.Decode(ids, true)
		}
		tok.Decode([]int32{-1, 0, 1, 1 << 30}, false)
		tok.BOS()
		tok.EOS()
		tok.VocabSize()
	})
}

var fuzzToks struct {
	once       sync.Once
	spm, bytes *Tokenizer
	spmSpecial []string
}

// fuzzTokenizers returns the tiny-llama-a and GPT-2 tokenizers from
// ../shared when present, else the synthetic ones of the same families.
func fuzzTokenizers(t *testing.T) (*Tokenizer, *Tokenizer) {
	fuzzToks.once.Do(func() {
		if p, ok := sharedPath("models/tiny-llama-a/tokenizer.json"); ok {
			fuzzToks.spm, _ = Load(p)
		}
		if fuzzToks.spm == nil {
			fuzzToks.spm, _ = Parse(syntheticSPM())
		}
		if p, ok := sharedPath("reference/tokenizers/gpt2/tokenizer.json"); ok {
			fuzzToks.bytes, _ = Load(p)
		}
		if fuzzToks.bytes == nil {
			fuzzToks.bytes, _ = Parse(syntheticByteLevel())
		}
	})
	if fuzzToks.spm == nil || fuzzToks.bytes == nil {
		t.Fatal("could not build the fuzz tokenizers")
	}
	return fuzzToks.spm, fuzzToks.bytes
}

// FuzzEncodeDecode: for the SentencePiece-style tokenizer, Decode(Encode(s))
// == s whenever HF round-trips too (valid UTF-8 without "▁" and without the
// text of an added token, which HF splits out and decodes differently); for
// the byte-level tokenizer every valid UTF-8 string round-trips exactly.
// Nothing may panic on any input.
func FuzzEncodeDecode(f *testing.F) {
	for _, s := range []string{"", " ", "Hello world", " = Robert Boulter = \n", "naïve café 日本語 🙂",
		"\t\r\n  x  ", "<s>a</s>", "Don't I'LL", "\xff\xfe", "a\u2581b", "1234567 89", "\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		spm, bl := fuzzTokenizers(t)
		ids := spm.Encode(s, false)
		withBOS := spm.Encode(s, true)
		if bos, ok := spm.BOS(); ok && (len(withBOS) != len(ids)+1 || withBOS[0] != bos) {
			t.Fatalf("%q: with special %v vs without %v", s, withBOS, ids)
		}
		dec := spm.Decode(ids, false)
		if utf8.ValidString(s) && !strings.Contains(s, "\u2581") && !containsAdded(spm, s) && dec != s {
			t.Fatalf("spm round trip %q -> %v -> %q", s, ids, dec)
		}
		for _, id := range ids {
			if id < 0 || int(id) >= spm.VocabSize() {
				t.Fatalf("%q: id %d out of range", s, id)
			}
		}
		ids = bl.Encode(s, false)
		dec = bl.Decode(ids, false)
		if utf8.ValidString(s) && dec != s {
			t.Fatalf("byte-level round trip %q -> %v -> %q", s, ids, dec)
		}
	})
}

func containsAdded(t *Tokenizer, s string) bool {
	for _, a := range t.added {
		if a.content != "" && strings.Contains(s, a.content) {
			return true
		}
	}
	return false
}
