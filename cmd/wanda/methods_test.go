package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/wanda-go/wanda/format/config"
	"github.com/wanda-go/wanda/format/safetensors"
	"github.com/wanda-go/wanda/internal/modelgen"
	"github.com/wanda-go/wanda/pipeline"
)

// The CLI tests of --ignore, --sparsity-file, resuming OWL/DSnoT/sparsity-file runs after
// kill -9, and --method ria against the example plugin, on small generated models.

// methodsFixture writes a generated model of four decoder layers and the demo calibration
// text under a temporary directory; args are the prune flags for them.
type methodsFixture struct {
	root, model, calib string
}

func newMethodsFixture(t *testing.T) *methodsFixture {
	t.Helper()
	root := t.TempDir()
	f := &methodsFixture{root: root, model: filepath.Join(root, "model"), calib: filepath.Join(root, "calib.jsonl")}
	opt := modelgen.Default()
	opt.Layers = 4
	if err := modelgen.Write(f.model, opt); err != nil {
		t.Fatal(err)
	}
	writeDemoCalib(t, f.calib)
	return f
}

// args are prune flags writing out, with extra appended.
func (f *methodsFixture) args(out string, extra ...string) []string {
	return append([]string{"prune", "--model", f.model, "--out", out, "--calib", f.calib,
		"--nsamples", "6", "--seqlen", "48", "--threads", "1", "--json"}, extra...)
}

// prune runs prune in-process and returns the output directory and report.
func (f *methodsFixture) prune(t *testing.T, name string, extra ...string) (string, *pipeline.Report) {
	t.Helper()
	out := filepath.Join(f.root, name)
	stdout, err := inspRun(t, "", f.args(out, extra...)...)
	if err != nil {
		t.Fatalf("wanda prune %s: %v", strings.Join(extra, " "), err)
	}
	var rep pipeline.Report
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("report: %v\n%s", err, stdout)
	}
	return out, &rep
}

// refused runs prune, which must fail with a message holding every string of want and leave
// no output directory.
func (f *methodsFixture) refused(t *testing.T, want []string, extra ...string) {
	t.Helper()
	out := filepath.Join(f.root, "refused")
	_, err := inspRun(t, "", f.args(out, extra...)...)
	if err == nil {
		t.Fatalf("prune %s succeeded", strings.Join(extra, " "))
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("prune %s: error %q does not say %q", strings.Join(extra, " "), err, w)
		}
	}
	if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("prune %s: output directory exists after the refusal", strings.Join(extra, " "))
	}
}

// openSet opens a model directory's tensors.
func openSet(t *testing.T, dir string) *safetensors.Set {
	t.Helper()
	set, err := safetensors.OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { set.Close() })
	return set
}

// linearNames are the seven linears of each of layers decoder layers.
func linearNames(layers int) []string {
	var names []string
	for l := range layers {
		for _, p := range config.Linears {
			names = append(names, config.LayerTensor(l, p))
		}
	}
	return names
}

// rowZeros returns the number of +0.0/-0.0 entries of each row of tensor name.
func rowZeros(t *testing.T, set *safetensors.Set, name string) []int {
	t.Helper()
	tt, err := set.Get(name)
	if err != nil {
		t.Fatal(err)
	}
	w, err := tt.Float32()
	if err != nil {
		t.Fatal(err)
	}
	rows, cols := int(tt.Shape[0]), int(tt.Shape[1])
	z := make([]int, rows)
	for i := range rows {
		for _, v := range w[i*cols : (i+1)*cols] {
			if v == 0 {
				z[i]++
			}
		}
	}
	return z
}

