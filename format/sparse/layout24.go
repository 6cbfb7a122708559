package sparse

import (
	"fmt"
	"math/bits"

	"github.com/wanda-go/wanda/format/dtype"
	"github.com/wanda-go/wanda/format/safetensors"
)

// Format24 is compressed-tensors' "sparse-24-bitmask" (see the package
// documentation for the layout and the keep rule).
const Format24 Format = "sparse-24-bitmask"

func init() {
	RegisterLayout(&Layout{
		Format:  Format24,
		Parts:   []string{SuffixCompressed, SuffixBitmask, SuffixShape},
		Rank:    0,
		Pattern: Pattern24,
		Specs: func(p string, dt dtype.DType, rows, cols int, _ Stat) ([]safetensors.Spec, error) {
			if cols%4 != 0 {
				return nil, fmt.Errorf("%w: %s", ErrShape, shapeWhy(Pattern24, cols))
			}
			r, c := int64(rows), int64(cols)
			return []safetensors.Spec{
				{Name: p + SuffixCompressed, DType: dt, Shape: []int64{r, c / 2}},
				{Name: p + SuffixBitmask, DType: dtype.U8, Shape: []int64{r, int64(RowBytes(cols))}},
				{Name: p + SuffixShape, DType: dtype.I64, Shape: []int64{2, 1}},
			}, nil
		},
		Pack: func(values []byte, dt dtype.DType, rows, cols int) ([][]byte, error) {
			comp, bm, err := Pack24(values, dt, rows, cols)
			if err != nil {
				return nil, err
			}
			return [][]byte{comp, bm, ShapeBytes(rows, cols)}, nil
		},
		Header: func(parts []*safetensors.Tensor) (dtype.DType, int, int, error) {
			comp, bm, shape := parts[0], parts[1], parts[2]
			dt, rows, cols, err := headerShape(comp, shape)
			if err != nil {
				return 0, 0, 0, err
			}
			if err := checkBitmaskHeader(bm, rows, cols); err != nil {
				return 0, 0, 0, err
			}
			if cols%4 != 0 || len(comp.Shape) != 2 || comp.Shape[0] != int64(rows) || comp.Shape[1] != int64(cols/2) {
				return 0, 0, 0, fmt.Errorf("%w: %q is %v, want [%d, %d] (columns %d a multiple of 4)", ErrCorrupt, comp.Name, comp.Shape, rows, cols/2, cols)
			}
			return dt, rows, cols, nil
		},
		Unpack: func(parts [][]byte, dt dtype.DType, rows, cols int) ([]byte, error) {
			return Unpack24(parts[0], parts[1], dt, rows, cols)
		},
	})
}

// keep24 maps the nonzero nibble of a group to the kept nibble: every
// nonzero plus the lowest-indexed zeros up to 2 entries; 0 when the group has
// more than 2 nonzeros.
var keep24 [16]uint8

func init() {
	for nz := 0; nz < 16; nz++ {
		if bits.OnesCount8(uint8(nz)) > 2 {
			continue
		}
		k := uint8(nz)
		for q := 0; q < 4 && bits.OnesCount8(k) < 2; q++ {
			k |= 1 << q
		}
		keep24[nz] = k
	}
}

func negZeroErr(k, cols int) error {
	return fmt.Errorf("%w at [%d, %d] (wanda packs only +0.0 zeros)", ErrNegativeZero, k/cols, k%cols)
}

