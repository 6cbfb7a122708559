package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/wanda-go/wanda/format/config"
	"github.com/wanda-go/wanda/format/dtype"
	"github.com/wanda-go/wanda/format/safetensors"
	"github.com/wanda-go/wanda/internal/staging"
	"github.com/wanda-go/wanda/tensor"
)

// Tap receives the input of a linear layer during a forward pass: x is [rows, cols]
// row-major and valid only during the call. PartQ stands for q, k and v (one input),
// PartGate for gate and up.
type Tap func(p config.Part, x []float32, rows, cols int)

// Block is one decoder layer loaded for compute (weights widened to fp32).
type Block interface {
	// Forward runs the block in place on h [nseq·seqlen, hidden]; sequences are independent.
	Forward(h []float32, nseq, seqlen int, tap Tap)
	// Linear is a mutable view of a linear weight [out, in]; changes affect later Forward calls.
	Linear(p config.Part) Matrix
}

// Model gives the runner what it needs of the network: embeddings and blocks, one at a time.
type Model interface {
	Config() *config.Config
	// Embed writes the embeddings of ids into dst [len(ids), hidden].
	Embed(ids []int32, dst []float32) error
	LoadBlock(layer int) (Block, error)
	// ReleaseBlock drops the memory of a block (its mapped pages) when it is done.
	ReleaseBlock(layer int)
}

// Method is the pruning rule: either Metric+Pattern or a Solver.
type Method struct {
	Name    string
	Metric  Metric
	Pattern Pattern
	Solver  Solver
}

func (m Method) needsStats() bool {
	if m.Solver != nil {
		return true
	}
	return m.Metric != nil && m.Metric.NeedsStats()
}

// CalibInfo describes where the calibration windows came from (for the report).
type CalibInfo struct {
	Source  string `json:"source"`
	Kind    string `json:"kind"` // "text" or "tokens"
	Windows int    `json:"windows"`
	SeqLen  int    `json:"seqlen"`
	Seed    int64  `json:"seed"`
}

// Options configure a pruning run.
type Options struct {
	Model    Model
	Source   *safetensors.Set // the model's weights (for export: dtypes, untouched tensors)
	ModelDir string           // source directory (its config/tokenizer files are copied)
	Calib    [][]int32        // calibration windows [N][T]; may be nil when the method needs none
	CalibInfo
	Method Method
	Target Target

	OutDir        string
	Force         bool  // replace an existing OutDir
	MaxShardBytes int64 // 0: one file
	// ActivationBudget is the number of bytes of activations kept in RAM; beyond it the
	// activation store is a memory-mapped scratch file in ScratchDir.
	ActivationBudget int64
	ScratchDir       string
	// ChunkTokens bounds the rows a block processes at once (a multiple of seqlen is used).
	ChunkTokens int
	// WorkDir, when set, receives a checkpoint after every finished layer (see checkpoint.go);
	// Resume continues from the checkpoint found there. The work directory is emptied on success.
	WorkDir string
	Resume  bool
	// ExtraBytes is added to the free space the output needs (e.g. a packed copy).
	ExtraBytes int64

	Progress io.Writer // progress bar destination (drawn only on a terminal)
	Logger   *slog.Logger
	// Finish, when set, runs after all tensors are written and before the output directory
	// is moved into place: dir is the temporary output directory.
	Finish func(dir string, rep *Report) error
}

// TensorReport is one pruned tensor's outcome.
type TensorReport struct {
	Name     string  `json:"name"`
	Layer    int     `json:"layer"`
	Shape    []int   `json:"shape"`
	Zeros    int     `json:"zeros"`
	Sparsity float64 `json:"sparsity"`
}

// LayerReport is one decoder layer's timing.
type LayerReport struct {
	Layer        int     `json:"layer"`
	Seconds      float64 `json:"seconds"`
	DenseSeconds float64 `json:"dense_forward_seconds"`
	PruneSeconds float64 `json:"prune_seconds"`
	PrunedFwdSec float64 `json:"pruned_forward_seconds"`
	Sparsity     float64 `json:"sparsity"`
}