// TestPruneIgnore: tensors matching an --ignore expression stay byte-identical to the source
// with wanda, with SparseGPT (which rewrites the weights it keeps) and with an OWL allocation
// plus DSnoT refinement; every other tensor is pruned, the report lists the ignored ones, and
// expressions that do not compile, match nothing, or match everything are refused.
func TestPruneIgnore(t *testing.T) {
	f := newMethodsFixture(t)
	src := openSet(t, f.model)
	ignore := []string{`mlp\.down_proj`, `layers\.1\.self_attn\.q_proj`}
	var wantIgnored []string
	for _, n := range linearNames(4) {
		if strings.Contains(n, "mlp.down_proj") || n == "model.layers.1.self_attn.q_proj.weight" {
			wantIgnored = append(wantIgnored, n)
		}
	}
	slices.Sort(wantIgnored)
	for _, run := range []struct {
		name  string
		extra []string
	}{
		{"wanda", []string{"--method", "wanda"}},
		{"sparsegpt", []string{"--method", "sparsegpt"}},
		{"owl-dsnot", []string{"--method", "wanda", "--sparsity", "0.6", "--allocation", "owl", "--refine", "dsnot"}},
	} {
		t.Run(run.name, func(t *testing.T) {
			extra := slices.Clone(run.extra)
			for _, e := range ignore {
				extra = append(extra, "--ignore", e)
			}
			out, rep := f.prune(t, "ignore-"+run.name, extra...)
			if got := slices.Sorted(slices.Values(rep.Ignored)); !slices.Equal(got, wantIgnored) {
				t.Errorf("report ignored %q, want %q", got, wantIgnored)
			}
			pruned := map[string]bool{}
			for _, tr := range rep.Tensors {
				pruned[tr.Name] = true
				if slices.Contains(wantIgnored, tr.Name) {
					t.Errorf("%s: ignored, but in the report's pruned tensors", tr.Name)
				}
				if tr.Zeros == 0 {
					t.Errorf("%s: not ignored and not pruned", tr.Name)
				}
			}
			if len(pruned)+len(wantIgnored) != 28 {
				t.Errorf("%d pruned + %d ignored tensors, want 28", len(pruned), len(wantIgnored))
			}
			set := openSet(t, out)
			same := 0
			for _, name := range src.Names() {
				a, _ := src.Tensor(name)
				b, ok := set.Tensor(name)
				if !ok {
					t.Errorf("%s missing from the output", name)
					continue
				}
				eq := a.DType == b.DType && slices.Equal(a.Shape, b.Shape) && bytes.Equal(a.Bytes(), b.Bytes())
				switch {
				case pruned[name] && eq:
					t.Errorf("%s: pruned, yet byte-identical to the source", name)
				case !pruned[name] && !eq:
					t.Errorf("%s: not pruned (ignored: %v), yet not byte-identical to the source", name, slices.Contains(wantIgnored, name))
				case eq:
					same++
				}
			}
			t.Logf("%s: %d tensors pruned, %d byte-identical to the source (%d of them ignored linears)", run.name, len(pruned), same, len(wantIgnored))
		})
	}
	t.Run("refused", func(t *testing.T) {
		f.refused(t, []string{"--ignore", `"mlp\\.(down"`}, "--ignore", `mlp\.(down`)
		f.refused(t, []string{`"gate_projj"`, "matches no prunable tensor"}, "--ignore", `mlp\.down`, "--ignore", "gate_projj")
		f.refused(t, []string{"nothing to prune"}, "--ignore", `_proj`)
	})
}

// sparsityFileJSON is a sparsity file for the four-layer fixture and what it gives each
// linear: q and k at 0.25 by a tensor rule, layer 3's down_proj dense (0) by an exact rule,
// layers 0 and 2 by their "layers" entries, layers 1 and 3 by "default".
const sparsityFileJSON = `{
  "default": 0.5,
  "layers": [0.3, null, 0.6, null],
  "tensors": [
    {"match": "self_attn\\.[qk]_proj", "sparsity": 0.25},
    {"match": "^model\\.layers\\.3\\.mlp\\.down_proj\\.weight$", "sparsity": 0}
  ]
}`

func sparsityFileWant(name string) (float64, string) {
	l, p, _ := config.ParseLayerTensor(name)
	switch {
	case p == config.PartQ || p == config.PartK:
		return 0.25, "sparsity file: tensors"
	case l == 3 && p == config.PartDown:
		return 0, "sparsity file: tensors"
	case l == 0:
		return 0.3, "sparsity file: layers"
	case l == 2:
		return 0.6, "sparsity file: layers"
	}
	return 0.5, "sparsity file: default"
}

