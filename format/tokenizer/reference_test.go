package tokenizer

import (
	"encoding/json"
	"os"
	"slices"
	"testing"
)

type expectedFile struct {
	Cases []struct {
		Text              string  `json:"text"`
		IDsWithSpecial    []int32 `json:"ids_with_special"`
		IDsWithoutSpecial []int32 `json:"ids_without_special"`
		Decoded           string  `json:"decoded"`
	} `json:"cases"`
}

// TestReferenceTokenizers compares every case of the HF tokenizers 0.23
// outputs stored in ../shared/reference/tokenizers/<name>/expected.json.
func TestReferenceTokenizers(t *testing.T) {
	for _, name := range []string{"tiny-llama-a", "mistral-like", "gpt2"} {
		t.Run(name, func(t *testing.T) {
			dir := sharedFile(t, "reference/tokenizers/"+name)
			tok, err := Load(dir + "/tokenizer.json")
			if err != nil {
				t.Fatal(err)
			}
			data, err := os.ReadFile(dir + "/expected.json")
			if err != nil {
				t.Fatal(err)
			}
			var exp expectedFile
			if err := json.Unmarshal(data, &exp); err != nil {
				t.Fatal(err)
			}
			if len(exp.Cases) == 0 {
				t.Fatal("no cases in expected.json")
			}
			pass := 0
			for i, c := range exp.Cases {
				ok := true
				if got := tok.Encode(c.Text, true); !slices.Equal(got, c.IDsWithSpecial) {
					t.Errorf("case %d %q: with special:\n got  %v\n want %v", i, c.Text, got, c.IDsWithSpecial)
					ok = false
				}
				if got := tok.Encode(c.Text, false); !slices.Equal(got, c.IDsWithoutSpecial) {
					t.Errorf("case %d %q: without special:\n got  %v\n want %v", i, c.Text, got, c.IDsWithoutSpecial)
					ok = false
				}
				if got := tok.Decode(c.IDsWithoutSpecial, false); got != c.Decoded {
					t.Errorf("case %d %q: decoded %q, want %q", i, c.Text, got, c.Decoded)
					ok = false
				}
				if ok {
					pass++
				}
			}
			t.Logf("%s: %d/%d cases match", name, pass, len(exp.Cases))
		})
	}
}
