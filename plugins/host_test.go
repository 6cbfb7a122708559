package plugins

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wanda-go/wanda/pipeline"
	_ "github.com/wanda-go/wanda/stages/metric"
	"github.com/wanda-go/wanda/stages/pattern"
	"github.com/wanda-go/wanda/stages/stagetest"
)

func TestConformanceMetrics(t *testing.T) {
	for _, name := range []string{"wanda", "ria"} {
		t.Run(name, func(t *testing.T) {
			stagetest.TestMetric(t, openMetric(t, name, quiet(nil)), stagetest.StrictErrors())
		})
	}
}

func TestConformanceSchedule(t *testing.T) {
	// stagetest's LayerInfo has NumLayers 1, where the schedule is flat: the plugin must then
	// behave exactly like the built-in unstructured row rule, ties included.
	p := openPattern(t, "schedule", quiet(nil))
	targets := []pipeline.Target{{Sparsity: 0.5}, {Sparsity: 0.3}, {Sparsity: 0.77}}
	stagetest.TestPattern(t, p, targets, stagetest.LowerIndexTies(), stagetest.StrictErrors())
}

func randMatrix(r *rand.Rand, rows, cols int, scale float64) pipeline.Matrix {
	m := pipeline.NewMatrix(rows, cols)
	for k := range m.Data {
		m.Data[k] = float32(r.NormFloat64() * scale)
	}
	return m
}

func randStats(r *rand.Rand, cols int) *pipeline.Stats {
	st := &pipeline.Stats{N: 4, Tokens: 64, SumSq: make([]float32, cols)}
	for j := range st.SumSq {
		v := r.NormFloat64() * math.Exp(r.NormFloat64())
		st.SumSq[j] = float32(v * v * 16)
	}
	return st
}

func TestWandaPluginBitIdenticalToBuiltin(t *testing.T) {
	builtin, err := pipeline.BuiltinMetric("wanda", nil)
	if err != nil {
		t.Fatal(err)
	}
	pl := openMetric(t, "wanda", quiet(nil))
	if !pl.NeedsStats() || pl.Name() != "plugin:wanda" {
		t.Errorf("NeedsStats %v, Name %q", pl.NeedsStats(), pl.Name())
	}
	r := rand.New(rand.NewPCG(7, 7))
	ctx := context.Background()
	for i, sh := range [][2]int{{1, 1}, {3, 1000}, {257, 129}, {64, 4096}, {1024, 256}} {
		w := randMatrix(r, sh[0], sh[1], 0.02)
		st := randStats(r, sh[1])
		// Edge values: zeros of both signs, subnormals, a zero statistic, the largest float.
		w.Data[0] = -math.MaxFloat32 // column 0 has S = 0
		if len(w.Data) > 3 {
			w.Data[1], w.Data[2], w.Data[3] = 1e-41, float32(math.Copysign(0, -1)), 0
		}
		st.SumSq[0] = 0
		info := layer(i, "up_proj")
		want, err := builtin.Score(ctx, w, st, info)
		if err != nil {
			t.Fatal(err)
		}
		got, err := pl.Score(ctx, w, st, info)
		if err != nil {
			t.Fatal(err)
		}
		if got.Rows != want.Rows || got.Cols != want.Cols {
			t.Fatalf("%v: shape %dx%d, want %dx%d", sh, got.Rows, got.Cols, want.Rows, want.Cols)
		}
		for k := range want.Data {
			if math.Float32bits(got.Data[k]) != math.Float32bits(want.Data[k]) {
				t.Fatalf("%v: score %d = %v (%#x), built-in %v (%#x)", sh, k, got.Data[k],
					math.Float32bits(got.Data[k]), want.Data[k], math.Float32bits(want.Data[k]))
			}
		}
	}
}

// riaRef is RIA computed independently, all in float64 with explicit loops over columns.
func riaRef(w pipeline.Matrix, s []float32, a float64) []float64 {
	out := make([]float64, len(w.Data))
	for i := range w.Rows {
		for j := range w.Cols {
			x := math.Abs(float64(w.Data[i*w.Cols+j]))
			var row, col float64
			for q := range w.Cols {
				row += math.Abs(float64(w.Data[i*w.Cols+q]))
			}
			for p := range w.Rows {
				col += math.Abs(float64(w.Data[p*w.Cols+j]))
			}
			var ri float64
			if row != 0 {
				ri += x / row
			}
			if col != 0 {
				ri += x / col
			}
			out[i*w.Cols+j] = ri * math.Pow(math.Sqrt(float64(s[j])), a)
		}
	}
	return out
}

