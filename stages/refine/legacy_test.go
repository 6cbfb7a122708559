package refine

import (
	"testing"

	"github.com/wanda-go/wanda/format/config"
	"github.com/wanda-go/wanda/format/safetensors"
	"github.com/wanda-go/wanda/model"
	"github.com/wanda-go/wanda/pipeline"
)

// testModel runs tiny-llama-a for these tests through package model, with taps named by
// the LLaMA parts (q for q/k/v's input, o, gate for gate/up's input, down) and fp32 views
// of the linear weights.
type testModel struct {
	m   *model.Model
	set *safetensors.Set
	cfg *config.Config
}

func newTestModel(t testing.TB, set *safetensors.Set, cfg *config.Config) *testModel {
	t.Helper()
	m, err := model.New(set, cfg, model.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return &testModel{m: m, set: set, cfg: cfg}
}

func (tm *testModel) embed(ids []int32, h []float32) error { return tm.m.Embed(ids, h) }

type testBlock struct {
	b  pipeline.Block
	tm *testModel
	l  int
}

func (tm *testModel) block(l int) (*testBlock, error) {
	b, err := tm.m.LoadBlock(l, pipeline.SetWeights(tm.set))
	if err != nil {
		return nil, err
	}
	return &testBlock{b: b, tm: tm, l: l}, nil
}

var tapParts = []config.Part{config.PartQ, config.PartO, config.PartGate, config.PartDown}

func (b *testBlock) Forward(h []float32, nseq, seqlen int, tap func(p config.Part, x []float32, rows, cols int)) {
	var pt pipeline.Tap
	if tap != nil {
		pt = func(in int, x []float32, rows, cols int) { tap(tapParts[in], x, rows, cols) }
	}
	b.b.Forward(h, nseq, seqlen, pt)
}

// Linear is linear p of the block's layer widened to fp32.
func (b *testBlock) Linear(p config.Part) pipeline.Matrix {
	name := config.LayerTensor(b.l, p)
	t, err := b.tm.set.Get(name)
	if err != nil {
		panic(err)
	}
	mat, err := pipeline.TensorMat(name, t.DType, t.Shape, t.Bytes())
	if err != nil {
		panic(err)
	}
	w := pipeline.NewMatrix(mat.Rows, mat.Cols)
	mat.RowsF32(w.Data, 0, mat.Rows)
	return w
}
