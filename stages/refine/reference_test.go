package refine

import (
	"context"
	"encoding/json"
	"math"
	"path/filepath"
	"slices"
	"testing"

	"github.com/wanda-go/wanda/format/config"
	"github.com/wanda-go/wanda/format/safetensors"
	"github.com/wanda-go/wanda/internal/testenv"
	"github.com/wanda-go/wanda/pipeline"
)

// tinyLayer0 runs tiny-llama-a's dense first decoder layer on the 128 calibration windows
// DSnoT's run used (reference.safetensors calib_input_ids) and returns the block and the
// statistics of its linear inputs, accumulated both ways (float64, and float32 running as
// DSnoT does). Layer 0's inputs do not depend on any pruning, so these are the statistics
// DSnoT saw for layer 0.
func tinyLayer0(t *testing.T) (*config.Config, *testBlock, map[string]map[config.Part]*Stats) {
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
	b, err := newTestModel(t, set, cfg).block(0)
	if err != nil {
		t.Fatal(err)
	}
	acc := map[config.Part]*Accumulator{}
	run := map[config.Part]*Accumulator{}
	const chunk = 16
	h := make([]float32, chunk*seqlen*cfg.HiddenSize)
	for s0 := 0; s0 < nseq; s0 += chunk {
		n := min(chunk, nseq-s0)
		if err := newTestModel(t, set, cfg).embed(ids[s0*seqlen:(s0+n)*seqlen], h); err != nil {
			t.Fatal(err)
		}
		b.Forward(h, n, seqlen, func(p config.Part, x []float32, rows, cols int) {
			if acc[p] == nil {
				acc[p] = NewAccumulator(cols, seqlen, NeedSumSq|NeedSum|NeedVar)
				run[p] = NewRunningAccumulator(cols, seqlen, NeedSumSq|NeedSum|NeedVar)
			}
			if err := acc[p].Add(x[:rows*cols], rows/seqlen); err != nil {
				t.Error(err)
			}
			if err := run[p].Add(x[:rows*cols], rows/seqlen); err != nil {
				t.Error(err)
			}
		})
	}
	st := map[string]map[config.Part]*Stats{"float64": {}, "float32 running": {}}
	for _, p := range config.Linears {
		tap := p
		switch p {
		case config.PartK, config.PartV:
			tap = config.PartQ
		case config.PartUp:
			tap = config.PartGate
		}
		st["float64"][p] = acc[tap].Stats()
		st["float32 running"][p] = run[tap].Stats()
	}
	return cfg, b, st
}

// wandaMask is the reference's Wanda mask: per row, the int(cols·s) lowest scores
// |W|·sqrt(SumSq) (stable sort) for unstructured s, or the n lowest of every m (ties to the
// lower column).
func wandaMask(w pipeline.Matrix, sumsq []float32, s float64, n, m int) *pipeline.Mask {
	mask := pipeline.NewMask(w.Rows, w.Cols)
	score := make([]float32, w.Cols)
	idx := make([]int, w.Cols)
	for i := range w.Rows {
		for j, v := range w.Row(i) {
			score[j] = float32(math.Abs(float64(v))) * float32(math.Sqrt(float64(sumsq[j])))
			idx[j] = j
		}
		if m > 0 {
			for g := 0; g < w.Cols; g += m {
				grp := slices.Clone(idx[g : g+m])
				slices.SortStableFunc(grp, func(a, b int) int { return cmpF(score[a], score[b]) })
				for _, j := range grp[:n] {
					mask.Set(i, j)
				}
			}
			continue
		}
		slices.SortStableFunc(idx, func(a, b int) int { return cmpF(score[a], score[b]) })
		for _, j := range idx[:int(float64(w.Cols)*s)] {
			mask.Set(i, j)
		}
	}
	return mask
}

