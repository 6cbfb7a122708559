package sparse

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"

	"github.com/wanda-go/wanda/format/dtype"
)

// Sentinel errors. Callers wrap them with the file and tensor name.
var (
	// ErrNot24: a group of 4 columns has fewer than 2 zeros.
	ErrNot24 = errors.New("sparse: tensor is not 2:4 sparse")
	// ErrNegativeZero: the dense input holds -0.0.
	ErrNegativeZero = errors.New("sparse: negative zero in tensor")
	// ErrShape: dimensions or buffer lengths do not fit the layout.
	ErrShape = errors.New("sparse: bad shape")
	// ErrDType: the dtype cannot be packed (only F32, F16, BF16, F64).
	ErrDType = errors.New("sparse: unsupported dtype")
	// ErrCorrupt: packed data is inconsistent (bit counts, offsets, padding).
	ErrCorrupt = errors.New("sparse: corrupt packed tensor")
)

// maxElems bounds rows*cols and maxDim each dimension, so that every size
// computed here fits an int and loops over rows stay bounded.
const (
	maxElems = math.MaxInt32 * 64
	maxDim   = math.MaxInt32
)

// checkDims validates the dtype and rows×cols and returns the element size and count.
func checkDims(dt dtype.DType, rows, cols int) (size, n int, err error) {
	if !dt.IsFloat() {
		return 0, 0, fmt.Errorf("%w %s (want F32, F16, BF16 or F64)", ErrDType, dt)
	}
	if rows < 0 || cols < 0 {
		return 0, 0, fmt.Errorf("%w: negative dimension [%d, %d]", ErrShape, rows, cols)
	}
	if !dimsOK(int64(rows), int64(cols)) {
		return 0, 0, fmt.Errorf("%w: [%d, %d] is too large", ErrShape, rows, cols)
	}
	return dt.Size(), rows * cols, nil
}

// dimsOK reports whether [rows, cols] is within the supported range.
func dimsOK(rows, cols int64) bool {
	return rows >= 0 && cols >= 0 && rows <= maxDim && cols <= maxDim && (cols == 0 || rows <= maxElems/cols)
}

// RowBytes is the number of bitmask bytes per row: ceil(cols/8).
func RowBytes(cols int) int { return (cols + 7) / 8 }

// zeroKind classifies the element e (size bytes, little-endian float):
// 0 nonzero, 1 +0.0, 2 -0.0.
func zeroKind(e []byte) int {
	last := len(e) - 1
	for _, b := range e[:last] {
		if b != 0 {
			return 0
		}
	}
	switch e[last] {
	case 0:
		return 1
	case 0x80:
		return 2
	}
	return 0
}

