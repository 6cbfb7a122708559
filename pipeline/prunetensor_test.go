package pipeline_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/wanda-go/wanda/format/dtype"
	"github.com/wanda-go/wanda/pipeline"
	_ "github.com/wanda-go/wanda/stages/metric"
	"github.com/wanda-go/wanda/stages/pattern"
	"github.com/wanda-go/wanda/stages/solver"
	"github.com/wanda-go/wanda/tensor"
)

// memOut is an in-memory io.WriterAt that fails on a byte written twice and can tell
// whether every byte was written.
type memOut struct {
	mu      sync.Mutex
	buf     []byte
	written []bool
}

func newMemOut(n int) *memOut { return &memOut{buf: make([]byte, n), written: make([]bool, n)} }

func (o *memOut) WriteAt(p []byte, off int64) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if off < 0 || off+int64(len(p)) > int64(len(o.buf)) {
		return 0, fmt.Errorf("write [%d, %d) outside %d bytes", off, off+int64(len(p)), len(o.buf))
	}
	for k := range p {
		if o.written[int(off)+k] {
			return 0, fmt.Errorf("byte %d written twice", int(off)+k)
		}
	}
	for k := range p {
		o.written[int(off)+k] = true
	}
	copy(o.buf[off:], p)
	return len(p), nil
}

func (o *memOut) complete() bool {
	for _, w := range o.written {
		if !w {
			return false
		}
	}
	return true
}

// randMat draws a rows×cols weight in dtype d: normal values, some exact zeros and -0.0,
// and, when levels > 0, only that many distinct magnitudes (heavy ties).
func randMat(r *rand.Rand, rows, cols int, d dtype.DType, levels int) tensor.Mat {
	f := make([]float32, rows*cols)
	for k := range f {
		v := r.NormFloat64() * 0.05
		if levels > 0 {
			v = float64(1+r.IntN(levels)) * 0.01
			if r.IntN(2) == 0 {
				v = -v
			}
		}
		switch r.IntN(40) {
		case 0:
			v = 0
		case 1:
			v = math.Copysign(0, -1)
		}
		f[k] = float32(v)
	}
	raw := make([]byte, len(f)*d.Size())
	if err := dtype.FromFloat32(raw, f, d); err != nil {
		panic(err)
	}
	return tensor.Mat{Rows: rows, Cols: cols, DType: d, Raw: raw}
}

func randStats(r *rand.Rand, cols int) *pipeline.Stats {
	st := &pipeline.Stats{SumSq: make([]float32, cols), N: 4, Tokens: 64}
	for j := range st.SumSq {
		st.SumSq[j] = float32(math.Exp(r.NormFloat64() * 2))
	}
	st.SumSq[cols/2] = 0 // a dead input
	return st
}

// wholePath is the whole-tensor path PruneTensor replaces, written out step by step: widen
// W, Score, Select (or Solve), apply the mask, round to the stored dtype, write every zero as
// +0.0, encode.
func wholePath(ctx context.Context, m pipeline.Method, w tensor.Mat, st *pipeline.Stats, t pipeline.Target, info pipeline.LayerInfo) ([]byte, int64, error) {
	wm := pipeline.NewMatrix(w.Rows, w.Cols)
	if err := dtype.ToFloat32(wm.Data, w.Raw, w.DType); err != nil {
		return nil, 0, err
	}
	var mask *pipeline.Mask
	var err error
	if m.Solver != nil {
		mask, err = m.Solver.Solve(ctx, wm, st, t, info)
	} else {
		var scores pipeline.Matrix
		if scores, err = m.Metric.Score(ctx, wm, st, info); err == nil {
			mask, err = m.Pattern.Select(ctx, scores, t, info)
		}
	}
	if err != nil {
		return nil, 0, err
	}
	pipeline.ApplyMask(mask, wm)
	for k, v := range wm.Data {
		switch w.DType {
		case dtype.BF16:
			wm.Data[k] = dtype.BF16ToF32(dtype.F32ToBF16(v))
		case dtype.F16:
			wm.Data[k] = dtype.F16ToF32(dtype.F32ToF16(v))
		}
	}
	var zeros int64
	for k, v := range wm.Data {
		if v == 0 {
			wm.Data[k] = 0
			zeros++
		}
	}
	raw := make([]byte, len(wm.Data)*w.DType.Size())
	if err := dtype.FromFloat32(raw, wm.Data, w.DType); err != nil {
		return nil, 0, err
	}
	return raw, zeros, nil
}

