package tokenizer

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A minimal valid BPE tokenizer.json body used to build malformed variants.
const minimalModel = `{"type":"BPE","vocab":{"a":0,"b":1,"ab":2,"<unk>":3},"merges":["a b"],"unk_token":"<unk>"}`

func minimalFile(normalizer, pre, post, decoder, model string) string {
	return `{"version":"1.0","added_tokens":[],"normalizer":` + normalizer + `,"pre_tokenizer":` + pre +
		`,"post_processor":` + post + `,"decoder":` + decoder + `,"model":` + model + `}`
}

func TestMinimalFileParses(t *testing.T) {
	tok, err := Parse([]byte(minimalFile("null", "null", "null", "null", minimalModel)))
	if err != nil {
		t.Fatal(err)
	}
	// "abab" -> a b a b -> (a,b) merges at rank 0 -> ab ab.
	if got := tok.Encode("abab", false); len(got) != 2 || got[0] != 2 || got[1] != 2 {
		t.Fatalf("Encode(abab) = %v, want [2 2]", got)
	}
	// 'c' is unknown: unk (no byte fallback).
	if got := tok.Encode("acb", false); len(got) != 3 || got[1] != 3 {
		t.Fatalf("Encode(acb) = %v, want [0 3 1]", got)
	}
}

func TestMalformedFiles(t *testing.T) {
	cases := []struct {
		name     string
		body     string
		sentinel error
		mention  string
	}{
		{"bad json", `{"model": {`, ErrMalformed, "invalid JSON"},
		{"not an object", `[1,2,3]`, ErrMalformed, "invalid JSON"},
		{"null", `null`, ErrMalformed, "null"},
		{"no model", `{"version":"1.0"}`, ErrMalformed, "model"},
		{"wordpiece", minimalFile("null", "null", "null", "null", `{"type":"WordPiece","vocab":{"a":0}}`), ErrUnsupported, `"WordPiece"`},
		{"unigram", minimalFile("null", "null", "null", "null", `{"type":"Unigram","vocab":[["a",0.0]]}`), ErrUnsupported, `"Unigram"`},
		{"merge unknown left", minimalFile("null", "null", "null", "null", `{"type":"BPE","vocab":{"a":0,"b":1},"merges":["x b"]}`), ErrUnknownToken, `"x"`},
		{"merge unknown right", minimalFile("null", "null", "null", "null", `{"type":"BPE","vocab":{"a":0,"b":1},"merges":[["a","y"]]}`), ErrUnknownToken, `"y"`},
		{"merge result unknown", minimalFile("null", "null", "null", "null", `{"type":"BPE","vocab":{"a":0,"b":1},"merges":["a b"]}`), ErrUnknownToken, `"ab"`},
		{"merge without space", minimalFile("null", "null", "null", "null", `{"type":"BPE","vocab":{"a":0},"merges":["ab"]}`), ErrMalformed, "merges[0]"},
		{"merge triple", minimalFile("null", "null", "null", "null", `{"type":"BPE","vocab":{"a":0},"merges":[["a","a","a"]]}`), ErrMalformed, "merges[0]"},
		{"unk not in vocab", minimalFile("null", "null", "null", "null", `{"type":"BPE","vocab":{"a":0},"merges":[],"unk_token":"<unk>"}`), ErrUnknownToken, "unk_token"},
		{"negative id", minimalFile("null", "null", "null", "null", `{"type":"BPE","vocab":{"a":-1},"merges":[]}`), ErrMalformed, "out of range"},
		{"huge id", minimalFile("null", "null", "null", "null", `{"type":"BPE","vocab":{"a":2000000000},"merges":[]}`), ErrMalformed, "far beyond"},
		{"dropout", minimalFile("null", "null", "null", "null", `{"type":"BPE","vocab":{"a":0},"merges":[],"dropout":0.1}`), ErrUnsupported, "dropout"},
		{"unknown normalizer", minimalFile(`{"type":"BertNormalizer"}`, "null", "null", "null", minimalModel), ErrUnsupported, `"BertNormalizer"`},
		{"nested unknown normalizer", minimalFile(`{"type":"Sequence","normalizers":[{"type":"NFC"},{"type":"Precompiled","precompiled_charsmap":""}]}`, "null", "null", "null", minimalModel), ErrUnsupported, "normalizers[1]"},
		{"regex replace", minimalFile(`{"type":"Replace","pattern":{"Regex":" {2,}"},"content":" "}`, "null", "null", "null", minimalModel), ErrUnsupported, "Replace"},
		{"unknown pre-tokenizer", minimalFile("null", `{"type":"BertPreTokenizer"}`, "null", "null", minimalModel), ErrUnsupported, `"BertPreTokenizer"`},
		{"unknown split regex", minimalFile("null", `{"type":"Split","pattern":{"Regex":"\\d+|\\w+"},"behavior":"Isolated","invert":false}`, "null", "null", minimalModel), ErrUnsupported, "known"},
		{"bad split behavior", minimalFile("null", `{"type":"Split","pattern":{"String":" "},"behavior":"Sideways","invert":false}`, "null", "null", minimalModel), ErrUnsupported, "Sideways"},
		{"pre-tokenizer after ByteLevel", minimalFile("null", `{"type":"Sequence","pretokenizers":[{"type":"ByteLevel"},{"type":"Digits"}]}`, "null", "null", minimalModel), ErrUnsupported, "after ByteLevel"},
		{"missing type", minimalFile("null", `{"add_prefix_space":true}`, "null", "null", minimalModel), ErrMalformed, "type"},
		{"unknown post-processor", minimalFile("null", "null", `{"type":"Magic"}`, "null", minimalModel), ErrUnsupported, `"Magic"`},
		{"template missing special", minimalFile("null", "null", `{"type":"TemplateProcessing","single":[{"SpecialToken":{"id":"<s>","type_id":0}},{"Sequence":{"id":"A","type_id":0}}],"special_tokens":{}}`, "null", minimalModel), ErrUnknownToken, "<s>"},
		{"unknown decoder", minimalFile("null", "null", "null", `{"type":"CTC"}`, minimalModel), ErrUnsupported, `"CTC"`},
		{"bad strip decoder", minimalFile("null", "null", "null", `{"type":"Strip","content":"ab","start":1,"stop":0}`, minimalModel), ErrMalformed, "Strip"},
		{"added token without id", `{"added_tokens":[{"content":"<s>"}],"model":` + minimalModel + `}`, ErrMalformed, "added_tokens[0]"},
		{"wrong field type", `{"added_tokens":"x","model":` + minimalModel + `}`, ErrMalformed, "invalid JSON"},
	}
	dir := t.TempDir()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "_")+".json")
			if err := os.WriteFile(path, []byte(c.body), 0o644); err != nil {
				t.Fatal(err)
			}
			tok, err := Load(path)
			if err == nil {
				t.Fatalf("Load accepted it: %v", tok)
			}
			if !errors.Is(err, c.sentinel) {
				t.Errorf("error %q does not wrap %v", err, c.sentinel)
			}
			msg := err.Error()
			if !strings.Contains(msg, path) {
				t.Errorf("error %q does not name the file", msg)
			}
			if !strings.Contains(msg, c.mention) {
				t.Errorf("error %q does not mention %q", msg, c.mention)
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.json"))
	if err == nil || !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "nope.json") {
		t.Fatalf("Load(missing) = %v", err)
	}
}
