package tensor

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
)

// gemmCase describes one Sgemm call on freshly generated random operands.
type gemmCase struct {
	tA, tB      bool
	m, n, k     int
	alpha, beta float32
	padA, padB  int // extra row stride beyond the minimum
	padC        int
	nanC        bool // fill C with NaN (only meaningful with beta == 0)
	threads     int
	seed        uint64
}

func (g gemmCase) String() string {
	return fmt.Sprintf("tA=%v tB=%v m=%d n=%d k=%d alpha=%g beta=%g pads=%d/%d/%d thr=%d seed=%d",
		g.tA, g.tB, g.m, g.n, g.k, g.alpha, g.beta, g.padA, g.padB, g.padC, g.threads, g.seed)
}

func randSlice(r *rand.Rand, n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(r.Float64()*2 - 1)
	}
	return s
}

// runGemmCase runs the fast Sgemm and the reference on identical inputs and
// returns a non-empty message on mismatch. Entries of C outside the m×n
// window (stride padding) must be left untouched.
func runGemmCase(g gemmCase) string {
	r := rand.New(rand.NewPCG(g.seed, 0x9e3779b97f4a7c15))
	ar, ac := g.m, g.k
	if g.tA {
		ar, ac = g.k, g.m
	}
	br, bc := g.k, g.n
	if g.tB {
		br, bc = g.n, g.k
	}
	lda, ldb, ldc := max(ac, 1)+g.padA, max(bc, 1)+g.padB, max(g.n, 1)+g.padC
	a := randSlice(r, max(ar*lda, 1))
	b := randSlice(r, max(br*ldb, 1))
	c0 := randSlice(r, max(g.m*ldc, 1))
	if g.nanC {
		for i := range c0 {
			c0[i] = float32(math.NaN())
		}
	}
	want := append([]float32(nil), c0...)
	got := append([]float32(nil), c0...)
	sgemmRef(g.tA, g.tB, g.m, g.n, g.k, g.alpha, a, lda, b, ldb, g.beta, want, ldc)
	if g.m == 0 || g.n == 0 {
		// reference touches nothing
	} else if g.alpha == 0 || g.k == 0 {
		// reference computes alpha*0 + beta*C; mirror BLAS: beta==0 zeroes.
		for i := 0; i < g.m; i++ {
			for j := 0; j < g.n; j++ {
				if g.beta == 0 {
					want[i*ldc+j] = 0
				}
			}
		}
	}
	if g.threads > 0 {
		defer SetThreads(SetThreads(g.threads))
	}
	Sgemm(g.tA, g.tB, g.m, g.n, g.k, g.alpha, a, lda, b, ldb, g.beta, got, ldc)
	// Error bound: each output is a k-term dot product of values in [-1,1]
	// plus beta*C; float32 rounding differs only through summation order.
	tol := float64(g.k+2) * 4e-7 * float64(max(abs32(g.alpha), 1)+abs32(g.beta)) * 4
	for i := range got {
		row, col := i/ldc, i%ldc
		inside := row < g.m && col < g.n
		if !inside {
			if math.Float32bits(got[i]) != math.Float32bits(c0[i]) {
				return fmt.Sprintf("%v: C[%d,%d] outside the window changed: %g -> %g", g, row, col, c0[i], got[i])
			}
			continue
		}
		d := math.Abs(float64(got[i]) - float64(want[i]))
		if !(d <= tol) {
			return fmt.Sprintf("%v: C[%d,%d] = %g, want %g (diff %g > tol %g)", g, row, col, got[i], want[i], d, tol)
		}
	}
	return ""
}

func abs32(x float32) float32 {
	if x < 0 {
		return -x
	}
	return x
}

func TestSgemmSmallExact(t *testing.T) {
	// A hand-computed case independent of sgemmRef.
	a := []float32{1, 2, 3, 4, 5, 6}    // 2×3
	b := []float32{7, 8, 9, 10, 11, 12} // 3×2
	c := []float32{1, 1, 1, 1}          // 2×2
	Sgemm(false, false, 2, 2, 3, 2, a, 3, b, 2, 3, c, 2)
	want := []float32{2*58 + 3, 2*64 + 3, 2*139 + 3, 2*154 + 3}
	for i := range c {
		if c[i] != want[i] {
			t.Fatalf("c = %v, want %v", c, want)
		}
	}
	// Same with both operands stored transposed.
	at := []float32{1, 4, 2, 5, 3, 6}    // 3×2 = Aᵀ
	bt := []float32{7, 9, 11, 8, 10, 12} // 2×3 = Bᵀ
	c = []float32{1, 1, 1, 1}
	Sgemm(true, true, 2, 2, 3, 2, at, 2, bt, 3, 3, c, 2)
	for i := range c {
		if c[i] != want[i] {
			t.Fatalf("transposed: c = %v, want %v", c, want)
		}
	}
	// MatMulT: y = x·wᵀ
	x := []float32{1, 2, 3, 4, 5, 6} // 2×3
	w := []float32{7, 9, 11, 8, 10, 12}
	y := []float32{float32(math.NaN()), 0, 0, 0}
	MatMulT(y, x, w, 2, 2, 3)
	wantY := []float32{58, 64, 139, 154}
	for i := range y {
		if y[i] != wantY[i] {
			t.Fatalf("MatMulT: y = %v, want %v", y, wantY)
		}
	}
}

func TestSgemmRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	dims := []int{0, 1, 2, 3, 5, 7, 8, 15, 16, 17, 31, 33, 47, 64, 97}
	alphas := []float32{1, -1, 0.5, 0, 2.25}
	betas := []float32{0, 1, -0.5, 0.75}
	n := 600
	if testing.Short() {
		n = 150
	}
	for it := 0; it < n; it++ {
		g := gemmCase{
			tA: r.IntN(2) == 1, tB: r.IntN(2) == 1,
			m: dims[r.IntN(len(dims))], n: dims[r.IntN(len(dims))], k: dims[r.IntN(len(dims))],
			alpha: alphas[r.IntN(len(alphas))], beta: betas[r.IntN(len(betas))],
			padA: r.IntN(3) * r.IntN(5), padB: r.IntN(3) * r.IntN(5), padC: r.IntN(2) * r.IntN(7),
			threads: 1 + r.IntN(3), seed: r.Uint64(),
		}
		g.nanC = g.beta == 0 && r.IntN(2) == 0
		if msg := runGemmCase(g); msg != "" {
			t.Fatal(msg)
		}
	}
}

// TestSgemmLarge crosses the cache-blocking boundaries (kc, mc, nc) and the
// thread split.
func TestSgemmLarge(t *testing.T) {
	cases := []gemmCase{
		{false, true, 131, 517, 300, 1, 0, 0, 0, 0, true, 2, 11},
		{false, true, 64, 64, 1100, 1, 0.5, 3, 1, 2, false, 2, 12},
		{true, false, 200, 190, 513, 1, 1, 0, 0, 0, false, 2, 13},
		{false, false, 700, 45, 260, -1.5, 0.25, 1, 0, 3, false, 2, 14},
		{true, true, 37, 1030, 129, 0.75, 0, 0, 5, 0, false, 3, 15},
		{false, true, 1, 2000, 384, 1, 0, 0, 0, 0, false, 2, 16},
		{false, true, 2000, 1, 384, 1, 1, 0, 0, 0, false, 2, 17},
		{false, true, 600, 600, 1, 1, 0, 0, 0, 0, false, 2, 18},
		{true, true, 2, 5000, 600, 0.5, 1, 3, 0, 1, false, 2, 19}, // small-m path, threaded
		{false, false, 3, 4100, 700, 1, 0, 0, 2, 0, true, 2, 20},  // small-m Axpy path, threaded
		{false, true, 4, 1500, 1500, 1, 0, 0, 0, 0, false, 2, 21}, // just above small-m
	}
	for _, g := range cases {
		if msg := runGemmCase(g); msg != "" {
			t.Fatal(msg)
		}
	}
}

func TestSgemmPanics(t *testing.T) {
	mustPanic := func(name string, f func()) {
		t.Helper()
		defer func() {
			if recover() == nil {
				t.Errorf("%s: no panic", name)
			}
		}()
		f()
	}
	s := make([]float32, 16)
	mustPanic("negative m", func() { Sgemm(false, false, -1, 2, 2, 1, s, 2, s, 2, 0, s, 2) })
	mustPanic("short lda", func() { Sgemm(false, false, 2, 2, 3, 1, s, 2, s, 2, 0, s, 2) })
	mustPanic("short a", func() { Sgemm(false, false, 4, 2, 5, 1, s, 5, s, 2, 0, s, 2) })
	mustPanic("short c", func() { Sgemm(false, false, 2, 9, 2, 1, s, 2, make([]float32, 18), 9, 0, s, 9) })
}

func TestSetThreads(t *testing.T) {
	old := SetThreads(3)
	if got := SetThreads(old); got != 3 {
		t.Fatalf("SetThreads returned %d, want 3", got)
	}
	if SetThreads(0); Threads() != 1 {
		t.Fatalf("SetThreads(0) gave %d threads, want 1", Threads())
	}
	SetThreads(old)
}

