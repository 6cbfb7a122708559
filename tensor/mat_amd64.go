//go:build amd64 && !purego

package tensor

import (
	"golang.org/x/sys/cpu"

	"github.com/wanda-go/wanda/format/dtype"
)

//go:noescape
func packBT16F32AVX2(dst *float32, src *byte, ldb, kc8 int)

//go:noescape
func packBT16BF16AVX2(dst *float32, src *byte, ldb, kc8 int)

//go:noescape
func packBT16F16AVX2(dst *float32, src *byte, ldb, kc8 int)

//go:noescape
func widenBF16AVX2(dst *float32, src *byte, n int)

//go:noescape
func widenF16AVX2(dst *float32, src *byte, n int)

// haveF16C: float16 conversions in hardware, used with the AVX2 code.
var haveF16C = haveAVX2FMA && cpu.X86.HasF16C

// packBTRawAsm packs the first kc&^7 columns of 16 consecutive rows of a
// stored-dtype weight (row stride ld elements; src starts at the first
// value) into a 16-wide micro-panel, converting to float32, and returns
// how many columns it did (0 when no vector unit is available).
func packBTRawAsm(dt dtype.DType, dst []float32, src []byte, ld, kc int) int {
	kc8 := kc / 8
	if kc8 == 0 || !haveAVX2FMA || (dt == dtype.F16 && !haveF16C) {
		return 0
	}
	es := dt.Size()
	_ = dst[kc8*8*16-1]
	_ = src[(15*ld+kc8*8)*es-1]
	switch dt {
	case dtype.F32:
		packBT16F32AVX2(&dst[0], &src[0], ld, kc8)
	case dtype.BF16:
		packBT16BF16AVX2(&dst[0], &src[0], ld, kc8)
	case dtype.F16:
		packBT16F16AVX2(&dst[0], &src[0], ld, kc8)
	default:
		return 0
	}
	return kc8 * 8
}

// widenAsm widens the first len(dst)&^15 values of src (stored dtype dt)
// into dst and returns how many it did.
func widenAsm(dt dtype.DType, dst []float32, src []byte) int {
	n := len(dst) &^ 15
	if n == 0 || !haveAVX2FMA {
		return 0
	}
	switch {
	case dt == dtype.BF16:
		_ = src[2*n-1]
		widenBF16AVX2(&dst[0], &src[0], n)
	case dt == dtype.F16 && haveF16C:
		_ = src[2*n-1]
		widenF16AVX2(&dst[0], &src[0], n)
	default:
		return 0
	}
	return n
}
