package sparse

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/wanda-go/wanda/format/dtype"
)

var floatTypes = []dtype.DType{dtype.F32, dtype.F16, dtype.BF16, dtype.F64}

// encode writes float64 values as raw little-endian bytes of dt (test helper,
// independent of package dtype's bulk converters).
func encode(t testing.TB, vals []float64, dt dtype.DType) []byte {
	t.Helper()
	b := make([]byte, len(vals)*dt.Size())
	for i, v := range vals {
		switch dt {
		case dtype.F32:
			binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(float32(v)))
		case dtype.F64:
			binary.LittleEndian.PutUint64(b[8*i:], math.Float64bits(v))
		case dtype.BF16:
			binary.LittleEndian.PutUint16(b[2*i:], uint16(math.Float32bits(float32(v))>>16)) // truncation is fine for test data
		case dtype.F16:
			binary.LittleEndian.PutUint16(b[2*i:], dtype.F32ToF16(float32(v)))
		}
	}
	return b
}

// randomPruned returns rows×cols values with the 2:4 pattern (each group has
// 2, 3 or 4 zeros) when nm, else ~60% unstructured zeros. Nonzeros are never
// representable as zero in any dtype.
func randomPruned(r *rand.Rand, rows, cols int, nm bool) []float64 {
	v := make([]float64, rows*cols)
	for i := range v {
		x := 0.01 + r.Float64()
		if r.IntN(2) == 0 {
			x = -x
		}
		v[i] = x
	}
	if nm {
		for g := 0; g < len(v); g += 4 {
			zeros := 2 + r.IntN(3)*r.IntN(2) // mostly exactly 2
			for _, q := range r.Perm(4)[:zeros] {
				v[g+q] = 0
			}
		}
	} else {
		for i := range v {
			if r.Float64() < 0.6 {
				v[i] = 0
			}
		}
	}
	return v
}

func TestPack24Example(t *testing.T) {
	// Row 0: keep cols 0,2 (nonzero) | group 2 has one nonzero (col 7) + lowest zero (col 4).
	// Row 1: all zeros: keep cols 0,1 and 4,5.
	vals := []float64{1, 0, 2, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0}
	comp, bm, err := Pack24(encode(t, vals, dtype.F32), dtype.F32, 2, 8)
	if err != nil {
		t.Fatal(err)
	}
	wantBM := []byte{0b10010101, 0b00110011}
	if !bytes.Equal(bm, wantBM) {
		t.Errorf("bitmask %08b, want %08b", bm, wantBM)
	}
	wantComp := encode(t, []float64{1, 2, 0, 3, 0, 0, 0, 0}, dtype.F32)
	if !bytes.Equal(comp, wantComp) {
		t.Errorf("compressed %v, want %v", comp, wantComp)
	}
	// Column count not a multiple of 8: 12 columns → 2 bytes per row, upper 4 bits zero.
	vals = []float64{0, 5, 0, 6, 7, 0, 0, 0, 0, 0, 8, 9}
	comp, bm, err = Pack24(encode(t, vals, dtype.F32), dtype.F32, 1, 12)
	if err != nil {
		t.Fatal(err)
	}
	if want := []byte{0b00111010, 0b00001100}; !bytes.Equal(bm, want) {
		t.Errorf("bitmask %08b, want %08b", bm, want)
	}
	if want := encode(t, []float64{5, 6, 7, 0, 8, 9}, dtype.F32); !bytes.Equal(comp, want) {
		t.Errorf("compressed %v, want %v", comp, want)
	}
}

func TestPack24RoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, dt := range floatTypes {
		for _, dims := range [][2]int{{1, 4}, {3, 12}, {16, 64}, {7, 36}, {0, 8}} {
			rows, cols := dims[0], dims[1]
			vals := randomPruned(r, rows, cols, true)
			dense := encode(t, vals, dt)
			comp, bm, err := Pack24(dense, dt, rows, cols)
			if err != nil {
				t.Fatalf("%s %v: %v", dt, dims, err)
			}
			// Independent expectation: per group, nonzeros plus lowest-index zeros up to 2.
			size := dt.Size()
			var want []byte
			for g := 0; g < rows*cols; g += 4 {
				keep := map[int]bool{}
				for q := 0; q < 4; q++ {
					if vals[g+q] != 0 {
						keep[q] = true
					}
				}
				for q := 0; q < 4 && len(keep) < 2; q++ {
					keep[q] = true
				}
				for q := 0; q < 4; q++ {
					if keep[q] {
						want = append(want, dense[(g+q)*size:(g+q+1)*size]...)
						k := g + q
						row, col := k/cols, k%cols
						if bm[row*RowBytes(cols)+col/8]&(1<<(col%8)) == 0 {
							t.Fatalf("%s %v: bit of kept (%d,%d) clear", dt, dims, row, col)
						}
					}
				}
			}
			if !bytes.Equal(comp, want) {
				t.Fatalf("%s %v: compressed differs from the independent selection", dt, dims)
			}
			back, err := Unpack24(comp, bm, dt, rows, cols)
			if err != nil {
				t.Fatalf("%s %v: unpack: %v", dt, dims, err)
			}
			if !bytes.Equal(back, dense) {
				t.Fatalf("%s %v: round trip not bit-exact", dt, dims)
			}
		}
	}
}

