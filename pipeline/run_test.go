package pipeline_test

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/wanda-go/wanda/format/config"
	"github.com/wanda-go/wanda/format/dtype"
	"github.com/wanda-go/wanda/format/safetensors"
	"github.com/wanda-go/wanda/pipeline"
)

// A toy network for testing Run directly: L layers, each x ← x + A·x then x ← x + B·relu(x),
// with A's input tapped as input 0 and B's as input 1. Its weights are real safetensors
// files on disk.
const (
	toyLayers = 3
	toyHidden = 8
	toyVocab  = 16
)

func toyName(l int, p string) string { return fmt.Sprintf("model.layers.%d.%s.weight", l, p) }

type toyModel struct {
	cfg *config.Config
	set *safetensors.Set
	// beforeDense, when set, is called before each layer's dense pass.
	beforeDense func(l int)
}

func (m *toyModel) Config() *config.Config { return m.cfg }

func (m *toyModel) Layer(l int) pipeline.LayerSpec {
	spec := pipeline.LayerSpec{Index: l, Inputs: []string{"a", "b"}}
	for i, p := range []string{"a", "b"} {
		n := toyName(l, p)
		spec.Linears = append(spec.Linears, pipeline.LinearSpec{Name: n, Module: strings.TrimSuffix(n, ".weight"),
			Rows: toyHidden, Cols: toyHidden, Input: i, Expert: -1, Prune: true})
	}
	return spec
}

func (m *toyModel) Embed(ids []int32, dst []float32) error {
	t, err := m.set.Get("model.embed_tokens.weight")
	if err != nil {
		return err
	}
	mat, err := pipeline.TensorMat(t.Name, t.DType, t.Shape, t.Bytes())
	if err != nil {
		return err
	}
	for i, id := range ids {
		mat.RowsF32(dst[i*toyHidden:(i+1)*toyHidden], int(id), int(id)+1)
	}
	return nil
}

func (m *toyModel) LoadBlock(l int, w pipeline.Weights) (pipeline.Block, error) {
	b := &toyBlock{m: m, l: l}
	for i, p := range []string{"a", "b"} {
		mat, err := w.Mat(toyName(l, p))
		if err != nil {
			return nil, err
		}
		b.w[i] = make([]float32, toyHidden*toyHidden)
		mat.RowsF32(b.w[i], 0, toyHidden)
	}
	return b, nil
}

func (m *toyModel) ReleaseBlock(int) {}

type toyBlock struct {
	m *toyModel
	l int
	w [2][]float32
}

func (b *toyBlock) Forward(h []float32, nseq, seqlen int, tap pipeline.Tap) {
	rows := nseq * seqlen
	h = h[:rows*toyHidden]
	y := make([]float32, toyHidden)
	if tap != nil {
		tap(0, h, rows, toyHidden)
	}
	for r := 0; r < rows; r++ {
		x := h[r*toyHidden : (r+1)*toyHidden]
		mul(y, b.w[0], x)
		for i := range x {
			x[i] += y[i]
		}
	}
	act := make([]float32, len(h))
	for i, v := range h {
		act[i] = max(v, 0)
	}
	if tap != nil {
		tap(1, act, rows, toyHidden)
	}
	for r := 0; r < rows; r++ {
		x := h[r*toyHidden : (r+1)*toyHidden]
		mul(y, b.w[1], act[r*toyHidden:(r+1)*toyHidden])
		for i := range x {
			x[i] += y[i]
		}
	}
}

func (b *toyBlock) ForwardStats(h []float32, nseq, seqlen int, tap pipeline.Tap) {
	if b.m.beforeDense != nil {
		b.m.beforeDense(b.l)
	}
	b.Forward(h, nseq, seqlen, tap)
}

func mul(y, w, x []float32) {
	for i := range y {
		var s float32
		for j, v := range x {
			s += w[i*toyHidden+j] * v
		}
		y[i] = s
	}
}

