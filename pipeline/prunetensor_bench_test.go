package pipeline_test

import (
	"context"
	"math/rand/v2"
	"syscall"
	"testing"
	"time"

	"github.com/wanda-go/wanda/format/dtype"
	"github.com/wanda-go/wanda/pipeline"
)

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkPruneTensor compares PruneTensor with the whole-tensor path (widen, Score,
// Select, apply, round, encode) on a 2048×5504 bf16 tensor, in CPU ms per op (the build
// machine is shared, so wall time depends on its load).
func BenchmarkPruneTensor(b *testing.B) {
	r := rand.New(rand.NewPCG(3, 3))
	w := randMat(r, 2048, 5504, dtype.BF16, 0)
	st := randStats(r, 5504)
	ctx := context.Background()
	for _, c := range []struct {
		name string
		t    pipeline.Target
		m    string
	}{
		{"wanda-row", pipeline.Target{Sparsity: 0.5}, "wanda"},
		{"wanda-2:4", pipeline.Target{N: 2, M: 4}, "wanda"},
		{"magnitude-matrix", pipeline.Target{Sparsity: 0.5, Group: pipeline.GroupMatrix}, "magnitude"},
		{"wanda-variant", pipeline.Target{Sparsity: 0.5, Variant: true}, "wanda"},
	} {
		m := method(c.m, c.t)
		run := func(b *testing.B, f func()) {
			start := cpuTime()
			n := 0
			for b.Loop() {
				f()
				n++
			}
			b.ReportMetric(float64(cpuTime()-start)/1e6/float64(n), "cpu-ms/op")
		}
		b.Run(c.name+"/whole", func(b *testing.B) {
			run(b, func() {
				if _, _, err := wholePath(ctx, m, w, st, c.t, testInfo); err != nil {
					b.Fatal(err)
				}
			})
		})
		b.Run(c.name+"/rows", func(b *testing.B) {
			scratch := b.TempDir()
			run(b, func() {
				out := discardAt{}
				if _, err := pipeline.PruneTensor(ctx, m, pipeline.TensorJob{W: w, Stats: st, Target: c.t, Info: testInfo, Out: out, ScratchDir: scratch}); err != nil {
					b.Fatal(err)
				}
			})
		})
	}
}

type discardAt struct{}

func (discardAt) WriteAt(p []byte, _ int64) (int, error) { return len(p), nil }
