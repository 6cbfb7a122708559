package shm

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"testing"

	pb "github.com/wanda-go/wanda/plugins/proto"
)

func TestPoolAndOpen(t *testing.T) {
	p := NewPool(t.TempDir())
	f, err := p.Get(10)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Bytes()) != Align {
		t.Fatalf("size %d, want %d", len(f.Bytes()), Align)
	}
	// Write a 2×3 float32 matrix at offset 4096 (growing the file) and read it back the way a
	// plugin does, checking the little-endian row-major bytes independently.
	if err := f.Reserve(Align + 24); err != nil {
		t.Fatal(err)
	}
	vals := []float32{1, -2, 3.5, 0, float32(math.Inf(1)), 1e-40}
	copy(Float32s(f.Bytes()[Align:Align+24]), vals)
	raw, err := os.ReadFile(f.Path())
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range vals {
		b := raw[Align+4*k : Align+4*k+4]
		got := math.Float32frombits(uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24)
		if math.Float32bits(got) != math.Float32bits(v) {
			t.Fatalf("element %d on disk is %v, want %v", k, got, v)
		}
	}
	d := &pb.TensorDesc{Path: f.Path(), Offset: Align, Dtype: pb.DType_DTYPE_F32, Shape: []uint64{2, 3}}
	r, err := Open(d, pb.DType_DTYPE_F32, false)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range r.Float32() {
		if math.Float32bits(v) != math.Float32bits(vals[k]) {
			t.Fatalf("mapped element %d = %v", k, v)
		}
	}
	r.Close()

	// An unaligned (but element-aligned) offset maps the enclosing page.
	d2 := &pb.TensorDesc{Path: f.Path(), Offset: Align + 4, Dtype: pb.DType_DTYPE_F32, Shape: []uint64{5}}
	r, err = Open(d2, pb.DType_DTYPE_F32, true)
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Float32()[1]; got != 3.5 {
		t.Fatalf("offset view: %v", got)
	}
	r.Float32()[0] = 42 // read-write: visible through the host's mapping
	r.Close()
	if got := Float32s(f.Bytes()[Align : Align+8])[1]; got != 42 {
		t.Fatalf("write through the plugin mapping: %v", got)
	}
	p.Put(f)

	g, err := p.Get(1)
	if err != nil || g != f {
		t.Fatalf("pool did not reuse the free file: %v", err)
	}
	p.Put(g)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(f.Path()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("scratch file left behind: %v", err)
	}
	if _, err := p.Get(1); err == nil {
		t.Fatal("Get after Close")
	}
}

func TestOpenRejectsBadDescriptors(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, make([]byte, 100), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, d := range []*pb.TensorDesc{
		nil,
		{Path: path, Dtype: pb.DType_DTYPE_F32, Shape: []uint64{26}},                 // 104 bytes > 100
		{Path: path, Offset: 8, Dtype: pb.DType_DTYPE_F32, Shape: []uint64{24}},      // ends at 104
		{Path: path, Offset: 1 << 62, Dtype: pb.DType_DTYPE_F32, Shape: []uint64{1}}, // far outside
		{Path: path, Offset: 2, Dtype: pb.DType_DTYPE_F32, Shape: []uint64{1}},       // misaligned
		{Path: path, Dtype: pb.DType_DTYPE_U8, Shape: []uint64{1}},                   // wrong dtype
		{Path: path, Dtype: pb.DType_DTYPE_F32, Shape: []uint64{1 << 40, 1 << 40}},   // overflow
		{Path: filepath.Join(filepath.Dir(path), "missing"), Dtype: pb.DType_DTYPE_F32, Shape: []uint64{1}},
	} {
		if r, err := Open(d, pb.DType_DTYPE_F32, false); !errors.Is(err, ErrDesc) {
			r.Close()
			t.Errorf("Open(%v): %v, want ErrDesc", d, err)
		}
	}
	r, err := Open(&pb.TensorDesc{Path: path, Dtype: pb.DType_DTYPE_F32, Shape: []uint64{25}}, pb.DType_DTYPE_F32, false)
	if err != nil || len(r.Float32()) != 25 {
		t.Fatalf("exact fit: %v", err)
	}
	r.Close()
	r, err = Open(&pb.TensorDesc{Path: path, Dtype: pb.DType_DTYPE_F32, Shape: []uint64{0, 5}}, pb.DType_DTYPE_F32, false)
	if err != nil || len(r.Float32()) != 0 {
		t.Fatalf("empty tensor: %v", err)
	}
	r.Close()
}

func TestPoolTrim(t *testing.T) {
	p := NewPool(t.TempDir())
	a, err := p.Get(3 * Align)
	if err != nil {
		t.Fatal(err)
	}
	b, err := p.Get(Align)
	if err != nil {
		t.Fatal(err)
	}
	p.Put(a)
	if err := p.Trim(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(a.Path()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a free file survived Trim: %v", err)
	}
	if _, err := os.Stat(b.Path()); err != nil {
		t.Errorf("a file in use was removed: %v", err)
	}
	c, err := p.Get(Align)
	if err != nil || c == a {
		t.Fatalf("Get after Trim: %v (reused the removed file: %v)", err, c == a)
	}
	p.Put(b)
	p.Put(c)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	for _, f := range []*File{b, c} {
		if _, err := os.Stat(f.Path()); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left behind", f.Path())
		}
	}
}
