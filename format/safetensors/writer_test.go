package safetensors

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/wanda-go/wanda/format/dtype"
)

func TestWriterErrors(t *testing.T) {
	specs := []Spec{
		{Name: "a", DType: dtype.F32, Shape: []int64{2, 3}},
		{Name: "b", DType: dtype.BF16, Shape: []int64{4}},
	}
	dir := t.TempDir()
	w, err := Create(dir, specs, WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "model.safetensors")
	check := func(err error, want error, mention ...string) {
		t.Helper()
		if !errors.Is(err, want) {
			t.Fatalf("got %v, want %v", err, want)
		}
		for _, m := range mention {
			if !strings.Contains(err.Error(), m) {
				t.Errorf("%q does not mention %q", err, m)
			}
		}
	}
	check(w.Write("a", make([]byte, 23)), ErrWrongSize, path, `"a"`)
	check(w.Write("a", make([]byte, 25)), ErrWrongSize, path)
	check(w.WriteFloat32("a", make([]float32, 5)), ErrWrongSize, path)
	check(w.Write("zzz", make([]byte, 4)), ErrMissingTensor, "zzz")
	if err := w.Write("a", make([]byte, 24)); err != nil {
		t.Fatal(err)
	}
	check(w.Write("a", make([]byte, 24)), ErrDuplicateTensor, `"a"`)
	check(w.Close(), ErrIncomplete, `b`)
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("incomplete Close left %s behind: %v", path, err)
	}

	_, err = Create(dir, append(specs, Spec{Name: "a", DType: dtype.F32}), WriterOptions{})
	check(err, ErrDuplicateTensor, `"a"`)
	_, err = Create(dir, []Spec{{Name: "n", DType: dtype.F32, Shape: []int64{-1}}}, WriterOptions{})
	check(err, ErrSizeMismatch, `"n"`)
	_, err = Create(dir, []Spec{{Name: "o", DType: dtype.F64, Shape: []int64{1 << 31, 1 << 31, 1 << 2}}}, WriterOptions{})
	check(err, ErrSizeMismatch, `"o"`)

	// Abort removes everything.
	w, err = Create(dir, specs, WriterOptions{MaxShardBytes: 8})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Abort(); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("Abort left %d files", len(ents))
	}
}

