package safetensors

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/wanda-go/wanda/format/dtype"
)

var allDTypes = []dtype.DType{dtype.F32, dtype.F16, dtype.BF16, dtype.F64, dtype.I8, dtype.U8, dtype.I16, dtype.I32, dtype.I64, dtype.Bool}

// testSpecs returns one tensor per dtype (plus a scalar and an empty tensor)
// with random bytes as data.
func testSpecs(r *rand.Rand) ([]Spec, [][]byte) {
	var specs []Spec
	var data [][]byte
	add := func(name string, d dtype.DType, shape ...int64) {
		n := int64(1)
		for _, s := range shape {
			n *= s
		}
		b := make([]byte, n*int64(d.Size()))
		for i := range b {
			b[i] = byte(r.UintN(256))
		}
		if d == dtype.Bool {
			for i := range b {
				b[i] &= 1
			}
		}
		specs = append(specs, Spec{Name: name, DType: d, Shape: shape})
		data = append(data, b)
	}
	for i, d := range allDTypes {
		add("layer."+d.String()+".weight", d, int64(3+i), 5)
	}
	add("scalar", dtype.F32)
	add("empty", dtype.BF16, 0, 7)
	add("odd.u8", dtype.U8, 3) // makes later data unaligned if the writer did not sort
	add("big", dtype.F32, 64, 33)
	return specs, data
}

func checkSet(t *testing.T, s *Set, specs []Spec, data [][]byte) {
	t.Helper()
	var want []string
	for _, sp := range specs {
		want = append(want, sp.Name)
	}
	sort.Strings(want)
	if got := s.Names(); !reflect.DeepEqual(got, want) {
		t.Fatalf("Names = %v, want %v", got, want)
	}
	for i, sp := range specs {
		tn, err := s.Get(sp.Name)
		if err != nil {
			t.Fatal(err)
		}
		if tn.DType != sp.DType || !reflect.DeepEqual(tn.Shape, append([]int64{}, sp.Shape...)) {
			t.Errorf("%s: got %s%v, want %s%v", sp.Name, tn.DType, tn.Shape, sp.DType, sp.Shape)
		}
		if !bytes.Equal(tn.Bytes(), data[i]) {
			t.Errorf("%s: bytes differ", sp.Name)
		}
		if tn.Bytes() == nil {
			t.Errorf("%s: nil Bytes", sp.Name)
		}
	}
}

func TestRoundTripSingle(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	specs, data := testSpecs(r)
	dir := t.TempDir()
	meta := map[string]string{"format": "pt", "note": "<&>"}
	w, err := Create(dir, specs, WriterOptions{Metadata: meta})
	if err != nil {
		t.Fatal(err)
	}
	// Write in reverse order.
	for i := len(specs) - 1; i >= 0; i-- {
		if err := w.Write(specs[i].Name, data[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, IndexName)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("single file write left an index: %v", err)
	}
	s, err := OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	checkSet(t, s, specs, data)
	if !reflect.DeepEqual(s.Metadata(), meta) {
		t.Errorf("Metadata = %v, want %v", s.Metadata(), meta)
	}
	if got := s.Shards(); len(got) != 1 || filepath.Base(got[0]) != "model.safetensors" {
		t.Errorf("Shards = %v", got)
	}
	// Header length is a multiple of 8 and every tensor is aligned.
	raw, err := os.ReadFile(filepath.Join(dir, "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	n := int(raw[0]) | int(raw[1])<<8 | int(raw[2])<<16
	if n%8 != 0 {
		t.Errorf("header length %d is not a multiple of 8", n)
	}
	if !strings.HasPrefix(string(raw[8:8+n]), "{") || strings.TrimRight(string(raw[8:8+n]), " ") != strings.TrimSpace(string(raw[8:8+n])) {
		t.Errorf("header not padded with trailing spaces")
	}
	for _, tn := range s.files[0].tensors {
		if !tn.aligned() {
			t.Errorf("%s: unaligned at %d", tn.Name, tn.begin)
		}
	}
}

func TestRoundTripSharded(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	specs, data := testSpecs(r)
	dir := t.TempDir()
	w, err := Create(dir, specs, WriterOptions{MaxShardBytes: 200, Metadata: map[string]string{"format": "pt"}})
	if err != nil {
		t.Fatal(err)
	}
	perm := r.Perm(len(specs))
	for _, i := range perm {
		if err := w.Write(specs[i].Name, data[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	s, err := OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	checkSet(t, s, specs, data)
	shards := s.Shards()
	if len(shards) < 3 {
		t.Fatalf("expected several shards, got %v", shards)
	}
	for i, p := range shards {
		want := filepath.Join(dir, "model-0000"+string(rune('1'+i))+"-of-0000"+string(rune('0'+len(shards)))+".safetensors")
		if len(shards) < 10 && p != want {
			t.Errorf("shard %d = %s, want %s", i, p, want)
		}
	}
	// Shard sizes: data part at most 200 bytes unless it holds a single tensor.
	for _, p := range shards {
		f, err := Open(p)
		if err != nil {
			t.Fatal(err)
		}
		var sum int64
		for _, tn := range f.Tensors() {
			sum += tn.end - tn.begin
		}
		if sum > 200 && len(f.Tensors()) > 1 {
			t.Errorf("%s: %d data bytes in %d tensors exceeds max", p, sum, len(f.Tensors()))
		}
		f.Close()
	}
}
