package plugins

import (
	"context"
	"math/rand/v2"
	"os"
	"testing"

	"github.com/wanda-go/wanda/pipeline"
	_ "github.com/wanda-go/wanda/stages/metric"
	"github.com/wanda-go/wanda/stages/pattern"
	"github.com/wanda-go/wanda/stages/refine"
)

// BenchmarkScore4096 measures one Score call on a 4096×4096 matrix (64 MiB of weights):
//
//	builtin        pipeline.BuiltinMetric("wanda", nil) in process (the compute alone)
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
		m, _ := pipeline.BuiltinMetric("wanda", nil)
		run(b, m)
	})
	b.Run("plugin-wanda", func(b *testing.B) { run(b, openMetric(b, "wanda", opts)) })
	b.Run("plugin-copy", func(b *testing.B) {
		o := opts
		o.Env = []string{"WANDA_FAULTY_MODE=copy"}
		run(b, openMetric(b, "faulty", o))
	})
}

// BenchmarkRefineBlock measures one Refine call on a block of 128 rows × 4096 columns (the
// size of a PruneTensor row block of a 4096-wide layer) with Wanda's 50% mask:
//
//	builtin        refine.DefaultDSnoT() in process
//	plugin-dsnot   the example plugin: host copies of W, mask and statistics into the
//	               scratch file, RPC, the plugin's own refinement, the host's check of
//	               every row's count
//
// plugin-dsnot over builtin is the cost of refining out of process, with an independent
// (single-threaded) implementation.
func BenchmarkRefineBlock(b *testing.B) {
	const rows, cols = 128, 4096
	r := rand.New(rand.NewPCG(3, 4))
	w := randMatrix(r, rows, cols, 0.02)
	st := refineStats(r, cols)
	info := pipeline.LayerInfo{Layer: 0, Tensor: "model.layers.0.self_attn.q_proj.weight", Part: "q_proj", Expert: -1}
	ctx := context.Background()
	wanda, _ := pipeline.BuiltinMetric("wanda", nil)
	scores, err := wanda.Score(ctx, w, st, info)
	if err != nil {
		b.Fatal(err)
	}
	tg := pipeline.Target{Sparsity: 0.5}
	m0, err := pattern.ForTarget(tg).Select(ctx, scores, tg, info)
	if err != nil {
		b.Fatal(err)
	}
	opts := quiet(nil)
	opts.ScratchDir = os.Getenv("WANDA_BENCH_SCRATCH")
	run := func(b *testing.B, rf pipeline.Refiner) {
		m := &pipeline.Mask{Rows: rows, Cols: cols, Bits: make([]uint64, len(m0.Bits))}
		b.SetBytes(int64(4 * len(w.Data)))
		for b.Loop() {
			copy(m.Bits, m0.Bits)
			if err := rf.Refine(ctx, w, m, st, tg, info); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("builtin", func(b *testing.B) { run(b, refine.DefaultDSnoT()) })
	b.Run("plugin-dsnot", func(b *testing.B) { run(b, openRefiner(b, bins["dsnot"], opts)) })
}
