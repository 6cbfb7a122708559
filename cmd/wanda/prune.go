package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/wanda-go/wanda/format/config"
	"github.com/wanda-go/wanda/format/safetensors"
	"github.com/wanda-go/wanda/format/sparse"
	"github.com/wanda-go/wanda/pipeline"
	_ "github.com/wanda-go/wanda/stages/metric" // the built-in metrics
	_ "github.com/wanda-go/wanda/stages/pattern"
	_ "github.com/wanda-go/wanda/stages/solver"
	"github.com/wanda-go/wanda/tensor"
)

// errUsage marks invalid flag combinations.
var errUsage = errors.New("invalid arguments")

func init() {
	register(&cli.Command{
		Name:      "prune",
		Usage:     "prune every decoder layer of a model and write a new model directory",
		UsageText: "wanda prune --model DIR --out DIR [--method wanda|magnitude|sparsegpt|plugin:NAME] [--pattern unstructured|N:M] [--sparsity S] (--calib FILE | --calib-tokens FILE --calib-key NAME)",
		Description: `Streams one decoder layer at a time: a dense forward pass over the calibration windows
gives each linear layer's input statistics, the method prunes all seven linears of the layer,
and a forward pass of the pruned layer produces the next layer's input. The output is a
complete Hugging Face model directory with pruned tensors in the source dtype (+0.0 zeros),
written to a temporary sibling and renamed into place when complete.`,
		Flags: append(pruneFlags(), pluginFlags()...),
		Action: func(c *cli.Context) error {
			ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
			defer stop()
			c.Context = ctx // plugin starts too stop at a signal
			return runPrune(ctx, c)
		},
	})
}

func pruneFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "model", Usage: "source model directory (config.json + safetensors)", Required: true},
		&cli.StringFlag{Name: "out", Usage: "output model directory (must not exist unless --force)", Required: true},
		&cli.StringFlag{Name: "method", Value: "wanda", Usage: strings.Join(pipeline.MethodNames(), ", ") + ", or plugin:NAME / a plugin binary's path (metric plugin)"},
		&cli.StringFlag{Name: "pattern", Value: "unstructured", Usage: "unstructured, N:M (N pruned of every M consecutive inputs, e.g. 2:4, 4:8), or plugin:NAME / a path (pattern plugin)"},
		&cli.Float64Flag{Name: "sparsity", Value: 0.5, Usage: "fraction pruned for unstructured patterns, in [0, 1)"},
		&cli.BoolFlag{Name: "variant", Usage: "Wanda's adaptive-alpha variant (unstructured, wanda only)"},
		&cli.StringFlag{Name: "group", Value: "auto", Usage: "comparison group for unstructured: row, matrix or column; auto = the method's own (matrix for magnitude, as the reference; row otherwise)"},
		&cli.StringFlag{Name: "calib", Usage: "calibration text: .jsonl of {\"text\": ...} documents (like C4) or a plain text file"},
		&cli.StringFlag{Name: "calib-format", Value: "auto", Usage: "format of --calib: auto, jsonl, text or wikitext"},
		&cli.StringFlag{Name: "calib-tokens", Usage: "safetensors file holding ready token windows [N, T] (integer tensor)"},
		&cli.StringFlag{Name: "calib-key", Usage: "tensor name inside --calib-tokens"},
		&cli.IntFlag{Name: "nsamples", Value: 128, Usage: "number of calibration windows"},
		&cli.StringFlag{Name: "moe-stats", Value: "all", Usage: "mixture-of-experts statistics: all (every expert sees every token, as llm-compressor's moe_calibrate_all_experts) or routed (only the tokens routed to it)"},
		&cli.IntFlag{Name: "seqlen", Usage: "tokens per calibration window (default: max_position_embeddings, capped at 4096)"},
		&cli.Int64Flag{Name: "seed", Value: 0, Usage: "seed of the calibration sampler (Python random, as the reference)"},
		&cli.StringFlag{Name: "max-shard-size", Value: "5GB", Usage: "largest output shard (e.g. 2GB, 500MiB); 0 = one file"},
		&cli.StringFlag{Name: "activation-budget", Value: "4GiB", Usage: "RAM for the calibration activations; beyond it they live in a memory-mapped scratch file"},
		&cli.StringFlag{Name: "scratch-dir", Usage: "directory of the activation scratch file (default: the system temp dir)"},
		&cli.IntFlag{Name: "chunk-tokens", Value: 2048, Usage: "token rows a block processes at once (bounds the working set)"},
		&cli.IntFlag{Name: "threads", Usage: "GEMM threads (default: all CPUs)"},
		&cli.StringFlag{Name: "memory-limit", Usage: "memory the run may use (e.g. 2GiB; default: the machine's or the cgroup's): a method that would need more for some tensor (SparseGPT's Hessian) is refused up front, and the Go heap is held under it like GOMEMLIMIT"},
		&cli.IntFlag{Name: "gc-percent", Value: 25, Usage: "heap growth allowed between collections (like GOGC); the pipeline's big per-layer buffers make the Go default of 100 wasteful"},
		&cli.StringFlag{Name: "workdir", Usage: "keep a checkpoint here after every finished layer, so that an interrupted run can continue with --resume"},
		&cli.BoolFlag{Name: "resume", Usage: "continue the run checkpointed in --workdir (same model, method, pattern and calibration)"},
		&cli.BoolFlag{Name: "pack", Usage: "write pruned linears in a compressed-tensors layout (auto: the first of " + sparse.FormatList() + " that fits; sparse-24-bitmask for 2:4)"},
		&cli.StringFlag{Name: "pack-format", Value: "auto", Usage: "with --pack: auto or one of " + sparse.FormatList()},
		&cli.BoolFlag{Name: "force", Usage: "replace --out if it exists"},
		&cli.StringSliceFlag{Name: "ignore", Usage: "regular expression (RE2, unanchored) of tensor names that stay dense, byte for byte; repeatable"},
		&cli.StringFlag{Name: "sparsity-file", Usage: "JSON file of per-layer and per-tensor sparsities (see README: \"default\", \"layers\", \"tensors\" rules)"},
		&cli.StringFlag{Name: "allocation", Usage: "layer-wise sparsity from a dense pre-pass: " + strings.Join(pipeline.AllocatorNames(), ", ")},
		&cli.Float64Flag{Name: "owl-m", Value: 5, Usage: "OWL: a score is an outlier above M × the layer's mean score"},
		&cli.Float64Flag{Name: "owl-lambda", Value: 0.08, Usage: "OWL: the layers' sparsities spread over ±lambda around the target"},
		&cli.StringFlag{Name: "refine", Usage: "refine the chosen masks: " + strings.Join(pipeline.RefinerNames(), ", ")},
		&cli.IntFlag{Name: "dsnot-max-cycles", Value: 50, Usage: "DSnoT: most swaps per row"},
		&cli.Float64Flag{Name: "dsnot-update-threshold", Value: 0.1, Usage: "DSnoT: a row stops once its reconstruction error is within this"},
		&cli.Float64Flag{Name: "dsnot-pow-of-var", Value: 1, Usage: "DSnoT: the regrowing criterion is divided by var^p (0: not divided)"},
		&cli.BoolFlag{Name: "dsnot-same-sign", Usage: "DSnoT: also stop a row when a swap would flip the sign of its error (always on for N:M)"},
		&cli.StringFlag{Name: "dsnot-skip-layer", Value: "mlp", Usage: "DSnoT: leave this module of each layer unrefined (mlp, self_attn, or no_skip)"},
		&cli.StringFlag{Name: "stats", Value: "auto", Usage: "accumulation of the input statistics: float64, or running (the reference's float32 running averages); auto = running with --refine dsnot (as DSnoT's code), float64 otherwise"},
		&cli.Float64Flag{Name: "ria-a", Value: 0.5, Usage: "RIA: the activation exponent a of --method ria"},
		&cli.BoolFlag{Name: "json", Usage: "print the report as JSON on stdout"},
	}
}

// parsePattern parses "unstructured" or "N:M" into a target.
func parsePattern(s string, sparsity float64) (pipeline.Target, error) {
	t, err := pipeline.ParseTarget(s, sparsity)
	if err != nil {
		return t, fmt.Errorf("%w: --pattern: %w", errUsage, err)
	}
	return t, nil
}

