package safetensors

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
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
