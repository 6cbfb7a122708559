package textdata

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/wanda-go/wanda/internal/testenv"
)

func writeFile(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestReadWikiTextRawRows(t *testing.T) {
	// Rows as the HF wikitext script yields them: `for row in open(f): yield
	// row if row.strip() else ""` (Python text mode, universal newlines).
	p := writeFile(t, "w.raw", " \n = Title = \n \n Body , text . \r\n\t\x1c\n last line")
	got, err := ReadWikiTextRaw(p)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"", " = Title = \n", "", " Body , text . \n", "", " last line"}
	if !slices.Equal(got, want) {
		t.Fatalf("rows %q, want %q", got, want)
	}
	text, err := EvalText(p, Auto)
	if err != nil {
		t.Fatal(err)
	}
	if text != strings.Join(want, "\n\n") {
		t.Fatalf("EvalText = %q", text)
	}
}

func TestEmptyInputs(t *testing.T) {
	for _, c := range []struct {
		name, body string
		read       func(string) error
	}{
		{"empty.raw", "", func(p string) error { _, err := ReadWikiTextRaw(p); return err }},
		{"blank.raw", " \n\n \n", func(p string) error { _, err := ReadWikiTextRaw(p); return err }},
		{"empty.jsonl", "\n\n", func(p string) error { _, err := ReadJSONL(p); return err }},
		{"empty.txt", "", func(p string) error { _, err := ReadPlain(p); return err }},
		{"empty2.txt", "", func(p string) error { _, err := Documents(p, Auto); return err }},
	} {
		p := writeFile(t, c.name, c.body)
		err := c.read(p)
		if !errors.Is(err, ErrEmpty) || !strings.Contains(err.Error(), p) {
			t.Errorf("%s: error %v, want ErrEmpty naming the file", c.name, err)
		}
	}
}

func TestReadJSONL(t *testing.T) {
	p := writeFile(t, "d.jsonl", `{"text":"first\ndoc","timestamp":"x"}`+"\n\n"+`{"url":"u","text":"second"}`+"\n")
	docs, err := ReadJSONL(p)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(docs, []string{"first\ndoc", "second"}) {
		t.Fatalf("docs %q", docs)
	}
	if s, _ := EvalText(p, Auto); s != "first\ndoc\n\nsecond" {
		t.Fatalf("EvalText = %q", s)
	}
	if d, _ := Documents(p, Auto); len(d) != 2 {
		t.Fatalf("Documents = %q", d)
	}
	for _, c := range []struct{ body, mention string }{
		{`{"text":"ok"}` + "\n" + `{"text": 3}` + "\n", ":2:"},
		{`{"text":"ok"}` + "\n" + `{"txt":"x"}` + "\n", ":2: no string \"text\""},
		{`not json`, ":1:"},
		{`{"text":null}`, ":1:"},
	} {
		p := writeFile(t, "bad.jsonl", c.body)
		_, err := ReadJSONL(p)
		if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), p+c.mention) {
			t.Errorf("%q: error %v, want ErrMalformed mentioning %q", c.body, err, p+c.mention)
		}
	}
}

func TestPlainAndFormats(t *testing.T) {
	p := writeFile(t, "a.txt", "hello\n\nworld")
	if s, err := EvalText(p, Auto); err != nil || s != "hello\n\nworld" {
		t.Fatalf("EvalText = %q, %v", s, err)
	}
	if d, err := Documents(p, Plain); err != nil || !slices.Equal(d, []string{"hello\n\nworld"}) {
		t.Fatalf("Documents = %q, %v", d, err)
	}
	// A forced format overrides the extension: rows "hello\n", "", "world".
	if d, err := Documents(p, WikiText); err != nil || !slices.Equal(d, []string{"hello\n\n\n\n\nworld"}) {
		t.Fatalf("Documents(WikiText) = %q, %v", d, err)
	}
	for in, want := range map[string]Format{"x.jsonl": JSONL, "x.JSON": JSONL, "x.raw": WikiText, "x.txt": Plain, "x": Plain} {
		if got := Resolve(in, Auto); got != want {
			t.Errorf("Resolve(%q) = %v, want %v", in, got, want)
		}
	}
	for in, want := range map[string]Format{"auto": Auto, "WikiText": WikiText, "jsonl": JSONL, "plain": Plain} {
		if got, err := ParseFormat(in); err != nil || got != want {
			t.Errorf("ParseFormat(%q) = %v, %v", in, got, err)
		}
	}
	if _, err := ParseFormat("xml"); err == nil {
		t.Error("ParseFormat(xml) accepted")
	}
	if _, err := ReadPlain(filepath.Join(t.TempDir(), "missing.txt")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	bad := writeFile(t, "bad.txt", "\xff\xfe")
	if _, err := ReadPlain(bad); !errors.Is(err, ErrMalformed) {
		t.Errorf("invalid UTF-8: %v", err)
	}
}

func sharedFile(t *testing.T, rel string) string {
	t.Helper()
	return testenv.SharedPath(t, rel)
}

// TestSharedFiles: the WikiText-2 test split has the HF dataset's 4358 rows
// (its first rows are "", " = Robert Boulter = \n", ""), and the C4 head
// file holds 1000 documents. That the joined rows tokenize to the
// reference's wikitext_test_ids is checked in format/tokenizer.
func TestSharedFiles(t *testing.T) {
	rows, err := ReadWikiTextRaw(sharedFile(t, "data/wikitext-2/wiki.test.raw"))
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 4358 || rows[0] != "" || rows[1] != " = Robert Boulter = \n" || rows[2] != "" {
		t.Fatalf("%d rows, first %q", len(rows), rows[:3])
	}
	docs, err := ReadJSONL(sharedFile(t, "data/c4/c4_train00000_head1000.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	if len(docs) != 1000 || !strings.HasPrefix(docs[0], "Beginners BBQ Class Taking Place in Missoula!") {
		t.Fatalf("%d docs", len(docs))
	}
}