func TestWriteFloat32(t *testing.T) {
	dir := t.TempDir()
	vals := []float32{1, float32(math.Copysign(0, -1)), 3.140625, 65504, 1e-3}
	specs := []Spec{
		{Name: "f32", DType: dtype.F32, Shape: []int64{5}},
		{Name: "f16", DType: dtype.F16, Shape: []int64{5}},
		{Name: "bf16", DType: dtype.BF16, Shape: []int64{5}},
		{Name: "f64", DType: dtype.F64, Shape: []int64{5}},
		{Name: "i32", DType: dtype.I32, Shape: []int64{5}},
	}
	w, err := Create(dir, specs, WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range specs[:4] {
		if err := w.WriteFloat32(s.Name, vals); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.WriteFloat32("i32", vals); err == nil {
		t.Fatal("WriteFloat32 to an I32 tensor should fail")
	}
	if err := w.Write("i32", []byte{1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 0, 0, 0x80, 5, 0, 0, 0}); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	s, err := OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// Values chosen to be exact in every float dtype except 1e-3.
	for _, n := range []string{"f32", "f16", "bf16", "f64"} {
		tn, _ := s.Tensor(n)
		got, err := tn.Float32()
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 4; i++ {
			if got[i] != vals[i] && !(n == "bf16" && i == 3) {
				t.Errorf("%s[%d] = %v, want %v", n, i, got[i], vals[i])
			}
		}
		if got[1] != 0 || !math.Signbit(float64(got[1])) {
			t.Errorf("%s: negative zero lost: %v", n, got[1])
		}
	}
	tn, _ := s.Tensor("i32")
	ints, err := tn.Int64s()
	if err != nil {
		t.Fatal(err)
	}
	want := []int64{1, -1, 2, -1 << 31, 5}
	for i := range want {
		if ints[i] != want[i] {
			t.Errorf("i32[%d] = %d, want %d", i, ints[i], want[i])
		}
	}
}

// TestWriteInPlace: writing a model into the directory it is being read from
// (memory-mapped) leaves the reader's views intact, and the result is correct.
func TestWriteInPlace(t *testing.T) {
	dir := t.TempDir()
	specs := []Spec{{Name: "a", DType: dtype.F32, Shape: []int64{1024}}, {Name: "b", DType: dtype.U8, Shape: []int64{8}}}
	data := [][]byte{make([]byte, 4096), []byte("abcdefgh")}
	for i := range data[0] {
		data[0][i] = byte(i * 7)
	}
	if err := WriteFile(filepath.Join(dir, SingleName), specs, data, nil); err != nil {
		t.Fatal(err)
	}
	// Leave a stale index from an "earlier sharded write": it must not shadow
	// the new single file.
	if err := os.WriteFile(filepath.Join(dir, IndexName), []byte(`{"weight_map":{"x":"gone.safetensors"}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	in, err := Open(filepath.Join(dir, SingleName))
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	w, err := Create(dir, specs, WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range specs {
		tn, _ := in.Tensor(s.Name)
		out := append([]byte(nil), tn.Bytes()...)
		for i := range out {
			out[i] ^= 0xff
		}
		if err := w.Write(s.Name, out); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	// The old mapping still shows the old data.
	a, _ := in.Tensor("a")
	if !bytes.Equal(a.Bytes(), data[0]) {
		t.Error("reader's view changed under it")
	}
	s, err := OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	b, _ := s.Get("b")
	if string(b.Bytes()) != "\x9e\x9d\x9c\x9b\x9a\x99\x98\x97" {
		t.Errorf("new b = %q", b.Bytes())
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("directory holds %v, want only %s", names, SingleName)
	}
}

// TestWriteNoSpace: a shard too large for the file system fails at Create with
// an error naming the file, and leaves nothing behind.
func TestWriteNoSpace(t *testing.T) {
	dir := t.TempDir()
	w, err := Create(dir, []Spec{{Name: "huge", DType: dtype.F32, Shape: []int64{1 << 48}}}, WriterOptions{})
	if err == nil {
		w.Abort()
		t.Skip("file system accepted a 1 PiB file")
	}
	if !strings.Contains(err.Error(), filepath.Join(dir, SingleName)) {
		t.Errorf("error %q does not name the file", err)
	}
	t.Logf("error: %v", err)
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("left %d files", len(ents))
	}
}

// TestConcurrentWrites writes shards from many goroutines (run with -race).
func TestConcurrentWrites(t *testing.T) {
	dir := t.TempDir()
	var specs []Spec
	var data [][]byte
	for i := 0; i < 40; i++ {
		specs = append(specs, Spec{Name: fmt.Sprintf("t%02d", i), DType: dtype.BF16, Shape: []int64{int64(i + 1), 3}})
		b := make([]byte, (i+1)*6)
		for j := range b {
			b[j] = byte(i + j)
		}
		data = append(data, b)
	}
	w, err := Create(dir, specs, WriterOptions{MaxShardBytes: 500})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range specs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := w.Write(specs[i].Name, data[i]); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	s, err := OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	checkSet(t, s, specs, data)
	// The index: total_size and weight_map agree with the shards.
	var idx struct {
		Metadata  map[string]int64  `json:"metadata"`
		WeightMap map[string]string `json:"weight_map"`
	}
	b, err := os.ReadFile(filepath.Join(dir, IndexName))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &idx); err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, d := range data {
		total += int64(len(d))
	}
	if idx.Metadata["total_size"] != total || len(idx.WeightMap) != len(specs) {
		t.Errorf("index total_size %d (want %d), %d entries", idx.Metadata["total_size"], total, len(idx.WeightMap))
	}
	for n, sh := range idx.WeightMap {
		tn, _ := s.Tensor(n)
		if filepath.Base(tn.File) != sh {
			t.Errorf("%s: index says %s, found in %s", n, sh, tn.File)
		}
	}
}
