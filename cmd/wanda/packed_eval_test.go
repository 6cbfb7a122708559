package main

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wanda-go/wanda/format/config"
	"github.com/wanda-go/wanda/format/safetensors"
	"github.com/wanda-go/wanda/format/sparse"
	"github.com/wanda-go/wanda/internal/modelgen"
	"github.com/wanda-go/wanda/stages/eval"
)

// packedEvalFixture is a generated model, a calibration file and an
// evaluation text in one temporary directory.
type packedEvalFixture struct {
	root, model, calib, text string
}

func newPackedEvalFixture(t *testing.T) *packedEvalFixture {
	t.Helper()
	root := t.TempDir()
	f := &packedEvalFixture{root: root, model: filepath.Join(root, "model"),
		calib: filepath.Join(root, "calib.jsonl"), text: filepath.Join(root, "eval.txt")}
	if err := modelgen.Write(f.model, modelgen.Default()); err != nil {
		t.Fatal(err)
	}
	writeDemoCalib(t, f.calib)
	if err := os.WriteFile(f.text, []byte(strings.Join(demoText, "\n\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

// prune runs wanda prune into root/name and returns that directory.
func (f *packedEvalFixture) prune(t *testing.T, name string, extra ...string) string {
	t.Helper()
	out := filepath.Join(f.root, name)
	args := append([]string{"prune", "--model", f.model, "--out", out, "--calib", f.calib,
		"--nsamples", "4", "--seqlen", "32"}, extra...)
	if _, err := inspRun(t, "", args...); err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	return out
}

// pack runs wanda pack of dir into root/name (several shards) and returns it.
func (f *packedEvalFixture) pack(t *testing.T, dir, name string, extra ...string) string {
	t.Helper()
	out := filepath.Join(f.root, name)
	args := append([]string{"pack", "--model", dir, "--out", out, "--max-shard-size", "60KB"}, extra...)
	if _, err := inspRun(t, "", args...); err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	return out
}

// ppl evaluates dir on the fixture's text and returns the perplexity.
func (f *packedEvalFixture) ppl(t *testing.T, dir string) float64 {
	t.Helper()
	out, err := inspRun(t, "", "eval", "--model", dir, "--data", f.text, "--format", "text", "--seqlen", "32", "--json")
	if err != nil {
		t.Fatalf("eval %s: %v", dir, err)
	}
	var r evalResultJSON
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("eval --json %q: %v", out, err)
	}
	if r.Windows < 3 || r.SeqLen != 32 || math.IsNaN(r.PPL) || math.IsInf(r.PPL, 0) || r.PPL <= 1 {
		t.Fatalf("eval %s: %+v", dir, r)
	}
	return r.PPL
}

// setPPL evaluates the dense dir with eval.Perplexity on a plain
// safetensors set (window 32, same tokenization as the CLI).
func setPPL(t *testing.T, dir, text string) float64 {
	t.Helper()
	cfg, err := config.Load(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	ids, err := tokenizeEvalText(dir, text, "text")
	if err != nil {
		t.Fatal(err)
	}
	set, err := safetensors.OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	res, err := eval.Perplexity(context.Background(), set, cfg, ids, eval.Options{SeqLen: 32})
	if err != nil {
		t.Fatal(err)
	}
	return res.PPL
}

// storedPacked checks that dir really stores its linears packed in format
// want: config.json names it and the files hold .compressed parts, not the
// dense linears.
func storedPacked(t *testing.T, dir string, want sparse.Format) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	sc, err := sparse.ReadSparsityConfig(b)
	if err != nil || sc == nil || sc.Format != want {
		t.Fatalf("%s: sparsity_config %+v (%v), want format %s", dir, sc, err, want)
	}
	set, err := safetensors.OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	compressed := 0
	for _, n := range set.Names() {
		if strings.HasSuffix(n, sparse.SuffixCompressed) {
			compressed++
		}
		if _, p, ok := config.ParseLayerTensor(n); ok && p.IsLinear() {
			t.Errorf("%s: linear %s is stored dense", dir, n)
		}
	}
	if compressed != 14 { // 2 layers × 7 linears
		t.Errorf("%s: %d packed tensors, want 14", dir, compressed)
	}
}

func TestPackedEvalEqualsDense(t *testing.T) {
	f := newPackedEvalFixture(t)
	base := f.ppl(t, f.model)

	// 2:4, packed afterwards as sparse-24-bitmask.
	dense24 := f.prune(t, "dense24", "--pattern", "2:4")
	packed24 := f.pack(t, dense24, "packed24")
	storedPacked(t, packed24, sparse.Format24)
	d24, p24 := f.ppl(t, dense24), f.ppl(t, packed24)
	t.Logf("ppl: original %.17g, 2:4 dense %.17g, 2:4 packed %.17g", base, d24, p24)
	if d24 != p24 {
		t.Errorf("2:4: packed ppl %.17g != dense ppl %.17g", p24, d24)
	}
	// The CLI reads a dense directory through pack.Open; the plain
	// safetensors path gives the same number.
	if got := setPPL(t, dense24, f.text); got != d24 {
		t.Errorf("2:4 dense: eval.Perplexity on the safetensors set %.17g, CLI %.17g", got, d24)
	}
	if d24 == base {
		t.Errorf("2:4 pruning left the perplexity unchanged (%.17g): eval did not see the pruned weights", base)
	}

	// Unstructured 50%, packed as sparse-bitmask.
	denseU := f.prune(t, "denseU", "--pattern", "unstructured", "--sparsity", "0.5")
	packedU := f.pack(t, denseU, "packedU", "--format", "sparse-bitmask")
	storedPacked(t, packedU, sparse.FormatBitmask)
	dU, pU := f.ppl(t, denseU), f.ppl(t, packedU)
	t.Logf("ppl: unstructured dense %.17g, packed %.17g", dU, pU)
	if dU != pU {
		t.Errorf("unstructured: packed ppl %.17g != dense ppl %.17g", pU, dU)
	}
	if dU == d24 {
		t.Errorf("unstructured and 2:4 give the same perplexity %.17g", dU)
	}

	// prune --pack writes what prune + pack would.
	direct24 := f.prune(t, "direct24", "--pattern", "2:4", "--pack")
	storedPacked(t, direct24, sparse.Format24)
	if got := f.ppl(t, direct24); got != d24 {
		t.Errorf("prune --pack 2:4: ppl %.17g != dense prune %.17g", got, d24)
	}
	directU := f.prune(t, "directU", "--pattern", "unstructured", "--sparsity", "0.5", "--pack")
	storedPacked(t, directU, sparse.FormatBitmask)
	if got := f.ppl(t, directU); got != dU {
		t.Errorf("prune --pack unstructured: ppl %.17g != dense prune %.17g", got, dU)
	}

	// inspect reads the packed directories through their dense view.
	for _, c := range []struct {
		dense, packed string
		format        sparse.Format
	}{{dense24, packed24, sparse.Format24}, {denseU, packedU, sparse.FormatBitmask}, {dense24, direct24, sparse.Format24}} {
		dr, pr := inspectJSON(t, c.dense), inspectJSON(t, c.packed)
		if dr.Format != string(sparse.FormatDense) || dr.SparsityConfig != nil || dr.PackedTensors != 0 {
			t.Errorf("%s: format %q, sparsity_config %+v, %d packed", c.dense, dr.Format, dr.SparsityConfig, dr.PackedTensors)
		}
		if pr.Format != string(c.format) || pr.SparsityConfig == nil || pr.SparsityConfig.Format != c.format || pr.PackedTensors != 14 {
			t.Errorf("%s: format %q, sparsity_config %+v, %d packed", c.packed, pr.Format, pr.SparsityConfig, pr.PackedTensors)
		}
		if len(pr.Problems) != 0 || len(dr.Problems) != 0 {
			t.Errorf("problems: dense %v, packed %v", dr.Problems, pr.Problems)
		}
		if len(dr.Tensors) != len(pr.Tensors) || dr.NumParams != pr.NumParams {
			t.Fatalf("%s: %d tensors, %d params; %s: %d, %d", c.dense, len(dr.Tensors), dr.NumParams, c.packed, len(pr.Tensors), pr.NumParams)
		}
		if dr.Prunable.Zeros != pr.Prunable.Zeros || dr.Prunable.Numel != pr.Prunable.Numel || dr.Prunable.All2of4 != pr.Prunable.All2of4 {
			t.Errorf("prunable totals: dense %+v, packed %+v", dr.Prunable, pr.Prunable)
		}
		if want := c.format == sparse.Format24; pr.Prunable.All2of4 != want {
			t.Errorf("%s: all 2:4 = %v", c.packed, pr.Prunable.All2of4)
		}
		for i, dt := range dr.Tensors {
			pt := pr.Tensors[i]
			_, part, linear := config.ParseLayerTensor(dt.Name)
			linear = linear && part.IsLinear()
			if pt.Name != dt.Name || pt.DType != dt.DType || !equalShape(pt.Shape, dt.Shape) || pt.Packed != linear {
				t.Errorf("tensor %d: dense %s %s %v, packed %s %s %v (packed %v)", i, dt.Name, dt.DType, dt.Shape, pt.Name, pt.DType, pt.Shape, pt.Packed)
				continue
			}
			if pt.Shard == "" || (dt.Sparsity == nil) != (pt.Sparsity == nil) {
				t.Errorf("%s: shard %q, sparsity dense %v packed %v", pt.Name, pt.Shard, dt.Sparsity, pt.Sparsity)
				continue
			}
			if dt.Sparsity != nil && *dt.Sparsity != *pt.Sparsity {
				t.Errorf("%s: dense %+v, packed %+v", dt.Name, *dt.Sparsity, *pt.Sparsity)
			}
		}
	}

	// The text report names the format and marks the packed tensors.
	text, err := inspRun(t, "", "inspect", "--model", packed24)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"sparse-24-bitmask", "14 tensors stored packed", "STORED"} {
		if !strings.Contains(text, want) {
			t.Errorf("inspect text lacks %q:\n%s", want, text)
		}
	}
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "model.layers.1.mlp.down_proj.weight") {
			if f := strings.Fields(line); len(f) < 10 || f[len(f)-2] != "packed" || f[len(f)-4] != "yes" {
				t.Errorf("down_proj line %q", line)
			}
		}
		if strings.HasPrefix(line, "model.embed_tokens.weight") {
			if f := strings.Fields(line); f[len(f)-2] != "dense" {
				t.Errorf("embed_tokens line %q", line)
			}
		}
	}
}