// writeToy writes the toy model's files into a new directory.
func writeToy(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	r := rand.New(rand.NewPCG(7, 8))
	var specs []safetensors.Spec
	var data [][]byte
	add := func(name string, shape []int64, scale float64) {
		n := int(shape[0])
		if len(shape) == 2 {
			n *= int(shape[1])
		}
		f := make([]float32, n)
		for i := range f {
			f[i] = float32(r.NormFloat64() * scale)
		}
		raw := make([]byte, 2*n)
		if err := dtype.FromFloat32(raw, f, dtype.BF16); err != nil {
			t.Fatal(err)
		}
		specs = append(specs, safetensors.Spec{Name: name, DType: dtype.BF16, Shape: shape})
		data = append(data, raw)
	}
	add("model.embed_tokens.weight", []int64{toyVocab, toyHidden}, 1)
	for l := 0; l < toyLayers; l++ {
		add(toyName(l, "a"), []int64{toyHidden, toyHidden}, 0.3)
		add(toyName(l, "b"), []int64{toyHidden, toyHidden}, 0.3)
	}
	add("model.norm.weight", []int64{toyHidden}, 1)
	if err := safetensors.WriteFile(filepath.Join(dir, "model.safetensors"), specs, data, map[string]string{"format": "pt"}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{"model_type": "toy"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// absMetric scores |w_ij|·(1+S_j) (uses the statistics, so the dense pass matters).
type absMetric struct{}

func (absMetric) Name() string     { return "toy-abs" }
func (absMetric) NeedsStats() bool { return true }
func (absMetric) Score(_ context.Context, w pipeline.Matrix, st *pipeline.Stats, _ pipeline.LayerInfo) (pipeline.Matrix, error) {
	out := pipeline.NewMatrix(w.Rows, w.Cols)
	for k, v := range w.Data {
		out.Data[k] = float32(math.Abs(float64(v))) * (1 + st.SumSq[k%w.Cols])
	}
	return out, nil
}

// rowHalf prunes the lower half of each row's scores (ties to the lower column).
type rowHalf struct{}

func (rowHalf) Name() string { return "toy-half" }
func (rowHalf) Select(_ context.Context, s pipeline.Matrix, _ pipeline.Target, _ pipeline.LayerInfo) (*pipeline.Mask, error) {
	m := pipeline.NewMask(s.Rows, s.Cols)
	for i := 0; i < s.Rows; i++ {
		idx := make([]int, s.Cols)
		for j := range idx {
			idx[j] = j
		}
		row := s.Row(i)
		slices.SortStableFunc(idx, func(a, b int) int { return cmp.Compare(row[a], row[b]) })
		for _, j := range idx[:s.Cols/2] {
			m.Set(i, j)
		}
	}
	return m, nil
}

func toyOptions(t *testing.T, dir, out string) (pipeline.Options, *toyModel) {
	t.Helper()
	set, err := safetensors.OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { set.Close() })
	m := &toyModel{cfg: &config.Config{ModelType: "toy", NumLayers: toyLayers, HiddenSize: toyHidden, VocabSize: toyVocab}, set: set}
	calib := [][]int32{{1, 2, 3, 4}, {5, 6, 7, 8}, {9, 10, 11, 12}}
	return pipeline.Options{Model: m, Source: set, ModelDir: dir, Calib: calib, OutDir: out,
		Method: pipeline.Method{Name: "toy", Metric: absMetric{}, Pattern: rowHalf{}},
		Target: pipeline.Target{Sparsity: 0.5}, ChunkTokens: 8}, m
}

func readDir(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.Name() == pipeline.ReportFile {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		files[e.Name()] = b
	}
	return files
}

func noStaging(t *testing.T, parent string) {
	t.Helper()
	ents, _ := os.ReadDir(parent)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("left behind in %s: %s", parent, e.Name())
		}
	}
}

