package sparse

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/wanda-go/wanda/format/dtype"
	"github.com/wanda-go/wanda/format/safetensors"
)

// MaskFileName is the name of the mask sidecar in a pruned model directory.
const MaskFileName = "sparsity_masks.safetensors"

// ErrMask: a mask file or mask is malformed or does not fit its weight.
var ErrMask = errors.New("sparse: bad mask")

// Mask is a bitset over a row-major [Rows, Cols] matrix: bit k%64 of Bits[k/64],
// k = i*Cols + j, is set when weight (i, j) is pruned (+0.0). The pipeline's
// stages use this type too (pipeline.Mask is an alias).
type Mask struct {
	Rows, Cols int
	Bits       []uint64
}

// NewMask returns an all-kept mask.
func NewMask(rows, cols int) *Mask {
	return &Mask{Rows: rows, Cols: cols, Bits: make([]uint64, (rows*cols+63)/64)}
}

// Get reports whether (i, j) is pruned.
func (m *Mask) Get(i, j int) bool {
	k := i*m.Cols + j
	return m.Bits[k>>6]&(1<<(uint(k)&63)) != 0
}

// Set marks (i, j) as pruned.
func (m *Mask) Set(i, j int) {
	k := i*m.Cols + j
	m.Bits[k>>6] |= 1 << (uint(k) & 63)
}

// Zero sets the pruned entries of w (Rows·Cols values, row-major) to +0.0.
func (m *Mask) Zero(w []float32) {
	if len(w) != m.Rows*m.Cols {
		panic(fmt.Sprintf("sparse: mask %dx%d applied to %d values", m.Rows, m.Cols, len(w)))
	}
	for k := range w {
		if m.Bits[k>>6]&(1<<(uint(k)&63)) != 0 {
			w[k] = 0
		}
	}
}

// Count is the number of pruned entries.
func (m *Mask) Count() int {
	n := 0
	for _, w := range m.Bits {
		n += bits.OnesCount64(w)
	}
	return n
}

// valid checks the dimensions, the length of Bits and that bits past the last
// element are clear.
func (m *Mask) valid() error {
	if !dimsOK(int64(m.Rows), int64(m.Cols)) {
		return fmt.Errorf("%w: shape [%d, %d] out of range", ErrMask, m.Rows, m.Cols)
	}
	n := m.Rows * m.Cols
	if len(m.Bits) != (n+63)/64 {
		return fmt.Errorf("%w: %d words for [%d, %d], want %d", ErrMask, len(m.Bits), m.Rows, m.Cols, (n+63)/64)
	}
	if n%64 != 0 && m.Bits[len(m.Bits)-1]>>(n%64) != 0 {
		return fmt.Errorf("%w: bits set past element %d", ErrMask, n-1)
	}
	return nil
}

// MaskFromZeros returns the mask of the exact zeros (either sign) of the dense
// row-major [rows, cols] tensor values of float dtype dt.
func MaskFromZeros(values []byte, dt dtype.DType, rows, cols int) (*Mask, error) {
	size, n, err := checkDims(dt, rows, cols)
	if err != nil {
		return nil, err
	}
	if len(values) != n*size {
		return nil, fmt.Errorf("%w: %d bytes for %s[%d, %d], want %d", ErrShape, len(values), dt, rows, cols, n*size)
	}
	m := NewMask(rows, cols)
	k := 0
	for ; k+4 <= n; k += 4 {
		nz, _ := lanes4(values[k*size:], size)
		m.Bits[k>>6] |= uint64(^nz&0xf) << (uint(k) & 63) // k%4 == 0: the nibble never straddles words
	}
	for ; k < n; k++ {
		if zeroKind(values[k*size:(k+1)*size]) != 0 {
			m.Bits[k>>6] |= 1 << (uint(k) & 63)
		}
	}
	return m, nil
}

// Bytes packs the mask for the mask file: ceil(Rows*Cols/8) bytes, bit k%8 of
// byte k/8 is element k (the little-endian image of Bits).
func (m *Mask) Bytes() []byte {
	n := m.Rows * m.Cols
	b := make([]byte, len(m.Bits)*8)
	for i, w := range m.Bits {
		binary.LittleEndian.PutUint64(b[8*i:], w)
	}
	return b[:(n+7)/8]
}