// TestPruneSparsityFile: --sparsity-file's per-tensor rules, per-layer entries and default
// give each row of each linear int(cols × sparsity) zeros (the reference's per-row count),
// with wanda and with DSnoT refinement (which keeps the count of each row); the report
// gives each tensor's target and its source; a file without "default" leaves the rest at
// --sparsity; bad files are refused with the file and the entry named.
func TestPruneSparsityFile(t *testing.T) {
	f := newMethodsFixture(t)
	src := openSet(t, f.model)
	for _, name := range linearNames(4) {
		for i, z := range rowZeros(t, src, name) {
			if z != 0 {
				t.Fatalf("the generated model's %s has %d zeros in row %d: per-row counts would not be the pruned ones", name, z, i)
			}
		}
	}
	file := filepath.Join(f.root, "sparsity.json")
	if err := os.WriteFile(file, []byte(sparsityFileJSON), 0o644); err != nil {
		t.Fatal(err)
	}
	check := func(t *testing.T, out string, rep *pipeline.Report, want func(string) (float64, string)) {
		set := openSet(t, out)
		byName := map[string]pipeline.TensorReport{}
		for _, tr := range rep.Tensors {
			byName[tr.Name] = tr
		}
		for _, name := range linearNames(4) {
			s, source := want(name)
			tr, ok := byName[name]
			if !ok {
				t.Errorf("%s: not in the report", name)
				continue
			}
			if source == "" {
				if tr.Target != nil || tr.Source != "" {
					t.Errorf("%s: report target %s (%q), want none (the run's --sparsity)", name, fmtTarget(tr.Target), tr.Source)
				}
			} else if tr.Target == nil || *tr.Target != s || tr.Source != source {
				t.Errorf("%s: report target %s (%q), want %v (%q)", name, fmtTarget(tr.Target), tr.Source, s, source)
			}
			tt, _ := set.Tensor(name)
			cols := int(tt.Shape[1])
			wantZ := int(float64(cols) * s)
			bad := 0
			for i, z := range rowZeros(t, set, name) {
				if z != wantZ {
					if bad++; bad <= 3 {
						t.Errorf("%s row %d: %d zeros, want int(%d × %v) = %d", name, i, z, cols, s, wantZ)
					}
				}
			}
		}
	}
	t.Run("wanda", func(t *testing.T) {
		out, rep := f.prune(t, "sf-wanda", "--sparsity-file", file, "--sparsity", "0.4")
		check(t, out, rep, sparsityFileWant)
	})
	t.Run("dsnot", func(t *testing.T) {
		out, rep := f.prune(t, "sf-dsnot", "--sparsity-file", file, "--refine", "dsnot", "--dsnot-skip-layer", "no_skip")
		check(t, out, rep, sparsityFileWant)
	})
	t.Run("fallback", func(t *testing.T) {
		layersOnly := filepath.Join(f.root, "layers.json")
		os.WriteFile(layersOnly, []byte(`{"layers": [0.3, null, 0.6, null]}`), 0o644)
		out, rep := f.prune(t, "sf-fallback", "--sparsity-file", layersOnly, "--sparsity", "0.4")
		check(t, out, rep, func(name string) (float64, string) {
			switch l, _, _ := config.ParseLayerTensor(name); l {
			case 0:
				return 0.3, "sparsity file: layers"
			case 2:
				return 0.6, "sparsity file: layers"
			}
			return 0.4, ""
		})
	})
	t.Run("refused", func(t *testing.T) {
		for _, c := range []struct {
			name, body string
			want       []string
		}{
			{"short", `{"layers": [0.3, 0.4, 0.5]}`, []string{"layers has 3 entries", "4 decoder layers"}},
			{"range", `{"layers": [0.3, 1.5, null, null]}`, []string{"layers[1]", "1.5", "out of range"}},
			{"negative", `{"default": -0.1}`, []string{"default", "-0.1"}},
			{"nomatch", `{"tensors": [{"match": "q_proj", "sparsity": 0.3}, {"match": "qq_proj", "sparsity": 0.2}]}`, []string{`tensors[1] ("qq_proj")`, "matches none"}},
			{"regexp", `{"tensors": [{"match": "q_(proj", "sparsity": 0.3}]}`, []string{`tensors[0]: match "q_(proj"`}},
			{"nosparsity", `{"tensors": [{"match": "q_proj"}]}`, []string{`tensors[0] ("q_proj")`, `no "sparsity"`}},
			{"unknown", `{"default": 0.5, "layer": [0.1]}`, []string{`unknown field "layer"`}},
			{"type", `{"default": "half"}`, []string{"default", "want a number", "string"}},
			{"syntax", "{\"default\": 0.5,\n  ,}", []string{"line 2 column"}},
			{"empty", `{}`, []string{"sets no sparsity"}},
		} {
			path := filepath.Join(f.root, "bad-"+c.name+".json")
			if err := os.WriteFile(path, []byte(c.body), 0o644); err != nil {
				t.Fatal(err)
			}
			f.refused(t, append([]string{path}, c.want...), "--sparsity-file", path)
		}
		missing := filepath.Join(f.root, "missing.json")
		f.refused(t, []string{missing}, "--sparsity-file", missing)
		f.refused(t, []string{"--sparsity-file", "2:4"}, "--sparsity-file", file, "--pattern", "2:4")
		f.refused(t, []string{"--allocation", "--sparsity-file"}, "--sparsity-file", file, "--allocation", "owl")
	})
}

