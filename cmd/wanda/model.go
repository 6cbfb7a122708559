package main

import (
	"fmt"
	"path/filepath"

	"github.com/wanda-go/wanda/format/config"
	"github.com/wanda-go/wanda/format/dtype"
	"github.com/wanda-go/wanda/format/safetensors"
	"github.com/wanda-go/wanda/model"
	"github.com/wanda-go/wanda/pipeline"
)

// openModel opens a Hugging Face model directory: config.json and the safetensors weights.
func openModel(dir string) (*config.Config, *safetensors.Set, error) {
	cfg, err := config.Load(filepath.Join(dir, "config.json"))
	if err != nil {
		return nil, nil, err
	}
	set, err := safetensors.OpenDir(dir)
	if err != nil {
		return nil, nil, err
	}
	return cfg, set, nil
}

// fwdModel adapts package model to the pipeline's Model interface.
type fwdModel struct {
	set     *safetensors.Set
	cfg     *config.Config
	rope    *model.Rope
	scratch model.Scratch
	// last is the previous layer's block: its buffers are reused for the next layer, so a
	// layer's fp32 weights are allocated once per run, not once per layer.
	last *model.Block
}

func newFwdModel(set *safetensors.Set, cfg *config.Config, seqlen int) *fwdModel {
	return &fwdModel{set: set, cfg: cfg, rope: model.NewRope(cfg, max(seqlen, 1))}
}

func (m *fwdModel) Config() *config.Config { return m.cfg }

// tapInput numbers the four distinct linear inputs of a LLaMA-family layer.
var tapInput = map[config.Part]int{config.PartQ: 0, config.PartO: 1, config.PartGate: 2, config.PartDown: 3}

func (m *fwdModel) Layer(l int) pipeline.LayerSpec {
	spec := pipeline.LayerSpec{Index: l, Inputs: []string{"attn", "o", "mlp", "down"}}
	for _, p := range config.Linears {
		rows, cols := m.cfg.LinearShape(p)
		in := map[config.Part]int{config.PartQ: 0, config.PartK: 0, config.PartV: 0, config.PartO: 1,
			config.PartGate: 2, config.PartUp: 2, config.PartDown: 3}[p]
		name := config.LayerTensor(l, p)
		spec.Linears = append(spec.Linears, pipeline.LinearSpec{Name: name, Module: name[:len(name)-len(".weight")],
			Rows: rows, Cols: cols, Input: in, Expert: -1, Prune: true})
	}
	return spec
}

func (m *fwdModel) Embed(ids []int32, dst []float32) error {
	return model.Embed(m.set, m.cfg, ids, dst)
}

func (m *fwdModel) LoadBlock(layer int, w pipeline.Weights) (pipeline.Block, error) {
	b, err := model.LoadBlockIntoFrom(m.last, weightsSource{set: m.set, w: w}, m.cfg, layer)
	if err != nil {
		return nil, fmt.Errorf("load block: %w", err)
	}
	m.last = b
	return &fwdBlock{b: b, m: m}, nil
}

func (m *fwdModel) ReleaseBlock(layer int) {
	for _, p := range m.cfg.LayerParts() {
		m.set.Release(config.LayerTensor(layer, p))
	}
}

// weightsSource reads a block's tensors from pipeline Weights (shapes and dtypes, which
// pruning does not change, from the set).
type weightsSource struct {
	set *safetensors.Set
	w   pipeline.Weights
}

func (s weightsSource) DType(name string) (dtype.DType, bool) {
	return model.SetSource(s.set).DType(name)
}
func (s weightsSource) Shape(name string) ([]int64, bool) { return model.SetSource(s.set).Shape(name) }
func (s weightsSource) Release(name string)               {}
func (s weightsSource) Bytes(name string) ([]byte, error) {
	m, err := s.w.Mat(name)
	if err != nil {
		return nil, err
	}
	return m.Raw, nil
}

type fwdBlock struct {
	b *model.Block
	m *fwdModel
}

func tapOf(tap pipeline.Tap) model.Tap {
	if tap == nil {
		return nil
	}
	return func(p config.Part, x []float32, rows, cols int) { tap(tapInput[p], x, rows, cols) }
}

func (b *fwdBlock) Forward(h []float32, nseq, seqlen int, tap pipeline.Tap) {
	b.b.Forward(h, nseq, seqlen, b.m.rope, tapOf(tap), &b.m.scratch)
}

func (b *fwdBlock) ForwardStats(h []float32, nseq, seqlen int, tap pipeline.Tap) {
	b.b.ForwardStats(h, nseq, seqlen, b.m.rope, tapOf(tap), &b.m.scratch)
}