func TestRunPrunesEveryLayer(t *testing.T) {
	dir := writeToy(t)
	out := filepath.Join(t.TempDir(), "out")
	opt, _ := toyOptions(t, dir, out)
	var last, total int64
	var labels []string
	opt.Progress = func(label string, done, tot int64) {
		if done != last+1 || (total != 0 && tot != total) {
			t.Errorf("progress %d/%d after %d/%d", done, tot, last, total)
		}
		last, total = done, tot
		if len(labels) == 0 || labels[len(labels)-1] != label {
			labels = append(labels, label)
		}
	}
	rep, err := pipeline.Run(context.Background(), opt)
	if err != nil {
		t.Fatal(err)
	}
	// 3 windows in chunks of 2 (8 tokens / 4): 2 dense + 2 tensors + 2 pruned-pass steps per
	// layer, no pruned pass after the last.
	if last != total || total != 3*6-2 || !slices.Equal(labels, []string{"layer 1/3", "layer 2/3", "layer 3/3"}) {
		t.Errorf("progress ended at %d/%d, labels %v", last, total, labels)
	}
	if len(rep.Tensors) != 2*toyLayers || len(rep.Layers) != toyLayers || rep.GlobalSparsity != 0.5 {
		t.Fatalf("report: %d tensors, %d layers, sparsity %v", len(rep.Tensors), len(rep.Layers), rep.GlobalSparsity)
	}
	src, _ := safetensors.OpenDir(dir)
	defer src.Close()
	got, err := safetensors.OpenDir(out)
	if err != nil {
		t.Fatal(err)
	}
	defer got.Close()
	if !slices.Equal(src.Names(), got.Names()) {
		t.Fatalf("tensors %v, want %v", got.Names(), src.Names())
	}
	for _, n := range src.Names() {
		a, _ := src.Tensor(n)
		b, _ := got.Tensor(n)
		pruned := strings.HasSuffix(n, ".a.weight") || strings.HasSuffix(n, ".b.weight")
		if !pruned {
			if !bytes.Equal(a.Bytes(), b.Bytes()) {
				t.Errorf("%s changed", n)
			}
			continue
		}
		wa, _ := a.Float32()
		wb, _ := b.Float32()
		for i := 0; i < toyHidden; i++ {
			zeros := 0
			for j := 0; j < toyHidden; j++ {
				v := wb[i*toyHidden+j]
				if v == 0 {
					zeros++
					if math.Signbit(float64(v)) {
						t.Errorf("%s [%d,%d] is -0", n, i, j)
					}
				} else if v != wa[i*toyHidden+j] {
					t.Errorf("%s [%d,%d] kept weight changed", n, i, j)
				}
			}
			if zeros != toyHidden/2 {
				t.Errorf("%s row %d: %d zeros", n, i, zeros)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(out, "config.json")); err != nil {
		t.Error("config.json not copied")
	}
	noStaging(t, filepath.Dir(out))
}

func TestRunResumesAfterCancellation(t *testing.T) {
	dir := writeToy(t)
	base := t.TempDir()
	ref := filepath.Join(base, "ref")
	opt, _ := toyOptions(t, dir, ref)
	if _, err := pipeline.Run(context.Background(), opt); err != nil {
		t.Fatal(err)
	}

	out, work := filepath.Join(base, "out"), filepath.Join(base, "work")
	opt, m := toyOptions(t, dir, out)
	opt.WorkDir = work
	ctx, cancel := context.WithCancel(context.Background())
	m.beforeDense = func(l int) {
		if l == 2 {
			cancel()
		}
	}
	_, err := pipeline.Run(ctx, opt)
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "layer 2") {
		t.Fatalf("cancelled run: %v", err)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Fatal("a cancelled run left an output")
	}
	noStaging(t, base)

	// Without --resume the checkpoint is refused; with it the run completes identically.
	opt, _ = toyOptions(t, dir, out)
	opt.WorkDir = work
	if _, err := pipeline.Run(context.Background(), opt); !errors.Is(err, pipeline.ErrCheckpoint) {
		t.Fatalf("checkpoint without resume: %v", err)
	}
	opt.Resume = true
	rep, err := pipeline.Run(context.Background(), opt)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Layers) != toyLayers {
		t.Errorf("resumed report has %d layers", len(rep.Layers))
	}
	a, b := readDir(t, ref), readDir(t, out)
	for n := range a {
		if !bytes.Equal(a[n], b[n]) {
			t.Errorf("%s differs from the uninterrupted run's", n)
		}
	}
	if len(a) != len(b) {
		t.Errorf("%d files, uninterrupted %d", len(b), len(a))
	}
	if _, err := os.Stat(work); !os.IsNotExist(err) {
		t.Error("work directory not cleared after success")
	}
}

