package model

import (
	"fmt"
	"github.com/wanda-go/wanda/format/config"

	"github.com/wanda-go/wanda/model/arch"
	"github.com/wanda-go/wanda/pipeline"
	"github.com/wanda-go/wanda/tensor"
)

// moeWeights are a sparse layer's router and experts.
type moeWeights struct{}

type moeScratch struct{}

func (m *Model) loadMoE(e *arch.MoE, mat func(string) (tensor.Mat, error), loadMLP func(*arch.MLP) (*mlpWeights, error)) (*moeWeights, error) {
	return nil, fmt.Errorf("%s experts: %w: not computed yet", m.cfg.ModelType, ErrUnsupported)
}

func (b *Block) moeForward(x []float32, rows int, tap pipeline.Tap, statsOnly bool) []float32 {
	panic("model: experts not computed yet")
}

func moeFloatsPerToken(cfg *config.Config) int { return 0 }
