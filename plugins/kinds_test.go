package plugins

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/wanda-go/wanda/pipeline"
	"github.com/wanda-go/wanda/stages/allocate"
	_ "github.com/wanda-go/wanda/stages/metric"
	"github.com/wanda-go/wanda/stages/pattern"
	"github.com/wanda-go/wanda/stages/refine"
	"github.com/wanda-go/wanda/stages/stagetest"
)

func openAllocator(t testing.TB, path string, opts HostOptions) *Allocator {
	t.Helper()
	a, closer, err := OpenAllocator(context.Background(), path, opts)
	if err != nil {
		t.Fatalf("OpenAllocator(%s): %v", path, err)
	}
	t.Cleanup(func() { closer.Close() })
	return a.(*Allocator)
}

func openRefiner(t testing.TB, path string, opts HostOptions) *Refiner {
	t.Helper()
	r, closer, err := OpenRefiner(context.Background(), path, opts)
	if err != nil {
		t.Fatalf("OpenRefiner(%s): %v", path, err)
	}
	t.Cleanup(func() { closer.Close() })
	return r.(*Refiner)
}

func openMetricAt(t testing.TB, path string, opts HostOptions) *Metric {
	t.Helper()
	m, closer, err := OpenMetric(context.Background(), path, opts)
	if err != nil {
		t.Fatalf("OpenMetric(%s): %v", path, err)
	}
	t.Cleanup(func() { closer.Close() })
	return m.(*Metric)
}

func openPatternAt(t testing.TB, path string, opts HostOptions) *Pattern {
	t.Helper()
	p, closer, err := OpenPattern(context.Background(), path, opts)
	if err != nil {
		t.Fatalf("OpenPattern(%s): %v", path, err)
	}
	t.Cleanup(func() { closer.Close() })
	return p.(*Pattern)
}

func withArgs(args map[string]string) HostOptions {
	o := quiet(nil)
	o.Args = args
	return o
}

func TestConformanceAllocationOWL(t *testing.T) {
	a := openAllocator(t, bins["owl"], quiet(nil))
	if a.Name() != "plugin:owl" || a.Info().Kind != KindAllocation || a.Info().ProtocolVersion != 2 {
		t.Errorf("name %q, info %+v", a.Name(), a.Info())
	}
	sp := stagetest.TestAllocator(t, a, stagetest.MeanTarget(1e-12), stagetest.StrictErrors())
	if len(sp) > 2 && sp[0] == sp[1] && sp[1] == sp[2] {
		t.Errorf("equal sparsities %v", sp)
	}
}

func TestConformanceRefineDSnoT(t *testing.T) {
	targets := []pipeline.Target{{Sparsity: 0.5}, {Sparsity: 0.7}, {N: 2, M: 4}, {N: 4, M: 8}}
	for name, args := range map[string]map[string]string{
		"default":   nil,
		"pow 0":     {"pow-of-var": "0"},
		"same sign": {"same-sign": "true", "skip-layer": "no_skip", "initial": "magnitude"},
	} {
		t.Run(name, func(t *testing.T) {
			r := openRefiner(t, bins["dsnot"], withArgs(args))
			if changed := stagetest.TestRefiner(t, r, targets, stagetest.StrictErrors()); changed == 0 {
				t.Errorf("the plugin changed none of the masks")
			}
		})
	}
}

// The example owl plugin gives the built-in OWL's summaries and sparsities bit for bit.
func TestOWLPluginEqualsBuiltin(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		args map[string]string
		owl  allocate.OWL
	}{
		{nil, allocate.DefaultOWL()},
		{map[string]string{"m": "3", "lambda": "0.15"}, allocate.OWL{M: 3, Lambda: 0.15}},
		{map[string]string{"m": "7"}, allocate.OWL{M: 7, Lambda: 0.08}},
	} {
		pl := openAllocator(t, bins["owl"], withArgs(tc.args))
		builtin := allocate.Allocator{OWL: tc.owl}
		for seed := range uint64(3) {
			model := stagetest.AllocModel(100+seed, 9, 48)
			var want, got [][]float64
			for l, lins := range model {
				w, err := builtin.ObserveLayer(ctx, l, lins)
				if err != nil {
					t.Fatal(err)
				}
				g, err := pl.ObserveLayer(ctx, l, lins)
				if err != nil {
					t.Fatal(err)
				}
				if len(g) != len(w) || g[0] != w[0] || g[1] != w[1] {
					t.Errorf("%v seed %d layer %d: plugin summary %v, built-in %v", tc.args, seed, l, g, w)
				}
				want, got = append(want, w), append(got, g)
			}
			for _, s := range []float64{0.5, 0.7} {
				w, err := builtin.Allocate(ctx, want, pipeline.Target{Sparsity: s})
				if err != nil {
					t.Fatal(err)
				}
				g, err := pl.Allocate(ctx, got, pipeline.Target{Sparsity: s})
				if err != nil {
					t.Fatal(err)
				}
				distinct := map[float64]bool{}
				for l := range w {
					if math.Float64bits(g[l]) != math.Float64bits(w[l]) {
						t.Errorf("%v seed %d target %g layer %d: plugin %v, built-in %v", tc.args, seed, s, l, g[l], w[l])
					}
					distinct[w[l]] = true
				}
				if len(distinct) < 3 {
					t.Errorf("seed %d: only %d distinct sparsities %v: the test does not exercise the allocation", seed, len(distinct), w)
				}
			}
		}
	}
}

