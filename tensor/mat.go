package tensor

import (
	"fmt"
	"unsafe"

	"github.com/wanda-go/wanda/format/dtype"
)

// Mat is a read-only weight matrix in its stored dtype: Rows×Cols values,
// row-major (a PyTorch nn.Linear weight is [out, in]), little-endian, in
// Raw. Raw is usually a view of a memory-mapped safetensors file, so a Mat
// costs no anonymous memory; the GEMM converts values to float32 while it
// packs its panels. DType is dtype.F32, dtype.BF16 or dtype.F16.
type Mat struct {
	Rows, Cols int
	DType      dtype.DType
	Raw        []byte
}

// F32Mat views a float32 slice (rows·cols values) as a Mat without copying.
func F32Mat(rows, cols int, data []float32) Mat {
	if len(data) != rows*cols {
		panic(fmt.Sprintf("tensor: F32Mat: %d values for %d×%d", len(data), rows, cols))
	}
	var raw []byte
	if len(data) > 0 {
		raw = unsafe.Slice((*byte)(unsafe.Pointer(&data[0])), 4*len(data))
	}
	return Mat{Rows: rows, Cols: cols, DType: dtype.F32, Raw: raw}
}

// Check reports whether m is well formed: a supported dtype and exactly
// Rows·Cols values in Raw.
func (m Mat) Check() error {
	switch m.DType {
	case dtype.F32, dtype.BF16, dtype.F16:
	default:
		return fmt.Errorf("tensor: Mat dtype %s: not F32, BF16 or F16", m.DType)
	}
	if m.Rows < 0 || m.Cols < 0 || len(m.Raw) != m.Rows*m.Cols*m.DType.Size() {
		return fmt.Errorf("tensor: Mat %d×%d %s with %d bytes", m.Rows, m.Cols, m.DType, len(m.Raw))
	}
	return nil
}

// RowsF32 widens rows [r0, r1) of m into dst ((r1-r0)·Cols values).
func (m Mat) RowsF32(dst []float32, r0, r1 int) {
	es := m.DType.Size()
	n := (r1 - r0) * m.Cols
	if r0 < 0 || r1 > m.Rows || r0 > r1 || len(dst) < n || es == 0 || len(m.Raw) < m.Rows*m.Cols*es {
		panic(fmt.Sprintf("tensor: RowsF32 [%d, %d) of %d rows into %d values (%s, %d bytes)", r0, r1, m.Rows, len(dst), m.DType, len(m.Raw)))
	}
	widen(dst[:n], m.Raw[r0*m.Cols*es:r1*m.Cols*es], m.DType)
}

// Sub is rows [r0, r1) of m (a view).
func (m Mat) Sub(r0, r1 int) Mat {
	es := m.DType.Size()
	return Mat{Rows: r1 - r0, Cols: m.Cols, DType: m.DType, Raw: m.Raw[r0*m.Cols*es : r1*m.Cols*es]}
}

// MatMulTMat computes y = x · [w₀; w₁; …]ᵀ: the products with each w are
// written side by side, w₀'s Rows columns first. x is [m, k] (row stride k),
// every w is [nᵢ, k], and y is [m, ldy] with ldy ≥ Σnᵢ; only the first Σnᵢ
// columns of each row of y are written. The result is bit-identical to
// MatMulT on the widened weights (and so to one MatMulT per weight).
//
// The weights are read in their stored dtype: the blocked GEMM converts
// them to float32 while it packs its B panels (which it does anyway), and
// treats the weights as one matrix of Σnᵢ rows without concatenating them.
// For m ≤ 3 (no packing) each weight row is widened into a per-thread
// buffer of k values (or, float32 rows that are 4-byte aligned, read in
// place) and multiplied with Dot, as Sgemm does. The memory MatMulTMat
// allocates is bounded by the GEMM's packing buffers and k, never by a
// weight's size. It uses up to Threads() goroutines; invalid shapes panic.
func MatMulTMat(y []float32, ldy int, x []float32, m, k int, ws ...Mat) {
	if m < 0 || k < 0 {
		panic(fmt.Sprintf("tensor: MatMulTMat: negative dimension m=%d k=%d", m, k))
	}
	bm := &matB{mats: ws, start: make([]int, len(ws)+1)}
	for i, w := range ws {
		if err := w.Check(); err != nil {
			panic(fmt.Sprintf("tensor: MatMulTMat: weight %d: %v", i, err))
		}
		if w.Cols != k {
			panic(fmt.Sprintf("tensor: MatMulTMat: weight %d is %d×%d for input width %d", i, w.Rows, w.Cols, k))
		}
		bm.start[i+1] = bm.start[i] + w.Rows
	}
	n := bm.start[len(ws)]
	if n > ldy {
		panic(fmt.Sprintf("tensor: MatMulTMat: %d output columns for ldy %d", n, ldy))
	}
	if m == 0 || n == 0 {
		return
	}
	if len(x) < m*k {
		panic(fmt.Sprintf("tensor: MatMulTMat: len(x)=%d < %d for %d×%d", len(x), m*k, m, k))
	}
	if need := (m-1)*ldy + n; len(y) < need {
		panic(fmt.Sprintf("tensor: MatMulTMat: len(y)=%d < %d for %d×%d with stride %d", len(y), need, m, n, ldy))
	}
	switch {
	case k == 0:
		scaleC(m, n, 0, y, ldy)
	case m <= smallM:
		matMulTSmallM(y, ldy, x, m, k, bm)
	default:
		sgemmImpl.gemm(gemmProblem[float32]{tB: true, m: m, n: n, k: k, alpha: 1, a: x, lda: k, c: y, ldc: ldy, bm: bm})
	}
}

// float32View views little-endian float32 bytes as float32s (no copy).
func float32View(b []byte) []float32 {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(&b[0])), len(b)/4)
}