// TestResumeMethodsAfterKill: runs with an OWL allocation (killed in the allocation pre-pass
// and in the pruning pass), a sparsity file, DSnoT and a metric plugin, each killed with
// SIGKILL at a known point (WANDA_CRASH_AT) and resumed with --resume, write files
// byte-identical to an uninterrupted run's, and reports with the same allocation and
// per-tensor targets.
//
// "prepass:L" kills the process after the allocator observed layer L of the dense
// pre-pass (pipeline/prepass.go observeLayer).
func TestResumeMethodsAfterKill(t *testing.T) {
	f := newMethodsFixture(t)
	file := filepath.Join(f.root, "sparsity.json")
	if err := os.WriteFile(file, []byte(sparsityFileJSON), 0o644); err != nil {
		t.Fatal(err)
	}
	pluginDir, _ := builtPlugins(t)
	for _, run := range []struct {
		name   string
		extra  []string
		points []string
	}{
		{"owl", []string{"--sparsity", "0.6", "--allocation", "owl", "--owl-lambda", "0.1"},
			[]string{"prepass:0", "prepass:2", "prepass:3", "forward:0", "between:2"}},
		{"sparsity-file", []string{"--sparsity-file", file}, []string{"between:1"}},
		{"dsnot", []string{"--sparsity", "0.6", "--refine", "dsnot"}, []string{"forward:2"}},
		{"plugin", []string{"--method", "plugin:ria", "--plugin-dir", pluginDir, "--plugin-arg", "a=0.7"}, []string{"between:0"}},
	} {
		t.Run(run.name, func(t *testing.T) {
			ref := filepath.Join(f.root, "resume-"+run.name)
			stdout, err := inspRun(t, "", f.args(ref, run.extra...)...)
			if err != nil {
				t.Fatalf("uninterrupted run: %v", err)
			}
			var wantRep pipeline.Report
			if err := json.Unmarshal([]byte(stdout), &wantRep); err != nil {
				t.Fatal(err)
			}
			want := modelFiles(t, ref)
			for _, point := range run.points {
				t.Run(point, func(t *testing.T) {
					tag := run.name + "-" + strings.ReplaceAll(point, ":", "-")
					out, work := filepath.Join(f.root, "out-"+tag), filepath.Join(f.root, "work-"+tag)
					args := f.args(out, append(slices.Clone(run.extra), "--workdir", work)...)
					cmd := cliCommand(t, []string{"WANDA_CRASH_AT=" + point}, args...)
					var stderr bytes.Buffer
					cmd.Stderr = &stderr
					err := cmd.Run()
					requireKilled(t, err, point, stderr.String())
					if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
						t.Fatalf("output directory exists after the crash (stat: %v)", err)
					}
					cmd = cliCommand(t, nil, append(args, "--resume")...)
					var resumed bytes.Buffer
					stderr.Reset()
					cmd.Stdout, cmd.Stderr = &resumed, &stderr
					if err := cmd.Run(); err != nil {
						t.Fatalf("resume: %v\n%s", err, stderr.String())
					}
					// The resumed run continues from the checkpoint, not from the start.
					if msg, next := resumeMessage(point); msg != "" && !strings.Contains(stderr.String(), msg) || !strings.Contains(stderr.String(), next) {
						t.Errorf("the resumed run does not log %q with %q:\n%s", msg, next, stderr.String())
					}
					got := modelFiles(t, out)
					if len(got) != len(want) {
						t.Fatalf("resumed output has %d files, uninterrupted %d", len(got), len(want))
					}
					for name, b := range want {
						if !bytes.Equal(got[name], b) {
							t.Errorf("%s differs from the uninterrupted run", name)
						}
					}
					var rep pipeline.Report
					if err := json.Unmarshal(resumed.Bytes(), &rep); err != nil {
						t.Fatalf("resumed report: %v\n%s", err, resumed.String())
					}
					if a, b := allocCore(rep.Allocation), allocCore(wantRep.Allocation); !reflect.DeepEqual(a, b) {
						t.Errorf("resumed allocation %+v, uninterrupted %+v", a, b)
					}
					if !reflect.DeepEqual(rep.Tensors, wantRep.Tensors) {
						t.Errorf("resumed report's tensors differ from the uninterrupted run's")
					}
					if _, err := os.Stat(work); !errors.Is(err, os.ErrNotExist) {
						t.Errorf("work directory left after the resumed run finished (stat: %v)", err)
					}
					if point == run.points[0] {
						t.Logf("%s killed at %s and resumed: %d files byte-identical; allocation %v", run.name, point, len(got), allocSparsities(rep.Allocation))
					}
				})
			}
		})
	}
}