func TestRunRefusesCorruptCheckpoint(t *testing.T) {
	dir := writeToy(t)
	base := t.TempDir()
	out, work := filepath.Join(base, "out"), filepath.Join(base, "work")
	opt, m := toyOptions(t, dir, out)
	opt.WorkDir = work
	ctx, cancel := context.WithCancel(context.Background())
	m.beforeDense = func(l int) {
		if l == 2 {
			cancel()
		}
	}
	if _, err := pipeline.Run(ctx, opt); !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	for _, f := range []string{"layer-00001.safetensors", "acts-00002.f32"} {
		path := filepath.Join(work, f)
		orig, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		bad := slices.Clone(orig)
		bad[len(bad)-1] ^= 1
		os.WriteFile(path, bad, 0o644)
		opt, _ := toyOptions(t, dir, out)
		opt.WorkDir, opt.Resume = work, true
		_, err = pipeline.Run(context.Background(), opt)
		if !errors.Is(err, pipeline.ErrCheckpoint) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "corrupt") {
			t.Errorf("resume with a corrupt %s: %v", f, err)
		}
		if _, err := os.Stat(out); !os.IsNotExist(err) {
			t.Errorf("a corrupt %s was shipped", f)
		}
		os.WriteFile(path, orig, 0o644)
	}
}

func TestRunFailingFinishLeavesNothing(t *testing.T) {
	dir := writeToy(t)
	base := t.TempDir()
	out := filepath.Join(base, "out")
	opt, _ := toyOptions(t, dir, out)
	boom := errors.New("finish failed")
	opt.Finish = func(string, *pipeline.Report) error { return boom }
	if _, err := pipeline.Run(context.Background(), opt); !errors.Is(err, boom) {
		t.Fatalf("err %v", err)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Fatal("output exists after a failed finish")
	}
	noStaging(t, base)
}

func TestRunValidatesMethod(t *testing.T) {
	dir := writeToy(t)
	out := filepath.Join(t.TempDir(), "out")
	for _, m := range []pipeline.Method{{Name: "empty"}, {Name: "no-pattern", Metric: absMetric{}}} {
		opt, _ := toyOptions(t, dir, out)
		opt.Method = m
		if _, err := pipeline.Run(context.Background(), opt); !errors.Is(err, pipeline.ErrMethod) {
			t.Errorf("%s: %v", m.Name, err)
		}
	}
	opt, _ := toyOptions(t, dir, out)
	opt.Calib = [][]int32{{1, 2}, {3}}
	if _, err := pipeline.Run(context.Background(), opt); !errors.Is(err, pipeline.ErrNoCalib) || !strings.Contains(err.Error(), "window 1 has 1 tokens, window 0 has 2") {
		t.Errorf("ragged calibration: %v", err)
	}
}

// countAlloc is a toy allocator: a layer's summary is its index; layer l gets sparsity
// 0.25 + 0.125·(l mod 3).
type countAlloc struct{ observed []int }

