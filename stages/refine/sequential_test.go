package refine

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/wanda-go/wanda/format/config"
	"github.com/wanda-go/wanda/format/safetensors"
	"github.com/wanda-go/wanda/internal/testenv"
	"github.com/wanda-go/wanda/pipeline"
)

// TestReferenceSequential runs the reference runs of methods.json end to end with a minimal
// sequential pruner written here (the reference's loop: dense forward of a layer with the
// statistics taps, masks, pruned forward feeding the next layer): Wanda at 50% and 70%, DSnoT
// at 50%, 70% and 2:4 (Wanda masks refined with DefaultDSnoT), and OWL at 50% and 70% (Wanda
// masks at OWL's per-layer targets from methods.json). Every mask of every layer is compared with the
// reference's. The statistics are accumulated as the reference does (NewRunningAccumulator);
// WANDA_STATS_F64=1 uses the float64 Accumulator instead. It takes minutes (about 12 layer
// passes over 128×512 tokens per run), so it runs only with WANDA_REFERENCE_LONG=1.
//
// Measured (2 shared cores, about 15 minutes): every mask of all seven runs equal to the
// reference's in every bit with the running statistics. With float64 statistics the Wanda,
// OWL, DSnoT 50% and 2:4 runs are also bit-identical, but DSnoT at 70% drifts from layer 1 on
// (one Wanda near-tie, 9e-8 apart, decided the other way changes a whole refined row, and
// the changes grow through the layers: 90-93% equal attention masks in layers 3-5).
func TestReferenceSequential(t *testing.T) {
	if os.Getenv("WANDA_REFERENCE_LONG") != "1" {
		t.Skip("set WANDA_REFERENCE_LONG=1 to run the whole-model reference runs (minutes)")
	}
	dir := testenv.SharedPath(t, "models/tiny-llama-a")
	cfg, err := config.Load(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	set, err := safetensors.OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	masks, err := safetensors.Open(testenv.SharedPath(t, "reference/tiny-llama-a/methods_masks.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer masks.Close()
	ref, err := safetensors.Open(testenv.SharedPath(t, "reference/tiny-llama-a/reference.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	it, _ := ref.Tensor("calib_input_ids")
	ids64, err := it.Int64s()
	if err != nil {
		t.Fatal(err)
	}
	ref.Close()
	nseq, seqlen := int(it.Shape[0]), int(it.Shape[1])
	ids := make([]int32, len(ids64))
	for i, v := range ids64 {
		ids[i] = int32(v)
	}
	b, err := os.ReadFile(testenv.SharedPath(t, "reference/tiny-llama-a/methods.json"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Runs []struct {
			Method     string    `json:"method"`
			Sparsity   float64   `json:"sparsity"`
			Pattern    string    `json:"pattern"`
			Prefix     string    `json:"mask_prefix"`
			OWLTargets []float64 `json:"owl_layer_sparsity_target"`
		} `json:"runs"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	for _, run := range doc.Runs {
		t.Run(run.Prefix, func(t *testing.T) {
			var n, m int
			if run.Pattern == "2:4" {
				n, m = 2, 4
			}
			H := cfg.HiddenSize
			h := make([]float32, nseq*seqlen*H)
			if err := newTestModel(t, set, cfg).embed(ids, h); err != nil {
				t.Fatal(err)
			}
			const chunk = 16
			tmp := make([]float32, chunk*seqlen*H)
			worst := 1.0
			for l := range cfg.NumLayers {
				blk, err := newTestModel(t, set, cfg).block(l)
				if err != nil {
					t.Fatal(err)
				}
				acc := map[config.Part]*Accumulator{}
				for s0 := 0; s0 < nseq; s0 += chunk {
					k := min(chunk, nseq-s0)
					x := tmp[:k*seqlen*H]
					copy(x, h[s0*seqlen*H:(s0+k)*seqlen*H])
					blk.Forward(x, k, seqlen, func(p config.Part, x []float32, rows, cols int) {
						a := acc[p]
						if a == nil {
							if os.Getenv("WANDA_STATS_F64") == "1" {
								a = NewAccumulator(cols, seqlen, NeedSumSq|NeedSum|NeedVar)
							} else {
								a = NewRunningAccumulator(cols, seqlen, NeedSumSq|NeedSum|NeedVar)
							}
							acc[p] = a
						}
						if err := a.Add(x[:rows*cols], rows/seqlen); err != nil {
							t.Error(err)
						}
					})
				}
				s := run.Sparsity
				if run.Method == "owl" {
					s = run.OWLTargets[l]
				}
				for _, p := range config.Linears {
					tap := p
					switch p {
					case config.PartK, config.PartV:
						tap = config.PartQ
					case config.PartUp:
						tap = config.PartGate
					}
					st := acc[tap].Stats()
					w := blk.Linear(p)
					mask := wandaMask(w, st.SumSq, s, n, m)
					name := config.LayerTensor(l, p)
					if run.Method == "dsnot" {
						info := pipeline.LayerInfo{Layer: l, Tensor: name, Part: p.String()}
						if err := DefaultDSnoT().Refine(context.Background(), w, mask, st, pipeline.Target{Sparsity: s, N: n, M: m}, info); err != nil {
							t.Fatal(err)
						}
					}
					rows, cols, zero := refMask(t, masks, run.Prefix+name)
					same := 0
					for i := range rows {
						for j := range cols {
							if (mask.Get(i, j) || w.Data[i*cols+j] == 0) == zero(i, j) {
								same++
							}
						}
					}
					frac := float64(same) / float64(rows*cols)
					worst = min(worst, frac)
					t.Logf("layer %d %-9s %.5f%% equal", l, p, 100*frac)
					if frac < 0.999 {
						t.Errorf("%s%s: %.4f%% equal, want ≥ 99.9%%", run.Prefix, name, 100*frac)
					}
					pipeline.ApplyMask(mask, w)
				}
				for s0 := 0; s0 < nseq; s0 += chunk {
					k := min(chunk, nseq-s0)
					blk.Forward(h[s0*seqlen*H:(s0+k)*seqlen*H], k, seqlen, nil)
				}
			}
			t.Logf("%s: worst tensor %.5f%% equal", run.Prefix, 100*worst)
		})
	}
}
