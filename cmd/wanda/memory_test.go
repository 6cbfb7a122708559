package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/wanda-go/wanda/internal/modelgen"
	"github.com/wanda-go/wanda/internal/testenv"
	"github.com/wanda-go/wanda/pipeline"
)

// TestPruneMemoryBounded prunes a generated model whose weights are more than 4× the memory
// limit the run imposes on itself, and checks that its resident anonymous memory (heap,
// stacks: everything but the memory-mapped weight files, which the kernel can drop) stayed
// under that limit: the pipeline holds one layer at a time, not the model.
func TestPruneMemoryBounded(t *testing.T) {
	testenv.SkipIfRace(t)
	if testing.Short() {
		t.Skip("writes a 270 MB model; skipped with -short")
	}
	const limit = 64 << 20
	root := t.TempDir()
	model := filepath.Join(root, "model")
	opt := modelgen.Default()
	opt.Layers, opt.Hidden, opt.Intermediate, opt.Heads, opt.KVHeads = 16, 512, 2048, 8, 8
	opt.DType = "f32"
	if err := modelgen.Write(model, opt); err != nil {
		t.Fatal(err)
	}
	var weights int64
	ents, _ := os.ReadDir(model)
	for _, e := range ents {
		if filepath.Ext(e.Name()) == ".safetensors" {
			fi, _ := e.Info()
			weights += fi.Size()
		}
	}
	if weights < 4*limit {
		t.Fatalf("model weights %d bytes < 4× the limit %d", weights, limit)
	}
	calib := filepath.Join(root, "calib.jsonl")
	writeDemoCalib(t, calib)
	out := filepath.Join(root, "out")
	cmd := cliCommand(t, nil, "prune", "--model", model, "--out", out, "--method", "wanda", "--calib", calib,
		"--nsamples", "8", "--seqlen", "64", "--memory-limit", "40MiB", "--json")
	stdout, err := cmd.Output()
	if err != nil {
		t.Fatalf("prune: %v", err)
	}
	var rep pipeline.Report
	if err := json.Unmarshal(stdout, &rep); err != nil {
		t.Fatalf("report: %v\n%s", err, stdout)
	}
	t.Logf("weights %.1f MiB, limit %.0f MiB: peak RssAnon %.1f MiB, peak RSS (incl. mapped weights) %.1f MiB, %.1fs",
		float64(weights)/(1<<20), float64(limit)/(1<<20), float64(rep.PeakRSSAnon)/(1<<20), float64(rep.PeakRSS)/(1<<20), rep.Seconds)
	if rep.PeakRSSAnon == 0 {
		t.Skip("no /proc/self/status on this system: cannot measure")
	}
	if rep.PeakRSSAnon > limit {
		t.Errorf("peak anonymous RSS %d bytes exceeds the limit %d (weights are %d bytes)", rep.PeakRSSAnon, limit, weights)
	}
}