// runPrune is the prune command: flags to pipeline.Options, pipeline.Run, the report.
func runPrune(ctx context.Context, c *cli.Context) error {
	memLimit, err := applyRuntimeFlags(c)
	if err != nil {
		return err
	}
	cfg, set, err := openModel(c.String("model"))
	if err != nil {
		return err
	}
	defer set.Close()
	closers := []func(){} // plugin clients, ended when the run is
	defer func() {
		for _, f := range closers {
			f()
		}
	}()
	target, refiner, err := pruneTarget(c, &closers)
	if err != nil {
		return err
	}
	method, err := pruneMethod(c, target, refiner, &closers)
	if err != nil {
		return err
	}
	opt, err := pruneOptions(c, cfg, set, method, target, memLimit, &closers)
	if err != nil {
		return err
	}
	rep, err := pipeline.Run(ctx, opt)
	console.Finish()
	if err != nil {
		return explainRunError(err, opt.WorkDir)
	}
	if c.Bool("json") {
		enc := json.NewEncoder(c.App.Writer)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	fmt.Fprintf(c.App.Writer, "pruned %s with %s (%s): global sparsity %.4f over %d tensors in %.1fs, peak anonymous RSS %.1f MiB\nwrote %s\n",
		opt.ModelDir, rep.Method, rep.Pattern, rep.GlobalSparsity, len(rep.Tensors), rep.Seconds,
		float64(rep.PeakRSSAnon)/(1<<20), rep.Output)
	return nil
}

// applyRuntimeFlags applies --threads, --gc-percent and --memory-limit to this process and
// returns the memory the run may use.
func applyRuntimeFlags(c *cli.Context) (int64, error) {
	if n := c.Int("threads"); n > 0 {
		tensor.SetThreads(n)
	}
	if _, set := os.LookupEnv("GOGC"); !set || c.IsSet("gc-percent") {
		debug.SetGCPercent(c.Int("gc-percent"))
	}
	memLimit := pipeline.SystemMemory()
	if s := c.String("memory-limit"); s != "" {
		lim, err := parseSize(s)
		if err != nil {
			return 0, fmt.Errorf("--memory-limit: %w", err)
		}
		debug.SetMemoryLimit(lim)
		memLimit = lim
	}
	return memLimit, nil
}

// pruneTarget reads what to prune to (--sparsity, --pattern, --group, --variant) and the mask
// refiner of --refine, built in or a plugin (whose client joins closers).
func pruneTarget(c *cli.Context, closers *[]func()) (pipeline.Target, pipeline.Refiner, error) {
	methodName := c.String("method")
	sparsity := c.Float64("sparsity")
	if !(sparsity >= 0 && sparsity < 1) {
		return pipeline.Target{}, nil, fmt.Errorf("%w: --sparsity %g out of range [0, 1)", errUsage, sparsity)
	}
	var target pipeline.Target
	patSpec := c.String("pattern")
	if isPluginSpec(patSpec) {
		target = pipeline.Target{Sparsity: sparsity}
	} else {
		var err error
		if target, err = parsePattern(patSpec, sparsity); err != nil {
			return target, nil, err
		}
		if target.Structured() && c.IsSet("sparsity") && sparsity != target.Sparsity {
			return target, nil, fmt.Errorf("%w: --sparsity %g conflicts with --pattern %s (which prunes %g)", errUsage, sparsity, patSpec, target.Sparsity)
		}
	}
	target.Group = pipeline.DefaultGroup(methodName)
	if err := checkStageArgs(c, isPluginSpec); err != nil {
		return target, nil, err
	}
	var refiner pipeline.Refiner
	if name := c.String("refine"); isPluginSpec(name) {
		r, closeFn, err := loadRefinePlugin(c, name)
		if err != nil {
			return target, nil, err
		}
		*closers = append(*closers, closeFn)
		refiner, target.Group = r, pipeline.GroupRow
	} else if name != "" {
		r, g, err := pipeline.BuiltinRefiner(name, refineParams(c, name))
		if err != nil {
			return target, nil, fmt.Errorf("%w: --refine: %w", errUsage, err)
		}
		refiner, target.Group = r, g
	}
	if g := c.String("group"); g != "auto" {
		var err error
		if target.Group, err = pipeline.ParseGroup(g); err != nil {
			return target, nil, fmt.Errorf("%w: --group: %w", errUsage, err)
		}
	}
	target.Variant = c.Bool("variant")
	if target.Variant && (target.Structured() || methodName != "wanda") {
		return target, nil, fmt.Errorf("%w: --variant applies to --method wanda with --pattern unstructured only", errUsage)
	}
	return target, refiner, nil
}

// pruneMethod builds the method of --method for target: a built-in one, or a metric plugin with
// the built-in or plugin pattern of --pattern; refiner (may be nil) refines its masks. Plugin
// clients join closers.
func pruneMethod(c *cli.Context, target pipeline.Target, refiner pipeline.Refiner, closers *[]func()) (pipeline.Method, error) {
	methodName, patSpec := c.String("method"), c.String("pattern")
	var method pipeline.Method
	var err error
	if isPluginSpec(methodName) {
		m, closeFn, err := loadMetricPlugin(c, methodName)
		if err != nil {
			return method, err
		}
		*closers = append(*closers, closeFn)
		method = pipeline.Method{Name: methodName, Metric: m}
		if !isPluginSpec(patSpec) {
			if method.Pattern, err = pipeline.BuiltinPattern(target); err != nil {
				return method, fmt.Errorf("%w: --pattern: %w", errUsage, err)
			}
		}
	} else if method, err = pipeline.BuiltinMethod(methodName, target, methodParams(c, methodName)); err != nil {
		return method, fmt.Errorf("%w: --method: %w", errUsage, err)
	}
	if method.Solver != nil {
		if isPluginSpec(patSpec) {
			return method, fmt.Errorf("%w: %s chooses its own mask; it cannot use a pattern plugin", errUsage, methodName)
		}
		if target.Group != pipeline.GroupRow && c.IsSet("group") {
			return method, fmt.Errorf("%w: %s chooses its mask per 128-column block; --group does not apply", errUsage, methodName)
		}
	} else if isPluginSpec(patSpec) {
		p, closeFn, err := loadPatternPlugin(c, patSpec)
		if err != nil {
			return method, err
		}
		*closers = append(*closers, closeFn)
		method.Pattern = p
	}
	if refiner != nil {
		if method.Solver != nil {
			return method, fmt.Errorf("%w: --refine %s refines masks chosen by a metric; %s updates the weights its mask was chosen for",
				errUsage, refiner.Name(), methodName)
		}
		method.Refiner = refiner
	}
	return method, nil
}

// pruneOptions assembles the run: output and scratch flags, the forward-pass model, the method's
// extras (allocation, per-tensor sparsities, ignores), the calibration windows, the room --pack
// needs, and the finishing step.
func pruneOptions(c *cli.Context, cfg *config.Config, set *safetensors.Set, method pipeline.Method, target pipeline.Target, memLimit int64, closers *[]func()) (pipeline.Options, error) {
	maxShard, err := parseSize(c.String("max-shard-size"))
	if err != nil {
		return pipeline.Options{}, fmt.Errorf("--max-shard-size: %w", err)
	}
	budget, err := parseSize(c.String("activation-budget"))
	if err != nil {
		return pipeline.Options{}, fmt.Errorf("--activation-budget: %w", err)
	}
	opt := pipeline.Options{
		Source: set, ModelDir: c.String("model"), Method: method, Target: target,
		OutDir: c.String("out"), Force: c.Bool("force"), MaxShardBytes: maxShard,
		ActivationBudget: budget, ScratchDir: c.String("scratch-dir"), ChunkTokens: c.Int("chunk-tokens"),
		WorkDir: c.String("workdir"), Resume: c.Bool("resume"), Progress: console.Progress, MemoryLimit: memLimit,
	}
	if opt.Model, err = newModel(set, cfg, c.String("moe-stats")); err != nil {
		return opt, err
	}
	if err := methodExtras(c, cfg, set, &opt, closers); err != nil {
		return opt, err
	}
	if method.NeedsStats() || opt.Allocator != nil {
		windows, info, err := loadCalibration(c, cfg)
		if err != nil {
			return opt, err
		}
		opt.Calib, opt.CalibInfo = windows, info
	} else if c.IsSet("calib") || c.IsSet("calib-tokens") {
		slog.Warn("the method uses no calibration data; ignoring it", "method", c.String("method"))
	}
	if c.Bool("pack") {
		// The packed copy is written beside the dense one before it replaces it.
		for _, name := range set.Names() {
			t, _ := set.Tensor(name)
			opt.ExtraBytes += t.Numel() * int64(t.DType.Size())
		}
	}
	opt.Finish = func(dir string, rep *pipeline.Report) error { return finishOutput(c, cfg, dir, rep) }
	return opt, nil
}

// explainRunError says how to go on from a failed or interrupted run.
func explainRunError(err error, workDir string) error {
	switch {
	case errors.Is(err, pipeline.ErrResumable):
		return fmt.Errorf("%w (pass --resume to continue it)", err)
	case errors.Is(err, context.Canceled) && workDir != "":
		return fmt.Errorf("interrupted (%w); finished layers are checkpointed in %s: run the same command with --resume to continue", err, workDir)
	case errors.Is(err, context.Canceled):
		return fmt.Errorf("interrupted: no output was written (%w); use --workdir DIR to be able to resume", err)
	}
	return err
}

func isPluginSpec(s string) bool {
	return strings.HasPrefix(s, "plugin:") || strings.ContainsRune(s, os.PathSeparator)
}
