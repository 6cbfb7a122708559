package allocate

import (
	"math"
	"path/filepath"
	"testing"

	"github.com/wanda-go/wanda/format/config"
	"github.com/wanda-go/wanda/format/safetensors"
	"github.com/wanda-go/wanda/internal/testenv"
)

// sumSqs are per-layer, per-linear Wanda statistics (1/N)·Σ x² of the linear's input.
type sumSqs [][config.PartDown + 1][]float32

// denseSumSq runs the dense model on tiny-llama-a's 128 calibration windows (reference.
// safetensors calib_input_ids, the windows OWL calibrated on) and returns the Wanda
// statistics two ways: accumulated in float64 and rounded to float32 (as the pipeline does
// today), and as OWL's WrappedGPT accumulates them, a float32 running average over the
// sequences of float32 squared norms (norm summed token by token in float32). OWL's pre-pass
// runs the dense model: nothing is pruned, dense outputs feed the next layer.
func denseSumSq(t *testing.T) (*config.Config, []*testBlock, map[string]sumSqs) {
	t.Helper()
	dir := testenv.SharedPath(t, "models/tiny-llama-a")
	cfg, err := config.Load(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	set, err := safetensors.OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { set.Close() })
	ref, err := safetensors.Open(testenv.SharedPath(t, "reference/tiny-llama-a/reference.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	it, ok := ref.Tensor("calib_input_ids")
	if !ok || len(it.Shape) != 2 {
		t.Fatal("calib_input_ids missing or not 2-D")
	}
	ids64, err := it.Int64s()
	if err != nil {
		t.Fatal(err)
	}
	nseq, seqlen := int(it.Shape[0]), int(it.Shape[1])
	ids := make([]int32, len(ids64))
	for i, v := range ids64 {
		ids[i] = int32(v)
	}
	blocks := make([]*testBlock, cfg.NumLayers)
	for l := range blocks {
		if blocks[l], err = newTestModel(t, set, cfg).block(l); err != nil {
			t.Fatal(err)
		}
	}
	sums := make([]map[config.Part][]float64, cfg.NumLayers)
	run := make([]map[config.Part][]float32, cfg.NumLayers)
	seen := make([]map[config.Part]int, cfg.NumLayers)
	for l := range sums {
		sums[l] = map[config.Part][]float64{}
		run[l] = map[config.Part][]float32{}
		seen[l] = map[config.Part]int{}
	}
	var sq32 []float32
	const chunk = 16
	h := make([]float32, chunk*seqlen*cfg.HiddenSize)
	for s0 := 0; s0 < nseq; s0 += chunk {
		n := min(chunk, nseq-s0)
		if err := newTestModel(t, set, cfg).embed(ids[s0*seqlen:(s0+n)*seqlen], h); err != nil {
			t.Fatal(err)
		}
		for l, b := range blocks {
			acc := sums[l]
			b.Forward(h, n, seqlen, func(p config.Part, x []float32, rows, cols int) {
				s := acc[p]
				if s == nil {
					s = make([]float64, cols)
					acc[p] = s
				}
				for r := range rows {
					for j, v := range x[r*cols : (r+1)*cols] {
						s[j] += float64(v) * float64(v)
					}
				}
				rs := run[l][p]
				if rs == nil {
					rs = make([]float32, cols)
					run[l][p] = rs
				}
				if cap(sq32) < cols {
					sq32 = make([]float32, cols)
				}
				sq32 = sq32[:cols]
				for q := range rows / seqlen {
					clear(sq32)
					for r := q * seqlen; r < (q+1)*seqlen; r++ {
						for j, v := range x[r*cols : (r+1)*cols] {
							sq32[j] += float32(v * v)
						}
					}
					n := seen[l][p] + 1
					f := float32(float64(n-1) / float64(n))
					for j, v := range sq32 {
						nr := float32(math.Sqrt(float64(v)))
						rs[j] = float32(rs[j]*f) + float32(nr*nr)/float32(n)
					}
					seen[l][p] = n
				}
			})
		}
	}
	out := make(sumSqs, cfg.NumLayers)
	out32 := make(sumSqs, cfg.NumLayers)
	for l := range out {
		for _, p := range config.Linears {
			tap := p
			switch p {
			case config.PartK, config.PartV:
				tap = config.PartQ
			case config.PartUp:
				tap = config.PartGate
			}
			s := sums[l][tap]
			out[l][p] = make([]float32, len(s))
			for j, v := range s {
				out[l][p][j] = float32(v / float64(nseq))
			}
			out32[l][p] = run[l][tap]
		}
	}
	return cfg, blocks, map[string]sumSqs{"float64": out, "float32 running": out32}
}

// TestOWLReferenceOutliers is OWL's pre-pass end to end on tiny-llama-a: dense forward,
// Wanda scores |W|·sqrt(SumSq) of the seven linears of each layer streamed row by row
// through an OutlierCounter, then Allocate. The counts must be the ones behind OWL's printed
// ratios, and the per-layer sparsities OWL's targets bit for bit.
func TestOWLReferenceOutliers(t *testing.T) {
	if testing.Short() {
		t.Skip("dense forward of tiny-llama-a over 128×512 tokens (-short)")
	}
	runs := loadOWLRuns(t)
	cfg, blocks, modes := denseSumSq(t)
	for mode, sumsq := range modes {
		t.Run(mode, func(t *testing.T) { checkOWLOutliers(t, cfg, blocks, sumsq, runs) })
	}
}

func checkOWLOutliers(t *testing.T, cfg *config.Config, blocks []*testBlock, sumsq sumSqs, runs []owlRun) {
	o := DefaultOWL()
	layers := make([]Outliers, cfg.NumLayers)
	for l, b := range blocks {
		c := NewOutlierCounter(o.M)
		row := make([]float32, 0, cfg.IntermediateSize)
		for pass := range 2 {
			for _, p := range config.Linears {
				w := b.Linear(p)
				norm := make([]float32, w.Cols)
				for j, s := range sumsq[l][p] {
					norm[j] = float32(math.Sqrt(float64(s)))
				}
				for i := range w.Rows {
					row = row[:w.Cols]
					for j, v := range w.Row(i) {
						row[j] = float32(math.Abs(float64(v))) * norm[j]
					}
					var err error
					if pass == 0 {
						err = c.AddSum(row)
					} else {
						err = c.AddCount(row)
					}
					if err != nil {
						t.Fatal(err)
					}
				}
			}
			if pass == 0 {
				if _, err := c.Threshold(); err != nil {
					t.Fatal(err)
				}
			}
		}
		var err error
		if layers[l], err = c.Outliers(); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range runs {
		if len(r.Ratios) != len(layers) {
			t.Fatalf("owl %v: %d ratios for %d layers", r.Sparsity, len(r.Ratios), len(layers))
		}
		for l, got := range layers {
			want := int64(math.Round(r.Ratios[l] / 100 * float64(got.Total)))
			if got.Above != want || got.Ratio() != r.Ratios[l] {
				t.Errorf("owl %v layer %d: %d of %d scores above %v×mean (%v%%), OWL: %d (%v%%)",
					r.Sparsity, l, got.Above, got.Total, o.M, got.Ratio(), want, r.Ratios[l])
			}
		}
		a, err := o.Allocate(layers, r.Sparsity)
		if err != nil {
			t.Fatal(err)
		}
		for l, s := range a.Sparsities {
			if d := s - r.Sparsities[l]; math.Abs(d) > 1e-6 {
				t.Errorf("owl %v layer %d: sparsity %v, OWL %v (Δ %g > 1e-6)", r.Sparsity, l, s, r.Sparsities[l], d)
			} else if d != 0 {
				t.Logf("owl %v layer %d: sparsity %v, OWL %v (Δ %g)", r.Sparsity, l, s, r.Sparsities[l], d)
			}
		}
	}
}