func TestRIAAndArgs(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	w := randMatrix(r, 37, 53, 0.05)
	for j := range w.Cols { // an all-zero column
		w.Data[5*w.Cols+j] = 0
	}
	for i := range w.Rows { // an all-zero row
		w.Data[i*w.Cols+7] = 0
	}
	st := randStats(r, w.Cols)
	ctx := context.Background()
	for _, tc := range []struct {
		args map[string]string
		a    float64
	}{{nil, 0.5}, {map[string]string{"a": "1"}, 1}, {map[string]string{"a": "0"}, 0}, {map[string]string{"a": "2.5"}, 2.5}} {
		opts := quiet(nil)
		opts.Args = tc.args
		m := openMetric(t, "ria", opts)
		got, err := m.Score(ctx, w, st, layer(2, "down_proj"))
		if err != nil {
			t.Fatal(err)
		}
		want := riaRef(w, st.SumSq, tc.a)
		for k, v := range want {
			if d := math.Abs(float64(got.Data[k]) - v); d > 1e-6*math.Abs(v) {
				t.Fatalf("a=%g: score %d = %g, want %g", tc.a, k, got.Data[k], v)
			}
		}
	}
	// Bad arguments are refused when the plugin is opened, naming the plugin.
	for _, args := range []map[string]string{{"alpha": "1"}, {"a": "x"}, {"a": "NaN"}} {
		opts := quiet(nil)
		opts.Args = args
		_, _, err := OpenMetric(ctx, bins["ria"], opts)
		if !errors.Is(err, ErrArgs) || !errors.Is(err, pipeline.ErrStageFailed) {
			t.Errorf("args %v: error %v, want ErrArgs", args, err)
			continue
		}
		wantIn(t, err, `plugin "ria"`, bins["ria"])
	}
}

// scheduleRef is s_ℓ as the schedule plugin documents it.
func scheduleRef(s, spread float64, l, layers int) float64 {
	d := min(spread, s, (1-s)/2)
	return s + d*(2*float64(l)/float64(layers-1)-1)
}

func TestScheduleMatchesBuiltinPerLayer(t *testing.T) {
	const layers = 8
	r := rand.New(rand.NewPCG(5, 6))
	sc := randMatrix(r, 48, 200, 1)
	for k := 0; k < len(sc.Data); k += 7 { // ties
		sc.Data[k] = 0.25
	}
	ctx := context.Background()
	for _, tc := range []struct {
		s, spread float64
		args      map[string]string
	}{{0.5, 0.1, nil}, {0.6, 0.3, map[string]string{"spread": "0.3"}}, {0.1, 0.1, nil}} {
		opts := quiet(nil)
		opts.Args = tc.args
		p := openPattern(t, "schedule", opts)
		var mean float64
		prev := -1
		for l := range layers {
			info := layer(l, "gate_proj")
			info.NumLayers = layers
			got, err := p.Select(ctx, sc, pipeline.Target{Sparsity: tc.s}, info)
			if err != nil {
				t.Fatal(err)
			}
			want, err := pattern.Unstructured{}.Select(ctx, sc,
				pipeline.Target{Sparsity: scheduleRef(tc.s, tc.spread, l, layers)}, info)
			if err != nil {
				t.Fatal(err)
			}
			for k := range want.Bits {
				if got.Bits[k] != want.Bits[k] {
					t.Fatalf("s=%g layer %d: mask differs from the built-in at sparsity %g (word %d)",
						tc.s, l, scheduleRef(tc.s, tc.spread, l, layers), k)
				}
			}
			if got.Count() <= prev {
				t.Errorf("s=%g layer %d: %d pruned, not more than layer %d", tc.s, l, got.Count(), l-1)
			}
			prev = got.Count()
			mean += float64(got.Count()) / float64(len(sc.Data)) / layers
		}
		// int(C·s_ℓ) truncates, so the realized mean is at most 1/C below the target.
		if mean > tc.s+1e-12 || mean < tc.s-1.0/float64(sc.Cols) {
			t.Errorf("s=%g: mean sparsity over layers %g", tc.s, mean)
		}
	}
	// N:M targets are refused by this plugin (with an error naming it and the layer).
	p := openPattern(t, "schedule", quiet(nil))
	_, err := p.Select(ctx, sc, pipeline.Target{N: 2, M: 4}, layer(1, "up_proj"))
	if !errors.Is(err, ErrFailed) {
		t.Fatalf("2:4: %v, want ErrFailed", err)
	}
	wantIn(t, err, `plugin "schedule"`, "layer 1 model.layers.1.mlp.up_proj.weight", "unstructured per-row")
}

