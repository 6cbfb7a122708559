package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/wanda-go/wanda/format/config"
	"github.com/wanda-go/wanda/format/safetensors"
	"github.com/wanda-go/wanda/internal/staging"
)

// Errors of the runner.
var (
	ErrOutputExists = staging.ErrExists
	ErrNoCalib      = errors.New("pipeline: no calibration data")
	// ErrResumable: the work directory holds a checkpoint of a run that was not asked to
	// resume it.
	ErrResumable = fmt.Errorf("%w: the work directory holds an unfinished run", ErrCheckpoint)
)

// Run prunes every decoder layer of the model, streaming one layer at a time, and writes a
// complete Hugging Face model directory to opt.OutDir (built in a staging sibling and
// renamed into place when complete). See the package documentation for the steps.
func Run(ctx context.Context, opt Options) (*Report, error) {
	r, err := plan(&opt)
	if err != nil {
		return nil, err
	}
	defer r.close()
	if err := r.openOutput(); err != nil {
		return nil, err
	}
	if err := r.copyUntouched(); err != nil {
		return nil, err
	}
	if err := r.openActivations(); err != nil {
		return nil, err
	}
	if err := r.allocate(ctx); err != nil {
		return nil, err
	}
	if err := r.restoreFinished(); err != nil {
		return nil, err
	}
	for l := r.first; l < r.cfg.NumLayers; l++ {
		if err := r.layer(ctx, l); err != nil {
			return nil, err
		}
	}
	return r.finish()
}

// run is the state of one Run, in the order its steps fill it.
type run struct {
	// plan
	opt       *Options
	cfg       *config.Config
	log       *slog.Logger
	start     time.Time
	meter     *PeakMeter
	layers    []LayerSpec
	pruned    map[string]bool   // the tensors the run prunes
	targets   map[string]Target // their targets, where they differ from opt.Target
	sources   map[string]string // where those targets came from
	ignored   []string          // prunable linears kept dense (Options.Ignore)
	specs     []safetensors.Spec
	src       Weights
	needFwd   bool          // the method needs the statistics of a dense pass
	needCalib bool          // calibration windows flow through the model (needFwd, or an allocation pre-pass)
	channel   [][]StatsKind // per layer and input: the channel statistics a stage asked for
	seqlen    int
	chunk     int // calibration windows a block processes at once

	// openOutput
	out   string
	stage *staging.Dir
	w     *safetensors.Writer
	fp    string            // the run's fingerprint, with a work directory
	state *checkpointState  // the checkpoint being resumed, or nil
	sums  map[string]string // checksums of the checkpoint files written so far
	rep   *Report

	// progress
	label        string
	steps, total int64

	// openActivations: the hidden states entering the current layer, and a buffer for the
	// next layer's.
	in, next *Store
	scratch  []float32

	// the allocation pre-pass
	summaries  [][]float64
	allocation []float64

	// the layer loop
	first         int // the first layer this process prunes
	zeros, params int
	layerFile     *safetensors.Writer // the checkpoint file of the layer in progress
	done          bool                // the output is in place

	releaseWorkDir func() // drops the work directory's lock
}

