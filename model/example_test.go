package model_test

import (
	"fmt"
	"math"
	"os"

	"github.com/wanda-go/wanda/format/safetensors"
	"github.com/wanda-go/wanda/internal/modelgen"
	"github.com/wanda-go/wanda/model"
	"github.com/wanda-go/wanda/model/arch"
	"github.com/wanda-go/wanda/pipeline"
)

// New opens any architecture of the table; Layer says which linears a decoder layer
// has, which are pruned, and which tap sees each one's input.
func ExampleNew() {
	dir, _ := os.MkdirTemp("", "example-")
	defer os.RemoveAll(dir)
	if err := modelgen.Write(dir, modelgen.Options{Arch: "qwen2_moe", Experts: 2, Intermediate: 64}); err != nil {
		panic(err)
	}
	cfg, _, err := arch.LoadDir(dir)
	if err != nil {
		panic(err)
	}
	set, err := safetensors.OpenDir(dir)
	if err != nil {
		panic(err)
	}
	defer set.Close()
	m, err := model.New(set, cfg, model.Options{MoEStats: model.MoEStatsRouted})
	if err != nil {
		panic(err)
	}
	spec := m.Layer(0)
	for _, lin := range spec.Linears {
		fmt.Printf("%-44s %3d×%-3d prune=%-5v input=%s\n", lin.Module, lin.Rows, lin.Cols, lin.Prune, spec.Inputs[lin.Input])
	}
	// Output:
	// model.layers.0.self_attn.q_proj               64×64  prune=true  input=attn
	// model.layers.0.self_attn.k_proj               32×64  prune=true  input=attn
	// model.layers.0.self_attn.v_proj               32×64  prune=true  input=attn
	// model.layers.0.self_attn.o_proj               64×64  prune=true  input=o
	// model.layers.0.mlp.gate                        2×64  prune=false input=mlp
	// model.layers.0.mlp.experts.0.gate_proj        32×64  prune=true  input=experts.0.in
	// model.layers.0.mlp.experts.0.up_proj          32×64  prune=true  input=experts.0.in
	// model.layers.0.mlp.experts.0.down_proj        64×32  prune=true  input=experts.0.act
	// model.layers.0.mlp.experts.1.gate_proj        32×64  prune=true  input=experts.1.in
	// model.layers.0.mlp.experts.1.up_proj          32×64  prune=true  input=experts.1.in
	// model.layers.0.mlp.experts.1.down_proj        64×32  prune=true  input=experts.1.act
	// model.layers.0.mlp.shared_expert.gate_proj    64×64  prune=true  input=mlp
	// model.layers.0.mlp.shared_expert.up_proj      64×64  prune=true  input=mlp
	// model.layers.0.mlp.shared_expert.down_proj    64×64  prune=true  input=down
	// model.layers.0.mlp.shared_expert_gate          1×64  prune=false input=mlp
}

// The front door: open a Hugging Face model directory (config.json + safetensors) and get
// the pipeline.Model that pipeline.Run prunes and the evaluator streams. Here it computes
// the perplexity of two sequences, one decoder block at a time.
func ExampleNew_forward() {
	dir, _ := os.MkdirTemp("", "example-")
	defer os.RemoveAll(dir)
	if err := modelgen.Write(dir, modelgen.Options{Seed: 1}); err != nil { // a tiny random LLaMA
		panic(err)
	}

	cfg, _, err := arch.LoadDir(dir) // config.json, completed by the architecture table
	if err != nil {
		panic(err)
	}
	set, err := safetensors.OpenDir(dir) // memory-mapped weights, sharded or not
	if err != nil {
		panic(err)
	}
	defer set.Close()
	m, err := model.New(set, cfg, model.Options{})
	if err != nil {
		panic(err)
	}
	var pm pipeline.Model = m // what pipeline.Options.Model takes
	fmt.Println(cfg.ModelType, cfg.NumLayers, "layers, hidden", cfg.HiddenSize, "vocab", cfg.VocabSize)

	const nseq, seqlen = 2, 16
	ids := make([]int32, nseq*seqlen)
	for i := range ids {
		ids[i] = int32(1 + i*7%(cfg.VocabSize-1))
	}
	h := make([]float32, len(ids)*cfg.HiddenSize) // [nseq·seqlen, hidden]
	if err := pm.Embed(ids, h); err != nil {
		panic(err)
	}
	for l := range cfg.NumLayers {
		b, err := pm.LoadBlock(l, m.Weights()) // the layer's weights, in their stored dtype
		if err != nil {
			panic(err)
		}
		b.Forward(h, nseq, seqlen, nil) // in place; a pipeline.Tap would see each linear's input
		pm.ReleaseBlock(l)
	}
	head, err := m.Head()
	if err != nil {
		panic(err)
	}
	var sum float64
	for _, nll := range head.NLL(h, ids, nseq, seqlen) { // mean NLL of each sequence
		sum += nll
	}
	ppl := math.Exp(sum / nseq)
	fmt.Printf("perplexity %.0f (a random model: about the vocabulary size)\n", ppl)
	// Output:
	// llama 2 layers, hidden 64 vocab 576
	// perplexity 588 (a random model: about the vocabulary size)
}
