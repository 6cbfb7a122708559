package dtype

import (
	"encoding/binary"
	"errors"
	"math"
	"math/big"
	"math/rand/v2"
	"strings"
	"testing"
)

func TestParseString(t *testing.T) {
	want := map[string]struct {
		d     DType
		size  int
		float bool
	}{
		"F32": {F32, 4, true}, "F16": {F16, 2, true}, "BF16": {BF16, 2, true}, "F64": {F64, 8, true},
		"I8": {I8, 1, false}, "U8": {U8, 1, false}, "I16": {I16, 2, false}, "I32": {I32, 4, false},
		"I64": {I64, 8, false}, "BOOL": {Bool, 1, false},
	}
	for s, w := range want {
		d, err := Parse(s)
		if err != nil || d != w.d || d.String() != s || d.Size() != w.size || d.IsFloat() != w.float {
			t.Errorf("Parse(%q) = %v (%v), size %d, float %v", s, d, err, d.Size(), d.IsFloat())
		}
	}
	for _, s := range []string{"", "f32", "FP8", "F8_E4M3", "U16", "C64"} {
		_, err := Parse(s)
		if !errors.Is(err, ErrUnknownDType) || !strings.Contains(err.Error(), `"`+s+`"`) {
			t.Errorf("Parse(%q): %v", s, err)
		}
	}
}

// isNaN16 reports whether a bf16 pattern is NaN: exponent all ones, mantissa non-zero.
func isNaN16(h uint16) bool { return h&0x7f80 == 0x7f80 && h&0x7f != 0 }

// TestBF16Exhaustive: widening every bf16 pattern and narrowing back is the
// identity, except that NaNs stay NaN (made quiet).
func TestBF16Exhaustive(t *testing.T) {
	for i := 0; i < 1<<16; i++ {
		h := uint16(i)
		f := BF16ToF32(h)
		if got := math.Float32bits(f); got != uint32(h)<<16 {
			t.Fatalf("BF16ToF32(%#04x) bits %#08x", h, got)
		}
		back := F32ToBF16(f)
		if isNaN16(h) {
			if !isNaN16(back) || back&0x8000 != h&0x8000 || back&0x40 == 0 {
				t.Fatalf("NaN %#04x narrowed to %#04x", h, back)
			}
			continue
		}
		if back != h {
			t.Fatalf("round trip %#04x -> %v -> %#04x", h, f, back)
		}
	}
}

// bf16Ref rounds a finite float32 to bf16 independently, with math/big: it picks
// the nearest of the two neighbouring bf16 values (ties to the even mantissa),
// overflowing to Inf beyond the largest finite bf16 + half an ulp.
func bf16Ref(f float32) uint16 {
	b := math.Float32bits(f)
	lo := uint16(b >> 16) // truncation: the neighbour toward zero
	hi := lo + 1          // the neighbour away from zero (may be Inf)
	x := new(big.Float).SetFloat64(float64(f))
	vlo := new(big.Float).SetFloat64(float64(math.Float32frombits(uint32(lo) << 16)))
	var vhi *big.Float
	if hi&0x7fff == 0x7f80 { // Inf: treat as the next binade value 2^128
		vhi = new(big.Float).SetMantExp(big.NewFloat(1), 128)
		if f < 0 {
			vhi.Neg(vhi)
		}
	} else {
		vhi = new(big.Float).SetFloat64(float64(math.Float32frombits(uint32(hi) << 16)))
	}
	dlo := new(big.Float).Sub(x, vlo)
	dhi := new(big.Float).Sub(vhi, x)
	dlo.Abs(dlo)
	dhi.Abs(dhi)
	switch dlo.Cmp(dhi) {
	case -1:
		return lo
	case 1:
		return hi
	}
	if lo&1 == 0 {
		return lo
	}
	return hi
}

func TestF32ToBF16RNE(t *testing.T) {
	check := func(f float32) {
		t.Helper()
		if got, want := F32ToBF16(f), bf16Ref(f); got != want {
			t.Fatalf("F32ToBF16(%v = %#08x) = %#04x, want %#04x", f, math.Float32bits(f), got, want)
		}
	}
	// Every halfway case (low 16 bits exactly 0x8000) and its neighbours, for
	// every bf16 prefix that is finite.
	for i := 0; i < 1<<16; i++ {
		hi := uint32(i) << 16
		if hi&0x7f800000 == 0x7f800000 {
			continue
		}
		for _, low := range []uint32{0x0000, 0x0001, 0x7fff, 0x8000, 0x8001, 0xffff} {
			check(math.Float32frombits(hi | low))
		}
	}
	r := rand.New(rand.NewPCG(7, 8))
	for i := 0; i < 200000; i++ {
		f := math.Float32frombits(r.Uint32())
		if math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) {
			continue
		}
		check(f)
	}
	// Specific values.
	for _, c := range []struct {
		f    float32
		want uint16
	}{
		{1, 0x3f80}, {float32(math.Inf(1)), 0x7f80}, {float32(math.Inf(-1)), 0xff80},
		{float32(math.Copysign(0, -1)), 0x8000}, {math.MaxFloat32, 0x7f80},
		{math.Float32frombits(0x3f808000), 0x3f80}, // tie, even is down
		{math.Float32frombits(0x3f818000), 0x3f82}, // tie, even is up
	} {
		if got := F32ToBF16(c.f); got != c.want {
			t.Errorf("F32ToBF16(%v) = %#04x, want %#04x", c.f, got, c.want)
		}
	}
	nan := math.Float32frombits(0x7f800001) // signalling NaN whose payload is in the low bits only
	if got := F32ToBF16(nan); !isNaN16(got) {
		t.Errorf("F32ToBF16(sNaN) = %#04x, not NaN", got)
	}
}

