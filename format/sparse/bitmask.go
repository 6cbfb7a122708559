package sparse

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"slices"

	"github.com/wanda-go/wanda/format/dtype"
	"github.com/wanda-go/wanda/format/safetensors"
)

// FormatBitmask is compressed-tensors' "sparse-bitmask" (any sparsity; see the
// package documentation for the layout).
const FormatBitmask Format = "sparse-bitmask"

// SuffixRowOffsets is the part of sparse-bitmask that holds the row offsets.
const SuffixRowOffsets = ".row_offsets"

func init() {
	RegisterLayout(&Layout{
		Format: FormatBitmask,
		Parts:  []string{SuffixCompressed, SuffixBitmask, SuffixRowOffsets, SuffixShape},
		Rank:   10,
		Specs: func(p string, dt dtype.DType, rows, cols int, st Stat) ([]safetensors.Spec, error) {
			r := int64(rows)
			nnz := int64(rows)*int64(cols) - st.Zeros
			return []safetensors.Spec{
				{Name: p + SuffixCompressed, DType: dt, Shape: []int64{nnz}},
				{Name: p + SuffixBitmask, DType: dtype.U8, Shape: []int64{r, int64(RowBytes(cols))}},
				{Name: p + SuffixRowOffsets, DType: dtype.I64, Shape: []int64{r}},
				{Name: p + SuffixShape, DType: dtype.I64, Shape: []int64{2}},
			}, nil
		},
		Pack: func(values []byte, dt dtype.DType, rows, cols int) ([][]byte, error) {
			comp, bm, offs, err := PackBitmask(values, dt, rows, cols)
			if err != nil {
				return nil, err
			}
			ob := make([]byte, 8*len(offs))
			for i, v := range offs {
				putI64(ob[8*i:], v)
			}
			return [][]byte{comp, bm, ob, ShapeBytes(rows, cols)}, nil
		},
		Header: func(parts []*safetensors.Tensor) (dtype.DType, int, int, error) {
			comp, bm, ro, shape := parts[0], parts[1], parts[2], parts[3]
			dt, rows, cols, err := headerShape(comp, shape)
			if err != nil {
				return 0, 0, 0, err
			}
			if err := checkBitmaskHeader(bm, rows, cols); err != nil {
				return 0, 0, 0, err
			}
			if ro.DType != dtype.I64 || !slices.Equal(ro.Shape, []int64{int64(rows)}) {
				return 0, 0, 0, fmt.Errorf("%w: %q is %s%v, want I64[%d]", ErrCorrupt, ro.Name, ro.DType, ro.Shape, rows)
			}
			if len(comp.Shape) != 1 {
				return 0, 0, 0, fmt.Errorf("%w: %q has shape %v, want 1-D", ErrCorrupt, comp.Name, comp.Shape)
			}
			return dt, rows, cols, nil
		},
		Unpack: func(parts [][]byte, dt dtype.DType, rows, cols int) ([]byte, error) {
			ob := parts[2]
			if len(ob)%8 != 0 {
				return nil, fmt.Errorf("%w: row offsets have %d bytes, not a multiple of 8", ErrCorrupt, len(ob))
			}
			offs := make([]int64, len(ob)/8)
			for i := range offs {
				offs[i] = int64(binary.LittleEndian.Uint64(ob[8*i:]))
			}
			return UnpackBitmask(parts[0], parts[1], offs, dt, rows, cols)
		},
	})
}

// PackBitmask packs a row-major [rows, cols] tensor of float dtype dt into the
// compressed-tensors sparse-bitmask layout: compressed = W[W != 0] row-major
// (nnz values in dt), bitmask rows*RowBytes(cols) bytes with a bit set per
// nonzero, rowOffsets[r] = number of nonzeros in rows before r. Any sparsity
// is accepted. Errors: ErrNegativeZero, ErrShape, ErrDType.
func PackBitmask(values []byte, dt dtype.DType, rows, cols int) (compressed, bitmask []byte, rowOffsets []int64, err error) {
	st, err := Scan(values, dt, rows, cols)
	if err != nil {
		return nil, nil, nil, err
	}
	if st.NegZeros > 0 {
		return nil, nil, nil, negZeroErr(st.FirstNegZero, cols)
	}
	size := dt.Size()
	nnz := rows*cols - int(st.Zeros)
	rb := RowBytes(cols)
	compressed = make([]byte, nnz*size)
	bitmask = make([]byte, rows*rb)
	rowOffsets = make([]int64, rows)
	out := 0
	for r := 0; r < rows; r++ {
		rowOffsets[r] = int64(out / size)
		row := values[r*cols*size : (r+1)*cols*size]
		mrow := bitmask[r*rb : (r+1)*rb]
		j := 0
		for ; j+4 <= cols; j += 4 {
			nz, _ := lanes4(row[j*size:], size)
			if nz == 0 {
				continue
			}
			for q := 0; q < 4; q++ {
				if nz&(1<<q) != 0 {
					copyElem(compressed[out:out+size], row[(j+q)*size:], size)
					out += size
					mrow[(j+q)>>3] |= 1 << ((j + q) & 7)
				}
			}
		}
		for ; j < cols; j++ {
			e := row[j*size : (j+1)*size]
			if zeroKind(e) == 0 {
				copyElem(compressed[out:out+size], e, size)
				out += size
				mrow[j>>3] |= 1 << (j & 7)
			}
		}
	}
	return compressed, bitmask, rowOffsets, nil
}

// UnpackBitmask reverses PackBitmask, writing +0.0 at clear bits. It checks
// that the per-row popcounts agree with rowOffsets and the length of
// compressed (ErrCorrupt) and never panics on any input.
func UnpackBitmask(compressed, bitmask []byte, rowOffsets []int64, dt dtype.DType, rows, cols int) ([]byte, error) {
	size, n, err := checkDims(dt, rows, cols)
	if err != nil {
		return nil, err
	}
	rb := RowBytes(cols)
	if len(compressed)%size != 0 {
		return nil, fmt.Errorf("%w: compressed has %d bytes, not a multiple of %s's %d", ErrCorrupt, len(compressed), dt, size)
	}
	if len(bitmask) != rows*rb {
		return nil, fmt.Errorf("%w: bitmask has %d bytes, [%d, %d] needs %d", ErrCorrupt, len(bitmask), rows, rb, rows*rb)
	}
	if len(rowOffsets) != rows {
		return nil, fmt.Errorf("%w: %d row offsets for %d rows", ErrCorrupt, len(rowOffsets), rows)
	}
	if err := checkPadding(bitmask, rows, cols); err != nil {
		return nil, err
	}
	var total int64
	for r := 0; r < rows; r++ {
		if rowOffsets[r] != total {
			return nil, fmt.Errorf("%w: row_offsets[%d] = %d, the bitmask gives %d", ErrCorrupt, r, rowOffsets[r], total)
		}
		for _, b := range bitmask[r*rb : (r+1)*rb] {
			total += int64(bits.OnesCount8(b))
		}
	}
	if total != int64(len(compressed)/size) {
		return nil, fmt.Errorf("%w: bitmask has %d set bits but compressed holds %d values", ErrCorrupt, total, len(compressed)/size)
	}
	dense := make([]byte, n*size)
	in := 0
	for r := 0; r < rows; r++ {
		mrow := bitmask[r*rb : (r+1)*rb]
		drow := dense[r*cols*size : (r+1)*cols*size]
		for j := 0; j < cols; j++ {
			if mrow[j>>3]&(1<<(j&7)) != 0 {
				copyElem(drow[j*size:], compressed[in:in+size], size)
				in += size
			}
		}
	}
	return dense, nil
}