// resumeMessage is what a run resumed after a kill at point logs ("" when the killed run
// left no checkpoint to continue from): the pre-pass checkpoints after observing layer L,
// the pruning pass after pruning it.
func resumeMessage(point string) (msg, next string) {
	what, layer, _ := strings.Cut(point, ":")
	l, _ := strconv.Atoi(layer)
	switch what {
	case "prepass":
		if l == 0 {
			return "", ""
		}
		return `msg="resuming the allocation pre-pass"`, "next_layer=" + layer
	case "between":
		l++
	}
	return "msg=resuming ", "next_layer=" + strconv.Itoa(l)
}

func fmtTarget(p *float64) string {
	if p == nil {
		return "none"
	}
	return strconv.FormatFloat(*p, 'g', -1, 64)
}

// allocCore is an allocation report without its timings.
func allocCore(a *pipeline.AllocationReport) any {
	if a == nil {
		return nil
	}
	return []any{a.Name, a.Summaries, a.Sparsities}
}

func allocSparsities(a *pipeline.AllocationReport) []float64 {
	if a == nil {
		return nil
	}
	return a.Sparsities
}

// TestRIAMatchesPlugin: --method ria gives the same files as the example plugin
// (plugins/examples/ria) on tiny-llama-a (16 of the reference's calibration windows) and, with
// another exponent (--ria-a / --plugin-arg a=), on a generated model, where the exponent must
// change the masks.
func TestRIAMatchesPlugin(t *testing.T) {
	dir, _ := builtPlugins(t)
	same := func(t *testing.T, a, b string) {
		t.Helper()
		x, y := modelFiles(t, a), modelFiles(t, b)
		if len(x) < 3 || len(x) != len(y) {
			t.Fatalf("%d vs %d files", len(x), len(y))
		}
		for name, data := range x {
			if !bytes.Equal(y[name], data) {
				t.Errorf("%s differs between --method ria and the plugin", name)
			}
		}
	}
	t.Run("generated", func(t *testing.T) {
		f := newMethodsFixture(t)
		for _, pattern := range []string{"unstructured", "2:4"} {
			builtin, _ := f.prune(t, "ria-"+strings.ReplaceAll(pattern, ":", "of"), "--method", "ria", "--ria-a", "1.3", "--pattern", pattern)
			plugged, _ := f.prune(t, "plugin-"+strings.ReplaceAll(pattern, ":", "of"), "--method", "plugin:ria", "--plugin-dir", dir, "--plugin-arg", "a=1.3", "--pattern", pattern)
			same(t, builtin, plugged)
			if pattern != "unstructured" {
				continue
			}
			half, _ := f.prune(t, "ria-a0.5", "--method", "ria")
			masks := func(d string) []byte {
				b, err := os.ReadFile(filepath.Join(d, "sparsity_masks.safetensors"))
				if err != nil {
					t.Fatal(err)
				}
				return b
			}
			if bytes.Equal(masks(half), masks(builtin)) {
				t.Errorf("--ria-a 0.5 and 1.3 give the same masks: the exponent does not reach the metric")
			}
		}
	})
	t.Run("tiny-llama-a", func(t *testing.T) {
		if testing.Short() {
			t.Skip("prunes tiny-llama-a twice; skipped with -short")
		}
		shared := inspSharedDir(t)
		calib := refCalib16(shared)
		builtin, _ := prunedTiny(t, shared, "ria", "unstructured", calib...)
		plugged, _ := prunedTiny(t, shared, "plugin:ria", "unstructured", append([]string{"--plugin-dir", dir}, calib...)...)
		same(t, builtin, plugged)
	})
	t.Run("refused", func(t *testing.T) {
		f := newMethodsFixture(t)
		f.refused(t, []string{"--ria-a"}, "--method", "wanda", "--ria-a", "0.3")
		f.refused(t, []string{"--ria-a", "--plugin-arg"}, "--method", "plugin:ria", "--plugin-dir", dir, "--ria-a", "0.3")
		f.refused(t, []string{"--owl-lambda", "--allocation owl"}, "--owl-lambda", "0.1")
		f.refused(t, []string{"--dsnot-max-cycles", "--refine dsnot"}, "--dsnot-max-cycles", "10")
		f.refused(t, []string{"NaN"}, "--method", "ria", "--ria-a", "NaN")
	})
}
