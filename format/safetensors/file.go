package safetensors

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"sync"

	"github.com/edsrzf/mmap-go"

	"github.com/wanda-go/wanda/format/dtype"
	"github.com/wanda-go/wanda/internal/regfile"
)

// Tensor is one tensor of a safetensors file. Its data is a zero-copy view into
// the file's memory map when the data is aligned for its dtype, and a private
// copy otherwise. Data is valid until the owning File (or Set) is closed.
type Tensor struct {
	Name  string
	DType dtype.DType
	Shape []int64
	File  string // path of the shard it lives in

	f          *File
	begin, end int64 // absolute offsets in the file

	mu   sync.Mutex
	copy []byte // private copy of unaligned data (made lazily, dropped by Release)
}

// Numel returns the number of elements (1 for a scalar of shape []).
func (t *Tensor) Numel() int64 {
	n, _ := numel(t.Shape) // validated at Open
	return n
}

// aligned reports whether the data can be handed out as a view.
func (t *Tensor) aligned() bool {
	return t.begin%int64(t.DType.Size()) == 0
}

// Bytes returns the raw little-endian data (row-major). For aligned data this is
// a zero-copy, read-only view into the memory map: do not write to it, and do
// not use it after the File is closed.
func (t *Tensor) Bytes() []byte {
	if t.begin == t.end {
		return []byte{}
	}
	mm := t.f.mapping()
	if mm == nil {
		return nil
	}
	if t.aligned() {
		return mm[t.begin:t.end:t.end]
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.copy == nil {
		t.copy = make([]byte, t.end-t.begin)
		copy(t.copy, mm[t.begin:t.end])
	}
	return t.copy
}

// Float32 returns a widened copy of a float tensor (F32, F16, BF16, F64).
func (t *Tensor) Float32() ([]float32, error) {
	if !t.DType.IsFloat() {
		return nil, fmt.Errorf("%s: tensor %q: Float32 of non-float dtype %s", t.File, t.Name, t.DType)
	}
	dst := make([]float32, t.Numel())
	if err := t.ReadFloat32(dst); err != nil {
		return nil, err
	}
	return dst, nil
}

// ReadFloat32 widens a float tensor into dst, which must have Numel elements.
func (t *Tensor) ReadFloat32(dst []float32) error {
	if !t.DType.IsFloat() {
		return fmt.Errorf("%s: tensor %q: ReadFloat32 of non-float dtype %s", t.File, t.Name, t.DType)
	}
	if int64(len(dst)) != t.Numel() {
		return fmt.Errorf("%s: tensor %q: ReadFloat32 into %d floats, tensor has %d: %w", t.File, t.Name, len(dst), t.Numel(), ErrWrongSize)
	}
	src, err := t.rawBytes()
	if err != nil {
		return err
	}
	if err := dtype.ToFloat32(dst, src, t.DType); err != nil {
		return fmt.Errorf("%s: tensor %q: %w", t.File, t.Name, err)
	}
	return nil
}

// Int64s returns a widened copy of an integer tensor (I8, U8, I16, I32, I64, BOOL).
func (t *Tensor) Int64s() ([]int64, error) {
	if !t.DType.IsInt() {
		return nil, fmt.Errorf("%s: tensor %q: Int64s of non-integer dtype %s", t.File, t.Name, t.DType)
	}
	src, err := t.rawBytes()
	if err != nil {
		return nil, err
	}
	dst := make([]int64, t.Numel())
	le := binary.LittleEndian
	switch t.DType {
	case dtype.I8:
		for i := range dst {
			dst[i] = int64(int8(src[i]))
		}
	case dtype.U8, dtype.Bool:
		for i := range dst {
			dst[i] = int64(src[i])
		}
	case dtype.I16:
		for i := range dst {
			dst[i] = int64(int16(le.Uint16(src[2*i:])))
		}
	case dtype.I32:
		for i := range dst {
			dst[i] = int64(int32(le.Uint32(src[4*i:])))
		}
	case dtype.I64:
		for i := range dst {
			dst[i] = int64(le.Uint64(src[8*i:]))
		}
	}
	return dst, nil
}

// rawBytes is Bytes with an error for a closed file. Decoding goes through
// encoding/binary, so it reads the mapping directly whatever the alignment.
func (t *Tensor) rawBytes() ([]byte, error) {
	if t.begin == t.end {
		return []byte{}, nil
	}
	mm := t.f.mapping()
	if mm == nil {
		return nil, fmt.Errorf("%s: tensor %q: file is closed", t.File, t.Name)
	}
	return mm[t.begin:t.end:t.end], nil
}

// File is an open, memory-mapped, fully validated safetensors file.
type File struct {
	Path     string
	Metadata map[string]string // __metadata__ (nil when absent)

	mu      sync.RWMutex
	osf     *os.File
	mm      mmap.MMap
	closed  bool
	tensors []*Tensor
	byName  map[string]*Tensor
}

// Open memory-maps the safetensors file at path and validates its header
// completely (see the package documentation for the checks).
func Open(path string) (*File, error) {
	osf, err := regfile.Open(path)
	if errors.Is(err, regfile.ErrNotRegular) {
		return nil, err // names the path and what it is
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	fi, err := osf.Stat()
	if err != nil {
		osf.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if fi.Size() > math.MaxInt {
		osf.Close()
		return nil, fmt.Errorf("%s: file too large to map (%d bytes)", path, fi.Size())
	}
	var mm mmap.MMap
	if fi.Size() > 0 {
		mm, err = mmap.Map(osf, mmap.RDONLY, 0)
		if err != nil {
			osf.Close()
			return nil, fmt.Errorf("%s: mmap: %w", path, err)
		}
	}
	h, err := parseHeader(path, mm)
	if err != nil {
		if mm != nil {
			mm.Unmap()
		}
		osf.Close()
		return nil, err
	}
	f := &File{Path: path, Metadata: h.meta, osf: osf, mm: mm, byName: make(map[string]*Tensor, len(h.entries))}
	f.tensors = make([]*Tensor, len(h.entries))
	for i, e := range h.entries {
		t := &Tensor{Name: e.name, DType: e.dt, Shape: e.shape, File: path, f: f, begin: e.begin, end: e.end}
		f.tensors[i] = t
		f.byName[e.name] = t
	}
	return f, nil
}

// mapping returns the live mapping, or nil once the file is closed.
func (f *File) mapping() mmap.MMap {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.closed {
		return nil
	}
	return f.mm
}

// Tensors returns the tensors sorted by data offset.
func (f *File) Tensors() []*Tensor {
	out := make([]*Tensor, len(f.tensors))
	copy(out, f.tensors)
	return out
}

// Tensor returns the tensor called name.
func (f *File) Tensor(name string) (*Tensor, bool) {
	t, ok := f.byName[name]
	return t, ok
}

// Release tells the kernel that the pages holding t's data are not needed for
// now (madvise MADV_DONTNEED on the page range), and drops a private copy of
// unaligned data. The data stays readable: later accesses fault the pages back
// in from the file. Best effort; t must belong to f.
func (f *File) Release(t *Tensor) {
	if t == nil || t.f != f {
		return
	}
	t.mu.Lock()
	t.copy = nil
	t.mu.Unlock()
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.closed || t.begin == t.end {
		return
	}
	page := int64(os.Getpagesize())
	lo := t.begin / page * page
	hi := (t.end + page - 1) / page * page
	if hi > int64(len(f.mm)) {
		hi = int64(len(f.mm))
	}
	dontNeed(f.mm[lo:hi])
}

// Close unmaps and closes the file. Tensor data views become invalid.
func (f *File) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil
	}
	f.closed = true
	var errs []error
	if f.mm != nil {
		if err := f.mm.Unmap(); err != nil {
			errs = append(errs, fmt.Errorf("%s: munmap: %w", f.Path, err))
		}
		f.mm = nil
	}
	if err := f.osf.Close(); err != nil {
		errs = append(errs, fmt.Errorf("%s: %w", f.Path, err))
	}
	return errors.Join(errs...)
}
