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
	if r0 < 0 || r1 > m.Rows || r0 > r1 || len(dst) < n {
		panic(fmt.Sprintf("tensor: RowsF32 [%d, %d) of %d rows into %d values", r0, r1, m.Rows, len(dst)))
	}
	if err := dtype.ToFloat32(dst[:n], m.Raw[r0*m.Cols*es:r1*m.Cols*es], m.DType); err != nil {
		panic(err) // Check's conditions are the caller's to keep
	}
}

// Sub is rows [r0, r1) of m (a view).
func (m Mat) Sub(r0, r1 int) Mat {
	es := m.DType.Size()
	return Mat{Rows: r1 - r0, Cols: m.Cols, DType: m.DType, Raw: m.Raw[r0*m.Cols*es : r1*m.Cols*es]}
}

// matWidenRows is the number of weight rows MatMulTMat widens at a time.
const matWidenRows = 256

// MatMulTMat computes y = x · [w₀; w₁; …]ᵀ: the products with each w are
// written side by side, w₀'s Rows columns first. x is [m, k] (row stride k),
// every w is [nᵢ, k], and y is [m, ldy] with ldy ≥ Σnᵢ; only the first Σnᵢ
// columns of each row of y are written. The result is bit-identical to
// MatMulT on the widened weights.
func MatMulTMat(y []float32, ldy int, x []float32, m, k int, ws ...Mat) {
	total := 0
	for _, w := range ws {
		total += w.Rows
	}
	if total > ldy {
		panic(fmt.Sprintf("tensor: MatMulTMat: %d output columns for ldy %d", total, ldy))
	}
	col := 0
	var buf []float32
	for _, w := range ws {
		if err := w.Check(); err != nil {
			panic(err)
		}
		if w.Cols != k {
			panic(fmt.Sprintf("tensor: MatMulTMat: weight %d×%d for input width %d", w.Rows, w.Cols, k))
		}
		if w.DType == dtype.F32 {
			Sgemm(false, true, m, w.Rows, k, 1, x, max(k, 1), float32View(w.Raw), max(k, 1), 0, y[col:], ldy)
			col += w.Rows
			continue
		}
		for r0 := 0; r0 < w.Rows; r0 += matWidenRows {
			r1 := min(w.Rows, r0+matWidenRows)
			if cap(buf) < (r1-r0)*k {
				buf = make([]float32, matWidenRows*k)
			}
			b := buf[:(r1-r0)*k]
			w.RowsF32(b, r0, r1)
			Sgemm(false, true, m, r1-r0, k, 1, x, max(k, 1), b, max(k, 1), 0, y[col+r0:], ldy)
		}
		col += w.Rows
	}
}

// float32View views little-endian float32 bytes as float32s (no copy).
func float32View(b []byte) []float32 {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(&b[0])), len(b)/4)
}