// refineStats are random activation statistics with non-zero means.
func refineStats(r *rand.Rand, cols int) *pipeline.Stats {
	st := &pipeline.Stats{N: 4, Tokens: 64, SumSq: make([]float32, cols), Sum: make([]float32, cols), Var: make([]float32, cols)}
	for j := range cols {
		scale := math.Exp(r.NormFloat64() * 0.7)
		mean := r.NormFloat64() * scale
		v := scale * scale * (0.5 + r.Float64())
		st.Var[j] = float32(v)
		st.Sum[j] = float32(mean * 16) // 16 tokens per sequence
		st.SumSq[j] = float32((v + mean*mean) * 16)
	}
	return st
}

// The example dsnot plugin refines Wanda's masks exactly as the built-in DSnoT does.
func TestDSnoTPluginEqualsBuiltin(t *testing.T) {
	ctx := context.Background()
	wanda, err := pipeline.BuiltinMetric("wanda", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args map[string]string
		d    func(*refine.DSnoT)
	}{
		{"default", nil, func(*refine.DSnoT) {}},
		{"pow 0.5 threshold 0.01", map[string]string{"pow-of-var": "0.5", "update-threshold": "0.01", "max-cycles": "200"},
			func(d *refine.DSnoT) { d.PowVarRegrowing, d.UpdateThreshold, d.MaxCycles = 0.5, 0.01, 200 }},
		{"same sign, magnitude, no skip", map[string]string{"same-sign": "true", "initial": "magnitude", "skip-layer": "no_skip"},
			func(d *refine.DSnoT) { d.SameSign, d.Initial, d.SkipLayer = true, "magnitude", "no_skip" }},
		{"pow 1.7", map[string]string{"pow-of-var": "1.7"}, func(d *refine.DSnoT) { d.PowVarRegrowing = 1.7 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			builtin := refine.DefaultDSnoT()
			tc.d(&builtin)
			pl := openRefiner(t, bins["dsnot"], withArgs(tc.args))
			if got, want := pl.NeedsStats(), builtin.NeedsStats(); got != want {
				t.Errorf("NeedsStats %v, built-in %v", got, want)
			}
			for _, info := range []pipeline.LayerInfo{layer(2, "up_proj"), {Layer: 2, Tensor: "model.layers.2.self_attn.k_proj.weight", Part: "k_proj", Expert: -1}} {
				if got, want := pl.Applies(info), builtin.Applies(info); got != want {
					t.Errorf("Applies(%s) %v, built-in %v", info.Tensor, got, want)
				}
			}
			info := pipeline.LayerInfo{Layer: 1, Tensor: "model.layers.1.self_attn.q_proj.weight", Part: "q_proj", Expert: -1}
			r := rand.New(rand.NewPCG(11, 12))
			rowsChanged, rows := 0, 0
			for _, sh := range [][2]int{{64, 256}, {130, 512}, {1, 64}} {
				for _, tg := range []pipeline.Target{{Sparsity: 0.5}, {Sparsity: 0.7}, {N: 2, M: 4}, {N: 4, M: 8}} {
					w := randMatrix(r, sh[0], sh[1], 0.03)
					st := refineStats(r, sh[1])
					scores, err := wanda.Score(ctx, w, st, info)
					if err != nil {
						t.Fatal(err)
					}
					m0, err := pattern.ForTarget(tg).Select(ctx, scores, tg, info)
					if err != nil {
						t.Fatal(err)
					}
					want := &pipeline.Mask{Rows: m0.Rows, Cols: m0.Cols, Bits: append([]uint64(nil), m0.Bits...)}
					got := &pipeline.Mask{Rows: m0.Rows, Cols: m0.Cols, Bits: append([]uint64(nil), m0.Bits...)}
					if err := builtin.Refine(ctx, w, want, st, tg, info); err != nil {
						t.Fatal(err)
					}
					if err := pl.Refine(ctx, w, got, st, tg, info); err != nil {
						t.Fatal(err)
					}
					for i := range w.Rows {
						rows++
						diff, moved := -1, false
						for j := range w.Cols {
							if got.Get(i, j) != want.Get(i, j) && diff < 0 {
								diff = j
							}
							moved = moved || want.Get(i, j) != m0.Get(i, j)
						}
						if diff >= 0 {
							t.Fatalf("%v %dx%d row %d: plugin and built-in masks differ at column %d", tg, w.Rows, w.Cols, i, diff)
						}
						if moved {
							rowsChanged++
						}
					}
				}
			}
			t.Logf("%d of %d rows refined", rowsChanged, rows)
			if rowsChanged < rows/4 {
				t.Errorf("only %d of %d rows refined: the comparison exercises little", rowsChanged, rows)
			}
		})
	}
}

