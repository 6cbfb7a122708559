package tensor

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/wanda-go/wanda/format/dtype"
	"github.com/wanda-go/wanda/internal/testenv"
)

// testMat is a stored-dtype weight for the tests and its widening by the
// dtype package (the reference conversion, independent of this package).
type testMat struct {
	m    Mat
	wide []float32
}

// newTestMat draws an n×k weight of dtype dt whose Raw starts off bytes
// into its allocation (off = 1, 2, 3 gives the misaligned views a
// memory-mapped file can produce). Some entries are special values:
// ±0, float16 subnormals and values near the format's largest.
func newTestMat(t testing.TB, r *rand.Rand, dt dtype.DType, n, k, off int) testMat {
	t.Helper()
	f := make([]float32, n*k)
	for i := range f {
		switch r.IntN(50) {
		case 0:
			f[i] = 0
		case 1:
			f[i] = float32(math.Copysign(0, -1))
		case 2:
			f[i] = float32(r.NormFloat64() * 1e-6) // subnormal in float16
		case 3:
			f[i] = float32(r.NormFloat64() * 3e4)
		default:
			f[i] = float32(r.NormFloat64() * 0.1)
		}
	}
	buf := make([]byte, off+n*k*dt.Size())
	raw := buf[off:]
	if err := dtype.FromFloat32(raw, f, dt); err != nil {
		t.Fatal(err)
	}
	if err := dtype.ToFloat32(f, raw, dt); err != nil {
		t.Fatal(err)
	}
	return testMat{Mat{Rows: n, Cols: k, DType: dt, Raw: raw}, f}
}

// checkMatMulTMat runs MatMulTMat on ws with a NaN-filled y of stride
// total+pad and compares every written value bit for bit with MatMulT on
// each widened weight; the pad columns must stay NaN.
func checkMatMulTMat(t *testing.T, r *rand.Rand, m, k, pad int, ws []testMat, what string) {
	t.Helper()
	x := make([]float32, m*k)
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	total := 0
	mats := make([]Mat, len(ws))
	for i, w := range ws {
		mats[i] = w.m
		total += w.m.Rows
	}
	ldy := total + pad
	y := make([]float32, max(m*ldy, 1))
	for i := range y {
		y[i] = float32(math.NaN())
	}
	MatMulTMat(y, ldy, x, m, k, mats...)
	col := 0
	for wi, w := range ws {
		n := w.m.Rows
		want := make([]float32, max(m*n, 1))
		MatMulT(want, x, w.wide, m, n, k)
		for i := 0; i < m; i++ {
			for j := 0; j < n; j++ {
				if g, e := y[i*ldy+col+j], want[i*n+j]; math.Float32bits(g) != math.Float32bits(e) {
					t.Fatalf("%s: weight %d (%s %d×%d) y[%d,%d] = %v, MatMulT %v", what, wi, w.m.DType, n, k, i, j, g, e)
				}
			}
		}
		col += n
	}
	for i := 0; i < m; i++ {
		for j := total; j < ldy; j++ {
			if !math.IsNaN(float64(y[i*ldy+j])) {
				t.Fatalf("%s: y[%d,%d] beyond the weights was written", what, i, j)
			}
		}
	}
}

// TestMatMulTMatBitIdentical: the product with stored-dtype weights equals
// MatMulT on the widened weights bit for bit, for every dtype, several
// weights side by side (including an empty one and panels that straddle
// two weights), both the small-m and the packed GEMM paths, odd sizes,
// misaligned Raw and 1 to 3 threads.
func TestMatMulTMatBitIdentical(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	dts := []dtype.DType{dtype.F32, dtype.BF16, dtype.F16}
	for _, threads := range []int{1, 2, 3} {
		func() {
			defer SetThreads(SetThreads(threads))
			for _, dt := range dts {
				for _, m := range []int{1, 2, 3, 4, 5, 6, 7, 13, 64, 145, 301} {
					for _, k := range []int{1, 7, 8, 97 + m%5, 300} {
						if threads > 1 && k < 97 {
							continue
						}
						ns := []int{17, 300, 0, 5, 32}
						var ws []testMat
						for i, n := range ns {
							ws = append(ws, newTestMat(t, r, dt, n, k, (i+m)%4))
						}
						checkMatMulTMat(t, r, m, k, (m+k)%4, ws, fmt.Sprintf("threads=%d %s m=%d k=%d", threads, dt, m, k))
					}
				}
			}
		}()
	}
}

