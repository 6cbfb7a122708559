package tensor

import (
	"encoding/binary"
	"math"
	"sort"
	"sync"
	"unsafe"

	"github.com/wanda-go/wanda/format/dtype"
)

// matB is the transposed B operand of MatMulTMat: the weights mats stacked
// by rows into one virtual [Σnᵢ, k] matrix, whose row j is row j-start[i]
// of mats[i] for start[i] ≤ j < start[i+1]. Nothing is copied.
type matB struct {
	mats  []Mat
	start []int // len(mats)+1 prefix sums of the row counts
}

// find returns the index of the weight holding virtual row j (< start[len(mats)]).
func (b *matB) find(j int) int {
	return sort.Search(len(b.mats), func(i int) bool { return b.start[i+1] > j })
}

// packBMats is packB for a matB operand: it packs rows [jc, jc+nc) and
// columns [pc, pc+kc) of the virtual weight into 16-wide micro-panels,
// dst[q*kc*16 + p*16 + j] = float32(row jc+q*16+j, column pc+p), zero-padded
// past nc. A full panel inside one weight goes through the vectorised
// converting transpose; a panel that straddles two weights (or the edge)
// is packed row by row.
func packBMats(dst []float32, g *gemmProblem[float32], pc, kc, jc, nc int) {
	const nr = sgemmNR
	bm := g.bm
	for jr := 0; jr < nc; jr += nr {
		nn := min(nr, nc-jr)
		d := dst[jr*kc : jr*kc+kc*nr]
		j0 := jc + jr
		i := bm.find(j0)
		if w, r0 := bm.mats[i], j0-bm.start[i]; nn == nr && r0+nr <= w.Rows {
			es := w.DType.Size()
			p0 := packBTRawAsm(w.DType, d, w.Raw[(r0*w.Cols+pc)*es:], w.Cols, kc)
			if p0 < kc {
				for j := 0; j < nr; j++ {
					packBTRow(d, j, w, r0+j, pc, p0, kc)
				}
			}
			continue
		}
		if nn < nr {
			clear(d)
		}
		for j := 0; j < nn; j++ {
			for j0+j >= bm.start[i+1] {
				i++
			}
			packBTRow(d, j, bm.mats[i], j0+j-bm.start[i], pc, 0, kc)
		}
	}
}

// packBTRow sets d[p*16+j] = float32(w[r, c0+p]) for p in [p0, kc).
func packBTRow(d []float32, j int, w Mat, r, c0, p0, kc int) {
	const nr = sgemmNR
	n := kc - p0
	if n <= 0 {
		return
	}
	es := w.DType.Size()
	src := w.Raw[(r*w.Cols+c0+p0)*es : (r*w.Cols+c0+kc)*es]
	d = d[p0*nr+j:]
	_ = d[(n-1)*nr]
	le := binary.LittleEndian
	switch w.DType {
	case dtype.F32:
		for p := 0; p < n; p++ {
			d[p*nr] = math.Float32frombits(le.Uint32(src[4*p:]))
		}
	case dtype.BF16:
		for p := 0; p < n; p++ {
			d[p*nr] = math.Float32frombits(uint32(le.Uint16(src[2*p:])) << 16)
		}
	case dtype.F16:
		for p := 0; p < n; p++ {
			d[p*nr] = f16ToF32(le.Uint16(src[2*p:]))
		}
	default:
		panic("tensor: packBTRow: dtype " + w.DType.String())
	}
}

// f16ToF32 widens an IEEE binary16 bit pattern to float32 exactly, with
// the results of dtype.F16ToF32 (NaNs made quiet, payload kept), in a form
// the compiler inlines: normal values rebias the exponent, subnormals are
// their 10-bit integer significand times 2⁻²⁴ (exact in float32).
func f16ToF32(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	em := uint32(h & 0x7fff)
	switch {
	case em >= 0x7c00: // ±Inf, NaN
		if em > 0x7c00 {
			return math.Float32frombits(sign | 0x7fc00000 | (em&0x3ff)<<13)
		}
		return math.Float32frombits(sign | 0x7f800000)
	case em >= 0x0400: // normal
		return math.Float32frombits(sign | (em<<13 + (127-15)<<23))
	default: // subnormal or zero
		return math.Float32frombits(sign | math.Float32bits(float32(em)*(1.0/(1<<24))))
	}
}

// littleEndian reports whether this machine stores float32s little-endian
// (as safetensors does), so that aligned F32 bytes can be read in place.
var littleEndian = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

// widen converts len(dst) values of dtype dt from src to float32.
func widen(dst []float32, src []byte, dt dtype.DType) {
	n := len(dst)
	if n == 0 {
		return
	}
	src = src[:n*dt.Size()]
	if dt == dtype.F32 && littleEndian {
		copy(unsafe.Slice((*byte)(unsafe.Pointer(&dst[0])), 4*n), src)
		return
	}
	i := widenAsm(dt, dst, src)
	le := binary.LittleEndian
	switch dt {
	case dtype.F32:
		for ; i < n; i++ {
			dst[i] = math.Float32frombits(le.Uint32(src[4*i:]))
		}
	case dtype.BF16:
		for ; i < n; i++ {
			dst[i] = math.Float32frombits(uint32(le.Uint16(src[2*i:])) << 16)
		}
	case dtype.F16:
		for ; i < n; i++ {
			dst[i] = f16ToF32(le.Uint16(src[2*i:]))
		}
	default: // F64 and the rest: the dtype package's conversion (or its error)
		if err := dtype.ToFloat32(dst, src, dt); err != nil {
			panic("tensor: widen: " + err.Error())
		}
	}
}

// rowBufs holds the per-thread row buffers of matMulTSmallM (*[]float32).
var rowBufs sync.Pool

// matMulTSmallM is MatMulTMat for m ≤ smallM rows of x: every output is
// Dot(x row, widened weight row), exactly as sgemmSmallM computes it for a
// transposed B, with the rows of y's columns split over threads.
func matMulTSmallM(y []float32, ldy int, x []float32, m, k int, bm *matB) {
	n := bm.start[len(bm.mats)]
	rows := func(lo, hi int) {
		bp, _ := rowBufs.Get().(*[]float32)
		if bp == nil {
			bp = new([]float32)
		}
		if cap(*bp) < k {
			*bp = make([]float32, k)
		}
		buf := (*bp)[:k]
		i := bm.find(lo)
		for j := lo; j < hi; j++ {
			for j >= bm.start[i+1] {
				i++
			}
			w := bm.mats[i]
			es := w.DType.Size()
			raw := w.Raw[(j-bm.start[i])*k*es : (j-bm.start[i]+1)*k*es]
			row := buf
			if w.DType == dtype.F32 && littleEndian && uintptr(unsafe.Pointer(&raw[0]))%4 == 0 {
				row = float32View(raw)
			} else {
				widen(buf, raw, w.DType)
			}
			for t := 0; t < m; t++ {
				y[t*ldy+j] = Dot(x[t*k:(t+1)*k], row)
			}
		}
		rowBufs.Put(bp)
	}
	if 2*float64(m)*float64(n)*float64(k) < minParallelFlops || n < 64*Threads() {
		rows(0, n)
		return
	}
	ParallelFor(n, 64, rows)
}