// Plugins built with the SDK's protocol-version-1 code path (as SDKs before version 2 served
// them: the handshake announces 1 whatever the host offers, Info reports 1) still load and
// work.
func TestProtocolV1PluginsLoad(t *testing.T) {
	ctx := context.Background()
	m := openMetricAt(t, faultyCopy(t, "v1"), quiet(nil))
	if v := m.Info().ProtocolVersion; v != 1 {
		t.Errorf("v1 metric: protocol version %d", v)
	}
	w := pipeline.Matrix{Rows: 2, Cols: 3, Data: []float32{-1, 2, -3, 0, 5, -0.5}}
	s, err := m.Score(ctx, w, nil, layer(0, "q_proj"))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range w.Data {
		if s.Data[k] != float32(math.Abs(float64(v))) {
			t.Fatalf("score %d = %v, want |%v|", k, s.Data[k], v)
		}
	}
	p := openPatternAt(t, faultyCopy(t, "mask-v1"), quiet(nil))
	if v := p.Info().ProtocolVersion; v != 1 {
		t.Errorf("v1 pattern: protocol version %d", v)
	}
	mask, err := p.Select(ctx, pipeline.NewMatrix(3, 4), pipeline.Target{Sparsity: 0.25}, layer(0, "q_proj"))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		for j := range 4 {
			if mask.Get(i, j) != (j == 0) {
				t.Fatalf("mask (%d, %d) = %v", i, j, mask.Get(i, j))
			}
		}
	}
	// A kind that version 1 does not have is refused.
	_, _, err = OpenAllocator(ctx, faultyCopy(t, "alloc-v1"), quiet(nil))
	if !errors.Is(err, ErrProtocol) {
		t.Fatalf("alloc-v1: %v", err)
	}
	wantIn(t, err, "allocation plugins need protocol version 2 or later; the plugin speaks 1")
}

// Plugins built now work with a host that offers only version 1 (wanda before version 2),
// except the kinds version 2 added.
func TestOldHost(t *testing.T) {
	ctx := context.Background()
	old := quiet(nil)
	old.versions = []int{1}
	ria1 := openMetricAt(t, bins["ria"], old)
	ria2 := openMetricAt(t, bins["ria"], quiet(nil))
	if ria1.Info().ProtocolVersion != 1 || ria2.Info().ProtocolVersion != 2 {
		t.Errorf("ria: versions %d (old host), %d (new host)", ria1.Info().ProtocolVersion, ria2.Info().ProtocolVersion)
	}
	r := rand.New(rand.NewPCG(3, 4))
	w := randMatrix(r, 16, 32, 0.1)
	st := randStats(r, 32)
	s1, err := ria1.Score(ctx, w, st, layer(1, "o_proj"))
	if err != nil {
		t.Fatal(err)
	}
	s2, err := ria2.Score(ctx, w, st, layer(1, "o_proj"))
	if err != nil {
		t.Fatal(err)
	}
	for k := range s1.Data {
		if math.Float32bits(s1.Data[k]) != math.Float32bits(s2.Data[k]) {
			t.Fatalf("score %d: %v over version 1, %v over version 2", k, s1.Data[k], s2.Data[k])
		}
	}
	sched := openPatternAt(t, bins["schedule"], old)
	if sched.Info().ProtocolVersion != 1 {
		t.Errorf("schedule on an old host: version %d", sched.Info().ProtocolVersion)
	}
	for _, name := range []string{"owl", "dsnot"} {
		_, err := Probe(ctx, bins[name], old)
		if !errors.Is(err, ErrProtocol) {
			t.Fatalf("%s on an old host: %v", name, err)
		}
		wantIn(t, err, "host speaks protocol versions 1", "Plugin version: 2")
	}
}