// Report is written as wanda_report.json into the output directory.
type Report struct {
	Tool           string         `json:"tool"`
	Model          string         `json:"model"`
	ModelType      string         `json:"model_type"`
	Method         string         `json:"method"`
	Pattern        string         `json:"pattern"`
	Sparsity       float64        `json:"target_sparsity"`
	Group          string         `json:"group"`
	Variant        bool           `json:"variant"`
	Calibration    *CalibInfo     `json:"calibration,omitempty"`
	GlobalSparsity float64        `json:"global_sparsity"`
	Tensors        []TensorReport `json:"tensors"`
	Layers         []LayerReport  `json:"layers"`
	Seconds        float64        `json:"seconds"`
	PeakRSSAnon    int64          `json:"peak_rss_anon_bytes"`
	PeakRSS        int64          `json:"peak_rss_bytes"`
	ActivationsOn  string         `json:"activation_store"`
	Output         string         `json:"output"`
	Extra          map[string]any `json:"extra,omitempty"`
}

// ReportFile is the report's file name inside the output directory.
const ReportFile = "wanda_report.json"

// Errors of the runner.
var (
	ErrOutputExists = errors.New("output directory already exists")
	ErrNoCalib      = errors.New("no calibration data")
)

// Run prunes every decoder layer of the model, streaming one layer at a time, and writes a
// complete Hugging Face model directory to opt.OutDir (via a temporary sibling renamed at the end).
func Run(ctx context.Context, opt Options) (rep *Report, err error) {
	start := time.Now()
	log := opt.Logger
	if log == nil {
		log = slog.Default()
	}
	cfg := opt.Model.Config()
	meter := StartPeakMeter(50 * time.Millisecond)
	defer func() {
		if rep != nil {
			pk := meter.Stop()
			rep.PeakRSSAnon, rep.PeakRSS = pk.RSSAnon, pk.HWM
		} else {
			meter.Stop()
		}
	}()

	for l := 0; l < cfg.NumLayers; l++ {
		for _, p := range config.Linears {
			_, in := cfg.LinearShape(p)
			if err := opt.Target.Validate(in); err != nil {
				return nil, fmt.Errorf("%s: %w", config.LayerTensor(l, p), err)
			}
		}
	}
	if opt.Method.needsStats() && len(opt.Calib) == 0 {
		return nil, fmt.Errorf("%w: method %s needs calibration windows", ErrNoCalib, opt.Method.Name)
	}
	seqlen := 0
	if len(opt.Calib) > 0 {
		seqlen = len(opt.Calib[0])
		for i, w := range opt.Calib {
			if len(w) != seqlen || seqlen == 0 {
				return nil, fmt.Errorf("%w: window %d has %d tokens, window 0 has %d", ErrNoCalib, i, len(w), seqlen)
			}
		}
	}

	out, err := filepath.Abs(opt.OutDir)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(out); err == nil && !opt.Force {
		return nil, fmt.Errorf("%w: %s (use --force to replace it)", ErrOutputExists, out)
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return nil, fmt.Errorf("create parent of %s: %w", out, err)
	}
	// The output is built in a staging directory beside out (removing any that an
	// interrupted run left) and appears under its name only when complete.
	stage, err := staging.New(out)
	if err != nil {
		return nil, err
	}
	tmp := stage.Path
	defer func() {
		if err != nil {
			stage.Remove()
		}
	}()

	// Export plan: every tensor of the source, same names, dtypes and shapes.
	src := opt.Source
	var specs []safetensors.Spec
	prunable := map[string]bool{}
	for l := 0; l < cfg.NumLayers; l++ {
		for _, p := range config.Linears {
			prunable[config.LayerTensor(l, p)] = true
		}
	}
	for _, name := range src.Names() {
		t, _ := src.Tensor(name)
		specs = append(specs, safetensors.Spec{Name: name, DType: t.DType, Shape: t.Shape})
		delete(prunable, name)
	}
	if len(prunable) > 0 {
		missing := slices.Sorted(maps.Keys(prunable))
		return nil, fmt.Errorf("%s: %w: %s", opt.ModelDir, safetensors.ErrMissingTensor, strings.Join(missing, ", "))
	}
	var st *checkpointState
	fp := ""
	if opt.WorkDir != "" {
		if err := os.MkdirAll(opt.WorkDir, 0o755); err != nil {
			return nil, fmt.Errorf("%w: create work directory: %v", ErrCheckpoint, err)
		}
		fp = fingerprint(&opt)
		if st, err = readState(opt.WorkDir); err != nil {
			return nil, err
		}
		switch {
		case st != nil && !opt.Resume:
			return nil, fmt.Errorf("%w: %s holds a checkpoint (next layer %d): pass --resume to continue it, or remove the directory",
				ErrCheckpoint, opt.WorkDir, st.NextLayer)
		case st != nil && st.Fingerprint != fp:
			return nil, fmt.Errorf("%w: the checkpoint in %s belongs to a different run (model, method, pattern or calibration differ)",
				ErrCheckpoint, opt.WorkDir)
		case st == nil && opt.Resume:
			log.Warn("no checkpoint to resume; starting from the first layer", "workdir", opt.WorkDir)
		}
		removeStaleTemps(opt.WorkDir)
	} else if opt.Resume {
		return nil, fmt.Errorf("%w: --resume needs --workdir", ErrCheckpoint)
	}
	if err := checkDiskSpace(&opt, out, seqlen); err != nil {
		return nil, err
	}
	meta := map[string]string{"format": "pt"}
	w, err := safetensors.Create(tmp, specs, safetensors.WriterOptions{MaxShardBytes: opt.MaxShardBytes, Metadata: meta})
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			w.Abort()
		}
	}()

	rep = &Report{
		Tool: "wanda", Model: opt.ModelDir, ModelType: cfg.ModelType, Method: opt.Method.Name,
		Pattern: patternName(opt.Target), Sparsity: opt.Target.Sparsity, Group: opt.Target.Group.String(),
		Variant: opt.Target.Variant, Output: out, ActivationsOn: "none",
	}
	if opt.Target.Structured() {
		rep.Sparsity = float64(opt.Target.N) / float64(opt.Target.M)
	}
	if len(opt.Calib) > 0 {
		ci := opt.CalibInfo
		ci.Windows, ci.SeqLen = len(opt.Calib), seqlen
		rep.Calibration = &ci
	}

	// Untouched tensors are copied first, one at a time.
	isLinear := func(name string) bool {
		_, p, ok := config.ParseLayerTensor(name)
		return ok && p.IsLinear()
	}
	for _, name := range src.Names() {
		if isLinear(name) {
			continue
		}
		t, _ := src.Tensor(name)
		if err := w.Write(name, t.Bytes()); err != nil {
			return nil, err
		}
		src.Release(name)
	}

	// Activations.
	var in, outS *Store
	needFwd := opt.Method.needsStats()
	if needFwd {
		n, h := len(opt.Calib), cfg.HiddenSize
		in, err = NewStore(n, seqlen, h, opt.ActivationBudget/2, opt.ScratchDir)
		if err != nil {
			return nil, err
		}
		defer in.Close()
		outS, err = NewStore(n, seqlen, h, opt.ActivationBudget/2, opt.ScratchDir)
		if err != nil {
			return nil, err
		}
		defer outS.Close()
		rep.ActivationsOn = "ram"
		if in.OnDisk() {
			rep.ActivationsOn = "scratch-file"
		}
		if st != nil && st.NextLayer > 0 {
			if st.NextLayer < cfg.NumLayers {
				if err := readActs(actsFile(opt.WorkDir, st.NextLayer), in.Samples(0, in.N)); err != nil {
					return nil, err
				}
			}
		} else {
			for i, ids := range opt.Calib {
				if err := opt.Model.Embed(ids, in.Samples(i, i+1)); err != nil {
					return nil, fmt.Errorf("embed calibration window %d: %w", i, err)
				}
			}
		}
	}
	chunk := 1
	if seqlen > 0 {
		ct := opt.ChunkTokens
		if ct <= 0 {
			ct = 2048
		}
		chunk = max(1, ct/seqlen)
	}

	bar := NewProgress(progressWriter(opt.Progress), "pruning", cfg.NumLayers)
	defer bar.Finish()
	var totalZeros, totalParams int
	first := 0
	var openLayer *safetensors.Writer // the checkpoint file of the layer in progress
	defer func() {
		if openLayer != nil {
			openLayer.Abort()
		}
	}()
	if st != nil {
		// Layers finished before the interruption come from the checkpoint.
		first = st.NextLayer
		for l := 0; l < first; l++ {
			if err := restoreLayer(opt.WorkDir, l, w); err != nil {
				return nil, err
			}
			bar.Add(1)
		}
		rep.Layers, rep.Tensors = st.Layers, st.Tensors
		totalZeros, totalParams = st.Zeros, st.Params
		log.Info("resuming", "workdir", opt.WorkDir, "next_layer", first)
	}
	for l := first; l < cfg.NumLayers; l++ {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("interrupted before layer %d: %w", l, err)
		}
		bar.SetLabel(fmt.Sprintf("layer %d/%d", l+1, cfg.NumLayers))
		lt := time.Now()
		lr := LayerReport{Layer: l}
		blk, err := opt.Model.LoadBlock(l)
		if err != nil {
			return nil, fmt.Errorf("layer %d: %w", l, err)
		}
		var acc *accumulator
		if needFwd {
			t0 := time.Now()
			acc = newAccumulator(cfg, opt.Method.Solver != nil && opt.Method.Solver.NeedsHessian())
			scratch := make([]float32, chunk*seqlen*cfg.HiddenSize)
			for i := 0; i < in.N; i += chunk {
				if err := ctx.Err(); err != nil {
					return nil, fmt.Errorf("interrupted in layer %d: %w", l, err)
				}
				j := min(in.N, i+chunk)
				buf := scratch[:(j-i)*seqlen*cfg.HiddenSize]
				copy(buf, in.Samples(i, j))
				blk.Forward(buf, j-i, seqlen, acc.tap)
				acc.n += j - i
				crashPoint("forward", l)
			}
			lr.DenseSeconds = time.Since(t0).Seconds()
		}
		t1 := time.Now()
		var layerZeros, layerParams int
		var lw *safetensors.Writer // this layer's checkpoint file, with --workdir
		if opt.WorkDir != "" {
			specs := make([]safetensors.Spec, 0, len(config.Linears))
			for _, p := range config.Linears {
				name := config.LayerTensor(l, p)
				srcT, _ := src.Tensor(name)
				specs = append(specs, safetensors.Spec{Name: name, DType: srcT.DType, Shape: srcT.Shape})
			}
			if lw, err = createLayerFile(opt.WorkDir, l, specs); err != nil {
				return nil, err
			}
			openLayer = lw
		}
		for _, p := range config.Linears {
			name := config.LayerTensor(l, p)
			srcT, _ := src.Tensor(name)
			wm := blk.Linear(p)
			info := LayerInfo{Layer: l, Tensor: name, Part: p.String(), ModelType: cfg.ModelType,
				Hidden: cfg.HiddenSize, Intermediate: cfg.IntermediateSize, NumLayers: cfg.NumLayers}
			var st *Stats
			if acc != nil {
				st = acc.stats(p)
			}
			if err := prune(ctx, opt.Method, opt.Target, wm, st, info); err != nil {
				return nil, err
			}
			// The exported weights are the source dtype: the pruned forward must see exactly them.
			roundTo(wm.Data, srcT.DType)
			zeros := 0
			for k, v := range wm.Data {
				if v == 0 {
					wm.Data[k] = 0 // -0.0 -> +0.0
					zeros++
				}
			}
			raw := make([]byte, len(wm.Data)*srcT.DType.Size())
			if err := dtype.FromFloat32(raw, wm.Data, srcT.DType); err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			if err := w.Write(name, raw); err != nil {
				return nil, err
			}
			crashPoint("export", l)
			if lw != nil {
				if err := lw.Write(name, raw); err != nil {
					return nil, fmt.Errorf("%w: layer %d: %v", ErrCheckpoint, l, err)
				}
			}
			layerZeros += zeros
			layerParams += len(wm.Data)
			rep.Tensors = append(rep.Tensors, TensorReport{Name: name, Layer: l, Shape: []int{wm.Rows, wm.Cols},
				Zeros: zeros, Sparsity: float64(zeros) / float64(len(wm.Data))})
		}
		lr.PruneSeconds = time.Since(t1).Seconds()
		if needFwd && l < cfg.NumLayers-1 {
			t2 := time.Now()
			for i := 0; i < in.N; i += chunk {
				if err := ctx.Err(); err != nil {
					return nil, fmt.Errorf("interrupted in layer %d: %w", l, err)
				}
				j := min(in.N, i+chunk)
				buf := outS.Samples(i, j)
				copy(buf, in.Samples(i, j))
				blk.Forward(buf, j-i, seqlen, nil)
			}
			in, outS = outS, in
			lr.PrunedFwdSec = time.Since(t2).Seconds()
		}
		opt.Model.ReleaseBlock(l)
		meter.Sample()
		lr.Sparsity = float64(layerZeros) / float64(layerParams)
		lr.Seconds = time.Since(lt).Seconds()
		rep.Layers = append(rep.Layers, lr)
		totalZeros += layerZeros
		totalParams += layerParams
		if opt.WorkDir != "" {
			if err := checkpoint(opt.WorkDir, l, cfg.NumLayers, fp, in, needFwd, lw, rep, totalZeros, totalParams); err != nil {
				return nil, err
			}
			openLayer = nil // closed by checkpoint
			crashPoint("between", l)
		}
		log.Info("layer pruned", "layer", l, "sparsity", fmt.Sprintf("%.4f", lr.Sparsity), "seconds", fmt.Sprintf("%.2f", lr.Seconds))
		bar.Add(1)
	}
	if totalParams > 0 {
		rep.GlobalSparsity = float64(totalZeros) / float64(totalParams)
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	if err := copyModelFiles(opt.ModelDir, tmp); err != nil {
		return nil, err
	}
	rep.Seconds = time.Since(start).Seconds()
	if opt.Finish != nil {
		if err := opt.Finish(tmp, rep); err != nil {
			return nil, err
		}
	}
	pk := meter.Peak()
	rep.PeakRSSAnon, rep.PeakRSS = pk.RSSAnon, pk.HWM
	if err := writeJSON(filepath.Join(tmp, ReportFile), rep); err != nil {
		return nil, err
	}
	if opt.Force {
		if err := os.RemoveAll(out); err != nil {
			return nil, fmt.Errorf("replace %s: %w", out, err)
		}
	}
	if err := stage.Commit(out); err != nil {
		return nil, fmt.Errorf("move finished output into place: %w", err)
	}
	if opt.WorkDir != "" {
		clearWorkDir(opt.WorkDir, cfg.NumLayers)
	}
	return rep, nil
}