// FuzzSgemm compares the fast Sgemm against sgemmRef on shapes, flags and
// operands derived from the fuzz input.
func FuzzSgemm(f *testing.F) {
	f.Add(uint8(0), uint16(7), uint16(19), uint16(33), uint8(1), uint8(0), uint64(1))
	f.Add(uint8(1), uint16(64), uint16(64), uint16(300), uint8(2), uint8(3), uint64(2))
	f.Add(uint8(2), uint16(1), uint16(100), uint16(5), uint8(7), uint8(1), uint64(3))
	f.Add(uint8(3), uint16(130), uint16(3), uint16(1), uint8(4), uint8(2), uint64(4))
	f.Fuzz(func(t *testing.T, flags uint8, m, n, k uint16, ab uint8, pads uint8, seed uint64) {
		alphas := []float32{1, -1, 0.5, 0, 3}
		betas := []float32{0, 1, -2, 0.25}
		g := gemmCase{
			tA: flags&1 != 0, tB: flags&2 != 0,
			m: int(m % 160), n: int(n % 160), k: int(k % 700),
			alpha: alphas[int(ab&7)%len(alphas)], beta: betas[int(ab>>3)%len(betas)],
			padA: int(pads & 3), padB: int(pads>>2) & 3, padC: int(pads>>4) & 3,
			nanC: flags&4 != 0, threads: 1 + int(flags>>3)%3, seed: seed,
		}
		if !(g.beta == 0) {
			g.nanC = false
		}
		if msg := runGemmCase(g); msg != "" {
			t.Fatal(msg)
		}
	})
}

func TestDgemmRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 22))
	dims := []int{0, 1, 2, 5, 6, 7, 8, 9, 13, 31, 64, 100, 300}
	for it := 0; it < 200; it++ {
		tA, tB := r.IntN(2) == 1, r.IntN(2) == 1
		m, n, k := dims[r.IntN(len(dims))], dims[r.IntN(len(dims))], dims[r.IntN(len(dims))]
		if it%50 == 0 {
			m, n, k = 150+r.IntN(100), 150+r.IntN(200), 250+r.IntN(300)
		}
		alpha := []float64{1, -1, 0.5, 0}[r.IntN(4)]
		beta := []float64{0, 1, -0.5}[r.IntN(3)]
		ar, ac := m, k
		if tA {
			ar, ac = k, m
		}
		br, bc := k, n
		if tB {
			br, bc = n, k
		}
		lda, ldb, ldc := max(ac, 1)+r.IntN(3), max(bc, 1)+r.IntN(3), max(n, 1)+r.IntN(3)
		rnd := func(n int) []float64 {
			s := make([]float64, max(n, 1))
			for i := range s {
				s[i] = r.Float64()*2 - 1
			}
			return s
		}
		a, b, c := rnd(ar*lda), rnd(br*ldb), rnd(m*ldc)
		want := append([]float64(nil), c...)
		sgemmRef(tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, want, ldc)
		got := append([]float64(nil), c...)
		SetThreads(1 + it%2)
		Dgemm(tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, got, ldc)
		for i := range got {
			if math.Abs(got[i]-want[i]) > 1e-13*float64(k+2) {
				t.Fatalf("it %d tA=%v tB=%v m=%d n=%d k=%d: C[%d] = %g, want %g", it, tA, tB, m, n, k, i, got[i], want[i])
			}
		}
	}
	SetThreads(runtime.GOMAXPROCS(0))
}

// TestSgemmConcurrent runs multi-threaded GEMMs from several goroutines at
// once (as the attention workers of the forward stage do): helpers are
// shared and optional, results must not mix.
func TestSgemmConcurrent(t *testing.T) {
	defer SetThreads(SetThreads(2))
	var wg sync.WaitGroup
	errs := make(chan string, 64)
	for gi := 0; gi < 4; gi++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(gi), 99))
			for it := 0; it < 6; it++ {
				g := gemmCase{
					tA: r.IntN(2) == 1, tB: r.IntN(2) == 1,
					m: 60 + r.IntN(200), n: 60 + r.IntN(300), k: 100 + r.IntN(400),
					alpha: 1, beta: []float32{0, 1}[r.IntN(2)], seed: r.Uint64(),
				}
				if msg := runGemmCase(g); msg != "" {
					errs <- msg
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for msg := range errs {
		t.Error(msg)
	}
}
