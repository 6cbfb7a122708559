package textdata

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/wanda-go/wanda/internal/regfile"
)

// ErrEmpty reports an input without any text.
var ErrEmpty = errors.New("textdata: no text")

// ErrMalformed reports a line that is not a JSON object with a string
// "text" field, or a file that is not valid UTF-8.
var ErrMalformed = errors.New("textdata: malformed text data")

// Format selects how EvalText and Documents read a file.
type Format int

const (
	// Auto picks by extension: .jsonl/.json -> JSONL, .raw -> WikiText,
	// anything else Plain.
	Auto Format = iota
	// WikiText is a WikiText raw file (one dataset row per line).
	WikiText
	// JSONL is one JSON object per line with a "text" field.
	JSONL
	// Plain is a plain UTF-8 text file used as is.
	Plain
)

func (f Format) String() string {
	switch f {
	case Auto:
		return "auto"
	case WikiText:
		return "wikitext"
	case JSONL:
		return "jsonl"
	case Plain:
		return "plain"
	}
	return fmt.Sprintf("Format(%d)", int(f))
}

// ParseFormat maps "auto", "wikitext", "jsonl" and "plain" to a Format.
func ParseFormat(s string) (Format, error) {
	switch strings.ToLower(s) {
	case "", "auto":
		return Auto, nil
	case "wikitext", "raw":
		return WikiText, nil
	case "jsonl", "json":
		return JSONL, nil
	case "plain", "text", "txt":
		return Plain, nil
	}
	return Auto, fmt.Errorf("textdata: unknown format %q (want auto, wikitext, jsonl or plain)", s)
}

// Resolve returns the concrete format for path (Auto goes by extension).
func Resolve(path string, f Format) Format {
	if f != Auto {
		return f
	}
	switch strings.ToLower(filepath.Ext(path)) {
	case ".jsonl", ".json":
		return JSONL
	case ".raw":
		return WikiText
	}
	return Plain
}

// ReadWikiTextRaw returns the rows of a WikiText raw file as the HF dataset
// has them (Python text-mode lines, so \r\n and \r end lines too): a
// whitespace-only line becomes "", any other line keeps its trailing "\n" (a
// last line without one gets none).
func ReadWikiTextRaw(path string) ([]string, error) {
	data, err := regfile.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("textdata: %w", err)
	}
	if !utf8.Valid(data) {
		return nil, fmt.Errorf("%s: not valid UTF-8: %w", path, ErrMalformed)
	}
	if len(data) == 0 {
		return nil, fmt.Errorf("%s: %w", path, ErrEmpty)
	}
	// Python's text mode (universal newlines) turns \r\n and \r into \n.
	s := strings.ReplaceAll(string(data), "\r\n", "\n")
	s = strings.ReplaceAll(s, "\r", "\n")
	rows := make([]string, 0, strings.Count(s, "\n")+1)
	nonEmpty := false
	for len(s) > 0 {
		line := s
		if i := strings.IndexByte(s, '\n'); i >= 0 {
			line = s[:i+1]
		}
		s = s[len(line):]
		if strings.TrimFunc(line, pyIsSpace) == "" {
			rows = append(rows, "")
		} else {
			rows = append(rows, line)
			nonEmpty = true
		}
	}
	if !nonEmpty {
		return nil, fmt.Errorf("%s: only blank lines: %w", path, ErrEmpty)
	}
	return rows, nil
}

// pyIsSpace is Python's str.isspace for one char: Unicode White_Space plus
// the separators U+001C..U+001F.
func pyIsSpace(r rune) bool {
	return unicode.IsSpace(r) || (r >= 0x1c && r <= 0x1f)
}

// ReadJSONL returns the "text" field of every line of a JSON-lines file.
// Blank lines are skipped; a line that is not a JSON object with a string
// "text" field is an error naming the file and line.
func ReadJSONL(path string) ([]string, error) {
	f, err := regfile.Open(path)
	if err != nil {
		return nil, fmt.Errorf("textdata: %w", err)
	}
	defer f.Close()
	var docs []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 1<<20), 1<<30)
	for line := 1; sc.Scan(); line++ {
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		var rec struct {
			Text *string `json:"text"`
		}
		if err := json.Unmarshal(b, &rec); err != nil {
			return nil, fmt.Errorf("%s:%d: %w: %w", path, line, err, ErrMalformed)
		}
		if rec.Text == nil {
			return nil, fmt.Errorf("%s:%d: no string \"text\" field: %w", path, line, ErrMalformed)
		}
		docs = append(docs, *rec.Text)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("textdata: %s: %w", path, err)
	}
	if len(docs) == 0 {
		return nil, fmt.Errorf("%s: no documents: %w", path, ErrEmpty)
	}
	return docs, nil
}

// ReadPlain returns the contents of a UTF-8 text file.
func ReadPlain(path string) (string, error) {
	data, err := regfile.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("textdata: %w", err)
	}
	if len(data) == 0 {
		return "", fmt.Errorf("%s: %w", path, ErrEmpty)
	}
	if !utf8.Valid(data) {
		return "", fmt.Errorf("%s: not valid UTF-8: %w", path, ErrMalformed)
	}
	return string(data), nil
}

// EvalText returns the single string an evaluation tokenizes: WikiText rows
// joined with "\n\n", JSONL documents joined with "\n\n", or the plain file.
func EvalText(path string, f Format) (string, error) {
	switch Resolve(path, f) {
	case WikiText:
		rows, err := ReadWikiTextRaw(path)
		if err != nil {
			return "", err
		}
		return strings.Join(rows, "\n\n"), nil
	case JSONL:
		docs, err := ReadJSONL(path)
		if err != nil {
			return "", err
		}
		return strings.Join(docs, "\n\n"), nil
	default:
		return ReadPlain(path)
	}
}

// Documents returns calibration documents: one per JSONL line, or the whole
// text (EvalText) as a single document for WikiText and plain files.
func Documents(path string, f Format) ([]string, error) {
	if Resolve(path, f) == JSONL {
		return ReadJSONL(path)
	}
	s, err := EvalText(path, f)
	if err != nil {
		return nil, err
	}
	return []string{s}, nil
}