func patternName(t Target) string {
	if t.Structured() {
		return fmt.Sprintf("%d:%d", t.N, t.M)
	}
	return "unstructured"
}

func progressWriter(w io.Writer) io.Writer {
	if w == nil {
		return io.Discard
	}
	return w
}

// prune runs the method on one weight matrix in place.
func prune(ctx context.Context, m Method, t Target, w Matrix, st *Stats, info LayerInfo) error {
	if m.Solver != nil {
		mask, err := m.Solver.Solve(ctx, w, st, t, info)
		if err != nil {
			return stageErr(info, m.Solver.Name(), err)
		}
		if mask == nil || mask.Rows != w.Rows || mask.Cols != w.Cols {
			return fmt.Errorf("%s: %s: %w: solver returned a mask of the wrong shape", info, m.Solver.Name(), ErrShape)
		}
		mask.Apply(w)
		return nil
	}
	scores, err := m.Metric.Score(ctx, w, st, info)
	if err != nil {
		return stageErr(info, "metric "+m.Metric.Name(), err)
	}
	if scores.Rows != w.Rows || scores.Cols != w.Cols || len(scores.Data) != len(w.Data) {
		return fmt.Errorf("%s: metric %s: %w: scores %dx%d for weight %dx%d", info, m.Metric.Name(), ErrShape,
			scores.Rows, scores.Cols, w.Rows, w.Cols)
	}
	mask, err := m.Pattern.Select(ctx, scores, t, info)
	if err != nil {
		return stageErr(info, "pattern "+m.Pattern.Name(), err)
	}
	if mask == nil || mask.Rows != w.Rows || mask.Cols != w.Cols || len(mask.Bits) != (w.Rows*w.Cols+63)/64 {
		return fmt.Errorf("%s: pattern %s: %w: mask of the wrong shape", info, m.Pattern.Name(), ErrShape)
	}
	mask.Apply(w)
	return nil
}