var testInfo = pipeline.LayerInfo{Layer: 3, Tensor: "model.layers.3.mlp.down_proj.weight", Part: "down_proj"}

// wholeMetric and wholePattern hide the row-block interfaces of a built-in stage, so that
// PruneTensor takes its whole-tensor fallbacks.
type wholeMetric struct{ pipeline.Metric }
type wholePattern struct{ pipeline.Pattern }

func method(name string, t pipeline.Target) pipeline.Method {
	m, err := pipeline.BuiltinMetric(name, nil)
	if err != nil {
		panic(err)
	}
	return pipeline.Method{Name: name, Metric: m, Pattern: pattern.ForTarget(t)}
}

func targets() []pipeline.Target {
	var ts []pipeline.Target
	for _, g := range []pipeline.Group{pipeline.GroupRow, pipeline.GroupMatrix, pipeline.GroupColumn} {
		for _, s := range []float64{0.5, 0.3, 0} {
			ts = append(ts, pipeline.Target{Sparsity: s, Group: g})
		}
	}
	return append(ts,
		pipeline.Target{N: 2, M: 4}, pipeline.Target{N: 4, M: 8},
		pipeline.Target{Sparsity: 0.5, Variant: true}, pipeline.Target{Sparsity: 0.7, Variant: true},
		pipeline.Target{Sparsity: 0, Variant: true})
}

func checkSame(t *testing.T, what string, m pipeline.Method, job pipeline.TensorJob) {
	t.Helper()
	ctx := context.Background()
	want, wantZeros, err := wholePath(ctx, m, job.W, job.Stats, job.Target, job.Info)
	if err != nil {
		t.Fatalf("%s: whole path: %v", what, err)
	}
	out := newMemOut(len(want))
	job.Out = out
	res, err := pipeline.PruneTensor(ctx, m, job)
	if err != nil {
		t.Fatalf("%s: PruneTensor: %v", what, err)
	}
	if !out.complete() {
		t.Fatalf("%s: not every byte written", what)
	}
	if !bytes.Equal(out.buf, want) {
		es := job.W.DType.Size()
		for k := 0; k < len(want); k += es {
			if !bytes.Equal(out.buf[k:k+es], want[k:k+es]) {
				e := k / es
				t.Fatalf("%s: element [%d,%d] is % x, whole path % x", what, e/job.W.Cols, e%job.W.Cols, out.buf[k:k+es], want[k:k+es])
			}
		}
	}
	if res.Zeros != wantZeros {
		t.Fatalf("%s: %d zeros, whole path %d", what, res.Zeros, wantZeros)
	}
}

// TestPruneTensorMatchesWholePath compares PruneTensor with the whole-tensor path byte for
// byte, for wanda and magnitude on every built-in target, each dtype, tied and untied
// weights, and block sizes that split the rows unevenly.
func TestPruneTensorMatchesWholePath(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	shapes := [][2]int{{37, 64}, {5, 16}, {1, 8}}
	scratch := t.TempDir()
	for _, d := range []dtype.DType{dtype.F32, dtype.BF16, dtype.F16} {
		for si, sh := range shapes {
			for _, levels := range []int{0, 3} {
				w := randMat(r, sh[0], sh[1], d, levels)
				st := randStats(r, sh[1])
				for _, tg := range targets() {
					for _, name := range []string{"wanda", "magnitude"} {
						for _, br := range []int{0, 1, 3, 7} {
							if si > 0 && br > 1 {
								continue // small shapes: the default and one row per block
							}
							what := fmt.Sprintf("%s %d×%d levels=%d %s %v block=%d", d, sh[0], sh[1], levels, name, tg, br)
							if tg.Variant {
								what += " variant"
							} else if !tg.Structured() {
								what += " " + tg.Group.String()
							}
							job := pipeline.TensorJob{W: w, Stats: st, Target: tg, Info: testInfo, BlockRows: br, ScratchDir: scratch}
							checkSame(t, what, method(name, tg), job)
						}
					}
				}
			}
		}
	}
	assertEmptyDir(t, scratch)
}

