package tensor

import (
	"fmt"
	"math/rand/v2"
	"testing"
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
