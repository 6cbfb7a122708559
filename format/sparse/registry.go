package sparse

import (
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/wanda-go/wanda/format/dtype"
	"github.com/wanda-go/wanda/format/safetensors"
)

// Format is a compressed-tensors sparsity format name.
type Format string

// FormatDense is the format of a directory that is not packed.
const FormatDense Format = "dense"

// Key suffixes shared by the layouts (a layout may add its own).
const (
	SuffixCompressed = ".compressed"
	SuffixBitmask    = ".bitmask"
	SuffixShape      = ".shape"
	weightSuffix     = ".weight"
)

// Layout is one compressed-tensors sparse layout: how the dense row-major
// [rows, cols] weight "<p>.weight" is stored as the tensors "<p><part>". Each
// layout lives in its own file, which registers it (RegisterLayout in init);
// everything else (Pack, Unpack, the packed reader, the CLI's format lists)
// asks the registry, so adding a layout is adding that file.
type Layout struct {
	// Format is the name written to sparsity_config.format.
	Format Format
	// Parts are the key suffixes of the stored tensors in the order they are
	// declared and written; Parts[0] marks a packed weight in a file.
	Parts []string
	// Rank orders the automatic choice: Pack with FormatAuto uses the eligible
	// layout of lowest Rank.
	Rank int
	// Pattern, when not zero, is the N:M pattern every packed tensor must
	// satisfy; Eligible checks it.
	Pattern NM
	// Specs declares the stored tensors of the weight with key prefix p (in
	// Parts order); st is the weight's Scan.
	Specs func(p string, dt dtype.DType, rows, cols int, st Stat) ([]safetensors.Spec, error)
	// Pack returns the data of the stored tensors of a dense weight, in Parts
	// order. The weight is Eligible.
	Pack func(values []byte, dt dtype.DType, rows, cols int) ([][]byte, error)
	// Header validates the headers of a packed weight's stored tensors (in Parts
	// order; the data of small parts such as .shape may be read) and returns the
	// dense dtype and shape. Errors name the offending part and wrap ErrCorrupt.
	Header func(parts []*safetensors.Tensor) (dt dtype.DType, rows, cols int, err error)
	// Unpack returns the dense bytes from the stored tensors' data (Parts order),
	// validating it fully: a malformed input is ErrCorrupt, never a panic.
	Unpack func(parts [][]byte, dt dtype.DType, rows, cols int) ([]byte, error)
}

// Eligible is nil when the weight of scan st can be stored in l: it holds no
// -0.0 (ErrNegativeZero; no layout can restore its sign) and satisfies
// l.Pattern (ErrNot24 / ErrNotNM, in the words of Stat.Why). st must have been
// scanned for l.Pattern.
func (l *Layout) Eligible(st Stat) error {
	if err := st.NegZeroError(); err != nil {
		return err
	}
	if l.Pattern != (NM{}) {
		return st.NMError(l.Pattern)
	}
	return nil
}

var (
	layoutMu sync.RWMutex
	layouts  []*Layout // sorted by Rank, then Format
)

// RegisterLayout adds l to the registry. It panics on a duplicate or
// incomplete layout (programmer errors).
func RegisterLayout(l *Layout) {
	layoutMu.Lock()
	defer layoutMu.Unlock()
	if l == nil || l.Format == "" || l.Format == FormatDense || len(l.Parts) == 0 ||
		l.Specs == nil || l.Pack == nil || l.Header == nil || l.Unpack == nil {
		panic("sparse: RegisterLayout of an incomplete layout")
	}
	for _, o := range layouts {
		if o.Format == l.Format {
			panic("sparse: RegisterLayout called twice for " + string(l.Format))
		}
	}
	layouts = append(layouts, l)
	slices.SortStableFunc(layouts, func(a, b *Layout) int {
		if a.Rank != b.Rank {
			return a.Rank - b.Rank
		}
		return strings.Compare(string(a.Format), string(b.Format))
	})
}

// LayoutOf returns the registered layout of format f.
func LayoutOf(f Format) (*Layout, bool) {
	layoutMu.RLock()
	defer layoutMu.RUnlock()
	for _, l := range layouts {
		if l.Format == f {
			return l, true
		}
	}
	return nil, false
}

// Layouts lists the registered layouts by Rank.
func Layouts() []*Layout {
	layoutMu.RLock()
	defer layoutMu.RUnlock()
	return slices.Clone(layouts)
}