// MaskFromBytes is the inverse of Mask.Bytes. It checks the length and that the
// padding bits of the last byte are clear.
func MaskFromBytes(b []byte, rows, cols int) (*Mask, error) {
	if !dimsOK(int64(rows), int64(cols)) {
		return nil, fmt.Errorf("%w: shape [%d, %d] out of range", ErrMask, rows, cols)
	}
	n := rows * cols
	if len(b) != (n+7)/8 {
		return nil, fmt.Errorf("%w: %d bytes for [%d, %d], want %d", ErrMask, len(b), rows, cols, (n+7)/8)
	}
	if n%8 != 0 && b[len(b)-1]>>(n%8) != 0 {
		return nil, fmt.Errorf("%w: bits set past element %d", ErrMask, n-1)
	}
	m := NewMask(rows, cols)
	var tmp [8]byte
	for i := range m.Bits {
		c := copy(tmp[:], b[8*i:])
		clear(tmp[c:])
		m.Bits[i] = binary.LittleEndian.Uint64(tmp[:])
	}
	return m, nil
}

// Metadata keys of the mask file other than tensor names.
var maskMeta = map[string]string{
	"format":      "wanda-sparsity-masks",
	"version":     "1",
	"bit_order":   "little",
	"bit_meaning": "1=pruned",
	"layout":      "row-major, flattened",
}

func shapeString(rows, cols int) string { return fmt.Sprintf("[%d, %d]", rows, cols) }

var shapeRE = regexp.MustCompile(`^\[\s*(\d+)\s*,\s*(\d+)\s*\]$`)

func parseShapeString(s string) (rows, cols int, ok bool) {
	m := shapeRE.FindStringSubmatch(s)
	if m == nil {
		return 0, 0, false
	}
	r, err1 := strconv.Atoi(m[1])
	c, err2 := strconv.Atoi(m[2])
	if err1 != nil || err2 != nil {
		return 0, 0, false
	}
	return r, c, true
}

// MaskShape declares one mask of a MaskWriter.
type MaskShape struct {
	Name       string // the weight's tensor name
	Rows, Cols int
}

// MaskWriter streams masks into a mask file: every mask is declared at
// creation and then written once, in any order, so that only one mask needs to
// be in memory at a time.
type MaskWriter struct {
	path   string
	w      *safetensors.Writer
	shapes map[string]MaskShape
}

// CreateMaskWriter creates the mask file at path (whose name must end in
// ".safetensors"; normally <dir>/MaskFileName) for the declared masks.
func CreateMaskWriter(path string, shapes []MaskShape) (*MaskWriter, error) {
	base, ok := strings.CutSuffix(filepath.Base(path), ".safetensors")
	if !ok || base == "" {
		return nil, fmt.Errorf("%s: a mask file name must end in .safetensors", path)
	}
	meta := make(map[string]string, len(maskMeta)+len(shapes))
	for k, v := range maskMeta {
		meta[k] = v
	}
	specs := make([]safetensors.Spec, len(shapes))
	byName := make(map[string]MaskShape, len(shapes))
	for i, s := range shapes {
		if _, reserved := maskMeta[s.Name]; reserved || s.Name == "" {
			return nil, fmt.Errorf("%s: tensor name %q is reserved: %w", path, s.Name, ErrMask)
		}
		if _, dup := byName[s.Name]; dup {
			return nil, fmt.Errorf("%s: tensor %q declared twice: %w", path, s.Name, ErrMask)
		}
		if err := (&Mask{Rows: s.Rows, Cols: s.Cols, Bits: make([]uint64, 0)}).validDims(); err != nil {
			return nil, fmt.Errorf("%s: tensor %q: %w", path, s.Name, err)
		}
		byName[s.Name] = s
		meta[s.Name] = shapeString(s.Rows, s.Cols)
		specs[i] = safetensors.Spec{Name: s.Name, DType: dtype.U8, Shape: []int64{int64((s.Rows*s.Cols + 7) / 8)}}
	}
	w, err := safetensors.Create(filepath.Dir(path), specs, safetensors.WriterOptions{Metadata: meta, BaseName: base})
	if err != nil {
		return nil, err
	}
	return &MaskWriter{path: path, w: w, shapes: byName}, nil
}

func (m *Mask) validDims() error {
	if !dimsOK(int64(m.Rows), int64(m.Cols)) {
		return fmt.Errorf("%w: shape [%d, %d] out of range", ErrMask, m.Rows, m.Cols)
	}
	return nil
}

