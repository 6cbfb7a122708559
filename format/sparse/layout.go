package sparse

import (
	"fmt"
	"strings"

	"github.com/wanda-go/wanda/format/dtype"
	"github.com/wanda-go/wanda/format/safetensors"
)

// Format is a compressed-tensors sparsity format name.
type Format string

// The formats wanda reads and writes ("dense" means not packed).
const (
	Format24      Format = "sparse-24-bitmask"
	FormatBitmask Format = "sparse-bitmask"
	FormatDense   Format = "dense"
)

// ParseFormat accepts "sparse-24-bitmask", "sparse-bitmask" and "dense".
func ParseFormat(s string) (Format, error) {
	switch f := Format(s); f {
	case Format24, FormatBitmask, FormatDense:
		return f, nil
	}
	return "", fmt.Errorf("sparse: unknown format %q (want %q, %q or %q)", s, Format24, FormatBitmask, FormatDense)
}

// Key suffixes of the packed tensors of one weight.
const (
	SuffixCompressed = ".compressed"
	SuffixBitmask    = ".bitmask"
	SuffixShape      = ".shape"
	SuffixRowOffsets = ".row_offsets"
	weightSuffix     = ".weight"
)

// Prefix is the key prefix of a packed weight: the weight's name without
// ".weight" ("model.layers.0.mlp.up_proj.weight" → "model.layers.0.mlp.up_proj").
// ok is false for a name that does not end in ".weight".
func Prefix(weightName string) (prefix string, ok bool) {
	return strings.CutSuffix(weightName, weightSuffix)
}

// WeightName is the inverse of Prefix.
func WeightName(prefix string) string { return prefix + weightSuffix }

// Specs declares the packed tensors of the [rows, cols] weight with key prefix
// p and dtype dt, in the order compressed, bitmask, [row_offsets,] shape. nnz
// (the number of nonzeros) is used only by FormatBitmask.
func Specs(f Format, p string, dt dtype.DType, rows, cols int, nnz int64) ([]safetensors.Spec, error) {
	r, c := int64(rows), int64(cols)
	bm := safetensors.Spec{Name: p + SuffixBitmask, DType: dtype.U8, Shape: []int64{r, int64(RowBytes(cols))}}
	switch f {
	case Format24:
		if cols%4 != 0 {
			return nil, fmt.Errorf("%w: %d columns is not a multiple of 4", ErrShape, cols)
		}
		return []safetensors.Spec{
			{Name: p + SuffixCompressed, DType: dt, Shape: []int64{r, c / 2}},
			bm,
			{Name: p + SuffixShape, DType: dtype.I64, Shape: []int64{2, 1}},
		}, nil
	case FormatBitmask:
		return []safetensors.Spec{
			{Name: p + SuffixCompressed, DType: dt, Shape: []int64{nnz}},
			bm,
			{Name: p + SuffixRowOffsets, DType: dtype.I64, Shape: []int64{r}},
			{Name: p + SuffixShape, DType: dtype.I64, Shape: []int64{2}},
		}, nil
	}
	return nil, fmt.Errorf("sparse: Specs: format %q has no packed tensors", f)
}

// Packed is one packed weight: the data of the tensors declared by Specs.
type Packed struct {
	Format     Format
	DType      dtype.DType
	Rows, Cols int
	Compressed []byte
	Bitmask    []byte
	RowOffsets []int64 // FormatBitmask only
}

// Pack packs the dense weight values with format f (Format24 or FormatBitmask).
func Pack(f Format, values []byte, dt dtype.DType, rows, cols int) (*Packed, error) {
	p := &Packed{Format: f, DType: dt, Rows: rows, Cols: cols}
	var err error
	switch f {
	case Format24:
		p.Compressed, p.Bitmask, err = Pack24(values, dt, rows, cols)
	case FormatBitmask:
		p.Compressed, p.Bitmask, p.RowOffsets, err = PackBitmask(values, dt, rows, cols)
	default:
		err = fmt.Errorf("sparse: Pack: format %q is not a packed format", f)
	}
	if err != nil {
		return nil, err
	}
	return p, nil
}

// NNZ is the number of values in Compressed.
func (p *Packed) NNZ() int64 { return int64(len(p.Compressed) / p.DType.Size()) }

// Data returns the raw bytes of the packed tensor with key prefix + suffix
// (one of the Suffix constants), for safetensors.Writer.Write.
func (p *Packed) Data(suffix string) ([]byte, error) {
	switch suffix {
	case SuffixCompressed:
		return p.Compressed, nil
	case SuffixBitmask:
		return p.Bitmask, nil
	case SuffixShape:
		return ShapeBytes(p.Rows, p.Cols), nil
	case SuffixRowOffsets:
		if p.Format == FormatBitmask {
			b := make([]byte, 8*len(p.RowOffsets))
			for i, v := range p.RowOffsets {
				putI64(b[8*i:], v)
			}
			return b, nil
		}
	}
	return nil, fmt.Errorf("sparse: %s has no tensor %q", p.Format, suffix)
}

// Unpack returns the dense bytes of p.
func (p *Packed) Unpack() ([]byte, error) {
	switch p.Format {
	case Format24:
		return Unpack24(p.Compressed, p.Bitmask, p.DType, p.Rows, p.Cols)
	case FormatBitmask:
		return UnpackBitmask(p.Compressed, p.Bitmask, p.RowOffsets, p.DType, p.Rows, p.Cols)
	}
	return nil, fmt.Errorf("sparse: Unpack: format %q is not a packed format", p.Format)
}

func putI64(b []byte, v int64) {
	u := uint64(v)
	for i := 0; i < 8; i++ {
		b[i] = byte(u >> (8 * i))
	}
}
