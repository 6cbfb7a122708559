package pattern

import (
	"context"
	"math"
	"math/rand/v2"
	"syscall"
	"testing"
	"time"

	"github.com/wanda-go/wanda/pipeline"
	"github.com/wanda-go/wanda/stages/metric"
)

// benchLayer is a LLaMA-7B up_proj-sized layer in [out, in] layout (4096×11008), with
// bf16-quantised weights and log-normal input statistics.
func benchLayer() (pipeline.Matrix, *pipeline.Stats) {
	r := rand.New(rand.NewPCG(42, 42))
	w := pipeline.NewMatrix(4096, 11008)
	for k := range w.Data {
		w.Data[k] = bf16(float32(r.NormFloat64() * 0.02))
	}
	st := &pipeline.Stats{SumSq: make([]float32, w.Cols), N: 128, Tokens: 128 * 2048}
	for j := range st.SumSq {
		st.SumSq[j] = float32(math.Exp(r.NormFloat64()*1.5) * 100)
	}
	return w, st
}

// cpuTime returns the process's user+system CPU time. Reported per op next to ns/op
// because the build machine is shared and wall time there depends on its load.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// loop runs f b.N times and reports CPU ms/op as well.
func loop(b *testing.B, f func()) {
	start := cpuTime()
	n := 0
	for b.Loop() {
		f()
		n++
	}
	b.ReportMetric(float64(cpuTime()-start)/1e6/float64(n), "cpu-ms/op")
}

func BenchmarkWandaUnstructured(b *testing.B) {
	w, st := benchLayer()
	ctx := context.Background()
	scores, err := metric.Wanda{}.Score(ctx, w, st, info)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("score", func(b *testing.B) {
		loop(b, func() {
			if _, err := (metric.Wanda{}).Score(ctx, w, st, info); err != nil {
				b.Fatal(err)
			}
		})
	})
	for _, tc := range []struct {
		name string
		t    pipeline.Target
	}{
		{"select-row-50", pipeline.Target{Sparsity: 0.5}},
		{"select-2:4", pipeline.Target{N: 2, M: 4}},
		{"select-matrix-50", pipeline.Target{Sparsity: 0.5, Group: pipeline.GroupMatrix}},
		{"select-variant-50", pipeline.Target{Sparsity: 0.5, Variant: true}},
	} {
		p := ForTarget(tc.t)
		b.Run(tc.name, func(b *testing.B) {
			loop(b, func() {
				if _, err := p.Select(ctx, scores, tc.t, info); err != nil {
					b.Fatal(err)
				}
			})
		})
	}
	b.Run("score+select-row-50", func(b *testing.B) {
		t := pipeline.Target{Sparsity: 0.5}
		loop(b, func() {
			s, err := metric.Wanda{}.Score(ctx, w, st, info)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := (Unstructured{}).Select(ctx, s, t, info); err != nil {
				b.Fatal(err)
			}
		})
	})
}
