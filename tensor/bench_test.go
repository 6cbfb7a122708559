package tensor

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/wanda-go/wanda/format/dtype"
)

// benchShapes are the GEMM shapes that matter for pruning: tokens×in · (out×in)ᵀ
// for the tiny test model and LLaMA-7B.
var benchShapes = []struct{ m, n, k int }{
	{512, 1024, 384},    // tiny: gate/up
	{512, 384, 1024},    // tiny: down
	{512, 384, 384},     // tiny: q/k/v/o
	{2048, 11008, 4096}, // LLaMA-7B: gate/up
}

// benchTN are the Hessian shapes C[k×k] += Xᵀ·X with X [tokens×k]:
// Sgemm(true, false, k, k, tokens, ...).
var benchTN = []struct{ k, tokens int }{
	{384, 512},
	{1024, 512},
	{4096, 2048},
}

func reportGflops(b *testing.B, m, n, k int) {
	b.ReportMetric(2*float64(m)*float64(n)*float64(k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
}

func BenchmarkMatMulT(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 1))
	for _, s := range benchShapes {
		if testing.Short() && s.m*s.n*s.k > 1<<30 {
			continue
		}
		b.Run(fmt.Sprintf("m=%d,n=%d,k=%d", s.m, s.n, s.k), func(b *testing.B) {
			x := randSlice(r, s.m*s.k)
			w := randSlice(r, s.n*s.k)
			y := make([]float32, s.m*s.n)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				MatMulT(y, x, w, s.m, s.n, s.k)
			}
			reportGflops(b, s.m, s.n, s.k)
		})
	}
}

func BenchmarkSgemmTN(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, s := range benchTN {
		if testing.Short() && s.k*s.k*s.tokens > 1<<30 {
			continue
		}
		b.Run(fmt.Sprintf("k=%d,tokens=%d", s.k, s.tokens), func(b *testing.B) {
			x := randSlice(r, s.tokens*s.k)
			h := make([]float32, s.k*s.k)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				Sgemm(true, false, s.k, s.k, s.tokens, 1, x, s.k, x, s.k, 1, h, s.k)
			}
			reportGflops(b, s.k, s.k, s.tokens)
		})
	}
}

