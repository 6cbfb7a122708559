package dtype

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/x448/float16"
)

// BF16ToF32 widens a bfloat16 bit pattern to float32 (exact).
func BF16ToF32(h uint16) float32 {
	return math.Float32frombits(uint32(h) << 16)
}

// F32ToBF16 narrows f to bfloat16 with round-to-nearest-even. NaN stays NaN (made
// quiet, sign and top payload bits kept), ±Inf and ±0 are kept, and finite values
// beyond the bfloat16 range round to ±Inf.
func F32ToBF16(f float32) uint16 {
	b := math.Float32bits(f)
	if b&0x7fffffff > 0x7f800000 { // NaN
		return uint16(b>>16) | 0x0040
	}
	// Add 0x7fff plus the lowest kept bit: ties go to the even neighbour.
	b += 0x7fff + (b>>16)&1
	return uint16(b >> 16)
}

// F16ToF32 widens an IEEE binary16 bit pattern to float32 (exact).
func F16ToF32(h uint16) float32 {
	return float16.Frombits(h).Float32()
}

// F32ToF16 narrows f to IEEE binary16 with round-to-nearest-even.
func F32ToF16(f float32) uint16 {
	return float16.Fromfloat32(f).Bits()
}

// ToFloat32 widens the raw little-endian bytes src of float type d into dst.
// len(dst) must equal len(src)/d.Size() and len(src) must be a multiple of d.Size().
// F64 values are rounded to the nearest float32.
func ToFloat32(dst []float32, src []byte, d DType) error {
	if !d.IsFloat() {
		return fmt.Errorf("dtype: ToFloat32: %s is not a float dtype", d)
	}
	sz := d.Size()
	if len(src)%sz != 0 || len(dst) != len(src)/sz {
		return fmt.Errorf("dtype: ToFloat32: %d bytes of %s into %d floats: length mismatch", len(src), d, len(dst))
	}
	le := binary.LittleEndian
	switch d {
	case F32:
		for i := range dst {
			dst[i] = math.Float32frombits(le.Uint32(src[4*i:]))
		}
	case BF16:
		src = src[:2*len(dst)]
		for i := range dst {
			s := src[2*i : 2*i+2 : 2*i+2]
			dst[i] = math.Float32frombits(uint32(s[0])<<16 | uint32(s[1])<<24)
		}
	case F16:
		for i := range dst {
			dst[i] = float16.Frombits(le.Uint16(src[2*i:])).Float32()
		}
	case F64:
		for i := range dst {
			dst[i] = float32(math.Float64frombits(le.Uint64(src[8*i:])))
		}
	}
	return nil
}

// FromFloat32 narrows src into the raw little-endian bytes dst of float type d.
// len(dst) must equal len(src)*d.Size(). Negative zero is written as negative zero.
func FromFloat32(dst []byte, src []float32, d DType) error {
	if !d.IsFloat() {
		return fmt.Errorf("dtype: FromFloat32: %s is not a float dtype", d)
	}
	if len(dst) != len(src)*d.Size() {
		return fmt.Errorf("dtype: FromFloat32: %d floats into %d bytes of %s: length mismatch", len(src), len(dst), d)
	}
	le := binary.LittleEndian
	switch d {
	case F32:
		for i, v := range src {
			le.PutUint32(dst[4*i:], math.Float32bits(v))
		}
	case BF16:
		dst = dst[:2*len(src)]
		for i, v := range src {
			h := F32ToBF16(v)
			d := dst[2*i : 2*i+2 : 2*i+2]
			d[0], d[1] = byte(h), byte(h>>8)
		}
	case F16:
		for i, v := range src {
			le.PutUint16(dst[2*i:], float16.Fromfloat32(v).Bits())
		}
	case F64:
		for i, v := range src {
			le.PutUint64(dst[8*i:], math.Float64bits(float64(v)))
		}
	}
	return nil
}
