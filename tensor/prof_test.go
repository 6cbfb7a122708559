package tensor

import (
	"math/rand/v2"
	"testing"
)

func BenchmarkProfTN(b *testing.B) {
	SetThreads(1)
	r := rand.New(rand.NewPCG(1, 1))
	k, tokens := 1024, 512
	x := randSlice(r, tokens*k)
	h := make([]float32, k*k)
	for i := 0; i < b.N; i++ {
		Sgemm(true, false, k, k, tokens, 1, x, k, x, k, 0, h, k)
	}
	reportGflops(b, k, k, tokens)
}
