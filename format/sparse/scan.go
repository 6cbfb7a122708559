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
	// ErrNot24: a tensor breaks 2:4 (a group of 4 columns has fewer than 2 zeros,
	// or the column count is not a multiple of 4).
	ErrNot24 = errors.New("sparse: tensor is not 2:4 sparse")
	// ErrNotNM: a tensor breaks an N:M pattern other than 2:4.
	ErrNotNM = errors.New("sparse: tensor breaks its N:M pattern")
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

// checkDense is checkDims plus the length of the dense buffer.
func checkDense(values []byte, dt dtype.DType, rows, cols int) (size, n int, err error) {
	size, n, err = checkDims(dt, rows, cols)
	if err != nil {
		return 0, 0, err
	}
	if len(values) != n*size {
		return 0, 0, fmt.Errorf("%w: %d bytes for %s[%d, %d], want %d", ErrShape, len(values), dt, rows, cols, n*size)
	}
	return size, n, nil
}

// dimsOK reports whether [rows, cols] is within the supported range.
func dimsOK(rows, cols int64) bool {
	return rows >= 0 && cols >= 0 && rows <= maxDim && cols <= maxDim && (cols == 0 || rows <= maxElems/cols)
}

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

// NM is an N:M sparsity pattern: every aligned group of M consecutive columns
// of every row holds at least N zeros (of either sign), and the column count is
// a multiple of M (compressed-tensors' groups are those of the flattened
// tensor, which coincide with a row's groups only then).
type NM struct{ N, M int }

// The patterns wanda reports.
var (
	Pattern24 = NM{2, 4}
	Pattern48 = NM{4, 8}
)

func (p NM) String() string { return fmt.Sprintf("%d:%d", p.N, p.M) }

// nmResult is what Scan found for one pattern.
type nmResult struct {
	p NM
	// start is the flat index of the first column of the first group with fewer
	// than N zeros, -1 when there is none; zeros is that group's zero count.
	start, zeros int
	// shape: the column count is not a multiple of M.
	shape bool
}

// Stat summarises the zeros of a dense [Rows, Cols] tensor and the N:M
// patterns it was scanned for. It is the one scanner behind both inspect's
// "2:4: yes/no" and Pack's refusal, so that they cannot disagree.
type Stat struct {
	Rows, Cols int
	Zeros      int64 // exact zeros of either sign
	NegZeros   int64 // -0.0 entries
	// FirstNegZero is the flat index of the first -0.0, or -1.
	FirstNegZero int
	nm           []nmResult
}

// Scan counts the zeros of the dense row-major tensor values (float dtype dt)
// and checks each pattern in patterns. It fails only on a bad dtype or length.
func Scan(values []byte, dt dtype.DType, rows, cols int, patterns ...NM) (Stat, error) {
	st := Stat{Rows: rows, Cols: cols, FirstNegZero: -1}
	size, n, err := checkDense(values, dt, rows, cols)
	if err != nil {
		return st, err
	}
	for _, p := range patterns {
		if p.N < 0 || p.M <= 0 || p.N > p.M {
			return st, fmt.Errorf("sparse: Scan: pattern %s is not N:M with 0 <= N <= M", p)
		}
		st.nm = append(st.nm, nmResult{p: p, start: -1, shape: cols%p.M != 0})
	}
	// Patterns whose groups are whole nibbles are checked in the zero-counting
	// loop; the others (M not a multiple of 4) element by element afterwards.
	var fast []int
	var slow bool
	for i, r := range st.nm {
		switch {
		case r.shape:
		case r.p.M%4 == 0:
			fast = append(fast, i)
		default:
			slow = true
		}
	}
	count := make([]int, len(st.nm))
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
		for _, i := range fast {
			r := &st.nm[i]
			count[i] += z
			if end := 4*g + 4; end%r.p.M == 0 { // the nibble closes a group
				if count[i] < r.p.N && r.start < 0 {
					r.start, r.zeros = end-r.p.M, count[i]
				}
				count[i] = 0
			}
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
	if slow {
		for i := range st.nm {
			r := &st.nm[i]
			if r.shape || r.p.M%4 == 0 {
				continue
			}
			for g := 0; g < n && r.start < 0; g += r.p.M {
				z := 0
				for k := g; k < g+r.p.M; k++ {
					if zeroKind(values[k*size:(k+1)*size]) != 0 {
						z++
					}
				}
				if z < r.p.N {
					r.start, r.zeros = g, z
				}
			}
		}
	}
	return st, nil
}

func (st *Stat) result(p NM) *nmResult {
	for i := range st.nm {
		if st.nm[i].p == p {
			return &st.nm[i]
		}
	}
	panic(fmt.Sprintf("sparse: pattern %s was not scanned", p)) // programmer error
}

// Satisfies reports whether the tensor satisfies p, which must have been
// passed to Scan.
func (st Stat) Satisfies(p NM) bool {
	r := st.result(p)
	return !r.shape && r.start < 0
}

// Why says why the tensor does not satisfy p ("" when it does): the column
// count, or the row and columns of the first group with too few zeros.
func (st Stat) Why(p NM) string {
	r := st.result(p)
	switch {
	case r.shape:
		return shapeWhy(p, st.Cols)
	case r.start >= 0:
		return groupWhy(p, r.start/st.Cols, r.start%st.Cols, r.zeros)
	}
	return ""
}

// NMError is nil when the tensor satisfies p, else an error wrapping ErrNot24
// (p is 2:4) or ErrNotNM whose text is Why(p).
func (st Stat) NMError(p NM) error {
	why := st.Why(p)
	if why == "" {
		return nil
	}
	return nmErr(p, why)
}

func nmErr(p NM, why string) error {
	if p == Pattern24 {
		return fmt.Errorf("%w: %s", ErrNot24, why)
	}
	return fmt.Errorf("%w: %s", ErrNotNM, why)
}

func shapeWhy(p NM, cols int) string {
	return fmt.Sprintf("%d columns is not a multiple of %d (%s needs whole groups of %d in every row)", cols, p.M, p, p.M)
}

func groupWhy(p NM, row, col, zeros int) string {
	s := "s"
	if zeros == 1 {
		s = ""
	}
	return fmt.Sprintf("row %d, columns %d..%d hold %d zero%s (%s needs at least %d in every aligned group of %d)",
		row, col, col+p.M-1, zeros, s, p, p.N, p.M)
}

// NegZeroError is nil when the tensor holds no -0.0, else an error wrapping
// ErrNegativeZero that gives the count and the first position.
func (st Stat) NegZeroError() error {
	if st.NegZeros == 0 {
		return nil
	}
	k, cols := st.FirstNegZero, max(st.Cols, 1)
	return fmt.Errorf("%w: %d entries, the first at [%d, %d] (wanda writes +0.0 and packs only +0.0 zeros)",
		ErrNegativeZero, st.NegZeros, k/cols, k%cols)
}

// GuaranteedBy reports whether every tensor pruned with exactly n zeros in each
// aligned group of m consecutive columns (and a column count that is a multiple
// of both m and p.M) satisfies p: whole pruning groups per group of p (n per m,
// p.M/m of them), or, within a larger pruning group, its worst group of p.M
// (holding n-(m-p.M) of its zeros at least).
func (p NM) GuaranteedBy(n, m int) bool {
	switch {
	case m <= 0 || n < 0 || n > m || p.M <= 0:
		return false
	case p.M%m == 0:
		return n*(p.M/m) >= p.N
	case m%p.M == 0:
		return n-(m-p.M) >= p.N
	}
	return false
}