// f16Ref decodes an IEEE binary16 pattern independently with float64 arithmetic.
func f16Ref(h uint16) float64 {
	sign := 1.0
	if h&0x8000 != 0 {
		sign = -1
	}
	e := int(h>>10) & 0x1f
	m := float64(h & 0x3ff)
	switch e {
	case 0:
		return sign * m * math.Pow(2, -24)
	case 31:
		if m != 0 {
			return math.NaN()
		}
		return sign * math.Inf(1)
	}
	return sign * (1 + m/1024) * math.Pow(2, float64(e-15))
}

func TestF16Exhaustive(t *testing.T) {
	for i := 0; i < 1<<16; i++ {
		h := uint16(i)
		f := F16ToF32(h)
		want := f16Ref(h)
		if math.IsNaN(want) {
			if !math.IsNaN(float64(f)) {
				t.Fatalf("F16ToF32(%#04x) = %v, want NaN", h, f)
			}
			if !math.IsNaN(float64(F16ToF32(F32ToF16(f)))) {
				t.Fatalf("NaN %#04x lost", h)
			}
			continue
		}
		if float64(f) != want || math.Signbit(float64(f)) != math.Signbit(want) {
			t.Fatalf("F16ToF32(%#04x) = %v, want %v", h, f, want)
		}
		if back := F32ToF16(f); back != h {
			t.Fatalf("F16 round trip %#04x -> %#04x", h, back)
		}
	}
	// RNE on halfway cases: 1 + 2^-11 lies halfway between 1 and 1+2^-10.
	if got := F32ToF16(1 + 1.0/2048); got != 0x3c00 {
		t.Errorf("tie to even (down): %#04x", got)
	}
	if got := F32ToF16(1 + 3.0/2048); got != 0x3c02 {
		t.Errorf("tie to even (up): %#04x", got)
	}
	if got := F32ToF16(65520); got != 0x7c00 { // halfway between max finite and 2^16 -> Inf
		t.Errorf("overflow: %#04x", got)
	}
}

func TestToFromFloat32(t *testing.T) {
	vals := []float32{0, 1, -2.5, 0.375, 1024, float32(math.Copysign(0, -1)), float32(math.Inf(-1))}
	for _, d := range []DType{F32, F16, BF16, F64} {
		raw := make([]byte, len(vals)*d.Size())
		if err := FromFloat32(raw, vals, d); err != nil {
			t.Fatal(err)
		}
		// Independent check of the encoding for a couple of dtypes.
		switch d {
		case F32:
			if binary.LittleEndian.Uint32(raw[8:]) != math.Float32bits(-2.5) {
				t.Errorf("F32 encoding wrong")
			}
		case F64:
			if binary.LittleEndian.Uint64(raw[16:]) != math.Float64bits(-2.5) {
				t.Errorf("F64 encoding wrong")
			}
		case BF16:
			if binary.LittleEndian.Uint16(raw[4:]) != 0xc020 {
				t.Errorf("BF16 encoding of -2.5 = %#04x", binary.LittleEndian.Uint16(raw[4:]))
			}
		case F16:
			if binary.LittleEndian.Uint16(raw[4:]) != 0xc100 {
				t.Errorf("F16 encoding of -2.5 = %#04x", binary.LittleEndian.Uint16(raw[4:]))
			}
		}
		back := make([]float32, len(vals))
		if err := ToFloat32(back, raw, d); err != nil {
			t.Fatal(err)
		}
		for i := range vals {
			if math.Float32bits(back[i]) != math.Float32bits(vals[i]) {
				t.Errorf("%s: %v -> %v", d, vals[i], back[i])
			}
		}
		// Unaligned source works (decoding never reinterprets memory).
		shifted := append([]byte{0xAA}, raw...)
		if err := ToFloat32(back, shifted[1:], d); err != nil || math.Float32bits(back[2]) != math.Float32bits(-2.5) {
			t.Errorf("%s: unaligned decode: %v %v", d, back, err)
		}
		if err := ToFloat32(back[:1], raw, d); err == nil {
			t.Errorf("%s: length mismatch not reported", d)
		}
		if err := FromFloat32(raw[:1], vals, d); err == nil {
			t.Errorf("%s: length mismatch not reported", d)
		}
	}
	if err := ToFloat32(make([]float32, 1), make([]byte, 4), I32); err == nil {
		t.Error("ToFloat32 of I32 should fail")
	}
}

func BenchmarkBF16ToFloat32(b *testing.B) {
	src := make([]byte, 1<<20)
	dst := make([]float32, len(src)/2)
	b.SetBytes(int64(len(src)))
	for b.Loop() {
		ToFloat32(dst, src, BF16)
	}
}

func BenchmarkFloat32ToBF16(b *testing.B) {
	src := make([]float32, 1<<19)
	dst := make([]byte, len(src)*2)
	b.SetBytes(int64(len(dst)))
	for b.Loop() {
		FromFloat32(dst, src, BF16)
	}
}