// TestMatMulTMatMixed: weights of different dtypes side by side, and one
// problem large enough for several column blocks (n > 3072), several k
// blocks (k > 256) and several row blocks on two threads.
func TestMatMulTMatMixed(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	defer SetThreads(SetThreads(2))
	for _, c := range []struct{ m, k int }{{2, 300}, {50, 300}, {301, 520}} {
		ws := []testMat{
			newTestMat(t, r, dtype.BF16, 1000, c.k, 1),
			newTestMat(t, r, dtype.F16, 2101, c.k, 0),
			newTestMat(t, r, dtype.F32, 19, c.k, 2),
			newTestMat(t, r, dtype.BF16, 64, c.k, 0),
		}
		checkMatMulTMat(t, r, c.m, c.k, 1, ws, fmt.Sprintf("mixed m=%d k=%d", c.m, c.k))
	}
}

// TestMatMulTMatEmpty: m, k or the weights' rows may be 0; k == 0 writes
// zeros.
func TestMatMulTMatEmpty(t *testing.T) {
	w0 := Mat{Rows: 3, Cols: 0, DType: dtype.BF16}
	y := []float32{9, 9, 9, 9, 9, 9, 9, 9}
	MatMulTMat(y, 4, nil, 2, 0, w0)
	if want := []float32{0, 0, 0, 9, 0, 0, 0, 9}; fmt.Sprint(y) != fmt.Sprint(want) {
		t.Fatalf("k=0: y = %v, want %v", y, want)
	}
	MatMulTMat(nil, 2, nil, 0, 5, Mat{Rows: 2, Cols: 5, DType: dtype.F16, Raw: make([]byte, 20)})
	MatMulTMat(nil, 0, make([]float32, 10), 2, 5, Mat{Rows: 0, Cols: 5, DType: dtype.F16})
	MatMulTMat(nil, 0, make([]float32, 10), 2, 5)
}

// TestMatMulTMatPanics: malformed weights or operands are programmer
// errors that name what is wrong.
func TestMatMulTMatPanics(t *testing.T) {
	good := Mat{Rows: 4, Cols: 8, DType: dtype.BF16, Raw: make([]byte, 64)}
	x := make([]float32, 3*8)
	y := make([]float32, 3*8)
	for _, c := range []struct {
		name, want string
		f          func()
	}{
		{"cols", "is 4×7 for input width 8", func() {
			MatMulTMat(y, 8, x, 3, 8, good, Mat{Rows: 4, Cols: 7, DType: dtype.BF16, Raw: make([]byte, 56)})
		}},
		{"short raw", "weight 1: tensor: Mat 4×8 F16 with 63 bytes", func() {
			MatMulTMat(y, 8, x, 3, 8, good, Mat{Rows: 4, Cols: 8, DType: dtype.F16, Raw: make([]byte, 63)})
		}},
		{"dtype", "not F32, BF16 or F16", func() {
			MatMulTMat(y, 8, x, 3, 8, Mat{Rows: 4, Cols: 8, DType: dtype.I16, Raw: make([]byte, 64)})
		}},
		{"ldy", "8 output columns for ldy 7", func() { MatMulTMat(y, 7, x, 3, 8, good, good) }},
		{"short y", "len(y)=", func() { MatMulTMat(y[:23], 8, x, 3, 8, good, good) }},
		{"short x", "len(x)=", func() { MatMulTMat(y, 8, x[:23], 3, 8, good, good) }},
	} {
		func() {
			defer func() {
				v := recover()
				if v == nil || !strings.Contains(fmt.Sprint(v), c.want) {
					t.Errorf("%s: panic %v, want one containing %q", c.name, v, c.want)
				}
			}()
			c.f()
		}()
	}
}