// plan validates the options against the model and fixes what the run will do: the layers'
// linears, which of them are pruned, the export plan and the calibration shape. Nothing is
// written.
func plan(opt *Options) (*run, error) {
	if opt.Model == nil || opt.Source == nil {
		panic("pipeline: Run without Model or Source")
	}
	if err := opt.Method.Validate(); err != nil {
		return nil, err
	}
	r := &run{opt: opt, cfg: opt.Model.Config(), log: opt.Logger, start: time.Now(), pruned: map[string]bool{},
		targets: map[string]Target{}, sources: map[string]string{}, src: SetWeights(opt.Source), needFwd: opt.Method.NeedsStats()}
	r.needCalib = r.needFwd || opt.Allocator != nil
	if (opt.Allocator != nil || opt.SparsityOf != nil) && opt.Target.Structured() {
		return nil, fmt.Errorf("%w: per-layer and per-tensor sparsities apply to unstructured targets, not %v", ErrBadTarget, opt.Target)
	}
	if opt.Allocator != nil && opt.SparsityOf != nil {
		return nil, fmt.Errorf("%w: an allocation (%s) and per-tensor sparsities cannot be combined", ErrBadTarget, opt.Allocator.Name())
	}
	ignoreUsed := make([]bool, len(opt.Ignore))
	if r.log == nil {
		r.log = slog.Default()
	}
	src := opt.Source
	var missing []string
	for l := 0; l < r.cfg.NumLayers; l++ {
		spec := opt.Model.Layer(l)
		r.layers = append(r.layers, spec)
		for _, lin := range spec.Linears {
			if !lin.Prune {
				continue
			}
			t, ok := src.Tensor(lin.Name)
			if !ok {
				missing = append(missing, lin.Name)
				continue
			}
			if want := []int64{int64(lin.Rows), int64(lin.Cols)}; !slices.Equal(t.Shape, want) {
				return nil, fmt.Errorf("%s: tensor %q: shape %v, config.json implies %v: %w", t.File, lin.Name, t.Shape, want, ErrShape)
			}
			if !t.DType.IsFloat() {
				return nil, fmt.Errorf("%s: tensor %q: dtype %s is not a float type: %w", t.File, lin.Name, t.DType, ErrShape)
			}
			if i := slices.IndexFunc(opt.Ignore, func(re *regexp.Regexp) bool { return re.MatchString(lin.Name) }); i >= 0 {
				ignoreUsed[i] = true
				r.ignored = append(r.ignored, lin.Name)
				continue
			}
			tg := opt.Target
			if opt.SparsityOf != nil {
				if s, src, ok := opt.SparsityOf(l, lin.Name); ok {
					tg.Sparsity = s
					r.targets[lin.Name], r.sources[lin.Name] = tg, src
				}
			}
			if err := tg.Validate(lin.Cols); err != nil {
				return nil, fmt.Errorf("%s: %w", lin.Name, err)
			}
			r.pruned[lin.Name] = true
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%s: %w: %s", opt.ModelDir, safetensors.ErrMissingTensor, strings.Join(missing, ", "))
	}
	if err := r.checkTensors(); err != nil {
		return nil, err
	}
	for i, used := range ignoreUsed {
		if !used {
			return nil, fmt.Errorf("%w: the ignore pattern %q matches no prunable tensor", ErrBadTarget, opt.Ignore[i])
		}
	}
	if len(r.pruned) == 0 {
		return nil, fmt.Errorf("%w: every prunable tensor is ignored: nothing to prune", ErrBadTarget)
	}
	for _, name := range src.Names() {
		t, _ := src.Tensor(name)
		r.specs = append(r.specs, safetensors.Spec{Name: name, DType: t.DType, Shape: t.Shape})
	}
	if r.needCalib {
		if len(opt.Calib) == 0 {
			what := "method " + opt.Method.Name
			if !r.needFwd {
				what = "allocation " + opt.Allocator.Name()
			}
			return nil, fmt.Errorf("%w: %s needs calibration windows", ErrNoCalib, what)
		}
		r.seqlen = len(opt.Calib[0])
		for i, w := range opt.Calib {
			if len(w) == 0 {
				return nil, fmt.Errorf("%w: calibration window %d is empty", ErrNoCalib, i)
			}
			if len(w) != r.seqlen {
				return nil, fmt.Errorf("%w: calibration window %d has %d tokens, window 0 has %d", ErrNoCalib, i, len(w), r.seqlen)
			}
		}
		ct := opt.ChunkTokens
		if ct <= 0 {
			ct = 2048
		}
		r.chunk = min(max(1, ct/r.seqlen), len(opt.Calib)) // no working set beyond the calibration
	}
	if !r.needCalib {
		r.chunk = 1
	}
	r.planChannelStats()
	if opt.Allocator != nil {
		r.total += int64(len(r.layers)) * int64((len(opt.Calib)+r.chunk-1)/r.chunk+1)
	}
	for l := range r.layers {
		r.total += r.layerSteps(l)
		if err := r.checkMemory(l); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// planChannelStats decides, per layer and input, which statistics beyond the float64 SumSq
// the dense pass gathers: what the refiner reads for the tensors it applies to, and with
// RunningStats the float32 running SumSq of every input.
func (r *run) planChannelStats() {
	ref := r.opt.Method.Refiner
	if ref == nil && !r.opt.RunningStats {
		return
	}
	r.channel = make([][]StatsKind, len(r.layers))
	for l, spec := range r.layers {
		kinds := make([]StatsKind, len(spec.Inputs))
		for _, lin := range spec.Linears {
			if r.opt.RunningStats {
				kinds[lin.Input] |= StatsSumSq
			}
			if ref != nil && r.pruned[lin.Name] && ref.Applies(r.info(l, lin)) {
				kinds[lin.Input] |= ref.NeedsStats()
			}
		}
		r.channel[l] = kinds
	}
}

// target is the target of tensor name.
func (r *run) target(name string) Target {
	if t, ok := r.targets[name]; ok {
		return t
	}
	return r.opt.Target
}

// info describes linear lin of layer l to the stages.
func (r *run) info(l int, lin LinearSpec) LayerInfo {
	part := lin.Module[strings.LastIndexByte(lin.Module, '.')+1:]
	return LayerInfo{Layer: l, Tensor: lin.Name, Part: part, Expert: lin.Expert, ModelType: r.cfg.ModelType,
		Hidden: r.cfg.HiddenSize, Intermediate: r.cfg.IntermediateSize, NumLayers: r.cfg.NumLayers}
}

// layerSteps is the number of progress steps of layer l: the chunks of its dense and pruned
// forward passes and its pruned tensors.
func (r *run) layerSteps(l int) int64 {
	var n int64
	for _, lin := range r.layers[l].Linears {
		if r.pruned[lin.Name] {
			n++
		}
	}
	if r.needFwd {
		chunks := int64((len(r.opt.Calib) + r.chunk - 1) / r.chunk)
		n += chunks
		if l < r.cfg.NumLayers-1 {
			n += chunks
		}
	}
	return n
}

// step reports one more step done.
func (r *run) step() {
	r.steps++
	if r.opt.Progress != nil {
		r.opt.Progress(r.label, r.steps, r.total)
	}
}

// openOutput creates the staging directory, opens (or resumes) the work directory, checks
// the free space and starts the output writer and the report.
func (r *run) openOutput() error {
	opt := r.opt
	out, err := filepath.Abs(opt.OutDir)
	if err != nil {
		return err
	}
	r.out = out
	// Never write over an input, the working directory or something that is not a previous
	// output or model (staging.CheckTarget); an existing output is replaced only with Force.
	if err := staging.CheckTarget(out, opt.Force, opt.ModelDir, opt.WorkDir); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return fmt.Errorf("create parent of %s: %w", out, err)
	}
	if r.stage, err = staging.New(out); err != nil {
		return err
	}
	if err := r.openWorkDir(); err != nil {
		return err
	}
	var linear int64
	for name := range r.pruned {
		t, _ := opt.Source.Tensor(name)
		linear += t.Numel()
	}
	if err := checkDiskSpace(opt, out, r.seqlen, linear, r.scratchBytes()); err != nil {
		return err
	}
	r.w, err = safetensors.Create(r.stage.Path, r.specs, safetensors.WriterOptions{MaxShardBytes: opt.MaxShardBytes,
		Metadata: map[string]string{"format": "pt"}})
	if err != nil {
		return err
	}
	r.rep = newReport(opt, out, r.seqlen)
	r.rep.Ignored = r.ignored
	r.meter = StartPeakMeter(50 * time.Millisecond)
	return nil
}

// openWorkDir reads the checkpoint of a work directory, if there is one, and decides
// whether the run resumes it.
func (r *run) openWorkDir() error {
	opt := r.opt
	if opt.WorkDir == "" {
		if opt.Resume {
			return fmt.Errorf("%w: resuming needs a work directory", ErrCheckpoint)
		}
		return nil
	}
	if err := os.MkdirAll(opt.WorkDir, 0o755); err != nil {
		return fmt.Errorf("%w: create work directory: %w", ErrCheckpoint, err)
	}
	// One run at a time in a work directory: another would overwrite its checkpoints.
	release, err := staging.LockDir(opt.WorkDir)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrCheckpoint, err)
	}
	r.releaseWorkDir = release
	r.fp = fingerprint(opt)
	st, err := readState(opt.WorkDir)
	if err != nil {
		return err
	}
	switch {
	case st != nil && !opt.Resume:
		return fmt.Errorf("%w: %s (next layer %d): resume it, or remove the directory", ErrResumable, opt.WorkDir, st.NextLayer)
	case st != nil && st.Fingerprint != r.fp:
		return fmt.Errorf("%w: the checkpoint in %s belongs to a different run (model, method, pattern or calibration differ)",
			ErrCheckpoint, opt.WorkDir)
	case st == nil && opt.Resume:
		r.log.Warn("no checkpoint to resume; starting from the first layer", "workdir", opt.WorkDir)
	}
	r.state = st
	r.sums = map[string]string{}
	if st != nil {
		maps.Copy(r.sums, st.Sums)
	}
	removeStaleTemps(opt.WorkDir)
	return nil
}