func cmpF(a, b float32) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// refMask reads methods_masks.safetensors key (numpy.packbits of W == 0, big-endian bits).
func refMask(t *testing.T, f *safetensors.File, key string) (rows, cols int, zero func(i, j int) bool) {
	t.Helper()
	tn, ok := f.Tensor(key)
	if !ok {
		t.Fatalf("%s missing", key)
	}
	var shape []int
	if err := json.Unmarshal([]byte(f.Metadata[key]), &shape); err != nil || len(shape) != 2 {
		t.Fatalf("%s: shape %q", key, f.Metadata[key])
	}
	bits := tn.Bytes()
	rows, cols = shape[0], shape[1]
	if len(bits) != (rows*cols+7)/8 {
		t.Fatalf("%s: %d bytes for %d×%d", key, len(bits), rows, cols)
	}
	return rows, cols, func(i, j int) bool {
		k := i*cols + j
		return bits[k>>3]>>(7-uint(k&7))&1 == 1
	}
}

// TestDSnoTReferenceLayer0 refines the Wanda masks of tiny-llama-a's layer-0 attention
// projections with DSnoT's defaults and compares them with the masks DSnoT's own code
// produced (methods_masks.safetensors, runs at 50%, 70% and 2:4). The MLP is not refined by
// default: its masks must be Wanda's.
func TestDSnoTReferenceLayer0(t *testing.T) {
	if testing.Short() {
		t.Skip("dense forward of a tiny-llama-a layer over 128×512 tokens (-short)")
	}
	f, err := safetensors.Open(testenv.SharedPath(t, "reference/tiny-llama-a/methods_masks.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	_, b, stats := tinyLayer0(t)
	d := DefaultDSnoT()
	for mode, st := range stats {
		for _, run := range []struct {
			prefix string
			s      float64
			n, m   int
		}{
			{"dsnot-0.50-unstructured/", 0.5, 0, 0},
			{"dsnot-0.70-unstructured/", 0.7, 0, 0},
			{"dsnot-0.50-2of4/", 0.5, 2, 4},
		} {
			tgt := pipeline.Target{Sparsity: run.s, N: run.n, M: run.m}
			for _, p := range config.Linears {
				name := config.LayerTensor(0, p)
				w := b.Linear(p)
				mask := wandaMask(w, st[p].SumSq, run.s, run.n, run.m)
				initial := slices.Clone(mask.Bits)
				info := pipeline.LayerInfo{Layer: 0, Tensor: name, Part: p.String()}
				if err := d.Refine(context.Background(), w, mask, st[p], tgt, info); err != nil {
					t.Fatal(err)
				}
				rows, cols, zero := refMask(t, f, run.prefix+name)
				if rows != w.Rows || cols != w.Cols {
					t.Fatalf("%s: reference %d×%d, weight %d×%d", name, rows, cols, w.Rows, w.Cols)
				}
				init := &pipeline.Mask{Rows: rows, Cols: cols, Bits: initial}
				same, sameInit, changed := 0, 0, 0
				for i := range rows {
					for j := range cols {
						ref := zero(i, j)
						got := mask.Get(i, j) || w.Data[i*cols+j] == 0
						if got == ref {
							same++
						}
						if (init.Get(i, j) || w.Data[i*cols+j] == 0) == ref {
							sameInit++
						}
						if init.Get(i, j) != mask.Get(i, j) {
							changed++
						}
					}
				}
				total := rows * cols
				frac := float64(same) / float64(total)
				t.Logf("%s, %s%s: %d of %d equal (%.5f%%); the Wanda mask: %.3f%%; refinement changed %d",
					mode, run.prefix, p, same, total, 100*frac, 100*float64(sameInit)/float64(total), changed)
				if frac < 0.999 {
					t.Errorf("%s, %s%s: %.4f%% of the mask equal to DSnoT's, want ≥ 99.9%%", mode, run.prefix, p, 100*frac)
				}
				if !d.Applies(info) && changed != 0 {
					t.Errorf("%s: skipped tensor changed", name)
				}
			}
		}
	}
}