func (*countAlloc) Name() string { return "toy-alloc" }
func (a *countAlloc) ObserveLayer(_ context.Context, l int, in []pipeline.AllocInput) ([]float64, error) {
	a.observed = append(a.observed, l)
	if len(in) != 2 || in[0].Stats == nil || len(in[0].Stats.SumSq) != toyHidden || in[0].W.Rows != toyHidden {
		return nil, fmt.Errorf("layer %d: inputs %+v", l, in)
	}
	return []float64{float64(l)}, nil
}
func (a *countAlloc) Allocate(_ context.Context, sums [][]float64, t pipeline.Target) ([]float64, error) {
	out := make([]float64, len(sums))
	for i, s := range sums {
		out[i] = 0.25 + 0.125*float64(int(s[0])%3)
	}
	return out, nil
}

// keepPattern prunes the k = int(cols·s) lowest of each row (the toy rowHalf generalised).
type keepPattern struct{}

func (keepPattern) Name() string { return "toy-k" }
func (keepPattern) Select(_ context.Context, s pipeline.Matrix, t pipeline.Target, _ pipeline.LayerInfo) (*pipeline.Mask, error) {
	m := pipeline.NewMask(s.Rows, s.Cols)
	k := int(float64(s.Cols) * t.Sparsity)
	for i := 0; i < s.Rows; i++ {
		idx := make([]int, s.Cols)
		for j := range idx {
			idx[j] = j
		}
		row := s.Row(i)
		slices.SortStableFunc(idx, func(a, b int) int { return cmp.Compare(row[a], row[b]) })
		for _, j := range idx[:k] {
			m.Set(i, j)
		}
	}
	return m, nil
}

func zerosOf(t *testing.T, dir, name string) int {
	t.Helper()
	set, err := safetensors.OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	tt, _ := set.Tensor(name)
	w, _ := tt.Float32()
	n := 0
	for _, v := range w {
		if v == 0 {
			n++
		}
	}
	return n
}

func TestRunAllocationAndResume(t *testing.T) {
	dir := writeToy(t)
	base := t.TempDir()
	ref := filepath.Join(base, "ref")
	opt, _ := toyOptions(t, dir, ref)
	opt.Method.Pattern = keepPattern{}
	alloc := &countAlloc{}
	opt.Allocator = alloc
	rep, err := pipeline.Run(context.Background(), opt)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(alloc.observed, []int{0, 1, 2}) || rep.Allocation == nil || !slices.Equal(rep.Allocation.Sparsities, []float64{0.25, 0.375, 0.5}) {
		t.Fatalf("observed %v, report %+v", alloc.observed, rep.Allocation)
	}
	for l, want := range []int{2, 3, 4} { // int(8·s) per row, 8 rows
		if z := zerosOf(t, ref, toyName(l, "a")); z != 8*want {
			t.Errorf("layer %d: %d zeros, want %d", l, z, 8*want)
		}
		if tr := rep.Tensors[2*l]; tr.Target == nil || *tr.Target != rep.Allocation.Sparsities[l] || tr.Source != "allocation toy-alloc" {
			t.Errorf("report of layer %d: %+v", l, tr)
		}
	}

	// Interrupted in the pre-pass, then in the pruning pass; each resume ends byte-identical.
	for _, stopAt := range []string{"prepass", "prune"} {
		out, work := filepath.Join(base, "out-"+stopAt), filepath.Join(base, "work-"+stopAt)
		opt, m := toyOptions(t, dir, out)
		opt.Method.Pattern, opt.Allocator, opt.WorkDir = keepPattern{}, &countAlloc{}, work
		ctx, cancel := context.WithCancel(context.Background())
		calls := 0
		m.beforeDense = func(l int) { // ForwardStats: the pruning pass only
			calls++
			if stopAt == "prune" && l == 1 {
				cancel()
			}
		}
		if stopAt == "prepass" {
			opt.Allocator = &cancelAlloc{countAlloc: &countAlloc{}, at: 2, cancel: cancel}
		}
		if _, err := pipeline.Run(ctx, opt); !errors.Is(err, context.Canceled) {
			t.Fatalf("%s: %v", stopAt, err)
		}
		opt, _ = toyOptions(t, dir, out)
		opt.Method.Pattern, opt.WorkDir, opt.Resume = keepPattern{}, work, true
		again := &countAlloc{}
		opt.Allocator = again
		if _, err := pipeline.Run(context.Background(), opt); err != nil {
			t.Fatalf("%s resume: %v", stopAt, err)
		}
		if stopAt == "prepass" && !slices.Equal(again.observed, []int{2}) {
			t.Errorf("resumed pre-pass observed %v, want [2]", again.observed)
		}
		if stopAt == "prune" && len(again.observed) != 0 {
			t.Errorf("the allocation was recomputed on resume: %v", again.observed)
		}
		a, b := readDir(t, ref), readDir(t, out)
		for n := range a {
			if !bytes.Equal(a[n], b[n]) {
				t.Errorf("%s: %s differs after resume", stopAt, n)
			}
		}
	}
}

