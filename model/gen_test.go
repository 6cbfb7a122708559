package model

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/wanda-go/wanda/format/config"
	"github.com/wanda-go/wanda/format/safetensors"
	"github.com/wanda-go/wanda/internal/modelgen"
	"github.com/wanda-go/wanda/model/arch"
)

// TestGenModels runs the fixture generator's models (with outlier channels,
// sharded files, every dtype and rope variant) against the naive model.
func TestGenModels(t *testing.T) {
	cases := []struct {
		name string
		opt  modelgen.Options
	}{
		{"default-gqa-bf16", modelgen.Options{}},
		{"f16-sharded", modelgen.Options{DType: "f16", MaxShardBytes: 64 << 10, Seed: 1}},
		{"f32-tied-mha", modelgen.Options{DType: "f32", Tied: true, KVHeads: 4, Seed: 2}},
		{"qwen2", modelgen.Options{Arch: config.TypeQwen2, Seed: 3}},
		{"mistral", modelgen.Options{Arch: config.TypeMistral, Seed: 4}},
		{"llama3-rope", modelgen.Options{RopeScaling: "llama3", MaxPos: 64, Seed: 5}},
		{"linear-rope", modelgen.Options{RopeScaling: "linear", Seed: 6}},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := modelgen.Write(dir, c.opt); err != nil {
				t.Fatal(err)
			}
			cfg, _, err := arch.LoadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			set, err := safetensors.OpenDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer set.Close()
			m := &naiveModel{cfg: cfg, w: map[string][]float64{}}
			for _, name := range set.Names() {
				tt, _ := set.Tensor(name)
				v, err := tt.Float32()
				if err != nil {
					t.Fatal(err)
				}
				f := make([]float64, len(v))
				for j, x := range v {
					f[j] = float64(x)
				}
				m.w[name] = f
			}
			window := 0
			if cfg.ModelType == config.TypeMistral {
				window = cfg.SlidingWindow
			}
			const nseq, T = 2, 45
			ids := randIDs(rand.New(rand.NewPCG(uint64(i), 3)), nseq*T, cfg.VocabSize)
			mod, h := runModel(t, set, cfg, ids, nseq, T)
			head, err := mod.Head()
			if err != nil {
				t.Fatal(err)
			}
			V := cfg.VocabSize
			got := make([]float32, len(ids)*V)
			head.Logits(h, len(ids), got)
			var worst float64
			for s := range nseq {
				want := m.naiveLogits(ids[s*T:(s+1)*T], func(int) int { return window })
				flat := make([]float64, 0, T*V)
				for _, row := range want {
					flat = append(flat, row...)
				}
				worst = math.Max(worst, relErr(got[s*T*V:(s+1)*T*V], flat))
			}
			t.Logf("%s: max relative logit error %.2g", cfg, worst)
			if worst > 1e-4 {
				t.Errorf("logits differ from the naive model by %.3g (relative)", worst)
			}
		})
	}
}