// copyUntouched copies every tensor the run does not prune (embeddings, norms, biases,
// routers, lm_head), one at a time.
func (r *run) copyUntouched() error {
	src := r.opt.Source
	for _, name := range src.Names() {
		if r.pruned[name] {
			continue
		}
		t, _ := src.Tensor(name)
		if err := r.w.Write(name, t.Bytes()); err != nil {
			return err
		}
		src.Release(name)
	}
	return nil
}

// openActivations makes the activation stores and fills the first with the embedded
// calibration windows, or with the checkpointed activations when resuming.
func (r *run) openActivations() error {
	if !r.needCalib {
		return nil
	}
	opt := r.opt
	n, h := len(opt.Calib), r.cfg.HiddenSize
	var err error
	if r.in, err = NewStore(n, r.seqlen, h, opt.ActivationBudget/2, opt.ScratchDir); err != nil {
		return err
	}
	if r.next, err = NewStore(n, r.seqlen, h, opt.ActivationBudget/2, opt.ScratchDir); err != nil {
		return err
	}
	r.rep.ActivationsOn = "ram"
	if r.in.OnDisk() {
		r.rep.ActivationsOn = "scratch-file"
	}
	if st := r.state; st != nil && st.NextLayer > 0 {
		if st.NextLayer < r.cfg.NumLayers && r.needFwd {
			return readActs(actsFile(opt.WorkDir, st.NextLayer), r.in.Samples(0, r.in.N), r.sums)
		}
		return nil
	}
	return r.embed()
}