// TestWidenAllValues: widening (vectorised where available) equals the
// dtype package's conversion for every bfloat16 and float16 bit pattern,
// NaNs included, from misaligned sources.
func TestWidenAllValues(t *testing.T) {
	for _, dt := range []dtype.DType{dtype.BF16, dtype.F16} {
		buf := make([]byte, 1+2*65536)
		raw := buf[1:]
		for i := 0; i < 65536; i++ {
			binary.LittleEndian.PutUint16(raw[2*i:], uint16(i))
		}
		want := make([]float32, 65536)
		if err := dtype.ToFloat32(want, raw, dt); err != nil {
			t.Fatal(err)
		}
		got := make([]float32, 65536)
		widen(got, raw, dt)
		m := Mat{Rows: 256, Cols: 256, DType: dt, Raw: raw}
		rows := make([]float32, 65536)
		m.RowsF32(rows, 0, 256)
		for i := range want {
			if w := math.Float32bits(want[i]); math.Float32bits(got[i]) != w || math.Float32bits(rows[i]) != w {
				t.Fatalf("%s 0x%04x: widen %08x, RowsF32 %08x, dtype %08x", dt, i,
					math.Float32bits(got[i]), math.Float32bits(rows[i]), w)
			}
		}
	}
}

// TestPackBTRaw: the vectorised converting transpose of a 16-row panel
// equals the scalar one, for every dtype, misaligned sources and column
// counts that leave a tail.
func TestPackBTRaw(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, dt := range []dtype.DType{dtype.F32, dtype.BF16, dtype.F16} {
		for _, k := range []int{7, 8, 40, 61} {
			for off := 0; off < 4; off++ {
				w := newTestMat(t, r, dt, 19, k, off)
				for _, r0 := range []int{0, 3} {
					for _, pc := range []int{0, 1, 5} {
						kc := k - pc
						got := make([]float32, kc*16)
						p0 := packBTRawAsm(dt, got, w.m.Raw[(r0*k+pc)*dt.Size():], k, kc)
						for j := 0; j < 16; j++ {
							packBTRow(got, j, w.m, r0+j, pc, p0, kc)
						}
						for p := 0; p < kc; p++ {
							for j := 0; j < 16; j++ {
								if g, e := got[p*16+j], w.wide[(r0+j)*k+pc+p]; math.Float32bits(g) != math.Float32bits(e) {
									t.Fatalf("%s k=%d off=%d r0=%d pc=%d (vector part %d): [%d,%d] = %v, want %v", dt, k, off, r0, pc, p0, p, j, g, e)
								}
							}
						}
					}
				}
			}
		}
	}
}

// TestMatMulTMatMemory: the memory MatMulTMat allocates per call does not
// grow with the weight: a 64 MiB bf16 weight (128 MiB widened) costs less
// than 1 MiB of allocation per call once the packing buffers exist, for
// the packed path and the small-m path. (The previous implementation
// allocated a 256-row widened chunk, 2 MiB here, on every call.)
func TestMatMulTMatMemory(t *testing.T) {
	testenv.SkipIfRace(t)
	if testing.Short() {
		t.Skip("allocates a 64 MiB weight")
	}
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool drop buffers at random")
	}
	const n, k = 16384, 2048
	w := Mat{Rows: n, Cols: k, DType: dtype.BF16, Raw: make([]byte, n*k*2)}
	for i := range w.Raw {
		w.Raw[i] = byte(i * 7)
	}
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	for _, m := range []int{2, 8} {
		x := make([]float32, m*k)
		y := make([]float32, m*n)
		MatMulTMat(y, n, x, m, k, w) // warm the buffers
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		const calls = 4
		for i := 0; i < calls; i++ {
			MatMulTMat(y, n, x, m, k, w.Sub(0, n/2), w.Sub(n/2, n))
		}
		runtime.ReadMemStats(&after)
		if per := (after.TotalAlloc - before.TotalAlloc) / calls; per > 1<<20 {
			t.Errorf("m=%d: %d bytes allocated per call with a %d-byte weight", m, per, len(w.Raw))
		} else {
			t.Logf("m=%d: %d bytes allocated per call", m, per)
		}
	}
}

// TestF16ToF32: the portable float16 widening equals the dtype package's
// for every bit pattern.
func TestF16ToF32(t *testing.T) {
	for i := 0; i < 65536; i++ {
		if g, w := math.Float32bits(f16ToF32(uint16(i))), math.Float32bits(dtype.F16ToF32(uint16(i))); g != w {
			t.Fatalf("0x%04x: %08x, dtype %08x", i, g, w)
		}
	}
}
