package plugins

import (
	"context"
	"math/rand/v2"
	"os"
	"testing"

	"github.com/wanda-go/wanda/pipeline"
	"github.com/wanda-go/wanda/stages/metric"
)

// BenchmarkScore4096 measures one Score call on a 4096×4096 matrix (64 MiB of weights):
//
//	builtin        metric.Builtin("wanda") in process (the compute alone)
//	plugin-wanda   the same metric out of process: host copy into the scratch file, NaN
//	               prefill, RPC, plugin maps the files, computes into its own buffer, copies
//	               into the result file, host copies out and checks every score is finite
//	plugin-copy    a plugin returning W unchanged: the transport without any compute
//
// plugin-wanda minus builtin is the per-call overhead of going out of process. Set
// WANDA_BENCH_SCRATCH (e.g. /dev/shm) to place the scratch files.
func BenchmarkScore4096(b *testing.B) {
	const n = 4096
	r := rand.New(rand.NewPCG(1, 2))
	w := randMatrix(r, n, n, 0.02)
	st := randStats(r, n)
	info := layer(0, "q_proj")
	ctx := context.Background()
	opts := quiet(nil)
	opts.ScratchDir = os.Getenv("WANDA_BENCH_SCRATCH")

	run := func(b *testing.B, m pipeline.Metric) {
		if _, err := m.Score(ctx, w, st, info); err != nil { // warm the scratch files
			b.Fatal(err)
		}
		b.SetBytes(int64(4 * len(w.Data)))
		b.ResetTimer()
		for b.Loop() {
			if _, err := m.Score(ctx, w, st, info); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("builtin", func(b *testing.B) {
		m, _ := metric.Builtin("wanda")
		run(b, m)
	})
	b.Run("plugin-wanda", func(b *testing.B) { run(b, openMetric(b, "wanda", opts)) })
	b.Run("plugin-copy", func(b *testing.B) {
		o := opts
		o.Env = []string{"WANDA_FAULTY_MODE=copy"}
		run(b, openMetric(b, "faulty", o))
	})
}