// embed fills the input store with the embedded calibration windows.
func (r *run) embed() error {
	for i, ids := range r.opt.Calib {
		if err := r.opt.Model.Embed(ids, r.in.Samples(i, i+1)); err != nil {
			return fmt.Errorf("embed calibration window %d: %w", i, err)
		}
	}
	return nil
}

// restoreFinished copies the layers a resumed checkpoint finished into the output.
func (r *run) restoreFinished() error {
	st := r.state
	if st == nil {
		return nil
	}
	r.first = st.NextLayer
	for l := 0; l < r.first; l++ {
		if err := restoreLayer(r.opt.WorkDir, l, r.w, r.sums); err != nil {
			return err
		}
		r.steps += r.layerSteps(l)
	}
	r.rep.Layers, r.rep.Tensors = st.Layers, st.Tensors
	r.zeros, r.params = st.Zeros, st.Params
	r.log.Info("resuming", "workdir", r.opt.WorkDir, "next_layer", r.first)
	return nil
}

// finish completes the output (shards, index, model files, the caller's extras, the
// report), moves it into place and clears the work directory.
func (r *run) finish() (*Report, error) {
	rep := r.rep
	if r.params > 0 {
		rep.GlobalSparsity = float64(r.zeros) / float64(r.params)
	}
	if err := r.w.Close(); err != nil {
		return nil, err
	}
	tmp := r.stage.Path
	if err := copyModelFiles(r.opt.ModelDir, tmp); err != nil {
		return nil, err
	}
	rep.Seconds = time.Since(r.start).Seconds()
	if r.opt.Finish != nil {
		if err := r.opt.Finish(tmp, rep); err != nil {
			return nil, err
		}
	}
	pk := r.meter.Peak()
	rep.PeakRSSAnon, rep.PeakRSS = pk.RSSAnon, pk.HWM
	if err := writeJSON(filepath.Join(tmp, ReportFile), rep); err != nil {
		return nil, err
	}
	// With Force an existing output is swapped with the new one and removed afterwards: a
	// kill at any moment leaves the old or the new output under its name.
	commit := r.stage.Commit
	if r.opt.Force {
		commit = r.stage.Replace
	}
	if err := commit(r.out); err != nil {
		return nil, fmt.Errorf("move finished output into place: %w", err)
	}
	r.done = true
	if r.opt.WorkDir != "" {
		r.releaseWorkDir()
		clearWorkDir(r.opt.WorkDir, r.cfg.NumLayers)
	}
	return rep, nil
}

// close releases what the run holds; an unfinished output is removed.
func (r *run) close() {
	if r.releaseWorkDir != nil {
		r.releaseWorkDir()
	}
	if r.layerFile != nil {
		r.layerFile.Abort()
	}
	if !r.done {
		if r.w != nil {
			r.w.Abort()
		}
		if r.stage != nil {
			r.stage.Remove()
		}
	}
	if r.in != nil {
		r.in.Close()
	}
	if r.next != nil {
		r.next.Close()
	}
	if r.meter != nil {
		r.meter.Stop()
	}
}