// stageErr gives a stage's error its context: the layer and tensor, then the stage. The
// layer is not repeated when the error already names it (a plugin's error does).
func stageErr(info LayerInfo, stage string, err error) error {
	if strings.Contains(err.Error(), info.String()) {
		return fmt.Errorf("%s: %w", stage, err)
	}
	return fmt.Errorf("%s: %s: %w", info, stage, err)
}

// roundTo rounds fp32 values to what dtype d stores, in place.
func roundTo(x []float32, d dtype.DType) {
	switch d {
	case dtype.BF16:
		for i, v := range x {
			x[i] = dtype.BF16ToF32(dtype.F32ToBF16(v))
		}
	case dtype.F16:
		for i, v := range x {
			x[i] = dtype.F16ToF32(dtype.F32ToF16(v))
		}
	}
}

// accumulator gathers per-input statistics of the four distinct linear inputs of a block.
type accumulator struct {
	sumsq   map[config.Part][]float64
	hess    map[config.Part][]float64
	gram    []float32
	tokens  map[config.Part]int
	n       int
	hessian bool
}

func newAccumulator(cfg *config.Config, hessian bool) *accumulator {
	return &accumulator{sumsq: map[config.Part][]float64{}, hess: map[config.Part][]float64{},
		tokens: map[config.Part]int{}, hessian: hessian}
}

