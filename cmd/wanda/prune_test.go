package main

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wanda-go/wanda/format/config"
	"github.com/wanda-go/wanda/format/safetensors"
	"github.com/wanda-go/wanda/internal/modelgen"
	"github.com/wanda-go/wanda/pipeline"
)

func genTiny(t *testing.T, opt modelgen.Options) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "model")
	if err := modelgen.Write(dir, opt); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestPruneUsageErrors(t *testing.T) {
	model := genTiny(t, modelgen.Default())
	root := t.TempDir()
	calib := filepath.Join(root, "calib.jsonl")
	writeDemoCalib(t, calib)
	empty := filepath.Join(root, "empty.jsonl")
	os.WriteFile(empty, nil, 0o644)
	short := filepath.Join(root, "short.jsonl")
	os.WriteFile(short, []byte(`{"text": "too short"}`+"\n"), 0o644)
	exists := filepath.Join(root, "exists")
	os.Mkdir(exists, 0o755)
	out := filepath.Join(root, "out")
	base := []string{"prune", "--model", model, "--out", out}
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"sparsity above range", []string{"--method", "magnitude", "--sparsity", "1.2"}, "out of range"},
		{"negative sparsity", []string{"--method", "magnitude", "--sparsity", "-0.1"}, "out of range"},
		{"N >= M", []string{"--method", "magnitude", "--pattern", "4:4"}, "0 < N < M"},
		{"bad pattern", []string{"--method", "magnitude", "--pattern", "half"}, "want unstructured or N:M"},
		{"width not divisible by M", []string{"--method", "magnitude", "--pattern", "2:7"}, "not divisible"},
		{"variant with N:M", []string{"--pattern", "2:4", "--variant", "--calib", calib}, "--variant"},
		{"sparsity conflicts with N:M", []string{"--method", "magnitude", "--pattern", "2:4", "--sparsity", "0.7"}, "conflicts"},
		{"unknown method", []string{"--method", "obs"}, "obs"},
		{"no calibration", []string{"--method", "wanda"}, "needs calibration data"},
		{"both calibrations", []string{"--calib", calib, "--calib-tokens", calib, "--calib-key", "x"}, "not both"},
		{"tokens without key", []string{"--calib-tokens", calib}, "--calib-key"},
		{"empty calibration file", []string{"--calib", empty, "--seqlen", "32"}, "empty.jsonl"},
		{"no long document", []string{"--calib", short, "--seqlen", "32"}, "longer than"},
		{"output exists", []string{"--method", "magnitude", "--out", exists}, "already exists"},
		{"bad group", []string{"--method", "magnitude", "--group", "diagonal"}, "diagonal"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := inspRun(t, "", append(append([]string{}, base...), tc.args...)...)
			if err == nil {
				t.Fatalf("no error")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not mention %q", err, tc.want)
			}
			if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("output directory was created")
			}
		})
	}
}

// TestPruneOutputDirectory checks what a pruned directory holds, on a sharded generated model.
func TestPruneOutputDirectory(t *testing.T) {
	opt := modelgen.Default()
	opt.MaxShardBytes = 64 << 10
	model := genTiny(t, opt)
	root := t.TempDir()
	calib := filepath.Join(root, "calib.jsonl")
	writeDemoCalib(t, calib)
	out := filepath.Join(root, "pruned")
	stdout, err := inspRun(t, "", "prune", "--model", model, "--out", out, "--calib", calib, "--nsamples", "4",
		"--seqlen", "32", "--pattern", "2:4", "--max-shard-size", "64KiB", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var rep pipeline.Report
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Tensors) != 7*opt.Layers || rep.Pattern != "2:4" || rep.Calibration == nil || rep.Calibration.Windows != 4 {
		t.Fatalf("report: %d tensors, pattern %q, calibration %+v", len(rep.Tensors), rep.Pattern, rep.Calibration)
	}
	for _, f := range []string{"config.json", "tokenizer.json", "generation_config.json", "model.safetensors.index.json",
		"wanda_report.json", "sparsity_masks.safetensors", "lora-template/adapter_config.json"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Errorf("output lacks %s: %v", f, err)
		}
	}
	ents, _ := os.ReadDir(root)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("temporary %s left behind", e.Name())
		}
	}
	src, err := safetensors.OpenDir(model)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := safetensors.OpenDir(out)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	if len(dst.Shards()) < 2 {
		t.Errorf("output has %d shards, want several at 64KiB", len(dst.Shards()))
	}
	for _, name := range src.Names() {
		a, _ := src.Tensor(name)
		b, ok := dst.Tensor(name)
		if !ok {
			t.Fatalf("%s missing from the output", name)
		}
		if a.DType != b.DType || !equalShape(a.Shape, b.Shape) {
			t.Fatalf("%s: %s %v -> %s %v", name, a.DType, a.Shape, b.DType, b.Shape)
		}
		_, p, isLayer := config.ParseLayerTensor(name)
		if !isLayer || !p.IsLinear() {
			if string(a.Bytes()) != string(b.Bytes()) {
				t.Errorf("untouched tensor %s changed", name)
			}
			continue
		}
		// Every group of 4 has >= 2 zeros, they are +0.0, and kept weights are unchanged.
		wa, _ := a.Float32()
		wb, _ := b.Float32()
		raw := b.Bytes()
		for k := 0; k < len(wb); k += 4 {
			z := 0
			for j := k; j < k+4; j++ {
				if wb[j] == 0 {
					z++
					if raw[2*j] != 0 || raw[2*j+1] != 0 {
						t.Fatalf("%s: pruned entry %d is not +0.0", name, j)
					}
				} else if wb[j] != wa[j] {
					t.Fatalf("%s: kept entry %d changed %g -> %g", name, j, wa[j], wb[j])
				}
			}
			if z < 2 {
				t.Fatalf("%s: group at %d has %d zeros", name, k, z)
			}
		}
	}
}

// TestActivationScratchFile: with an activation budget too small for RAM the activations live
// in a memory-mapped scratch file; the pruned model is the same, and the file is gone afterwards.
func TestActivationScratchFile(t *testing.T) {
	model := genTiny(t, modelgen.Default())
	root := t.TempDir()
	calib := filepath.Join(root, "calib.jsonl")
	writeDemoCalib(t, calib)
	scratch := filepath.Join(root, "scratch")
	os.Mkdir(scratch, 0o755)
	outs := map[string]string{}
	for _, budget := range []string{"4GiB", "1KiB"} {
		out := filepath.Join(root, "out-"+budget)
		stdout, err := inspRun(t, "", "prune", "--model", model, "--out", out, "--calib", calib, "--nsamples", "6",
			"--seqlen", "40", "--activation-budget", budget, "--scratch-dir", scratch, "--chunk-tokens", "80", "--json")
		if err != nil {
			t.Fatal(err)
		}
		var rep pipeline.Report
		if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
			t.Fatal(err)
		}
		want := map[string]string{"4GiB": "ram", "1KiB": "scratch-file"}[budget]
		if rep.ActivationsOn != want {
			t.Errorf("budget %s: activations in %q, want %q", budget, rep.ActivationsOn, want)
		}
		outs[budget] = out
	}
	a, b := modelFiles(t, outs["4GiB"]), modelFiles(t, outs["1KiB"])
	for name, data := range a {
		if string(b[name]) != string(data) {
			t.Errorf("%s differs between RAM and scratch-file activations", name)
		}
	}
	if ents, _ := os.ReadDir(scratch); len(ents) != 0 {
		t.Errorf("scratch directory not empty: %d entries", len(ents))
	}
}