// TestPruneTensorFallbacks runs the whole-tensor fallbacks: a metric and a pattern that do
// not offer row blocks (the built-ins behind the plain interfaces).
func TestPruneTensorFallbacks(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	scratch := t.TempDir()
	w := randMat(r, 29, 32, dtype.BF16, 0)
	st := randStats(r, 32)
	for _, tg := range targets() {
		base := method("wanda", tg)
		for _, m := range []pipeline.Method{
			{Name: "whole metric", Metric: wholeMetric{base.Metric}, Pattern: base.Pattern},
			{Name: "whole pattern", Metric: base.Metric, Pattern: wholePattern{base.Pattern}},
			{Name: "both whole", Metric: wholeMetric{base.Metric}, Pattern: wholePattern{base.Pattern}},
		} {
			for _, br := range []int{0, 4} {
				job := pipeline.TensorJob{W: w, Stats: st, Target: tg, Info: testInfo, BlockRows: br, ScratchDir: scratch}
				checkSame(t, fmt.Sprintf("%s %v variant=%v block=%d", m.Name, tg, tg.Variant, br), m, job)
			}
		}
	}
	assertEmptyDir(t, scratch)
}

// TestPruneTensorSolver compares SparseGPT through PruneTensor with the whole path.
func TestPruneTensorSolver(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	rows, cols := 24, 32
	for _, d := range []dtype.DType{dtype.F32, dtype.BF16, dtype.F16} {
		w := randMat(r, rows, cols, d, 0)
		st := hessianStats(r, cols)
		for _, tg := range []pipeline.Target{{Sparsity: 0.5}, {N: 2, M: 4}, {Sparsity: 0}} {
			m := pipeline.Method{Name: "sparsegpt", Solver: solver.NewSparseGPT(solver.Options{BlockSize: 16})}
			job := pipeline.TensorJob{W: w, Stats: st, Target: tg, Info: testInfo, BlockRows: 5}
			checkSame(t, fmt.Sprintf("%s sparsegpt %v", d, tg), m, job)
		}
	}
}

// hessianStats draws correlated inputs and returns their SumSq and Hessian (2/N)·XᵀX.
func hessianStats(r *rand.Rand, cols int) *pipeline.Stats {
	const tokens, nseq = 96, 3
	x := make([]float64, tokens*cols)
	for k := range x {
		x[k] = float64(float32(r.NormFloat64() + 0.5*math.Sin(float64(k%cols))))
	}
	st := &pipeline.Stats{N: nseq, Tokens: tokens, SumSq: make([]float32, cols), Hessian: make([]float64, cols*cols)}
	for a := range cols {
		var ss float64
		for tk := range tokens {
			ss += x[tk*cols+a] * x[tk*cols+a]
		}
		st.SumSq[a] = float32(ss / nseq)
		for b := range cols {
			var s float64
			for tk := range tokens {
				s += x[tk*cols+a] * x[tk*cols+b]
			}
			st.Hessian[a*cols+b] = s * 2 / nseq
		}
	}
	return st
}

func assertEmptyDir(t *testing.T, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		t.Errorf("scratch file left behind: %s", e.Name())
	}
}