// Formats lists the registered layouts' formats by Rank.
func Formats() []Format {
	var out []Format
	for _, l := range Layouts() {
		out = append(out, l.Format)
	}
	return out
}

// FormatList is Formats joined with ", " (for messages and help texts).
func FormatList() string {
	var s []string
	for _, f := range Formats() {
		s = append(s, string(f))
	}
	return strings.Join(s, ", ")
}

// ParseFormat accepts the registered formats and "dense".
func ParseFormat(s string) (Format, error) {
	if f := Format(s); f == FormatDense {
		return f, nil
	} else if _, ok := LayoutOf(f); ok {
		return f, nil
	}
	return "", fmt.Errorf("sparse: unknown format %q (want %s or %s)", s, FormatList(), FormatDense)
}

// Prefix is the key prefix of a packed weight: the weight's name without
// ".weight" ("model.layers.0.mlp.up_proj.weight" → "model.layers.0.mlp.up_proj").
// ok is false for a name that does not end in ".weight".
func Prefix(weightName string) (prefix string, ok bool) {
	return strings.CutSuffix(weightName, weightSuffix)
}

// WeightName is the inverse of Prefix.
func WeightName(prefix string) string { return prefix + weightSuffix }

// RowBytes is the number of bitmask bytes per row: ceil(cols/8).
func RowBytes(cols int) int { return (cols + 7) / 8 }

// checkPadding verifies that the bits past column cols-1 of every row are zero.
func checkPadding(bitmask []byte, rows, cols int) error {
	if cols%8 == 0 {
		return nil
	}
	rb := RowBytes(cols)
	pad := byte(0xff) << (cols % 8)
	for r := 0; r < rows; r++ {
		if bitmask[r*rb+rb-1]&pad != 0 {
			return fmt.Errorf("%w: row %d: bitmask bits set past column %d", ErrCorrupt, r, cols-1)
		}
	}
	return nil
}

// ShapeBytes is the int64 little-endian encoding of [rows, cols] stored in
// "<p>.shape" (shape [2, 1] for sparse-24-bitmask, [2] for sparse-bitmask).
func ShapeBytes(rows, cols int) []byte {
	b := make([]byte, 16)
	binary.LittleEndian.PutUint64(b, uint64(rows))
	binary.LittleEndian.PutUint64(b[8:], uint64(cols))
	return b
}

// ParseShape decodes the int64 values of a "<p>.shape" tensor.
func ParseShape(v []int64) (rows, cols int, err error) {
	if len(v) != 2 {
		return 0, 0, fmt.Errorf("%w: shape tensor has %d values, want 2", ErrCorrupt, len(v))
	}
	if !dimsOK(v[0], v[1]) {
		return 0, 0, fmt.Errorf("%w: shape [%d, %d] out of range", ErrCorrupt, v[0], v[1])
	}
	return int(v[0]), int(v[1]), nil
}

// headerShape validates the .shape part (I64 with 2 values) and the float
// dtype of the .compressed part, and returns the dense dtype and shape.
func headerShape(comp, shape *safetensors.Tensor) (dtype.DType, int, int, error) {
	if shape.DType != dtype.I64 || shape.Numel() != 2 {
		return 0, 0, 0, fmt.Errorf("%w: %q is %s%v, want I64 with 2 values", ErrCorrupt, shape.Name, shape.DType, shape.Shape)
	}
	v, err := shape.Int64s()
	if err != nil {
		return 0, 0, 0, fmt.Errorf("%w: %q: %w", ErrCorrupt, shape.Name, err)
	}
	rows, cols, err := ParseShape(v)
	if err != nil {
		return 0, 0, 0, err
	}
	if !comp.DType.IsFloat() {
		return 0, 0, 0, fmt.Errorf("%w: %q has dtype %s, want a float dtype", ErrCorrupt, comp.Name, comp.DType)
	}
	return comp.DType, rows, cols, nil
}

// checkBitmaskHeader validates a [rows, RowBytes(cols)] U8 bitmask part.
func checkBitmaskHeader(bm *safetensors.Tensor, rows, cols int) error {
	if want := []int64{int64(rows), int64(RowBytes(cols))}; bm.DType != dtype.U8 || !slices.Equal(bm.Shape, want) {
		return fmt.Errorf("%w: %q is %s%v, want U8%v", ErrCorrupt, bm.Name, bm.DType, bm.Shape, want)
	}
	return nil
}

func putI64(b []byte, v int64) {
	binary.LittleEndian.PutUint64(b, uint64(v))
}
