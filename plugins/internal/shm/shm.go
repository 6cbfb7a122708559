package shm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"unsafe"

	mmap "github.com/edsrzf/mmap-go"

	pb "github.com/wanda-go/wanda/plugins/proto"
)

// Align is the byte alignment of every tensor offset the host writes.
const Align = 4096

// ErrDesc reports a tensor descriptor that does not describe valid bytes.
var ErrDesc = errors.New("bad tensor descriptor")

func init() {
	// Views reinterpret the mapped bytes as native float32s; the file format is little-endian.
	var probe [2]byte
	binary.NativeEndian.PutUint16(probe[:], 1)
	if probe[0] != 1 {
		panic("shm: big-endian machines are not supported")
	}
}

// ElemSize returns the size in bytes of one element of dt, or 0 for an unknown type.
func ElemSize(dt pb.DType) int {
	switch dt {
	case pb.DType_DTYPE_F32:
		return 4
	case pb.DType_DTYPE_U8:
		return 1
	case pb.DType_DTYPE_BF16, pb.DType_DTYPE_F16:
		return 2
	}
	return 0
}

// NumElems returns the product of shape, checking for overflow.
func NumElems(shape []uint64) (int, error) {
	n := uint64(1)
	for _, d := range shape {
		if d != 0 && n > math.MaxInt32*uint64(math.MaxInt32)/d {
			return 0, fmt.Errorf("%w: shape %v too large", ErrDesc, shape)
		}
		n *= d
	}
	return int(n), nil
}

// Shape converts a descriptor shape to ints.
func Shape(shape []uint64) []int {
	s := make([]int, len(shape))
	for i, d := range shape {
		s[i] = int(d)
	}
	return s
}

// AlignUp rounds n up to a multiple of Align.
func AlignUp(n int) int { return (n + Align - 1) &^ (Align - 1) }

// Float32s views b (4-byte aligned, length a multiple of 4) as float32s.
func Float32s(b []byte) []float32 {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(&b[0])), len(b)/4)
}

// Region is a mapped tensor on the plugin side.
type Region struct {
	m     mmap.MMap
	bytes []byte
	n     int
}

// Open maps the tensor d, which must have element type dt, read-only or read-write.
// A zero-element tensor maps nothing.
func Open(d *pb.TensorDesc, dt pb.DType, writable bool) (*Region, error) {
	if d == nil {
		return nil, fmt.Errorf("%w: missing", ErrDesc)
	}
	if d.Dtype != dt {
		return nil, fmt.Errorf("%w: %s: dtype %v, want %v", ErrDesc, d.Path, d.Dtype, dt)
	}
	es := ElemSize(dt)
	if es == 0 {
		return nil, fmt.Errorf("%w: %s: unknown dtype %v", ErrDesc, d.Path, dt)
	}
	n, err := NumElems(d.Shape)
	if err != nil {
		return nil, err
	}
	if d.Offset%uint64(es) != 0 {
		return nil, fmt.Errorf("%w: %s: offset %d not aligned to %d bytes", ErrDesc, d.Path, d.Offset, es)
	}
	r := &Region{n: n}
	if n == 0 {
		return r, nil
	}
	flag, prot := os.O_RDONLY, mmap.RDONLY
	if writable {
		flag, prot = os.O_RDWR, mmap.RDWR
	}
	f, err := os.OpenFile(d.Path, flag, 0)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDesc, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDesc, err)
	}
	length := uint64(n) * uint64(es)
	if d.Offset > uint64(fi.Size()) || length > uint64(fi.Size())-d.Offset {
		return nil, fmt.Errorf("%w: %s: bytes [%d, %d) outside the file (%d bytes)",
			ErrDesc, d.Path, d.Offset, d.Offset+length, fi.Size())
	}
	page := uint64(os.Getpagesize())
	start := d.Offset &^ (page - 1)
	m, err := mmap.MapRegion(f, int(d.Offset-start+length), prot, 0, int64(start))
	if err != nil {
		return nil, fmt.Errorf("%s: mmap: %w", d.Path, err)
	}
	r.m = m
	r.bytes = m[d.Offset-start : d.Offset-start+length]
	return r, nil
}

// Bytes returns the tensor's bytes.
func (r *Region) Bytes() []byte { return r.bytes }

// Float32 returns the tensor as float32s (valid for DTYPE_F32 regions).
func (r *Region) Float32() []float32 { return Float32s(r.bytes) }

// Close unmaps the region; its slices must not be used afterwards.
func (r *Region) Close() error {
	if r == nil || r.m == nil {
		return nil
	}
	return r.m.Unmap()
}