// inputOf maps a linear to the tap that sees its input.
func inputOf(p config.Part) config.Part {
	switch p {
	case config.PartQ, config.PartK, config.PartV:
		return config.PartQ
	case config.PartGate, config.PartUp:
		return config.PartGate
	}
	return p
}

func (a *accumulator) tap(p config.Part, x []float32, rows, cols int) {
	s := a.sumsq[p]
	if s == nil {
		s = make([]float64, cols)
		a.sumsq[p] = s
	}
	for r := 0; r < rows; r++ {
		row := x[r*cols : (r+1)*cols]
		for j, v := range row {
			s[j] += float64(v) * float64(v)
		}
	}
	a.tokens[p] += rows
	if a.hessian {
		h := a.hess[p]
		if h == nil {
			h = make([]float64, cols*cols)
			a.hess[p] = h
		}
		if cap(a.gram) < cols*cols {
			a.gram = make([]float32, cols*cols)
		}
		g := a.gram[:cols*cols]
		tensor.Sgemm(true, false, cols, cols, rows, 1, x, cols, x, cols, 0, g, cols)
		for k, v := range g {
			h[k] += float64(v)
		}
	}
}

func (a *accumulator) stats(p config.Part) *Stats {
	q := inputOf(p)
	s := a.sumsq[q]
	st := &Stats{N: a.n, Tokens: a.tokens[q]}
	if s != nil {
		st.SumSq = make([]float32, len(s))
		for j, v := range s {
			st.SumSq[j] = float32(v / float64(a.n))
		}
	}
	if h := a.hess[q]; h != nil {
		st.Hessian = make([]float64, len(h))
		f := 2 / float64(a.n)
		for k, v := range h {
			st.Hessian[k] = v * f
		}
	}
	return st
}

// copyModelFiles copies the non-weight files of a model directory (config, tokenizer,
// generation config, ...) into dst.
func copyModelFiles(srcDir, dst string) error {
	ents, err := os.ReadDir(srcDir)
	if err != nil {
		return fmt.Errorf("read model directory: %w", err)
	}
	for _, e := range ents {
		name := e.Name()
		if !e.Type().IsRegular() || strings.HasSuffix(name, ".safetensors") || name == "model.safetensors.index.json" ||
			name == ReportFile || strings.HasPrefix(name, ".") || strings.HasSuffix(name, ".bin") || strings.HasSuffix(name, ".pt") {
			continue
		}
		if err := copyFile(filepath.Join(srcDir, name), filepath.Join(dst, name)); err != nil {
			return err
		}
	}
	return nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s: %w", src, err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("write %s: %w", dst, err)
	}
	return nil
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
