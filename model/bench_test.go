package model

import (
	"math/rand/v2"
	"testing"

	"github.com/wanda-go/wanda/format/safetensors"
	"github.com/wanda-go/wanda/model/arch"
)

// BenchmarkBlockForward runs tiny-llama-a's layer 0 on 8 sequences of 512
// tokens and reports tokens/s.
func BenchmarkBlockForward(b *testing.B) {
	dir := sharedPath(b, "models/tiny-llama-a")
	cfg, _, err := arch.LoadDir(dir)
	if err != nil {
		b.Fatal(err)
	}
	set, err := safetensors.OpenDir(dir)
	if err != nil {
		b.Fatal(err)
	}
	defer set.Close()
	m, err := New(set, cfg, Options{})
	if err != nil {
		b.Fatal(err)
	}
	blk, err := m.LoadBlock(0, m.Weights())
	if err != nil {
		b.Fatal(err)
	}
	const nseq, T = 8, 512
	r := rand.New(rand.NewPCG(1, 2))
	h0 := make([]float32, nseq*T*cfg.HiddenSize)
	for i := range h0 {
		h0[i] = float32(r.NormFloat64())
	}
	h := make([]float32, len(h0))
	b.ResetTimer()
	for b.Loop() {
		copy(h, h0)
		blk.Forward(h, nseq, T, nil)
	}
	b.ReportMetric(float64(nseq*T)*float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
}

func BenchmarkExpf(b *testing.B) {
	x := make([]float32, 4096)
	for i := range x {
		x[i] = -float32(i) / 256
	}
	b.ResetTimer()
	y := make([]float32, len(x))
	var s float64
	for b.Loop() {
		copy(y, x)
		s += logSumExpInPlace(y)
	}
	b.ReportMetric(float64(len(x))*float64(b.N)/b.Elapsed().Seconds()/1e9, "Gexp/s")
	_ = s
}