func TestConcurrentCalls(t *testing.T) {
	builtin, _ := pipeline.BuiltinMetric("wanda", nil)
	m := openMetric(t, "wanda", quiet(nil))
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(g), 1))
			for it := range 5 {
				rows, cols := 1+r.IntN(300), 1+r.IntN(300)
				w, st := randMatrix(r, rows, cols, 1), randStats(r, cols)
				got, err := m.Score(ctx, w, st, layer(it, "q_proj"))
				if err != nil {
					errs <- err
					return
				}
				want, _ := builtin.Score(ctx, w, st, layer(it, "q_proj"))
				for k := range want.Data {
					if math.Float32bits(got.Data[k]) != math.Float32bits(want.Data[k]) {
						errs <- errors.New("concurrent call: wrong score")
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestLogsReachHostLogger(t *testing.T) {
	var buf syncBuffer
	m, closer, err := OpenMetric(context.Background(), bins["faulty"], quiet(&buf))
	if err != nil {
		t.Fatal(err)
	}
	w := pipeline.NewMatrix(2, 3)
	if _, err := m.Score(context.Background(), w, nil, layer(3, "o_proj")); err != nil {
		t.Fatal(err)
	}
	defer closer.Close()
	// sdk.Logger's record keeps its level and attributes (in any order); a plain line on the
	// plugin's stderr is logged at the level of its prefix.
	find := func(out string, parts ...string) bool {
		for _, line := range strings.Split(out, "\n") {
			ok := true
			for _, p := range parts {
				ok = ok && strings.Contains(line, p)
			}
			if ok {
				return true
			}
		}
		return false
	}
	wants := [][]string{
		{"level=INFO msg=scored plugin=faulty", "source=wanda-plugin-faulty", "layer=3", "tensor=model.layers.3.mlp.o_proj.weight"},
		{`level=WARN msg="[WARN] plain stderr line from layer 3" plugin=faulty stream=stderr`},
	}
	// The relays are asynchronous: wait (bounded) for both lines.
	var out string
	for range 500 {
		out = buf.String()
		if find(out, wants[0]...) && find(out, wants[1]...) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, want := range wants {
		if !find(out, want...) {
			t.Errorf("log lacks a line with %q:\n%s", want, out)
		}
	}
}

func TestCallAfterClose(t *testing.T) {
	m, closer, err := OpenMetric(context.Background(), bins["wanda"], quiet(nil))
	if err != nil {
		t.Fatal(err)
	}
	pid := m.(*Metric).c.pid()
	if err := closer.Close(); err != nil {
		t.Fatal(err)
	}
	if err := closer.Close(); err != nil { // idempotent
		t.Fatal(err)
	}
	waitGone(t, pid, "closed plugin")
	_, err = m.Score(context.Background(), pipeline.NewMatrix(1, 1), &pipeline.Stats{SumSq: []float32{1}}, layer(0, "q_proj"))
	if !errors.Is(err, ErrClosed) || !errors.Is(err, pipeline.ErrStageFailed) {
		t.Fatalf("Score after Close: %v", err)
	}
}

func TestProbe(t *testing.T) {
	info, err := Probe(context.Background(), bins["ria"], quiet(nil))
	if err != nil {
		t.Fatal(err)
	}
	if info.Name != "ria" || info.Kind != KindMetric || info.ProtocolVersion != 2 || !info.NeedsStats ||
		len(info.Args) != 1 || info.Args[0].Name != "a" || info.Description == "" {
		t.Errorf("ria info %+v", info)
	}
	info, err = Probe(context.Background(), bins["schedule"], quiet(nil))
	if err != nil || info.Kind != KindPattern || info.Name != "schedule" {
		t.Errorf("schedule info %+v, %v", info, err)
	}
}
