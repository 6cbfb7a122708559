package calib

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/wanda-go/wanda/calib/pyrandom"
	"github.com/wanda-go/wanda/format/textdata"
	"github.com/wanda-go/wanda/format/tokenizer"
	"github.com/wanda-go/wanda/internal/testenv"
)

func sharedFile(t testing.TB, rel string) string {
	t.Helper()
	return testenv.SharedPath(t, rel)
}

// readI32Tensor is a minimal safetensors reader (8-byte LE header length,
// JSON header, data) so the test does not depend on format/safetensors.
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
		return nil, nil, err
	}
	var info struct {
		DType   string   `json:"dtype"`
		Shape   []int    `json:"shape"`
		Offsets [2]int64 `json:"data_offsets"`
	}
	raw, ok := hdr[name]
	if !ok {
		return nil, nil, fmt.Errorf("%s: no tensor %q", path, name)
	}
	if err := json.Unmarshal(raw, &info); err != nil {
		return nil, nil, err
	}
	if info.DType != "I32" {
		return nil, nil, fmt.Errorf("%s: %q is %s, want I32", path, name, info.DType)
	}
	body := data[8+n:]
	b, e := info.Offsets[0], info.Offsets[1]
	if b < 0 || e < b || e > int64(len(body)) || (e-b)%4 != 0 {
		return nil, nil, fmt.Errorf("%s: %q: bad offsets %v", path, name, info.Offsets)
	}
	out := make([]int32, (e-b)/4)
	for i := range out {
		out[i] = int32(binary.LittleEndian.Uint32(body[b+int64(4*i):]))
	}
	return out, info.Shape, nil
}

// TestReferenceCalibrationWindows: C4 head documents, the tiny-llama-a
// tokenizer, nsamples 128, seqlen 512, seed 0 must give exactly the windows
// locuslab/wanda drew (calib_input_ids).
func TestReferenceCalibrationWindows(t *testing.T) {
	docs, err := textdata.ReadJSONL(sharedFile(t, "data/c4/c4_train00000_head1000.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := tokenizer.Load(sharedFile(t, "models/tiny-llama-a/tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	want, shape, err := readI32Tensor(sharedFile(t, "reference/tiny-llama-a/reference.safetensors"), "calib_input_ids")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(shape, []int{128, 512}) {
		t.Fatalf("reference shape %v", shape)
	}
	got, err := SampleWindows(docs, tok, 128, 512, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 128 {
		t.Fatalf("%d windows", len(got))
	}
	bad := 0
	for i, w := range got {
		if !slices.Equal(w, want[i*512:(i+1)*512]) {
			bad++
			t.Errorf("window %d differs", i)
		}
	}
	t.Logf("%d/128 windows identical to calib_input_ids", 128-bad)
}

// fakeEncoder tokenizes by splitting on spaces; ids are word lengths.
type fakeEncoder struct{ calls map[string]int }

func (f *fakeEncoder) Encode(s string, addSpecial bool) []int32 {
	f.calls[s]++
	var out []int32
	if addSpecial {
		out = append(out, 1)
	}
	for _, w := range strings.Fields(s) {
		out = append(out, int32(len(w)))
	}
	return out
}

// TestSamplingProcedure replays the reference loop with pyrandom directly
// (an independent transcription of get_c4) on synthetic documents.
func TestSamplingProcedure(t *testing.T) {
	docs := []string{"a b", "a bb ccc dddd eeeee ffffff", "x", "p qq rrr ssss ttttt uuuuuu vvvvvvv wwwwwwww"}
	enc := &fakeEncoder{calls: map[string]int{}}
	const seqlen = 4
	got, err := SampleWindows(docs, enc, 20, seqlen, 7)
	if err != nil {
		t.Fatal(err)
	}
	r := pyrandom.New(7)
	ref := &fakeEncoder{calls: map[string]int{}}
	for s := 0; s < 20; s++ {
		var e []int32
		for {
			i, _ := r.RandInt(0, int64(len(docs)-1))
			e = ref.Encode(docs[i], true)
			if len(e) > seqlen {
				break
			}
		}
		j, _ := r.RandInt(0, int64(len(e)-seqlen-1))
		if w := e[j : j+seqlen]; !slices.Equal(got[s], w) {
			t.Fatalf("sample %d: got %v, want %v", s, got[s], w)
		}
	}
	for d, n := range enc.calls {
		if n != 1 {
			t.Errorf("document %q tokenized %d times", d, n)
		}
	}
}

func TestNoLongDocument(t *testing.T) {
	enc := &fakeEncoder{calls: map[string]int{}}
	_, err := SampleWindows([]string{"a b c", "d"}, enc, 4, 4, 0) // "a b c" -> 4 tokens, not > 4
	if !errors.Is(err, ErrNoLongDocument) {
		t.Fatalf("error %v, want ErrNoLongDocument", err)
	}
	for _, c := range []struct {
		docs    []string
		enc     Encoder
		n, slen int
	}{
		{nil, enc, 1, 1}, {[]string{"a"}, nil, 1, 1}, {[]string{"a"}, enc, -1, 1}, {[]string{"a"}, enc, 1, 0},
	} {
		if _, err := SampleWindows(c.docs, c.enc, c.n, c.slen, 0); !errors.Is(err, ErrBadArgument) {
			t.Errorf("%+v: error %v, want ErrBadArgument", c, err)
		}
	}
}

// TestSampleWindowsHugeCounts: a count whose windows cannot fit in memory is an
// error, not a makeslice panic.
func TestSampleWindowsHugeCounts(t *testing.T) {
	tok := &fakeEncoder{calls: map[string]int{}}
	docs := []string{strings.Repeat("w ", 50)}
	for _, tc := range []struct{ n, seqlen int }{
		{math.MaxInt, 8}, {math.MaxInt / 8, 8}, {1 << 40, 1 << 30},
	} {
		func() {
			defer func() {
				if r := recover(); r != nil {
					t.Errorf("SampleWindows(%d, %d) panicked: %v", tc.n, tc.seqlen, r)
				}
			}()
			if _, err := SampleWindows(docs, tok, tc.n, tc.seqlen, 0); !errors.Is(err, ErrBadArgument) {
				t.Errorf("SampleWindows(%d, %d): %v, want ErrBadArgument", tc.n, tc.seqlen, err)
			}
		}()
	}
}