func TestPack24Refusals(t *testing.T) {
	vals := []float64{1, 0, 0, 0, 1, 2, 0, 3}
	_, _, err := Pack24(encode(t, vals, dtype.BF16), dtype.BF16, 1, 8)
	if !errors.Is(err, ErrNot24) || !strings.Contains(err.Error(), "row 0, columns 4..7") {
		t.Errorf("3 nonzeros in a group: got %v", err)
	}
	neg := encode(t, []float64{1, 0, 2, 0}, dtype.BF16)
	neg[3] = 0x80 // element 1 becomes -0.0
	_, _, err = Pack24(neg, dtype.BF16, 1, 4)
	if !errors.Is(err, ErrNegativeZero) || !strings.Contains(err.Error(), "[0, 1]") {
		t.Errorf("-0.0: got %v", err)
	}
	if _, _, _, err := PackBitmask(neg, dtype.BF16, 1, 4); !errors.Is(err, ErrNegativeZero) {
		t.Errorf("PackBitmask -0.0: got %v", err)
	}
	if _, _, err := Pack24(make([]byte, 12), dtype.F16, 1, 6); !errors.Is(err, ErrShape) {
		t.Errorf("6 columns: got %v", err)
	}
	if _, _, err := Pack24(make([]byte, 8), dtype.I16, 1, 4); !errors.Is(err, ErrDType) {
		t.Errorf("I16: got %v", err)
	}
	if _, _, err := Pack24(make([]byte, 7), dtype.F16, 1, 4); !errors.Is(err, ErrShape) {
		t.Errorf("short buffer: got %v", err)
	}
}

func TestPack24Size(t *testing.T) {
	rows, cols := 256, 512
	r := rand.New(rand.NewPCG(3, 4))
	dense := encode(t, randomPruned(r, rows, cols, true), dtype.BF16)
	comp, bm, err := Pack24(dense, dtype.BF16, rows, cols)
	if err != nil {
		t.Fatal(err)
	}
	packed := len(comp) + len(bm) + 16 // + the int64 [2,1] shape tensor
	ratio := float64(packed) / float64(len(dense))
	t.Logf("bf16 [%d,%d]: dense %d B, packed %d B (%.4f)", rows, cols, len(dense), packed, ratio)
	if ratio > 0.57 {
		t.Errorf("packed/dense = %.4f > 0.57", ratio)
	}
}

func TestUnpack24Corrupt(t *testing.T) {
	vals := []float64{1, 0, 2, 0, 0, 0, 0, 3}
	comp, bm, err := Pack24(encode(t, vals, dtype.F32), dtype.F32, 1, 8)
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		comp, bm []byte
	}{
		"three bits":   {comp, []byte{bm[0] | 0b10}},
		"one bit":      {comp, []byte{bm[0] &^ 0b1}},
		"short comp":   {comp[:len(comp)-1], bm},
		"long bitmask": {comp, append([]byte{}, bm[0], 0)},
	} {
		if _, err := Unpack24(c.comp, c.bm, dtype.F32, 1, 8); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: got %v, want ErrCorrupt", name, err)
		}
	}
	// padding bits of a 4-column row
	if _, err := Unpack24(encode(t, []float64{1, 2}, dtype.F32), []byte{0b00010011}, dtype.F32, 1, 4); !errors.Is(err, ErrCorrupt) {
		t.Errorf("padding: got %v", err)
	}
}

func TestPackBitmaskRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, dt := range floatTypes {
		for _, dims := range [][2]int{{1, 1}, {5, 13}, {32, 64}, {3, 0}, {0, 3}} {
			rows, cols := dims[0], dims[1]
			vals := randomPruned(r, rows, cols, false)
			dense := encode(t, vals, dt)
			comp, bm, offs, err := PackBitmask(dense, dt, rows, cols)
			if err != nil {
				t.Fatalf("%s %v: %v", dt, dims, err)
			}
			size := dt.Size()
			var want []byte
			var wantOffs []int64
			n := int64(0)
			for i := 0; i < rows; i++ {
				wantOffs = append(wantOffs, n)
				for j := 0; j < cols; j++ {
					k := i*cols + j
					set := bm[i*RowBytes(cols)+j/8]&(1<<(j%8)) != 0
					if set != (vals[k] != 0) {
						t.Fatalf("%s %v: bit (%d,%d) = %v for value %g", dt, dims, i, j, set, vals[k])
					}
					if vals[k] != 0 {
						want = append(want, dense[k*size:(k+1)*size]...)
						n++
					}
				}
			}
			if !bytes.Equal(comp, want) {
				t.Fatalf("%s %v: compressed != W[W!=0]", dt, dims)
			}
			if len(offs) != rows || (rows > 0 && !equalI64(offs, wantOffs)) {
				t.Fatalf("%s %v: row offsets %v, want %v", dt, dims, offs, wantOffs)
			}
			back, err := UnpackBitmask(comp, bm, offs, dt, rows, cols)
			if err != nil {
				t.Fatalf("%s %v: unpack: %v", dt, dims, err)
			}
			if !bytes.Equal(back, dense) {
				t.Fatalf("%s %v: round trip not bit-exact", dt, dims)
			}
		}
	}
}

func equalI64(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestUnpackBitmaskCorrupt(t *testing.T) {
	dense := encode(t, []float64{1, 0, 2, 0, 3, 0, 0, 4}, dtype.F16)
	comp, bm, offs, err := PackBitmask(dense, dtype.F16, 2, 4)
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]func() error{
		"offsets": func() error {
			_, err := UnpackBitmask(comp, bm, []int64{0, 1}, dtype.F16, 2, 4)
			return err
		},
		"extra bit": func() error {
			_, err := UnpackBitmask(comp, []byte{bm[0], bm[1] | 2}, offs, dtype.F16, 2, 4)
			return err
		},
		"odd bytes": func() error {
			_, err := UnpackBitmask(comp[:3], bm, offs, dtype.F16, 2, 4)
			return err
		},
		"padding": func() error {
			_, err := UnpackBitmask(comp, []byte{bm[0] | 0x10, bm[1]}, offs, dtype.F16, 2, 4)
			return err
		},
	}
	for name, f := range cases {
		if err := f(); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: got %v, want ErrCorrupt", name, err)
		}
	}
}

func TestScan(t *testing.T) {
	d := encode(t, []float64{1, 0, 0, 2, 1, 2, 3, 0}, dtype.BF16)
	d[5] = 0x80 // element 2 → -0.0
	st, err := Scan(d, dtype.BF16, 2, 4, Pattern24)
	if err != nil {
		t.Fatal(err)
	}
	if st.Zeros != 3 || st.NegZeros != 1 || st.FirstNegZero != 2 || st.Satisfies(Pattern24) {
		t.Errorf("Scan = %+v", st)
	}
	if why := st.Why(Pattern24); why != "row 1, columns 0..3 hold 1 zero (2:4 needs at least 2 in every aligned group of 4)" {
		t.Errorf("Why = %q", why)
	}
}

func TestLayoutSpecs(t *testing.T) {
	l24, ok := LayoutOf(Format24)
	if !ok {
		t.Fatal("sparse-24-bitmask is not registered")
	}
	specs, err := l24.Specs("m.q", dtype.BF16, 8, 12, Stat{})
	if err != nil {
		t.Fatal(err)
	}
	if len(specs) != 3 || specs[0].Name != "m.q.compressed" || specs[0].Shape[1] != 6 ||
		specs[1].Shape[1] != 2 || specs[2].DType != dtype.I64 || specs[2].Shape[0] != 2 || specs[2].Shape[1] != 1 {
		t.Errorf("24 specs = %+v", specs)
	}
	lb, ok := LayoutOf(FormatBitmask)
	if !ok {
		t.Fatal("sparse-bitmask is not registered")
	}
	specs, err = lb.Specs("m.q", dtype.BF16, 8, 12, Stat{Zeros: 8*12 - 17})
	if err != nil {
		t.Fatal(err)
	}
	if len(specs) != 4 || specs[0].Shape[0] != 17 || specs[2].Name != "m.q.row_offsets" || len(specs[3].Shape) != 1 {
		t.Errorf("bitmask specs = %+v", specs)
	}
	for _, l := range []*Layout{l24, lb} {
		if len(l.Parts) == 0 || l.Parts[0] != SuffixCompressed {
			t.Errorf("%s: parts %v", l.Format, l.Parts)
		}
	}
	if p, ok := Prefix("model.layers.0.mlp.up_proj.weight"); !ok || p != "model.layers.0.mlp.up_proj" {
		t.Errorf("Prefix = %q %v", p, ok)
	}
	if got := ShapeBytes(3, 260); binary.LittleEndian.Uint64(got) != 3 || binary.LittleEndian.Uint64(got[8:]) != 260 {
		t.Errorf("ShapeBytes = %v", got)
	}
}