// cancelAlloc cancels the run when it observes layer at.
type cancelAlloc struct {
	*countAlloc
	at     int
	cancel func()
}

func (c *cancelAlloc) ObserveLayer(ctx context.Context, l int, in []pipeline.AllocInput) ([]float64, error) {
	if l == c.at {
		c.cancel()
		return nil, ctx.Err()
	}
	return c.countAlloc.ObserveLayer(ctx, l, in)
}

func TestRunIgnoreAndSparsityOf(t *testing.T) {
	dir := writeToy(t)
	out := filepath.Join(t.TempDir(), "out")
	opt, _ := toyOptions(t, dir, out)
	opt.Method.Pattern = keepPattern{}
	opt.Ignore = []*regexp.Regexp{regexp.MustCompile(`layers\.1\.b`)}
	opt.SparsityOf = func(l int, name string) (float64, string, bool) {
		if strings.HasSuffix(name, ".a.weight") {
			return 0.125 * float64(l+1), "file", true
		}
		return 0, "", false
	}
	rep, err := pipeline.Run(context.Background(), opt)
	if err != nil {
		t.Fatal(err)
	}
	src, _ := os.ReadFile(filepath.Join(dir, "model.safetensors"))
	_ = src
	srcSet, _ := safetensors.OpenDir(dir)
	defer srcSet.Close()
	outSet, _ := safetensors.OpenDir(out)
	defer outSet.Close()
	a, _ := srcSet.Tensor(toyName(1, "b"))
	b, _ := outSet.Tensor(toyName(1, "b"))
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Error("the ignored tensor changed")
	}
	if !slices.Equal(rep.Ignored, []string{toyName(1, "b")}) || len(rep.Tensors) != 2*toyLayers-1 {
		t.Errorf("report: ignored %v, %d tensors", rep.Ignored, len(rep.Tensors))
	}
	for l := range toyLayers {
		if z := zerosOf(t, out, toyName(l, "a")); z != 8*(l+1) {
			t.Errorf("layer %d a: %d zeros", l, z)
		}
	}
	if z := zerosOf(t, out, toyName(0, "b")); z != 8*4 {
		t.Errorf("layer 0 b: %d zeros (the run's 50%%)", z)
	}
	opt, _ = toyOptions(t, dir, out+"2")
	opt.Ignore = []*regexp.Regexp{regexp.MustCompile(`nothing`)}
	if _, err := pipeline.Run(context.Background(), opt); !errors.Is(err, pipeline.ErrBadTarget) || !strings.Contains(err.Error(), "nothing") {
		t.Errorf("unused ignore pattern: %v", err)
	}
}

// flipRefiner keeps each row's count but moves the pruned entry of column 0 to the last
// kept column (a toy refinement with a visible effect).
type flipRefiner struct{ rows int }