// Write writes the mask of the declared tensor name.
func (w *MaskWriter) Write(name string, m *Mask) error {
	s, ok := w.shapes[name]
	if !ok {
		return fmt.Errorf("%s: tensor %q was not declared: %w", w.path, name, ErrMask)
	}
	if m.Rows != s.Rows || m.Cols != s.Cols {
		return fmt.Errorf("%s: tensor %q: mask is [%d, %d], declared [%d, %d]: %w", w.path, name, m.Rows, m.Cols, s.Rows, s.Cols, ErrMask)
	}
	if err := m.valid(); err != nil {
		return fmt.Errorf("%s: tensor %q: %w", w.path, name, err)
	}
	return w.w.Write(name, m.Bytes())
}

// Close finishes the file; it fails (and removes the file) if a declared mask
// was not written.
func (w *MaskWriter) Close() error { return w.w.Close() }

// Abort removes the partial file.
func (w *MaskWriter) Abort() error { return w.w.Abort() }

// WriteMasks writes all masks to the mask file at path (convenience over
// MaskWriter for masks that are all in memory).
func WriteMasks(path string, masks map[string]*Mask) error {
	names := make([]string, 0, len(masks))
	for n := range masks {
		names = append(names, n)
	}
	sort.Strings(names)
	shapes := make([]MaskShape, len(names))
	for i, n := range names {
		shapes[i] = MaskShape{Name: n, Rows: masks[n].Rows, Cols: masks[n].Cols}
	}
	w, err := CreateMaskWriter(path, shapes)
	if err != nil {
		return err
	}
	for _, n := range names {
		if err := w.Write(n, masks[n]); err != nil {
			w.Abort()
			return err
		}
	}
	return w.Close()
}

// MaskFile is an open mask file.
type MaskFile struct {
	f      *safetensors.File
	shapes map[string]MaskShape
	names  []string
}

// OpenMasks opens and validates the mask file at path: every tensor must be a
// 1-D U8 tensor with a "[rows, cols]" entry in __metadata__ and the matching
// byte count.
func OpenMasks(path string) (*MaskFile, error) {
	f, err := safetensors.Open(path)
	if err != nil {
		return nil, err
	}
	mf := &MaskFile{f: f, shapes: map[string]MaskShape{}}
	for _, t := range f.Tensors() {
		bad := func(format string, args ...any) (*MaskFile, error) {
			f.Close()
			return nil, fmt.Errorf("%s: tensor %q: %s: %w", path, t.Name, fmt.Sprintf(format, args...), ErrMask)
		}
		s, ok := f.Metadata[t.Name]
		if !ok {
			return bad("no shape in __metadata__")
		}
		rows, cols, ok := parseShapeString(s)
		if !ok {
			return bad("shape %q in __metadata__ is not \"[rows, cols]\"", s)
		}
		if err := (&Mask{Rows: rows, Cols: cols}).validDims(); err != nil {
			return bad("%v", err)
		}
		if t.DType != dtype.U8 || len(t.Shape) != 1 || t.Shape[0] != int64((rows*cols+7)/8) {
			return bad("%s%v, want U8[%d] for a [%d, %d] mask", t.DType, t.Shape, (rows*cols+7)/8, rows, cols)
		}
		mf.shapes[t.Name] = MaskShape{Name: t.Name, Rows: rows, Cols: cols}
		mf.names = append(mf.names, t.Name)
	}
	sort.Strings(mf.names)
	return mf, nil
}

// Names lists the masked tensors, sorted.
func (mf *MaskFile) Names() []string { return append([]string(nil), mf.names...) }

// Shape returns the declared shape of the mask of name.
func (mf *MaskFile) Shape(name string) (rows, cols int, ok bool) {
	s, ok := mf.shapes[name]
	return s.Rows, s.Cols, ok
}

// Mask reads the mask of tensor name; ok is false when the file has none.
func (mf *MaskFile) Mask(name string) (m *Mask, ok bool, err error) {
	s, ok := mf.shapes[name]
	if !ok {
		return nil, false, nil
	}
	t, _ := mf.f.Tensor(name)
	m, err = MaskFromBytes(t.Bytes(), s.Rows, s.Cols)
	mf.f.Release(t)
	if err != nil {
		return nil, true, fmt.Errorf("%s: tensor %q: %w", mf.f.Path, name, err)
	}
	return m, true, nil
}

// Close closes the file.
func (mf *MaskFile) Close() error { return mf.f.Close() }

// ReadMasks reads every mask of the mask file at path.
func ReadMasks(path string) (map[string]*Mask, error) {
	mf, err := OpenMasks(path)
	if err != nil {
		return nil, err
	}
	defer mf.Close()
	out := make(map[string]*Mask, len(mf.names))
	for _, n := range mf.names {
		m, _, err := mf.Mask(n)
		if err != nil {
			return nil, err
		}
		out[n] = m
	}
	return out, nil
}
