package model

import (
	"math"
	"testing"

	"github.com/wanda-go/wanda/format/config"
	"github.com/wanda-go/wanda/format/safetensors"
	"github.com/wanda-go/wanda/model/arch"
)

// runModel embeds ids (one sequence per row of nseq), runs every block of the model of
// set and cfg and returns the model and the final hidden states.
func runModel(t testing.TB, set *safetensors.Set, cfg *config.Config, ids []int32, nseq, seqlen int) (*Model, []float32) {
	t.Helper()
	m, err := New(set, cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	h := make([]float32, len(ids)*cfg.HiddenSize)
	if err := m.Embed(ids, h); err != nil {
		t.Fatal(err)
	}
	for l := range cfg.NumLayers {
		b, err := m.LoadBlock(l, m.Weights())
		if err != nil {
			t.Fatal(err)
		}
		b.Forward(h, nseq, seqlen, nil)
	}
	return m, h
}

// TestTransformersLogits compares the logits of tiny-llama-a with those
// Hugging Face transformers computed in fp32 for the same input_ids.
func TestTransformersLogits(t *testing.T) {
	modelDir := sharedPath(t, "models/tiny-llama-a")
	refPath := sharedPath(t, "reference/tiny-llama-a/transformers_logits.safetensors")
	cfg, _, err := arch.LoadDir(modelDir)
	if err != nil {
		t.Fatal(err)
	}
	set, err := safetensors.OpenDir(modelDir)
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	ref, err := safetensors.Open(refPath)
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	it, ok := ref.Tensor("input_ids")
	if !ok {
		t.Fatal("input_ids missing")
	}
	ids64, err := it.Int64s()
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]int32, len(ids64))
	for i, v := range ids64 {
		ids[i] = int32(v)
	}
	lt, ok := ref.Tensor("logits")
	if !ok {
		t.Fatal("logits missing")
	}
	want, err := lt.Float32()
	if err != nil {
		t.Fatal(err)
	}
	T := len(ids)
	if len(want) != T*cfg.VocabSize {
		t.Fatalf("logits has %d values, want %d×%d", len(want), T, cfg.VocabSize)
	}
	m, h := runModel(t, set, cfg, ids, 1, T)
	head, err := m.Head()
	if err != nil {
		t.Fatal(err)
	}
	got := make([]float32, T*cfg.VocabSize)
	head.Logits(h, T, got)
	var maxd float64
	worst := 0
	for i := range got {
		d := math.Abs(float64(got[i]) - float64(want[i]))
		if !(d <= maxd) {
			maxd, worst = d, i
		}
	}
	t.Logf("tiny-llama-a, %d tokens: max |Δlogit| = %.3g (at token %d, vocab %d)", T, maxd, worst/cfg.VocabSize, worst%cfg.VocabSize)
	if !(maxd <= 1e-3) {
		t.Fatalf("max |Δlogit| = %g > 1e-3", maxd)
	}

	// The NLL of the sequence must equal the one computed from the reference logits.
	var wantNLL float64
	for p := 0; p < T-1; p++ {
		row := want[p*cfg.VocabSize : (p+1)*cfg.VocabSize]
		mx := math.Inf(-1)
		for _, v := range row {
			mx = math.Max(mx, float64(v))
		}
		var s float64
		for _, v := range row {
			s += math.Exp(float64(v) - mx)
		}
		wantNLL += mx + math.Log(s) - float64(row[ids[p+1]])
	}
	wantNLL /= float64(T - 1)
	gotNLL := head.NLL(h, ids, 1, T)[0]
	t.Logf("mean NLL %.7f, from reference logits %.7f", gotNLL, wantNLL)
	if math.Abs(gotNLL-wantNLL) > 1e-5 {
		t.Fatalf("mean NLL %g, from reference logits %g", gotNLL, wantNLL)
	}
}
