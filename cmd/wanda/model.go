package main

import (
	"github.com/wanda-go/wanda/format/config"
	"github.com/wanda-go/wanda/format/safetensors"
	"github.com/wanda-go/wanda/model"
	"github.com/wanda-go/wanda/model/arch"
)

// openModel opens a Hugging Face model directory: config.json, completed by its
// architecture's entry (an unsupported model_type is refused with the supported ones),
// and the safetensors weights.
func openModel(dir string) (*config.Config, *safetensors.Set, error) {
	cfg, _, err := arch.LoadDir(dir)
	if err != nil {
		return nil, nil, err
	}
	set, err := safetensors.OpenDir(dir)
	if err != nil {
		return nil, nil, err
	}
	return cfg, set, nil
}

// newModel is the network the pipeline computes with: package model's front door.
// moeStats is "all" or "routed" (see model.Options).
func newModel(set *safetensors.Set, cfg *config.Config, moeStats string) (*model.Model, error) {
	return model.New(set, cfg, model.Options{MoEStats: moeStats})
}
