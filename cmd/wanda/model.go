package main

import (
	"fmt"
	"path/filepath"

	"github.com/wanda-go/wanda/format/config"
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

func (m *fwdModel) Embed(ids []int32, dst []float32) error {
	return model.Embed(m.set, m.cfg, ids, dst)
}

func (m *fwdModel) LoadBlock(layer int) (pipeline.Block, error) {
	b, err := model.LoadBlockInto(m.last, m.set, m.cfg, layer)
	if err != nil {
		return nil, fmt.Errorf("load block: %w", err)
	}
	m.last = b
	return &fwdBlock{b: b, m: m}, nil
}

func (m *fwdModel) ReleaseBlock(layer int) {
	for _, p := range config.Linears {
		m.set.Release(config.LayerTensor(layer, p))
	}
}

type fwdBlock struct {
	b *model.Block
	m *fwdModel
}

func (b *fwdBlock) Forward(h []float32, nseq, seqlen int, tap pipeline.Tap) {
	b.b.Forward(h, nseq, seqlen, b.m.rope, model.Tap(tap), &b.m.scratch)
}

func (b *fwdBlock) Linear(p config.Part) pipeline.Matrix { return b.b.Linear(p) }