func TestKindMismatch(t *testing.T) {
	ctx := context.Background()
	_, _, err := OpenRefiner(ctx, bins["owl"], quiet(nil))
	if !errors.Is(err, ErrKind) {
		t.Fatal(err)
	}
	wantIn(t, err, "it is an allocation plugin, not a refine plugin")
	_, _, err = OpenAllocator(ctx, bins["ria"], quiet(nil))
	if !errors.Is(err, ErrKind) {
		t.Fatal(err)
	}
	wantIn(t, err, "it is a metric plugin, not an allocation plugin")
	_, _, err = OpenMetric(ctx, bins["dsnot"], quiet(nil))
	wantIn(t, err, "it is a refine plugin, not a metric plugin")
	_, _, err = OpenRefiner(ctx, bins["dsnot"], withArgs(map[string]string{"max-cycle": "3"}))
	if !errors.Is(err, ErrArgs) {
		t.Fatal(err)
	}
	wantIn(t, err, "unknown argument(s) max-cycle")
	_, _, err = OpenAllocator(ctx, bins["owl"], withArgs(map[string]string{"lambda": "-1"}))
	if !errors.Is(err, ErrArgs) {
		t.Fatal(err)
	}
	wantIn(t, err, "lambda")
}

// String identifies a plugin for the checkpoint: the same for two starts of the same
// executable with the same arguments, different with other arguments.
func TestPluginKey(t *testing.T) {
	a := openRefiner(t, bins["dsnot"], withArgs(map[string]string{"max-cycles": "5", "pow-of-var": "0"}))
	b := openRefiner(t, bins["dsnot"], withArgs(map[string]string{"pow-of-var": "0", "max-cycles": "5"}))
	c := openRefiner(t, bins["dsnot"], withArgs(map[string]string{"max-cycles": "6", "pow-of-var": "0"}))
	if a.String() != b.String() || a.String() == c.String() {
		t.Errorf("keys %q, %q, %q", a, b, c)
	}
	wantIn(t, errors.New(a.String()), "plugin:dsnot(refine sha256=", ` max-cycles="5" pow-of-var="0")`)
	m1, m2 := openMetricAt(t, bins["ria"], quiet(nil)), openMetricAt(t, bins["ria"], quiet(nil))
	if m1.String() != m2.String() {
		t.Errorf("metric keys %q, %q", m1, m2)
	}
}

func allocLayer(seed uint64) stagetest.AllocLayer { return stagetest.AllocModel(seed, 1, 16)[0] }