func (*flipRefiner) Name() string                   { return "toy-flip" }
func (*flipRefiner) NeedsStats() pipeline.StatsKind { return pipeline.StatsSum | pipeline.StatsVar }
func (*flipRefiner) Applies(info pipeline.LayerInfo) bool {
	return strings.HasSuffix(info.Tensor, ".a.weight")
}
func (f *flipRefiner) Refine(_ context.Context, w pipeline.Matrix, m *pipeline.Mask, st *pipeline.Stats, _ pipeline.Target, _ pipeline.LayerInfo) error {
	if len(st.Sum) != w.Cols || len(st.Var) != w.Cols || st.N != 3 || st.Tokens != 12 {
		return fmt.Errorf("stats %+v", st)
	}
	for i := 0; i < w.Rows; i++ {
		f.rows++
		if m.Get(i, 0) {
			for j := w.Cols - 1; j > 0; j-- {
				if !m.Get(i, j) {
					m.Bits[(i*w.Cols)>>6] &^= 1 << (uint(i*w.Cols) & 63)
					m.Set(i, j)
					break
				}
			}
		}
	}
	return nil
}

func TestRunRefiner(t *testing.T) {
	dir := writeToy(t)
	base := t.TempDir()
	opt, _ := toyOptions(t, dir, filepath.Join(base, "plain"))
	if _, err := pipeline.Run(context.Background(), opt); err != nil {
		t.Fatal(err)
	}
	opt, _ = toyOptions(t, dir, filepath.Join(base, "refined"))
	f := &flipRefiner{}
	opt.Method.Refiner = f
	rep, err := pipeline.Run(context.Background(), opt)
	if err != nil {
		t.Fatal(err)
	}
	if f.rows != toyLayers*toyHidden || rep.Refine != "toy-flip" {
		t.Errorf("refined %d rows (want %d), report %q", f.rows, toyLayers*toyHidden, rep.Refine)
	}
	plain, refined := readDir(t, filepath.Join(base, "plain")), readDir(t, filepath.Join(base, "refined"))
	if bytes.Equal(plain["model.safetensors"], refined["model.safetensors"]) {
		t.Error("the refiner changed nothing")
	}
	for l := range toyLayers {
		if z := zerosOf(t, filepath.Join(base, "refined"), toyName(l, "a")); z != 32 {
			t.Errorf("layer %d: %d zeros after refinement", l, z)
		}
	}
	opt.Method = pipeline.Method{Name: "x", Solver: fakeSolver{}, Refiner: f}
	if _, err := pipeline.Run(context.Background(), opt); !errors.Is(err, pipeline.ErrMethod) {
		t.Errorf("refiner with a solver: %v", err)
	}
}

type fakeSolver struct{}

func (fakeSolver) Name() string       { return "fake" }
func (fakeSolver) NeedsHessian() bool { return false }
func (fakeSolver) Solve(context.Context, pipeline.Matrix, *pipeline.Stats, pipeline.Target, pipeline.LayerInfo) (*pipeline.Mask, error) {
	return nil, errors.New("unused")
}

type hessSolver struct{ fakeSolver }

func (hessSolver) NeedsHessian() bool { return true }

// TestRunRefusesOverMemoryLimit: a solver whose Hessians alone exceed the memory limit is
// refused before anything is written (the check once treated a limit used up by the
// Hessians as "no limit").
func TestRunRefusesOverMemoryLimit(t *testing.T) {
	dir := writeToy(t)
	base := t.TempDir()
	for _, limit := range []int64{700, 1500} { // the Hessians: 2·8·8·8 = 1024 bytes
		opt, _ := toyOptions(t, dir, filepath.Join(base, "out"))
		opt.Method = pipeline.Method{Name: "hess", Solver: hessSolver{}}
		opt.MemoryLimit = limit
		_, err := pipeline.Run(context.Background(), opt)
		if !errors.Is(err, pipeline.ErrMemoryLimit) || !strings.Contains(err.Error(), "model.layers.0.") {
			t.Errorf("limit %d: %v", limit, err)
		}
		noStaging(t, base)
	}
}
