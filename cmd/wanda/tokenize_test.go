package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/wanda-go/wanda/format/tokenizer"
	"github.com/wanda-go/wanda/internal/modelgen"
)

type tokRefCase struct {
	Text              string  `json:"text"`
	IDsWithSpecial    []int32 `json:"ids_with_special"`
	IDsWithoutSpecial []int32 `json:"ids_without_special"`
}

func tokLoadCases(t *testing.T, shared string) []tokRefCase {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(shared, "reference", "tokenizers", "tiny-llama-a", "expected.json"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Cases []tokRefCase `json:"cases"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Cases) == 0 {
		t.Fatal("no cases in expected.json")
	}
	return doc.Cases
}

func tokParseIDs(t *testing.T, out string) []int32 {
	t.Helper()
	if !strings.HasSuffix(out, "\n") || strings.Count(out, "\n") != 1 {
		t.Errorf("output %q is not one line", out)
	}
	var ids []int32
	if err := json.Unmarshal([]byte(out), &ids); err != nil {
		t.Fatalf("output %q is not a JSON array of ids: %v", out, err)
	}
	return ids
}

// The ids Hugging Face tokenizers produced (expected.json) for every case,
// with and without special tokens.
func TestTokenizeReferenceCases(t *testing.T) {
	shared := inspSharedDir(t)
	tokPath := filepath.Join(shared, "reference", "tokenizers", "tiny-llama-a", "tokenizer.json")
	for i, tc := range tokLoadCases(t, shared) {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			out, err := inspRun(t, "", "tokenize", "--tokenizer", tokPath, "--text", tc.Text)
			if err != nil {
				t.Fatal(err)
			}
			if got := tokParseIDs(t, out); !reflect.DeepEqual(got, tc.IDsWithSpecial) {
				t.Errorf("%q: got %v want %v", tc.Text, got, tc.IDsWithSpecial)
			}
			out, err = inspRun(t, "", "tokenize", "--no-special", "--tokenizer", tokPath, "--text", tc.Text)
			if err != nil {
				t.Fatal(err)
			}
			got := tokParseIDs(t, out)
			if len(got) == 0 && len(tc.IDsWithoutSpecial) == 0 {
				return
			}
			if !reflect.DeepEqual(got, tc.IDsWithoutSpecial) {
				t.Errorf("%q --no-special: got %v want %v", tc.Text, got, tc.IDsWithoutSpecial)
			}
		})
	}
}

// --model DIR reads DIR/tokenizer.json; without --text the text is stdin.
func TestTokenizeModelAndStdin(t *testing.T) {
	shared := inspSharedDir(t)
	model := filepath.Join(shared, "models", "tiny-llama-a")
	cases := tokLoadCases(t, shared)
	for _, tc := range cases[:4] {
		out, err := inspRun(t, tc.Text, "tokenize", "--model", model)
		if err != nil {
			t.Fatal(err)
		}
		if got := tokParseIDs(t, out); !reflect.DeepEqual(got, tc.IDsWithSpecial) {
			t.Errorf("stdin %q: got %v want %v", tc.Text, got, tc.IDsWithSpecial)
		}
	}
	// A multi-line case read from stdin, newlines included.
	for _, tc := range cases {
		if strings.Contains(tc.Text, "\n") {
			out, err := inspRun(t, tc.Text, "tokenize", "--model", model, "--no-special")
			if err != nil {
				t.Fatal(err)
			}
			if got := tokParseIDs(t, out); !reflect.DeepEqual(got, tc.IDsWithoutSpecial) {
				t.Errorf("stdin %q: got %v want %v", tc.Text, got, tc.IDsWithoutSpecial)
			}
			break
		}
	}
}

func TestTokenizeErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := inspRun(t, "", "tokenize", "--text", "x"); err == nil || !errors.Is(err, errUsage) {
		t.Errorf("no source: %v", err)
	}
	if _, err := inspRun(t, "", "tokenize", "--model", dir, "--tokenizer", "x.json", "--text", "x"); err == nil || !errors.Is(err, errUsage) {
		t.Errorf("two sources: %v", err)
	}
	_, err := inspRun(t, "", "tokenize", "--model", dir, "--text", "x")
	if want := filepath.Join(dir, "tokenizer.json"); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("missing file: %v (want it named)", err)
	}
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte(`{"model": {"type": "BPE"`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := inspRun(t, "", "tokenize", "--tokenizer", bad, "--text", "x"); err == nil || !strings.Contains(err.Error(), bad) {
		t.Errorf("malformed file: %v (want it named)", err)
	}
}

// The generated fixture tokenizer is a working Llama-2-style tokenizer:
// pieces of in-alphabet text concatenate back to the normalized text without
// byte fallback, unknown characters fall back to their UTF-8 byte tokens, and
// <s> is prepended.
func TestTokenizeGeneratedTokenizer(t *testing.T) {
	dir := t.TempDir()
	if err := modelgen.Write(dir, modelgen.Default()); err != nil {
		t.Fatal(err)
	}
	tok, err := tokenizer.Load(filepath.Join(dir, "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	if tok.VocabSize() != modelgen.TokenizerSize() {
		t.Errorf("vocab size %d, gen says %d", tok.VocabSize(), modelgen.TokenizerSize())
	}
	for id, want := range map[int32]string{0: "<unk>", 1: "<s>", 2: "</s>", 3: "<0x00>", 3 + 0x41: "<0x41>", 258: "<0xFF>"} {
		if got, ok := tok.IDToToken(id); !ok || got != want {
			t.Errorf("id %d = %q, want %q", id, got, want)
		}
	}

	text := "The river was cold and the birds were singing in the trees near the water."
	out, err := inspRun(t, "", "tokenize", "--model", dir, "--text", text)
	if err != nil {
		t.Fatal(err)
	}
	ids := tokParseIDs(t, out)
	if len(ids) < 2 || ids[0] != modelgen.BOSID {
		t.Fatalf("ids %v do not start with <s>", ids)
	}
	var pieces strings.Builder
	for _, id := range ids[1:] {
		if id >= 3 && id <= 258 {
			t.Errorf("byte fallback token %d for in-alphabet text", id)
		}
		p, _ := tok.IDToToken(id)
		pieces.WriteString(p)
	}
	if want := "▁" + strings.ReplaceAll(text, " ", "▁"); pieces.String() != want {
		t.Errorf("pieces %q, want %q", pieces.String(), want)
	}
	if n := len(ids) - 1; n >= len([]rune(text)) || n > 40 {
		t.Errorf("%d tokens for %d characters: merges not applied", n, len([]rune(text)))
	}
	if dec := tok.Decode(ids, true); dec != text {
		t.Errorf("decode %q", dec)
	}

	// "é" is not in the alphabet: U+00E9 = C3 A9 -> <0xC3> <0xA9> = ids 3+0xC3, 3+0xA9.
	out, err = inspRun(t, "", "tokenize", "--tokenizer", filepath.Join(dir, "tokenizer.json"), "--no-special", "--text", "é")
	if err != nil {
		t.Fatal(err)
	}
	got := tokParseIDs(t, out)
	sp, _ := tok.TokenToID("▁")
	if want := []int32{sp, 3 + 0xC3, 3 + 0xA9}; !reflect.DeepEqual(got, want) {
		t.Errorf("é: %v want %v", got, want)
	}
}