func TestAllocationFaults(t *testing.T) {
	ctx := context.Background()
	sums := [][]float64{{0, 1}, {1, 2}, {2, 3}}
	for _, tc := range []struct {
		mode     string
		allocate bool // the fault is in Allocate
		want     []error
		mention  []string
		dies     bool
	}{
		{"alloc-crash", false, []error{ErrCrashed}, []string{"exit status 3", "layer 4 (7 linears): observe"}, true},
		{"alloc-hang", false, []error{ErrTimeout}, []string{"no reply after 1s; process killed", "layer 4 (7 linears)"}, true},
		{"alloc-nan", false, []error{ErrResult, pipeline.ErrNonFinite}, []string{"summary value 1 is NaN", "layer 4"}, false},
		{"alloc-long", false, []error{ErrResult, pipeline.ErrShape}, []string{"summary of 1025 values (at most 1024)"}, false},
		{"alloc-error", false, []error{ErrFailed}, []string{"deliberate failure"}, false},
		{"alloc-count", true, []error{ErrResult, pipeline.ErrShape}, []string{"2 sparsities for 3 layers"}, false},
		{"alloc-range", true, []error{ErrResult, pipeline.ErrBadTarget}, []string{"layer 0: sparsity 1 out of range [0, 1)"}, false},
		{"alloc-nansp", true, []error{ErrResult, pipeline.ErrNonFinite}, []string{"layer 0: sparsity NaN"}, false},
		{"alloc-acrash", true, []error{ErrCrashed}, []string{"allocate", "exit status 3"}, true},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			path := faultyCopy(t, tc.mode)
			opts := quiet(nil)
			opts.Timeout = time.Second
			a := openAllocator(t, path, opts)
			pid := a.c.pid()
			var err error
			if tc.allocate {
				_, err = a.Allocate(ctx, sums, pipeline.Target{Sparsity: 0.5})
			} else {
				_, err = a.ObserveLayer(ctx, 4, allocLayer(1))
			}
			if err == nil {
				t.Fatal("no error")
			}
			for _, s := range append(tc.want, pipeline.ErrStageFailed) {
				if !errors.Is(err, s) {
					t.Errorf("error %q does not wrap %q", err, s)
				}
			}
			wantIn(t, err, append(tc.mention, `plugin "faulty-`+tc.mode+`"`, path)...)
			if tc.dies {
				waitGone(t, pid, "after the failed call")
				_, err2 := a.Allocate(ctx, sums, pipeline.Target{Sparsity: 0.5})
				if !errors.Is(err2, ErrClosed) || !errors.Is(err2, tc.want[0]) {
					t.Errorf("second call: %v", err2)
				}
			} else if !alive(pid) {
				t.Errorf("a plugin that answered was killed")
			}
			a.Close()
			waitGone(t, pid, "after Close")
			noStray(t, path)
		})
	}
	// The same binary in mode alloc-ok works, and what it saw is what was sent: the layer
	// index, Σ|W| of the stored weights (BF16 and F16 widened), the number of linears.
	t.Run("alloc-ok", func(t *testing.T) {
		a := openAllocator(t, faultyCopy(t, "alloc-ok"), quiet(nil))
		for l, lins := range stagetest.AllocModel(5, 3, 16) {
			s, err := a.ObserveLayer(ctx, l, lins)
			if err != nil {
				t.Fatal(err)
			}
			var sum float64
			for _, in := range lins {
				buf := make([]float32, in.W.Rows*in.W.Cols)
				in.W.RowsF32(buf, 0, in.W.Rows)
				for _, v := range buf {
					sum += math.Abs(float64(v))
				}
			}
			if len(s) != 3 || s[0] != float64(l) || s[1] != sum || s[2] != float64(len(lins)) {
				t.Errorf("layer %d (%s): summary %v, want [%d %v %d]", l, lins[0].W.DType, s, l, sum, len(lins))
			}
		}
		scratch, _ := filepath.Glob(filepath.Join(a.c.scratch.Path, "wanda-plugin-scratch-*"))
		if len(scratch) == 0 {
			t.Errorf("no scratch file after Observe")
		}
		sp, err := a.Allocate(ctx, sums, pipeline.Target{Sparsity: 0.6})
		if err != nil || len(sp) != 3 || sp[2] != 0.6 {
			t.Errorf("Allocate: %v, %v", sp, err)
		}
		// Allocate ends the pre-pass: the scratch space of a layer's weights is given back.
		if left, _ := filepath.Glob(filepath.Join(a.c.scratch.Path, "wanda-plugin-scratch-*")); len(left) != 0 {
			t.Errorf("scratch files left after Allocate: %v", left)
		}
		// Inputs the host refuses before calling.
		if _, err := a.Allocate(ctx, [][]float64{{math.Inf(1)}}, pipeline.Target{Sparsity: 0.5}); !errors.Is(err, pipeline.ErrNonFinite) {
			t.Errorf("Inf summary: %v", err)
		}
		if _, err := a.Allocate(ctx, sums, pipeline.Target{N: 2, M: 4}); !errors.Is(err, pipeline.ErrBadTarget) {
			t.Errorf("2:4 target: %v", err)
		}
	})
}

