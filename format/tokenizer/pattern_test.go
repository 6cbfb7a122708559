package tokenizer

import (
	"encoding/json"
	"os"
	"slices"
	"testing"
)

// TestKnownRegexesAgainstPythonRe compares the hand-written GPT-2, Llama-3
// and Qwen2 matchers with Python's backtracking re engine (testdata/
// regex_cases.json, produced by testdata/gen_regex_cases.py with explicit
// character classes that are exact for the strings' alphabet).
func TestKnownRegexesAgainstPythonRe(t *testing.T) {
	data, err := os.ReadFile("testdata/regex_cases.json")
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Cases []map[string]json.RawMessage `json:"cases"`
	}
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatal(err)
	}
	kinds := map[string]regexKind{"gpt2": regexGPT2, "llama3": regexLlama3, "qwen2": regexQwen2}
	n := 0
	for _, c := range f.Cases {
		var text string
		if err := json.Unmarshal(c["text"], &text); err != nil {
			t.Fatal(err)
		}
		for name, kind := range kinds {
			var want [][2]int
			if err := json.Unmarshal(c[name], &want); err != nil {
				t.Fatal(err)
			}
			var got [][2]int
			for _, s := range (regexMatcher{kind}).spans(text, nil) {
				if s.match {
					got = append(got, [2]int{s.start, s.end})
				}
			}
			if !slices.Equal(got, want) {
				t.Errorf("%s on %q:\n got  %v\n want %v", name, text, got, want)
			}
			n++
		}
	}
	if n < 900 {
		t.Fatalf("only %d comparisons", n)
	}
}

// TestKnownRegexStrings checks that the exact pattern strings found in
// GPT-2, Llama-3 and Qwen2 tokenizer.json files are recognised and that an
// unknown regex is rejected.
func TestKnownRegexStrings(t *testing.T) {
	for _, re := range []string{patGPT2, patGPT2NoWS, patLlama3, patLlama3Cls, patQwen2} {
		if _, err := regexPattern(re); err != nil {
			t.Errorf("%q: %v", re, err)
		}
	}
	if _, err := regexPattern(`\p{L}+|\d+`); err == nil {
		t.Error("unknown regex accepted")
	}
	if p, err := regexPattern("abc"); err != nil || p != (literalPattern{"abc"}) {
		t.Errorf("literal regex: %v %v", p, err)
	}
}

// TestContractionCaseFolding: (?i) contractions match upper case and, as in
// Unicode simple case folding, U+017F LATIN SMALL LETTER LONG S for 's'; the
// explicit-class Llama-3 spelling and GPT-2 are case-sensitive.
func TestContractionCaseFolding(t *testing.T) {
	firstMatch := func(kind regexKind, s string) string {
		for _, sp := range (regexMatcher{kind}).spans(s, nil) {
			if sp.match {
				return s[sp.start:sp.end]
			}
		}
		return ""
	}
	cases := []struct {
		kind regexKind
		in   string
		want string
	}{
		{regexLlama3, "'LLama", "'LL"},
		{regexLlama3, "'\u017fx", "'\u017f"},
		{regexLlama3Cls, "'\u017fx", "'\u017fx"},
		{regexLlama3Cls, "'Rex", "'Re"},
		{regexGPT2, "'RE", "'"},
		{regexGPT2, "'re", "'re"},
	}
	for _, c := range cases {
		if got := firstMatch(c.kind, c.in); got != c.want {
			t.Errorf("kind %d on %q: first match %q, want %q", c.kind, c.in, got, c.want)
		}
	}
}