func b2u(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

// lanes4 classifies the 4 consecutive elements in g (at least 4*size bytes of
// a float dtype of size 2, 4 or 8): bit q of nz is set when element q is
// nonzero, bit q of neg when it is -0.0.
func lanes4(g []byte, size int) (nz, neg uint8) {
	le := binary.LittleEndian
	switch size {
	case 2:
		x := le.Uint64(g)
		for q := uint(0); q < 4; q++ {
			l := uint16(x >> (16 * q))
			nz |= b2u(l&0x7fff != 0) << q
			neg |= b2u(l == 0x8000) << q
		}
	case 4:
		for q := uint(0); q < 4; q++ {
			l := le.Uint32(g[4*q:])
			nz |= b2u(l&0x7fffffff != 0) << q
			neg |= b2u(l == 0x80000000) << q
		}
	default:
		for q := uint(0); q < 4; q++ {
			l := le.Uint64(g[8*q:])
			nz |= b2u(l&0x7fffffffffffffff != 0) << q
			neg |= b2u(l == 0x8000000000000000) << q
		}
	}
	return nz, neg
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

// copyElem copies one element of size bytes.
func copyElem(dst, src []byte, size int) {
	switch size {
	case 2:
		_ = src[1]
		_ = dst[1]
		dst[0], dst[1] = src[0], src[1]
	case 4:
		binary.LittleEndian.PutUint32(dst, binary.LittleEndian.Uint32(src))
	default:
		binary.LittleEndian.PutUint64(dst, binary.LittleEndian.Uint64(src))
	}
}

// Stat summarises the zeros of a dense tensor (see Scan).
type Stat struct {
	Zeros    int64 // exact zeros of either sign
	NegZeros int64 // -0.0 entries
	// FirstNegZero is the flat index of the first -0.0, or -1.
	FirstNegZero int
	// Is24 is true when cols%4 == 0 and every group of 4 has at least 2 zeros.
	Is24 bool
	// First24Violation is the flat index of the first column of the first group
	// with fewer than 2 zeros, or -1 (also -1 when cols%4 != 0).
	First24Violation int
}

// Scan counts the zeros of the dense row-major tensor values and checks the 2:4
// pattern. It fails only on a bad dtype or length.
func Scan(values []byte, dt dtype.DType, rows, cols int) (Stat, error) {
	st := Stat{FirstNegZero: -1, First24Violation: -1}
	size, n, err := checkDims(dt, rows, cols)
	if err != nil {
		return st, err
	}
	if len(values) != n*size {
		return st, fmt.Errorf("%w: %d bytes for %s[%d, %d], want %d", ErrShape, len(values), dt, rows, cols, n*size)
	}
	st.Is24 = cols%4 == 0
	groups := n / 4
	for g := 0; g < groups; g++ {
		nz, neg := lanes4(values[4*g*size:], size)
		z := 4 - bits.OnesCount8(nz)
		st.Zeros += int64(z)
		if neg != 0 {
			st.NegZeros += int64(bits.OnesCount8(neg))
			if st.FirstNegZero < 0 {
				st.FirstNegZero = 4*g + bits.TrailingZeros8(neg)
			}
		}
		if z < 2 && st.Is24 {
			st.Is24 = false
			st.First24Violation = 4 * g
		}
	}
	for k := 4 * groups; k < n; k++ { // tail (only when n is not a multiple of 4)
		switch zeroKind(values[k*size : (k+1)*size]) {
		case 1:
			st.Zeros++
		case 2:
			st.Zeros++
			st.NegZeros++
			if st.FirstNegZero < 0 {
				st.FirstNegZero = k
			}
		}
	}
	return st, nil
}

func negZeroErr(k, cols int) error {
	return fmt.Errorf("%w at [%d, %d] (wanda packs only +0.0 zeros)", ErrNegativeZero, k/cols, k%cols)
}

// Pack24 packs a 2:4-sparse row-major [rows, cols] tensor of float dtype dt into
// the compressed-tensors sparse-24-bitmask layout: compressed holds
// rows*cols/2 kept values (in dt), bitmask rows*RowBytes(cols) bytes. cols must
// be a multiple of 4. See the package documentation for the keep rule.
// Errors: ErrNot24 (naming the row and columns of the first bad group),
// ErrNegativeZero, ErrShape, ErrDType.
func Pack24(values []byte, dt dtype.DType, rows, cols int) (compressed, bitmask []byte, err error) {
	size, n, err := checkDims(dt, rows, cols)
	if err != nil {
		return nil, nil, err
	}
	if cols%4 != 0 {
		return nil, nil, fmt.Errorf("%w: %d columns is not a multiple of 4 (2:4 needs whole groups)", ErrShape, cols)
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
				return nil, nil, fmt.Errorf("%w: row %d, columns %d..%d have %d nonzeros (at most 2 allowed)",
					ErrNot24, r, j0, j0+3, bits.OnesCount8(nz))
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

// PackBitmask packs a row-major [rows, cols] tensor of float dtype dt into the
// compressed-tensors sparse-bitmask layout: compressed = W[W != 0] row-major
// (nnz values in dt), bitmask rows*RowBytes(cols) bytes with a bit set per
// nonzero, rowOffsets[r] = number of nonzeros in rows before r. Any sparsity
// is accepted. Errors: ErrNegativeZero, ErrShape, ErrDType.
func PackBitmask(values []byte, dt dtype.DType, rows, cols int) (compressed, bitmask []byte, rowOffsets []int64, err error) {
	size, n, err := checkDims(dt, rows, cols)
	if err != nil {
		return nil, nil, nil, err
	}
	if len(values) != n*size {
		return nil, nil, nil, fmt.Errorf("%w: %d bytes for %s[%d, %d], want %d", ErrShape, len(values), dt, rows, cols, n*size)
	}
	st, err := Scan(values, dt, rows, cols)
	if err != nil {
		return nil, nil, nil, err
	}
	if st.NegZeros > 0 {
		return nil, nil, nil, negZeroErr(st.FirstNegZero, cols)
	}
	nnz := n - int(st.Zeros)
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