func TestRefineFaults(t *testing.T) {
	ctx := context.Background()
	r := rand.New(rand.NewPCG(5, 6))
	w := randMatrix(r, 4, 16, 0.1)
	st := refineStats(r, 16)
	info := pipeline.LayerInfo{Layer: 3, Tensor: "model.layers.3.self_attn.v_proj.weight", Part: "v_proj", Expert: -1}
	unstructured := pipeline.Target{Sparsity: 0.5}
	maskFor := func(tg pipeline.Target) *pipeline.Mask {
		m := pipeline.NewMask(4, 16)
		for i := range 4 {
			for j := range 16 {
				if tg.M > 0 && j%tg.M < tg.N || tg.M == 0 && j%2 == 1 {
					m.Set(i, j)
				}
			}
		}
		return m
	}
	for _, tc := range []struct {
		mode    string
		tg      pipeline.Target
		want    []error
		mention []string
		dies    bool
	}{
		{"refine-crash", unstructured, []error{ErrCrashed}, []string{"exit status 3"}, true},
		{"refine-hang", unstructured, []error{ErrTimeout}, []string{"no reply after 1s; process killed"}, true},
		{"refine-count", unstructured, []error{ErrResult}, []string{"row 0 of the block prunes 9 weights, the chosen mask 8"}, false},
		{"refine-group", pipeline.Target{N: 2, M: 4}, []error{ErrResult}, []string{"row 0 columns [0, 4) of the block prunes 1 weights, the chosen mask 2"}, false},
		{"refine-shape", unstructured, []error{ErrResult, pipeline.ErrShape}, []string{"result shape [3 16], want [4 16]"}, false},
		{"refine-nowrite", unstructured, []error{ErrResult}, []string{"mask entry (0, 0) is 255, want 0 (keep) or 1 (prune)"}, false},
		{"refine-error", unstructured, []error{ErrFailed}, []string{"deliberate failure"}, false},
		{"refine-applies", unstructured, []error{ErrFailed}, []string{"applies", "panic: deliberate panic in Applies"}, false},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			path := faultyCopy(t, tc.mode)
			opts := quiet(nil)
			opts.Timeout = time.Second
			rf := openRefiner(t, path, opts)
			if rf.NeedsStats() != pipeline.StatsSum|pipeline.StatsVar {
				t.Errorf("NeedsStats %v", rf.NeedsStats())
			}
			pid := rf.c.pid()
			if !rf.Applies(info) {
				t.Errorf("Applies: false")
			}
			m := maskFor(tc.tg)
			before := append([]uint64(nil), m.Bits...)
			err := rf.Refine(ctx, w, m, st, tc.tg, info)
			if err == nil {
				t.Fatal("no error")
			}
			for _, s := range append(tc.want, pipeline.ErrStageFailed) {
				if !errors.Is(err, s) {
					t.Errorf("error %q does not wrap %q", err, s)
				}
			}
			wantIn(t, err, append(tc.mention, `plugin "faulty-`+tc.mode+`"`, path, "layer 3 model.layers.3.self_attn.v_proj.weight")...)
			for k := range before {
				if m.Bits[k] != before[k] {
					t.Fatalf("a failed Refine changed the mask")
				}
			}
			if tc.dies {
				waitGone(t, pid, "after the failed call")
				err2 := rf.Refine(ctx, w, m, st, tc.tg, info)
				if !errors.Is(err2, ErrClosed) || !errors.Is(err2, tc.want[0]) {
					t.Errorf("second call: %v", err2)
				}
			} else if !alive(pid) {
				t.Errorf("a plugin that answered was killed")
			}
			rf.Close()
			waitGone(t, pid, "after Close")
			noStray(t, path)
		})
	}
	t.Run("refine-ok", func(t *testing.T) {
		rf := openRefiner(t, faultyCopy(t, "refine-ok"), quiet(nil))
		m := maskFor(unstructured)
		if err := rf.Refine(ctx, w, m, st, unstructured, info); err != nil {
			t.Fatal(err)
		}
		for i := range 4 { // the first pruned (1) and the first kept (0) weight swapped
			if m.Get(i, 1) || !m.Get(i, 0) || !m.Get(i, 3) || m.Get(i, 2) {
				t.Fatalf("row %d not refined as the plugin does", i)
			}
		}
		// The host refuses missing or non-finite statistics and weights before calling.
		noVar := *st
		noVar.Var = nil
		if err := rf.Refine(ctx, w, maskFor(unstructured), &noVar, unstructured, info); !errors.Is(err, pipeline.ErrShape) {
			t.Errorf("no Var: %v", err)
		}
		bad := *st
		bad.Sum = append([]float32(nil), st.Sum...)
		bad.Sum[3] = float32(math.Inf(-1))
		if err := rf.Refine(ctx, w, maskFor(unstructured), &bad, unstructured, info); !errors.Is(err, pipeline.ErrNonFinite) {
			t.Errorf("Inf sum: %v", err)
		}
	})
	t.Run("refine-skipmlp", func(t *testing.T) {
		rf := openRefiner(t, faultyCopy(t, "refine-skipmlp"), quiet(nil))
		if rf.Applies(layer(0, "up_proj")) || !rf.Applies(info) {
			t.Errorf("Applies: mlp %v, attention %v", rf.Applies(layer(0, "up_proj")), rf.Applies(info))
		}
	})
}