// BenchmarkCholeskyInverseUpper times SparseGPT's Hinv for the tiny model's
// and LLaMA-7B's Hessian sizes (2n³/3 flops counted).
func BenchmarkCholeskyInverseUpper(b *testing.B) {
	for _, n := range []int{384, 1024, 4096} {
		if testing.Short() && n > 1024 {
			continue
		}
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			r := rand.New(rand.NewPCG(3, uint64(n)))
			h := randSPD(r, n, 64, 1) // cheap to build: rank 64 + I
			a := make([]float64, n*n)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				copy(a, h)
				if err := CholeskyInverseUpper(a, n); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(2*float64(n)*float64(n)*float64(n)/3*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}

// BenchmarkMicroKernel measures the float32 microkernel alone on L1-resident
// packed panels: the per-core ceiling the blocked GEMM can approach.
func BenchmarkMicroKernel(b *testing.B) {
	impl := sgemmImpl
	for _, kc := range []int{64, 256} {
		b.Run(fmt.Sprintf("%s/kc=%d", impl.name, kc), func(b *testing.B) {
			var raw []float32
			buf := aligned(&raw, kc*mr+kc*impl.nr+mr*impl.nr)
			a, p, c := buf[:kc*mr], buf[kc*mr:kc*mr+kc*impl.nr], buf[kc*mr+kc*impl.nr:]
			for i := 0; i < b.N; i++ {
				impl.kernel(kc, a, p, c, impl.nr, 1, 0)
			}
			reportGflops(b, mr, impl.nr, kc*1)
		})
	}
}

// matBenchShapes are the linear layers of the forward pass as MatMulTMat
// sees them: m tokens, the weights side by side (ns) and their width k.
var matBenchShapes = []struct {
	name string
	m    int
	ns   []int
	k    int
}{
	{"small", 128, []int{1024}, 384},
	{"7B-o-m2", 2, []int{4096}, 4096},     // two tokens: the unpacked m ≤ 3 path
	{"7B-o-m512", 512, []int{4096}, 4096}, // 4×128 calibration tokens
	{"7B-qkv", 2048, []int{4096, 4096, 4096}, 4096},
	{"7B-gateup", 2048, []int{11008, 11008}, 4096},
	{"7B-down", 2048, []int{4096}, 11008},
	// A slice of a 405B down_proj (16384×53248): the full row length k
	// with 2048 of the 16384 rows and 512 tokens (4×128 calibration
	// tokens); about 0.9 GB of operands with all four weight copies.
	{"405B-down-slice", 512, []int{2048}, 53248},
}

// matBenchRotate rotates the order in which BenchmarkMatMulTMat runs its
// variants, so that repeated runs (bench/gemm/mat.sh) do not always time
// the same variant first.
var matBenchRotate = flag.Int("matbench.rotate", 0, "rotate the order of the BenchmarkMatMulTMat variants by this much")

// BenchmarkMatMulTMat compares, shape by shape in one run, MatMulT with
// float32 weights (the weights concatenated: the fp32 path) against
// MatMulTMat with the same weights stored as float32, bfloat16 and
// float16 (all four hold the same values). Compare the GFLOP/s of bf16 (or
// f16) with fp32-MatMulT; GFLOP/cpu-s divides by the CPU time of the
// process instead of the wall time, which is less sensitive to other jobs
// on a shared machine. The 7B and 405B shapes take seconds per call and
// ~1 GB: run them with -benchtime=2x; -short keeps only the small shape.
// bench/gemm/mat.sh repeats the run and tabulates the ratios.
func BenchmarkMatMulTMat(b *testing.B) {
	for _, s := range matBenchShapes {
		if testing.Short() && s.m*s.k > 1<<20 {
			continue
		}
		n := 0
		for _, v := range s.ns {
			n += v
		}
		b.Run(fmt.Sprintf("%s/m=%d,n=%d,k=%d", s.name, s.m, n, s.k), func(b *testing.B) {
			vs := matBenchVariants(b, s.m, s.ns, s.k)
			rot := (*matBenchRotate%len(vs) + len(vs)) % len(vs)
			vs = append(vs[rot:], vs[:rot]...)
			for _, v := range vs {
				b.Run(v.name, func(b *testing.B) {
					c0 := processCPUSeconds()
					for i := 0; i < b.N; i++ {
						v.f()
					}
					cpu := processCPUSeconds() - c0
					reportGflops(b, s.m, n, s.k)
					if cpu > 0 {
						b.ReportMetric(2*float64(s.m)*float64(n)*float64(s.k)*float64(b.N)/cpu/1e9, "GFLOP/cpu-s")
					}
				})
			}
		})
	}
}

// matVariant is one way of computing the same product in the MatMulTMat
// benchmarks.
type matVariant struct {
	name string
	f    func()
}

// matBenchVariants builds x [m,k] and weights of Σns rows in float32,
// bfloat16 and float16 (all holding the same bfloat16-representable
// values) and returns the product computed by MatMulT on the float32
// weights concatenated (the fp32 path, first) and by MatMulTMat on each
// stored form, all writing the same y.
func matBenchVariants(b *testing.B, m int, ns []int, k int) []matVariant {
	n := 0
	for _, v := range ns {
		n += v
	}
	r := rand.New(rand.NewPCG(4, uint64(n)))
	x := randSlice(r, m*k)
	wide := randSlice(r, n*k)
	for i := range wide {
		wide[i] *= 0.05
	}
	mats := map[dtype.DType][]Mat{}
	for _, dt := range []dtype.DType{dtype.BF16, dtype.F16} {
		raw := make([]byte, n*k*2)
		if err := dtype.FromFloat32(raw, wide, dt); err != nil {
			b.Fatal(err)
		}
		if dt == dtype.BF16 { // all copies hold the bf16 values
			if err := dtype.ToFloat32(wide, raw, dt); err != nil {
				b.Fatal(err)
			}
		}
		mats[dt] = splitMat(raw, dt, ns, k)
	}
	mats[dtype.F32] = splitMat(F32Mat(n, k, wide).Raw, dtype.F32, ns, k)
	y := make([]float32, m*n)
	for i := range y {
		y[i] = 1 // fault the pages in before any variant is timed
	}
	vs := []matVariant{{"fp32-MatMulT", func() { MatMulT(y, x, wide, m, n, k) }}}
	for _, dt := range []dtype.DType{dtype.F32, dtype.BF16, dtype.F16} {
		vs = append(vs, matVariant{strings.ToLower(dt.String()) + "-Mat", func() { MatMulTMat(y, n, x, m, k, mats[dt]...) }})
	}
	return vs
}

// BenchmarkMatMulTMatInterleaved times the variants of BenchmarkMatMulTMat
// call by call in turn (the order rotating every round), b.N rounds, and
// reports the GFLOP/s of the fastest fp32-MatMulT call and, per variant,
// the ratio of the fastest fp32-MatMulT call to its fastest call (>1:
// faster than fp32), by wall time and (suffix "-cpu") by the process CPU
// time of the call. On a machine shared with other jobs the fastest of
// interleaved calls is the least disturbed estimate. The small shapes
// want -benchtime=100x or more, the large ones take seconds per call.
func BenchmarkMatMulTMatInterleaved(b *testing.B) {
	for _, s := range matBenchShapes {
		if testing.Short() && s.m*s.k > 1<<20 {
			continue
		}
		n := 0
		for _, v := range s.ns {
			n += v
		}
		b.Run(fmt.Sprintf("%s/m=%d,n=%d,k=%d", s.name, s.m, n, s.k), func(b *testing.B) {
			vs := matBenchVariants(b, s.m, s.ns, s.k)
			for _, v := range vs {
				v.f() // warm the buffers
			}
			wall := make([]float64, len(vs))
			cpu := make([]float64, len(vs))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				for j := range vs {
					q := (i + j) % len(vs)
					c0, t0 := processCPUSeconds(), time.Now()
					vs[q].f()
					w, c := time.Since(t0).Seconds(), processCPUSeconds()-c0
					if i == 0 || w < wall[q] {
						wall[q] = w
					}
					if i == 0 || c < cpu[q] {
						cpu[q] = c
					}
				}
			}
			flop := 2 * float64(s.m) * float64(n) * float64(s.k)
			b.ReportMetric(flop/wall[0]/1e9, "fp32-GFLOP/s")
			for j, v := range vs[1:] {
				name := strings.TrimSuffix(v.name, "-Mat") + "/fp32"
				b.ReportMetric(wall[0]/wall[j+1], name)
				if cpu[j+1] > 0 {
					b.ReportMetric(cpu[0]/cpu[j+1], name+"-cpu")
				}
			}
			b.ReportMetric(0, "ns/op")
		})
	}
}

// splitMat cuts raw (Σns rows of k values of dtype dt) into one Mat per
// entry of ns.
func splitMat(raw []byte, dt dtype.DType, ns []int, k int) []Mat {
	var ms []Mat
	off := 0
	for _, n := range ns {
		sz := n * k * dt.Size()
		ms = append(ms, Mat{Rows: n, Cols: k, DType: dt, Raw: raw[off : off+sz]})
		off += sz
	}
	return ms
}

// BenchmarkPackB times the packing of one kc×nc B block (256×3072) of a
// transposed [3072, 4096] weight from float32 (the Sgemm path) and from
// float32, bfloat16 and float16 bytes (the MatMulTMat path), one packing of
// each in turn per round, and reports each variant's fastest packing in µs
// (one thread; the fastest of interleaved runs is the least disturbed on a
// shared machine).
func BenchmarkPackB(b *testing.B) {
	const n, k, kc = 3072, 4096, 256
	r := rand.New(rand.NewPCG(9, 9))
	wide := randSlice(r, n*k)
	var raw []float32
	dst := aligned(&raw, kc*n)
	names := []string{"fp32-Sgemm"}
	gs := []*gemmProblem[float32]{{tB: true, m: 1, n: n, k: k, b: wide, ldb: k}}
	for _, dt := range []dtype.DType{dtype.F32, dtype.BF16, dtype.F16} {
		raw := make([]byte, n*k*dt.Size())
		if err := dtype.FromFloat32(raw, wide, dt); err != nil {
			b.Fatal(err)
		}
		names = append(names, strings.ToLower(dt.String())+"-Mat")
		gs = append(gs, &gemmProblem[float32]{tB: true, m: 1, n: n, k: k, bm: &matB{mats: []Mat{{Rows: n, Cols: k, DType: dt, Raw: raw}}, start: []int{0, n}}})
	}
	best := make([]time.Duration, len(gs))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for j := range gs {
			q := (i + j) % len(gs)
			t0 := time.Now()
			sgemmImpl.packB(dst, gs[q], 1024, kc, 0, n)
			if d := time.Since(t0); i == 0 || d < best[q] {
				best[q] = d
			}
		}
	}
	for q, name := range names {
		b.ReportMetric(float64(best[q].Nanoseconds())/1e3, name+"-µs")
	}
	b.ReportMetric(0, "ns/op")
}
