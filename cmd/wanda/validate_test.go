package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wanda-go/wanda/format/safetensors"
	"github.com/wanda-go/wanda/internal/modelgen"
	"github.com/wanda-go/wanda/pipeline"
)

// TestPruneChecksEveryTensorFirst: a checkpoint that contradicts config.json anywhere — a
// copied-only tensor of the wrong shape, or decoder layers beyond num_hidden_layers — is
// refused before any work, naming the file and the tensor. (Before, prune copied the bad
// model.norm.weight and wrote an output transformers cannot load, or silently dropped the
// extra layer.)
func TestPruneChecksEveryTensorFirst(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "model")
	if err := modelgen.Write(dir, modelgen.Default()); err != nil {
		t.Fatal(err)
	}

	// model.norm.weight one element short.
	bad := filepath.Join(root, "badnorm")
	if err := os.CopyFS(bad, os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}
	set, err := safetensors.OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var specs []safetensors.Spec
	var data [][]byte
	for _, n := range set.Names() {
		tt, _ := set.Tensor(n)
		b, shape := tt.Bytes(), tt.Shape
		if n == "model.norm.weight" {
			b, shape = b[:len(b)-tt.DType.Size()], []int64{shape[0] - 1}
		}
		specs = append(specs, safetensors.Spec{Name: n, DType: tt.DType, Shape: shape})
		data = append(data, b)
	}
	if err := safetensors.WriteFile(filepath.Join(bad, "model.safetensors"), specs, data, map[string]string{"format": "pt"}); err != nil {
		t.Fatal(err)
	}
	set.Close()
	out := filepath.Join(root, "out")
	_, err = inspRun(t, "", "prune", "--model", bad, "--out", out, "--method", "magnitude")
	if !errors.Is(err, pipeline.ErrShape) || !strings.Contains(err.Error(), `"model.norm.weight"`) || !strings.Contains(err.Error(), "model.safetensors") {
		t.Errorf("wrong norm shape: %v", err)
	}

	// num_hidden_layers 1 for a checkpoint of 2 layers.
	short := filepath.Join(root, "short")
	if err := os.CopyFS(short, os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}
	cfg, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	fixed := strings.Replace(string(cfg), `"num_hidden_layers": 2`, `"num_hidden_layers": 1`, 1)
	if fixed == string(cfg) {
		t.Fatalf("config.json has no num_hidden_layers 2: %s", cfg)
	}
	os.WriteFile(filepath.Join(short, "config.json"), []byte(fixed), 0o644)
	_, err = inspRun(t, "", "prune", "--model", short, "--out", out, "--method", "magnitude")
	if err == nil || !strings.Contains(err.Error(), "belongs to layer 1, but config.json has num_hidden_layers 1") {
		t.Errorf("extra layer: %v", err)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Error("an output was written")
	}
}
