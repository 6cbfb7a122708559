package pipeline_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/wanda-go/wanda/format/safetensors"
	"github.com/wanda-go/wanda/internal/modelgen"
	"github.com/wanda-go/wanda/model"
	"github.com/wanda-go/wanda/model/arch"
	"github.com/wanda-go/wanda/pipeline"
	_ "github.com/wanda-go/wanda/stages/metric" // registers wanda, magnitude, ria
	_ "github.com/wanda-go/wanda/stages/pattern"
)

// Prune a model directory with Wanda, 50% unstructured, and write the pruned model.
func ExampleRun() {
	dir, err := os.MkdirTemp("", "wanda-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	src := filepath.Join(dir, "model")
	if err := modelgen.Write(src, modelgen.Default()); err != nil { // a tiny random LLaMA
		panic(err)
	}

	cfg, _, err := arch.LoadDir(src) // config.json, completed by its architecture's entry
	if err != nil {
		panic(err)
	}
	set, err := safetensors.OpenDir(src) // the weights, memory-mapped
	if err != nil {
		panic(err)
	}
	defer set.Close()
	m, err := model.New(set, cfg, model.Options{})
	if err != nil {
		panic(err)
	}
	target := pipeline.Target{Sparsity: 0.5}
	method, err := pipeline.BuiltinMethod("wanda", target, nil)
	if err != nil {
		panic(err)
	}
	calib := [][]int32{{1, 20, 30, 40, 50, 60, 70, 80}, {2, 21, 31, 41, 51, 61, 71, 81}} // token windows
	rep, err := pipeline.Run(context.Background(), pipeline.Options{
		Model: m, Source: set, ModelDir: src, Calib: calib, Method: method, Target: target,
		OutDir: filepath.Join(dir, "pruned"),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		panic(err)
	}
	fmt.Printf("%s %s: %d tensors, global sparsity %.2f\n", rep.Method, rep.Pattern, len(rep.Tensors), rep.GlobalSparsity)
	// Output: wanda unstructured: 14 tensors, global sparsity 0.50
}
