package model_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/wanda-go/wanda/format/safetensors"
	"github.com/wanda-go/wanda/internal/modelgen"
	"github.com/wanda-go/wanda/internal/testenv"
	"github.com/wanda-go/wanda/model"
	"github.com/wanda-go/wanda/model/arch"
	"github.com/wanda-go/wanda/pipeline"
	"github.com/wanda-go/wanda/stages/eval"
	"github.com/wanda-go/wanda/stages/metric"
	"github.com/wanda-go/wanda/stages/pattern"
)

// These golden tests compare each architecture of the table with what an independent
// PyTorch transcription of transformers' modeling code (and of locuslab/wanda's
// prune_wanda) computed on a small random model of that type (../shared/models/arch,
// see ARCH-FIXTURES.md there): the logits of one window, the dense perplexity, and the
// Wanda masks and perplexities at 50% unstructured and 2:4, pruned through
// pipeline.Run with the reference's calibration windows.

// goldenPPL is <type>_ppl.json.
type goldenPPL struct {
	PPL           map[string]float64   `json:"ppl"`
	WindowMeanNLL map[string][]float64 `json:"window_mean_nll"`
	MoE           *struct {
		NearTies map[string][]struct {
			Layer  int    `json:"layer"`
			Pass   string `json:"pass"`
			Sample int    `json:"sample"`
			Token  int    `json:"token"`
			Top    []int  `json:"top"`
		} `json:"near_ties_during_pruning"`
		CalibExpertTokens map[string][]int64 `json:"calib_expert_tokens_per_layer"`
	} `json:"moe"`
}

type golden struct {
	typ, dir string
	ref      *safetensors.File
	ppl      goldenPPL
	evalIDs  []int32 // [4·64]
	calib    [][]int32
	seqlen   int
}