// TestPruneTensorErrors checks that errors name the tensor and the entry by its row in the
// whole tensor, say the stage once, and wrap the sentinels; and that cancellation stops it.
func TestPruneTensorErrors(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	w := randMat(r, 20, 16, dtype.F32, 0)
	raw := append([]byte(nil), w.Raw...)
	w.Raw = raw
	nan := math.Float32bits(float32(math.NaN()))
	k := 13*16 + 5
	raw[4*k], raw[4*k+1], raw[4*k+2], raw[4*k+3] = byte(nan), byte(nan>>8), byte(nan>>16), byte(nan>>24)
	st := randStats(r, 16)
	for _, tg := range []pipeline.Target{{Sparsity: 0.5}, {Sparsity: 0.5, Group: pipeline.GroupMatrix}, {N: 2, M: 4}, {Sparsity: 0.5, Variant: true}} {
		for _, name := range []string{"wanda", "magnitude"} {
			job := pipeline.TensorJob{W: w, Stats: st, Target: tg, Info: testInfo, BlockRows: 3, ScratchDir: t.TempDir(), Out: newMemOut(len(raw))}
			_, err := pipeline.PruneTensor(context.Background(), method(name, tg), job)
			if !errors.Is(err, pipeline.ErrNonFinite) {
				t.Fatalf("%s %v: %v, want ErrNonFinite", name, tg, err)
			}
			msg := err.Error()
			if !strings.Contains(msg, "[13,5]") || strings.Count(msg, testInfo.Tensor) != 1 || strings.Count(msg, "metric "+name) != 1 {
				t.Errorf("%s %v: message %q should name [13,5], the tensor once and the metric once", name, tg, msg)
			}
			// The whole path reports the same entry.
			_, _, werr := wholePath(context.Background(), method(name, tg), w, st, tg, testInfo)
			if werr == nil || !strings.Contains(werr.Error(), "[13,5]") {
				t.Errorf("%s %v: whole path: %v", name, tg, werr)
			}
		}
	}

	w = randMat(r, 20, 16, dtype.BF16, 0)
	bad := *st
	bad.SumSq = st.SumSq[:15]
	job := pipeline.TensorJob{W: w, Stats: &bad, Target: pipeline.Target{Sparsity: 0.5}, Info: testInfo, Out: newMemOut(20 * 16 * 2)}
	_, err := pipeline.PruneTensor(context.Background(), method("wanda", job.Target), job)
	if !errors.Is(err, pipeline.ErrShape) || strings.Count(err.Error(), "metric wanda") != 1 {
		t.Errorf("short statistics: %v", err)
	}

	job.Stats, job.Target = st, pipeline.Target{Sparsity: 1.5}
	_, err = pipeline.PruneTensor(context.Background(), method("wanda", job.Target), job)
	if !errors.Is(err, pipeline.ErrBadTarget) || strings.Count(err.Error(), "pattern unstructured") != 1 {
		t.Errorf("bad target: %v", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	job.Target = pipeline.Target{Sparsity: 0.5}
	job.Out = newMemOut(20 * 16 * 2)
	_, err = pipeline.PruneTensor(ctx, method("wanda", job.Target), job)
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), testInfo.Tensor) {
		t.Errorf("cancelled: %v", err)
	}
}

// TestCheckMemory checks the up-front refusal of a solver whose Hessian does not fit.
func TestCheckMemory(t *testing.T) {
	sgpt := pipeline.Method{Name: "sparsegpt", Solver: solver.NewSparseGPT(solver.Options{})}
	rows, cols := 16384, 53248 // a Llama-3.1-405B down_proj
	need := pipeline.TensorMemory(sgpt, pipeline.Target{Sparsity: 0.5}, rows, cols)
	// At least W in fp32, the Hessian in float64 and SparseGPT's float32 inverse factor.
	if min := int64(rows)*int64(cols)*4 + int64(cols)*int64(cols)*(8+4); need < min {
		t.Errorf("TensorMemory = %d, below %d", need, min)
	}
	err := pipeline.CheckMemory(sgpt, pipeline.Target{Sparsity: 0.5}, "model.layers.0.mlp.down_proj.weight", rows, cols, 24<<30)
	if !errors.Is(err, pipeline.ErrMemoryLimit) {
		t.Fatalf("CheckMemory: %v", err)
	}
	for _, s := range []string{"model.layers.0.mlp.down_proj.weight", "GiB", "wanda"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("message %q lacks %q", err, s)
		}
	}
	t.Log(err)
	if err := pipeline.CheckMemory(sgpt, pipeline.Target{Sparsity: 0.5}, "x", 4096, 4096, 24<<30); err != nil {
		t.Errorf("a 4096² tensor within 24 GiB: %v", err)
	}
	for _, c := range []struct {
		t    pipeline.Target
		want int64
	}{
		{pipeline.Target{Sparsity: 0.5}, 0},
		{pipeline.Target{Sparsity: 0.5, Group: pipeline.GroupMatrix}, 0},
		{pipeline.Target{N: 2, M: 4}, 0},
		{pipeline.Target{Sparsity: 0.5, Variant: true}, 4 * 100 * 64},
		{pipeline.Target{Sparsity: 0.5, Group: pipeline.GroupColumn}, 4 * 100 * 64},
	} {
		if got := pipeline.TensorScratch(method("wanda", c.t), c.t, 100, 64); got != c.want {
			t.Errorf("TensorScratch(wanda, %v, variant %v) = %d, want %d", c.t, c.t.Variant, got, c.want)
		}
	}
	wanda := method("wanda", pipeline.Target{Sparsity: 0.5})
	if n := pipeline.TensorMemory(wanda, pipeline.Target{Sparsity: 0.5}, rows, cols); n > 64<<20 {
		t.Errorf("wanda on a 405B down_proj: TensorMemory %d bytes, want a few row blocks", n)
	}
}
