package tokenizer

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/wanda-go/wanda/format/textdata"
)

// readI32Tensor reads one I32 tensor from a safetensors file with a minimal
// local parser (8-byte little-endian header length, JSON header, data), so
// the test does not depend on format/safetensors.
func readI32Tensor(path, name string) ([]int32, []int, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	if len(data) < 8 {
		return nil, nil, fmt.Errorf("%s: too short", path)
	}
	n := binary.LittleEndian.Uint64(data[:8])
	if n > uint64(len(data)-8) {
		return nil, nil, fmt.Errorf("%s: header length %d beyond file", path, n)
	}
	var hdr map[string]json.RawMessage
	if err := json.Unmarshal(data[8:8+n], &hdr); err != nil {
		return nil, nil, fmt.Errorf("%s: header: %v", path, err)
	}
	raw, ok := hdr[name]
	if !ok {
		return nil, nil, fmt.Errorf("%s: no tensor %q", path, name)
	}
	var info struct {
		DType   string   `json:"dtype"`
		Shape   []int    `json:"shape"`
		Offsets [2]int64 `json:"data_offsets"`
	}
	if err := json.Unmarshal(raw, &info); err != nil {
		return nil, nil, fmt.Errorf("%s: tensor %q: %v", path, name, err)
	}
	if info.DType != "I32" {
		return nil, nil, fmt.Errorf("%s: tensor %q: dtype %s, want I32", path, name, info.DType)
	}
	body := data[8+n:]
	b, e := info.Offsets[0], info.Offsets[1]
	if b < 0 || e < b || e > int64(len(body)) || (e-b)%4 != 0 {
		return nil, nil, fmt.Errorf("%s: tensor %q: bad offsets %v", path, name, info.Offsets)
	}
	out := make([]int32, (e-b)/4)
	for i := range out {
		out[i] = int32(binary.LittleEndian.Uint32(body[b+int64(4*i):]))
	}
	return out, info.Shape, nil
}

// TestWikiTextReferenceIDs: the WikiText-2 test rows joined with "\n\n" and
// encoded with BOS must equal the ids locuslab/wanda's eval tokenized.
func TestWikiTextReferenceIDs(t *testing.T) {
	rawPath := sharedFile(t, "data/wikitext-2/wiki.test.raw")
	tokPath := sharedFile(t, "models/tiny-llama-a/tokenizer.json")
	refPath := sharedFile(t, "reference/tiny-llama-a/reference.safetensors")
	want, shape, err := readI32Tensor(refPath, "wikitext_test_ids")
	if err != nil {
		t.Fatal(err)
	}
	rows, err := textdata.ReadWikiTextRaw(rawPath)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := Load(tokPath)
	if err != nil {
		t.Fatal(err)
	}
	got := tok.Encode(strings.Join(rows, "\n\n"), true)
	if len(shape) != 1 && !(len(shape) == 2 && shape[0] == 1) {
		t.Fatalf("unexpected reference shape %v", shape)
	}
	first := -1
	for i := 0; i < min(len(got), len(want)); i++ {
		if got[i] != want[i] {
			first = i
			break
		}
	}
	if first >= 0 || len(got) != len(want) {
		lo := max(first-5, 0)
		t.Fatalf("%d rows: got %d ids, want %d; first difference at %d: got %v want %v",
			len(rows), len(got), len(want), first, got[lo:min(lo+12, len(got))], want[lo:min(lo+12, len(want))])
	}
	t.Logf("%d rows -> %d ids, identical to wikitext_test_ids", len(rows), len(got))
}