// Pack24 packs a 2:4-sparse row-major [rows, cols] tensor of float dtype dt into
// the compressed-tensors sparse-24-bitmask layout: compressed holds
// rows*cols/2 kept values (in dt), bitmask rows*RowBytes(cols) bytes. cols must
// be a multiple of 4. See the package documentation for the keep rule.
// Errors: ErrNot24 (naming the row and columns of the first bad group, in the
// words of Stat.Why), ErrNegativeZero, ErrShape, ErrDType.
func Pack24(values []byte, dt dtype.DType, rows, cols int) (compressed, bitmask []byte, err error) {
	size, n, err := checkDims(dt, rows, cols)
	if err != nil {
		return nil, nil, err
	}
	if cols%4 != 0 {
		return nil, nil, fmt.Errorf("%w: %s", ErrShape, shapeWhy(Pattern24, cols))
	}
	if len(values) != n*size {
		return nil, nil, fmt.Errorf("%w: %d bytes for %s[%d, %d], want %d", ErrShape, len(values), dt, rows, cols, n*size)
	}
	rb := RowBytes(cols)
	compressed = make([]byte, n/2*size)
	bitmask = make([]byte, rows*rb)
	out := 0
	for r := 0; r < rows; r++ {
		row := values[r*cols*size : (r+1)*cols*size]
		mrow := bitmask[r*rb : (r+1)*rb]
		for j0 := 0; j0 < cols; j0 += 4 {
			g := row[j0*size : (j0+4)*size]
			nz, neg := lanes4(g, size)
			if neg != 0 {
				return nil, nil, negZeroErr(r*cols+j0+bits.TrailingZeros8(neg), cols)
			}
			keep := keep24[nz]
			if keep == 0 {
				return nil, nil, nmErr(Pattern24, groupWhy(Pattern24, r, j0, 4-bits.OnesCount8(nz)))
			}
			mrow[j0>>3] |= keep << (j0 & 7)
			for q := 0; q < 4; q++ {
				if keep&(1<<q) != 0 {
					copyElem(compressed[out:out+size], g[q*size:], size)
					out += size
				}
			}
		}
	}
	return compressed, bitmask, nil
}

// Unpack24 reverses Pack24: it scatters compressed (rows*cols/2 values of dt)
// into the positions set in bitmask and writes +0.0 elsewhere, returning the
// dense row-major [rows, cols] bytes. It validates everything (ErrShape,
// ErrCorrupt: a group without exactly 2 set bits, set padding bits) and never
// panics on any input.
func Unpack24(compressed, bitmask []byte, dt dtype.DType, rows, cols int) ([]byte, error) {
	size, n, err := checkDims(dt, rows, cols)
	if err != nil {
		return nil, err
	}
	if cols%4 != 0 {
		return nil, fmt.Errorf("%w: %d columns is not a multiple of 4", ErrShape, cols)
	}
	rb := RowBytes(cols)
	if len(compressed) != n/2*size {
		return nil, fmt.Errorf("%w: compressed has %d bytes, %s[%d, %d] needs %d", ErrCorrupt, len(compressed), dt, rows, cols/2, n/2*size)
	}
	if len(bitmask) != rows*rb {
		return nil, fmt.Errorf("%w: bitmask has %d bytes, [%d, %d] needs %d", ErrCorrupt, len(bitmask), rows, rb, rows*rb)
	}
	if err := checkPadding(bitmask, rows, cols); err != nil {
		return nil, err
	}
	dense := make([]byte, n*size)
	if n == 0 {
		return dense, nil
	}
	in := 0
	for r := 0; r < rows; r++ {
		mrow := bitmask[r*rb : (r+1)*rb]
		drow := dense[r*cols*size : (r+1)*cols*size]
		for j0 := 0; j0 < cols; j0 += 4 {
			nib := (mrow[j0>>3] >> (j0 & 7)) & 0xf // j0%8 is 0 or 4
			if bits.OnesCount8(nib) != 2 {
				return nil, fmt.Errorf("%w: row %d, columns %d..%d: %d bits set, 2:4 needs exactly 2",
					ErrCorrupt, r, j0, j0+3, bits.OnesCount8(nib))
			}
			for q := 0; q < 4; q++ {
				if nib&(1<<q) != 0 {
					copyElem(drow[(j0+q)*size:], compressed[in:in+size], size)
					in += size
				}
			}
		}
	}
	return dense, nil
}
