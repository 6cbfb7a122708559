package safetensors

import (
	"errors"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/wanda-go/wanda/format/dtype"
)

// TestChunkedRoundTrip writes every tensor of testSpecs in shuffled chunks of
// random sizes from several goroutines, into a sharded model, and reads the
// bytes back.
func TestChunkedRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	specs, data := testSpecs(r)
	for _, maxShard := range []int64{0, 600} {
		dir := t.TempDir()
		w, err := Create(dir, specs, WriterOptions{MaxShardBytes: maxShard, Metadata: map[string]string{"format": "pt"}})
		if err != nil {
			t.Fatal(err)
		}
		for i, s := range specs {
			tw, err := w.OpenTensor(s.Name)
			if err != nil {
				t.Fatal(err)
			}
			if tw.Size() != int64(len(data[i])) || tw.DType() != s.DType {
				t.Fatalf("%s: Size %d DType %s, want %d %s", s.Name, tw.Size(), tw.DType(), len(data[i]), s.DType)
			}
			// Cut into random chunks, shuffle, write concurrently.
			var cuts []span
			for lo := 0; lo < len(data[i]); {
				hi := min(len(data[i]), lo+1+r.IntN(97))
				cuts = append(cuts, span{int64(lo), int64(hi)})
				lo = hi
			}
			r.Shuffle(len(cuts), func(a, b int) { cuts[a], cuts[b] = cuts[b], cuts[a] })
			var wg sync.WaitGroup
			errs := make([]error, len(cuts))
			for k, c := range cuts {
				wg.Add(1)
				go func() {
					defer wg.Done()
					n, err := tw.WriteAt(data[i][c.lo:c.hi], c.lo)
					if err == nil && n != int(c.hi-c.lo) {
						err = errors.New("short write")
					}
					errs[k] = err
				}()
			}
			wg.Wait()
			if err := errors.Join(errs...); err != nil {
				t.Fatal(err)
			}
			if got := tw.Written(); got != int64(len(data[i])) {
				t.Fatalf("%s: Written = %d, want %d", s.Name, got, len(data[i]))
			}
			if err := tw.Close(); err != nil {
				t.Fatal(err)
			}
			if err := tw.Close(); err != nil {
				t.Fatalf("second Close: %v", err)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		s, err := OpenDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		if maxShard > 0 && len(s.Shards()) < 2 {
			t.Errorf("MaxShardBytes %d: %d shards, want several", maxShard, len(s.Shards()))
		}
		checkSet(t, s, specs, data)
		s.Close()
	}
}

func TestChunkedErrors(t *testing.T) {
	specs := []Spec{
		{Name: "a", DType: dtype.F32, Shape: []int64{4}},
		{Name: "b", DType: dtype.U8, Shape: []int64{10}},
		{Name: "c", DType: dtype.U8, Shape: []int64{3}},
	}
	dir := t.TempDir()
	w, err := Create(dir, specs, WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
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
	_, err = w.OpenTensor("zzz")
	check(err, ErrMissingTensor, "zzz")

	tb, err := w.OpenTensor("b")
	if err != nil {
		t.Fatal(err)
	}
	_, err = w.OpenTensor("b")
	check(err, ErrDuplicateTensor, `"b"`)
	check(w.Write("b", make([]byte, 10)), ErrDuplicateTensor, `"b"`)

	_, err = tb.WriteAt([]byte{1, 2}, 9)
	check(err, ErrOutOfBounds, `"b"`, "[9, 11)")
	_, err = tb.WriteAt([]byte{1}, -1)
	check(err, ErrOutOfBounds)
	if _, err := tb.WriteAt([]byte{2, 3, 4}, 2); err != nil {
		t.Fatal(err)
	}
	if _, err := tb.WriteAt([]byte{6, 7}, 6); err != nil {
		t.Fatal(err)
	}
	_, err = tb.WriteAt([]byte{9, 9}, 3) // overlaps [2,5)
	check(err, ErrDuplicateTensor, "[3, 5)")
	_, err = tb.WriteAt([]byte{9, 9, 9}, 4) // overlaps [2,5) at byte 4 only
	check(err, ErrDuplicateTensor, "[4, 5)")
	_, err = tb.WriteAt([]byte{9, 9}, 7) // overlaps [6,8)
	check(err, ErrDuplicateTensor)
	if n, err := tb.WriteAt(nil, 10); err != nil || n != 0 {
		t.Fatalf("empty write at end: %d, %v", n, err)
	}
	if _, err := tb.WriteAt([]byte{5}, 5); err != nil { // fills the gap between spans
		t.Fatal(err)
	}
	// [0,2) and [8,10) are missing.
	check(tb.Close(), ErrIncomplete, `"b"`, "6 of 10")
	_, err = tb.WriteAt([]byte{0}, 0)
	if err == nil {
		t.Fatal("WriteAt after Close succeeded")
	}
	// The tensor is back to unwritten: a fresh whole write is allowed.
	want := []byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}
	if err := w.Write("b", want); err != nil {
		t.Fatal(err)
	}
	_, err = w.OpenTensor("b")
	check(err, ErrDuplicateTensor, `"b"`)

	ta, err := w.OpenTensor("a")
	if err != nil {
		t.Fatal(err)
	}
	vals := []float32{1, -2, 0.5, 3}
	if err := ta.WriteFloat32At(vals[2:], 2); err != nil {
		t.Fatal(err)
	}
	if err := ta.WriteFloat32At(vals[:2], 0); err != nil {
		t.Fatal(err)
	}
	if err := ta.Close(); err != nil {
		t.Fatal(err)
	}
	tc, err := w.OpenTensor("c")
	if err != nil {
		t.Fatal(err)
	}
	if err := tc.WriteFloat32At([]float32{1}, 0); err == nil || !strings.Contains(err.Error(), "non-float") {
		t.Fatalf("WriteFloat32At to U8: %v, want a non-float error", err)
	}
	// c left open and unwritten: the writer must refuse to finish.
	check(w.Close(), ErrIncomplete, "c")

	// A complete model written with a mix of Write and OpenTensor reads back.
	dir = t.TempDir()
	w, err = Create(dir, specs, WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write("b", want); err != nil {
		t.Fatal(err)
	}
	if err := w.WriteFloat32("a", vals); err != nil {
		t.Fatal(err)
	}
	tc, err = w.OpenTensor("c")
	if err != nil {
		t.Fatal(err)
	}
	for i := 2; i >= 0; i-- {
		if _, err := tc.WriteAt([]byte{byte(10 + i)}, int64(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tc.Close(); err != nil {
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
	got, _ := s.Get("a")
	f, err := got.Float32()
	if err != nil {
		t.Fatal(err)
	}
	for i := range vals {
		if f[i] != vals[i] {
			t.Errorf("a[%d] = %v, want %v", i, f[i], vals[i])
		}
	}
	c, _ := s.Get("c")
	if string(c.Bytes()) != "\x0a\x0b\x0c" {
		t.Errorf("c = %v, want [10 11 12]", c.Bytes())
	}
}