func loadGolden(t *testing.T, typ string) *golden {
	t.Helper()
	g := &golden{typ: typ, dir: testenv.SharedPath(t, "models/arch/"+typ)}
	var err error
	g.ref, err = safetensors.Open(testenv.SharedPath(t, "models/arch/"+typ+"_reference.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.ref.Close() })
	b, err := os.ReadFile(testenv.SharedPath(t, "models/arch/"+typ+"_ppl.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &g.ppl); err != nil {
		t.Fatal(err)
	}
	ids := func(key string) ([]int32, []int64) {
		tt, ok := g.ref.Tensor(key)
		if !ok {
			t.Fatalf("%s: no %s", typ, key)
		}
		v, err := tt.Int64s()
		if err != nil {
			t.Fatal(err)
		}
		out := make([]int32, len(v))
		for i, x := range v {
			out[i] = int32(x)
		}
		return out, tt.Shape
	}
	var shape []int64
	g.evalIDs, shape = ids("eval_ids")
	g.seqlen = int(shape[1])
	flat, cs := ids("calib_ids")
	for i := range int(cs[0]) {
		g.calib = append(g.calib, flat[i*int(cs[1]):(i+1)*int(cs[1])])
	}
	return g
}

// open opens a model directory (the fixture or a pruned output) as a Model.
func open(t *testing.T, dir string, opt model.Options) (*model.Model, *safetensors.Set) {
	t.Helper()
	cfg, _, err := arch.LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	set, err := safetensors.OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { set.Close() })
	m, err := model.New(set, cfg, opt)
	if err != nil {
		t.Fatal(err)
	}
	return m, set
}

// checkLogits compares the logits of window 0 with the reference's.
func (g *golden) checkLogits(t *testing.T) float64 {
	m, _ := open(t, g.dir, model.Options{})
	cfg := m.Config()
	T, H, V := g.seqlen, cfg.HiddenSize, cfg.VocabSize
	h := make([]float32, T*H)
	if err := m.Embed(g.evalIDs[:T], h); err != nil {
		t.Fatal(err)
	}
	for l := range cfg.NumLayers {
		b, err := m.LoadBlock(l, m.Weights())
		if err != nil {
			t.Fatal(err)
		}
		b.Forward(h, 1, T, nil)
	}
	head, err := m.Head()
	if err != nil {
		t.Fatal(err)
	}
	got := make([]float32, T*V)
	head.Logits(h, T, got)
	lt, ok := g.ref.Tensor("logits")
	if !ok {
		t.Fatal("no logits")
	}
	want, err := lt.Float32()
	if err != nil {
		t.Fatal(err)
	}
	var maxd float64
	for i := range want {
		maxd = math.Max(maxd, math.Abs(float64(got[i])-float64(want[i])))
	}
	if !(maxd <= 1e-4) {
		t.Errorf("%s: logits of window 0: max |Δ| = %.3g > 1e-4", g.typ, maxd)
	}
	return maxd
}

// checkPPL evaluates dir over the 4 windows and compares with the reference's run.
func (g *golden) checkPPL(t *testing.T, dir, run string) float64 {
	cfg, _, err := arch.LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	set, err := safetensors.OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	res, err := eval.Perplexity(context.Background(), set, cfg, g.evalIDs, eval.Options{SeqLen: g.seqlen})
	if err != nil {
		t.Fatal(err)
	}
	want, ok := g.ppl.PPL[run]
	if !ok {
		t.Fatalf("%s: no reference ppl %q", g.typ, run)
	}
	rel := math.Abs(res.PPL-want) / want
	if !(rel <= 1e-4) {
		t.Errorf("%s %s: ppl %.6f, reference %.6f (relative %.3g > 1e-4); window NLLs %v, reference %v",
			g.typ, run, res.PPL, want, rel, res.WindowNLL, g.ppl.WindowMeanNLL[run])
	}
	return rel
}

// prune runs pipeline.Run with Wanda at 50% (pattern "unstructured" or "2:4") and the
// reference's calibration windows, and returns the output directory and report.
func (g *golden) prune(t *testing.T, pat string, opt model.Options) (string, *pipeline.Report) {
	m, set := open(t, g.dir, opt)
	target := pipeline.Target{Sparsity: 0.5}
	if pat == "2:4" {
		target = pipeline.Target{N: 2, M: 4, Sparsity: 0.5}
	}
	out := filepath.Join(t.TempDir(), "out")
	rep, err := pipeline.Run(context.Background(), pipeline.Options{
		Model: m, Source: set, ModelDir: g.dir, Calib: g.calib,
		Method: pipeline.Method{Name: "wanda", Metric: metric.Wanda{}, Pattern: pattern.ForTarget(target)}, Target: target,
		OutDir: out, ActivationBudget: 1 << 30, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatalf("%s %s: %v", g.typ, pat, err)
	}
	return out, rep
}

// checkMasks counts, per pruned tensor, the entries whose zero pattern differs from
// the reference's mask run/<tensor>; it returns the total and the tensors compared.
func (g *golden) checkMasks(t *testing.T, dir, run string, rep *pipeline.Report) (diff, tensors int) {
	set, err := safetensors.OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	for _, tr := range rep.Tensors {
		key := run + "/" + tr.Name
		mt, ok := g.ref.Tensor(key)
		if !ok {
			t.Errorf("%s: reference has no mask %s", g.typ, key)
			continue
		}
		shape := strings.Split(strings.Trim(g.ref.Metadata[key], "[]"), ",")
		rows, _ := strconv.Atoi(strings.TrimSpace(shape[0]))
		cols, _ := strconv.Atoi(strings.TrimSpace(shape[1]))
		tt, err := set.Get(tr.Name)
		if err != nil {
			t.Fatal(err)
		}
		if int(tt.Shape[0]) != rows || int(tt.Shape[1]) != cols {
			t.Fatalf("%s: shape %v, reference %d×%d", tr.Name, tt.Shape, rows, cols)
		}
		w, err := tt.Float32()
		if err != nil {
			t.Fatal(err)
		}
		bits := mt.Bytes()
		d := 0
		for k, v := range w {
			if (v == 0) != (bits[k/8]&(0x80>>(k%8)) != 0) {
				d++
			}
		}
		if d > 0 {
			t.Logf("%s %s: %s: %d entries differ", g.typ, run, tr.Name, d)
		}
		diff += d
		tensors++
	}
	// Every reference mask of the run must have been produced.
	n := 0
	for _, tt := range g.ref.Tensors() {
		if strings.HasPrefix(tt.Name, run+"/") {
			n++
		}
	}
	if n != tensors {
		t.Errorf("%s %s: compared %d tensors, the reference has %d masks", g.typ, run, tensors, n)
	}
	return diff, tensors
}

func TestGoldenDense(t *testing.T) {
	for _, typ := range []string{"qwen3", "phi3", "gemma2", "gemma3_text"} {
		t.Run(typ, func(t *testing.T) {
			g := loadGolden(t, typ)
			dl := g.checkLogits(t)
			dense := g.checkPPL(t, g.dir, "dense")
			msg := []string{"max |Δlogit| " + strconv.FormatFloat(dl, 'g', 3, 64), "dense ppl rel " + strconv.FormatFloat(dense, 'g', 3, 64)}
			for _, pat := range []string{"unstructured", "2:4"} {
				run := "wanda:" + pat
				out, rep := g.prune(t, pat, model.Options{})
				diff, n := g.checkMasks(t, out, run, rep)
				if diff != 0 {
					t.Errorf("%s %s: %d mask entries differ from the reference over %d tensors", typ, run, diff, n)
				}
				rel := g.checkPPL(t, out, run)
				msg = append(msg, run+": "+strconv.Itoa(diff)+" mask entries differ ("+strconv.Itoa(n)+" tensors), ppl rel "+
					strconv.FormatFloat(rel, 'g', 3, 64))
			}
			t.Logf("%s: %s", typ, strings.Join(msg, "; "))
		})
	}
}

// recordingModel keeps the first block loaded for each layer (the dense pass's), to
// read its routed-token counts after the run.
type recordingModel struct {
	*model.Model
	dense map[int]pipeline.Block
}

func (r *recordingModel) LoadBlock(l int, w pipeline.Weights) (pipeline.Block, error) {
	b, err := r.Model.LoadBlock(l, w)
	if _, ok := r.dense[l]; !ok && err == nil {
		r.dense[l] = b
	}
	return b, err
}

// pruneRecording is prune with a recordingModel; it returns the routed tokens per
// layer and expert of the statistics passes.
func (g *golden) pruneRecording(t *testing.T, pat string, opt model.Options) (string, *pipeline.Report, map[int][]int64) {
	m, set := open(t, g.dir, opt)
	rm := &recordingModel{Model: m, dense: map[int]pipeline.Block{}}
	target := pipeline.Target{Sparsity: 0.5}
	if pat == "2:4" {
		target = pipeline.Target{N: 2, M: 4, Sparsity: 0.5}
	}
	out := filepath.Join(t.TempDir(), "out")
	rep, err := pipeline.Run(context.Background(), pipeline.Options{
		Model: rm, Source: set, ModelDir: g.dir, Calib: g.calib,
		Method: pipeline.Method{Name: "wanda", Metric: metric.Wanda{}, Pattern: pattern.ForTarget(target)}, Target: target,
		OutDir: out, ActivationBudget: 1 << 30, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatalf("%s %s: %v", g.typ, pat, err)
	}
	tokens := map[int][]int64{}
	for l, b := range rm.dense {
		et, ok := b.(interface{ ExpertTokens() []int64 })
		if !ok {
			t.Fatalf("layer %d: block has no ExpertTokens", l)
		}
		tokens[l] = et.ExpertTokens()
	}
	return out, rep, tokens
}

func TestGoldenMoE(t *testing.T) {
	for _, typ := range []string{"mixtral", "qwen2_moe", "qwen3_moe"} {
		t.Run(typ, func(t *testing.T) {
			g := loadGolden(t, typ)
			dl := g.checkLogits(t)
			dense := g.checkPPL(t, g.dir, "dense")
			msg := []string{"max |Δlogit| " + strconv.FormatFloat(dl, 'g', 3, 64), "dense ppl rel " + strconv.FormatFloat(dense, 'g', 3, 64)}
			for _, mode := range []string{model.MoEStatsAll, model.MoEStatsRouted} {
				prefix := "wanda:"
				if mode == model.MoEStatsRouted {
					prefix = "wanda-routed:"
				}
				for _, pat := range []string{"unstructured", "2:4"} {
					run := prefix + pat
					out, rep, tokens := g.pruneRecording(t, pat, model.Options{MoEStats: mode})
					for l, want := range g.ppl.MoE.CalibExpertTokens {
						li, _ := strconv.Atoi(l)
						// Layer 0's routing does not depend on pruning; later layers' is
						// the first run's (wanda:unstructured).
						if li == 0 || run == "wanda:unstructured" {
							if !slices.Equal(tokens[li], want) {
								t.Errorf("%s %s layer %d: routed tokens per expert %v, reference %v", typ, run, li, tokens[li], want)
							}
						}
					}
					diff, n := g.checkMasks(t, out, run, rep)
					ties := len(g.ppl.MoE.NearTies[run])
					if diff != 0 && ties == 0 {
						t.Errorf("%s %s: %d mask entries differ from the reference over %d tensors, and the reference lists no routing near-tie", typ, run, diff, n)
					}
					rel := g.checkPPL(t, out, run)
					msg = append(msg, run+": "+strconv.Itoa(diff)+" mask entries differ ("+strconv.Itoa(n)+" tensors, "+
						strconv.Itoa(ties)+" near-ties listed), ppl rel "+strconv.FormatFloat(rel, 'g', 3, 64))
				}
			}
			t.Logf("%s: %s", typ, strings.Join(msg, "; "))
		})
	}
}

// TestGeneratedArchs runs models of every architecture from the fixture generator
// (internal/modelgen), tiny and shrunk from each preset: the model evaluates to a finite
// perplexity, and pipeline.Run prunes it to 50% (for mixtures of experts in both
// statistics modes, whose expert masks must differ, with the routed-token counts
// adding up to tokens × experts per token).
func TestGeneratedArchs(t *testing.T) {
	type gen struct {
		name string
		opt  modelgen.Options
	}
	var cases []gen
	for i, typ := range arch.Supported() {
		cases = append(cases, gen{typ, modelgen.Options{Arch: typ, Seed: uint64(i), HeadDim: 16}})
	}
	for _, p := range modelgen.Presets() {
		o, err := modelgen.Preset(p)
		if err != nil {
			t.Fatal(err)
		}
		o.Layers, o.Hidden, o.Intermediate, o.Heads, o.KVHeads, o.HeadDim, o.Vocab = 2, 64, 96, 4, 2, 16, 600
		o.MaxShardBytes, o.MoEIntermediate, o.SharedIntermediate = 1<<20, 0, 0
		o.Experts = min(o.Experts, 6)
		o.ExpertsPerTok = min(o.ExpertsPerTok, 3)
		if o.SlidingWindow > 0 {
			o.SlidingWindow = 8
		}
		cases = append(cases, gen{"preset-" + p, o})
	}
	const T = 24
	r := uint64(1)
	ids := make([]int32, 4*T)
	for i := range ids {
		r = r*6364136223846793005 + 1442695040888963407
		ids[i] = int32(r>>33) % 563 // the generator's tokenizer's ids
	}
	calib := [][]int32{ids[:T], ids[T : 2*T], ids[2*T : 3*T], ids[3*T:]}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := modelgen.Write(dir, c.opt); err != nil {
				t.Fatal(err)
			}
			cfg, a, err := arch.LoadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			set, err := safetensors.OpenDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer set.Close()
			res, err := eval.Perplexity(context.Background(), set, cfg, ids, eval.Options{SeqLen: T})
			if err != nil {
				t.Fatal(err)
			}
			if math.IsNaN(res.PPL) || math.IsInf(res.PPL, 0) || res.PPL < 1 {
				t.Fatalf("ppl %v", res.PPL)
			}
			modes := []string{model.MoEStatsAll}
			if a.Sparse != nil {
				modes = append(modes, model.MoEStatsRouted)
			}
			masks := map[string]map[string][]bool{}
			for _, mode := range modes {
				g := &golden{typ: c.name, dir: dir, calib: calib, seqlen: T}
				out, rep, tokens := g.pruneRecording(t, "unstructured", model.Options{MoEStats: mode})
				if math.Abs(rep.GlobalSparsity-0.5) > 1e-9 {
					t.Errorf("%s: sparsity %v", mode, rep.GlobalSparsity)
				}
				for l, tk := range tokens {
					if tk == nil {
						continue
					}
					var sum int64
					for _, n := range tk {
						sum += n
					}
					if sum != int64(len(calib)*T*cfg.NumExpertsPerTok) {
						t.Errorf("%s layer %d: %d routed tokens, want %d", mode, l, sum, len(calib)*T*cfg.NumExpertsPerTok)
					}
				}
				outSet, err := safetensors.OpenDir(out)
				if err != nil {
					t.Fatal(err)
				}
				masks[mode] = map[string][]bool{}
				for _, tr := range rep.Tensors {
					tt, _ := outSet.Get(tr.Name)
					w, _ := tt.Float32()
					z := make([]bool, len(w))
					for k, v := range w {
						z[k] = v == 0
					}
					masks[mode][tr.Name] = z
				}
				outSet.Close()
			}
			if a.Sparse != nil {
				differ := 0
				for name, z := range masks[model.MoEStatsAll] {
					if !strings.Contains(name, ".experts.") {
						continue
					}
					for k := range z {
						if z[k] != masks[model.MoEStatsRouted][name][k] {
							differ++
						}
					}
				}
				if differ == 0 {
					t.Error("expert masks are the same with all and routed statistics")
				}
			}
			t.Logf("%s: ppl %.1f", cfg, res.PPL)
		})
	}
}
