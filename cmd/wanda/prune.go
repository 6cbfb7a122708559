package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/wanda-go/wanda/pipeline"
	"github.com/wanda-go/wanda/stages/metric"
	"github.com/wanda-go/wanda/stages/pattern"
	"github.com/wanda-go/wanda/stages/solver"
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
		&cli.StringFlag{Name: "method", Value: "wanda", Usage: "wanda, magnitude, sparsegpt, or plugin:NAME / a plugin binary's path (metric plugin)"},
		&cli.StringFlag{Name: "pattern", Value: "unstructured", Usage: "unstructured, N:M (N pruned of every M consecutive inputs, e.g. 2:4, 4:8), or plugin:NAME / a path (pattern plugin)"},
		&cli.Float64Flag{Name: "sparsity", Value: 0.5, Usage: "fraction pruned for unstructured patterns, in [0, 1)"},
		&cli.BoolFlag{Name: "variant", Usage: "Wanda's adaptive-alpha variant (unstructured, wanda only)"},
		&cli.StringFlag{Name: "group", Value: "auto", Usage: "comparison group for unstructured: row, matrix or column; auto = matrix for magnitude (as the reference), row otherwise"},
		&cli.StringFlag{Name: "calib", Usage: "calibration text: .jsonl of {\"text\": ...} documents (like C4) or a plain text file"},
		&cli.StringFlag{Name: "calib-format", Value: "auto", Usage: "format of --calib: auto, jsonl, text or wikitext"},
		&cli.StringFlag{Name: "calib-tokens", Usage: "safetensors file holding ready token windows [N, T] (integer tensor)"},
		&cli.StringFlag{Name: "calib-key", Usage: "tensor name inside --calib-tokens"},
		&cli.IntFlag{Name: "nsamples", Value: 128, Usage: "number of calibration windows"},
		&cli.IntFlag{Name: "seqlen", Usage: "tokens per calibration window (default: max_position_embeddings, capped at 4096)"},
		&cli.Int64Flag{Name: "seed", Value: 0, Usage: "seed of the calibration sampler (Python random, as the reference)"},
		&cli.StringFlag{Name: "max-shard-size", Value: "5GB", Usage: "largest output shard (e.g. 2GB, 500MiB); 0 = one file"},
		&cli.StringFlag{Name: "activation-budget", Value: "4GiB", Usage: "RAM for the calibration activations; beyond it they live in a memory-mapped scratch file"},
		&cli.StringFlag{Name: "scratch-dir", Usage: "directory of the activation scratch file (default: the system temp dir)"},
		&cli.IntFlag{Name: "chunk-tokens", Value: 2048, Usage: "token rows a block processes at once (bounds the working set)"},
		&cli.IntFlag{Name: "threads", Usage: "GEMM threads (default: all CPUs)"},
		&cli.StringFlag{Name: "memory-limit", Usage: "soft limit for the Go heap (like GOMEMLIMIT, e.g. 2GiB): the collector works harder to stay under it"},
		&cli.IntFlag{Name: "gc-percent", Value: 25, Usage: "heap growth allowed between collections (like GOGC); the pipeline's big per-layer buffers make the Go default of 100 wasteful"},
		&cli.StringFlag{Name: "workdir", Usage: "keep a checkpoint here after every finished layer, so that an interrupted run can continue with --resume"},
		&cli.BoolFlag{Name: "resume", Usage: "continue the run checkpointed in --workdir (same model, method, pattern and calibration)"},
		&cli.BoolFlag{Name: "pack", Usage: "write pruned linears in the compressed-tensors layout (sparse-24-bitmask for 2:4, sparse-bitmask otherwise)"},
		&cli.StringFlag{Name: "pack-format", Value: "auto", Usage: "with --pack: auto, sparse-24-bitmask or sparse-bitmask"},
		&cli.BoolFlag{Name: "force", Usage: "replace --out if it exists"},
		&cli.BoolFlag{Name: "json", Usage: "print the report as JSON on stdout"},
	}
}

// parsePattern parses "unstructured" or "N:M" into a target.
func parsePattern(s string, sparsity float64) (pipeline.Target, error) {
	if s == "unstructured" {
		return pipeline.Target{Sparsity: sparsity}, nil
	}
	a, b, ok := strings.Cut(s, ":")
	n, err1 := strconv.Atoi(a)
	m, err2 := strconv.Atoi(b)
	if !ok || err1 != nil || err2 != nil {
		return pipeline.Target{}, fmt.Errorf("%w: --pattern %q (want unstructured or N:M such as 2:4)", errUsage, s)
	}
	t := pipeline.Target{N: n, M: m, Sparsity: float64(n) / float64(m)}
	if n <= 0 || m <= 0 || n >= m {
		return t, fmt.Errorf("%w: --pattern %s needs 0 < N < M", errUsage, s)
	}
	return t, nil
}

func runPrune(ctx context.Context, c *cli.Context) error {
	if n := c.Int("threads"); n > 0 {
		tensor.SetThreads(n)
	}
	if _, set := os.LookupEnv("GOGC"); !set || c.IsSet("gc-percent") {
		debug.SetGCPercent(c.Int("gc-percent"))
	}
	if s := c.String("memory-limit"); s != "" {
		lim, err := parseSize(s)
		if err != nil {
			return fmt.Errorf("--memory-limit: %w", err)
		}
		debug.SetMemoryLimit(lim)
	}
	cfg, set, err := openModel(c.String("model"))
	if err != nil {
		return err
	}
	defer set.Close()

	methodName := c.String("method")
	sparsity := c.Float64("sparsity")
	if !(sparsity >= 0 && sparsity < 1) {
		return fmt.Errorf("%w: --sparsity %g out of range [0, 1)", errUsage, sparsity)
	}
	var target pipeline.Target
	var pat pipeline.Pattern
	patSpec := c.String("pattern")
	if isPluginSpec(patSpec) {
		target = pipeline.Target{Sparsity: sparsity}
	} else {
		target, err = parsePattern(patSpec, sparsity)
		if err != nil {
			return err
		}
		if target.Structured() && c.IsSet("sparsity") && sparsity != target.Sparsity {
			return fmt.Errorf("%w: --sparsity %g conflicts with --pattern %s (which prunes %g)", errUsage, sparsity, patSpec, target.Sparsity)
		}
	}
	g := c.String("group")
	if g == "auto" {
		g = "row"
		if methodName == "magnitude" {
			g = "matrix"
		}
	}
	if target.Group, err = pipeline.ParseGroup(g); err != nil {
		return fmt.Errorf("%w: --group: %v", errUsage, err)
	}
	target.Variant = c.Bool("variant")
	if target.Variant && (target.Structured() || methodName != "wanda") {
		return fmt.Errorf("%w: --variant applies to --method wanda with --pattern unstructured only", errUsage)
	}

	closers := []func(){}
	defer func() {
		for _, f := range closers {
			f()
		}
	}()
	method := pipeline.Method{Name: methodName}
	switch {
	case methodName == "sparsegpt":
		if isPluginSpec(patSpec) {
			return fmt.Errorf("%w: sparsegpt chooses its own mask; it cannot use a pattern plugin", errUsage)
		}
		if target.Group != pipeline.GroupRow && c.IsSet("group") {
			return fmt.Errorf("%w: sparsegpt chooses its mask per 128-column block; --group does not apply", errUsage)
		}
		method.Solver = solver.NewSparseGPT(solver.Options{})
	case isPluginSpec(methodName):
		m, closeFn, err := loadMetricPlugin(c, methodName)
		if err != nil {
			return err
		}
		closers = append(closers, closeFn)
		method.Metric = m
	default:
		m, err := metric.Builtin(methodName)
		if err != nil {
			return fmt.Errorf("%w: --method: %v", errUsage, err)
		}
		method.Metric = m
	}
	if method.Solver == nil {
		if isPluginSpec(patSpec) {
			p, closeFn, err := loadPatternPlugin(c, patSpec)
			if err != nil {
				return err
			}
			closers = append(closers, closeFn)
			pat = p
		} else {
			pat = pattern.ForTarget(target)
		}
		method.Pattern = pat
	}

	maxShard, err := parseSize(c.String("max-shard-size"))
	if err != nil {
		return fmt.Errorf("--max-shard-size: %w", err)
	}
	budget, err := parseSize(c.String("activation-budget"))
	if err != nil {
		return fmt.Errorf("--activation-budget: %w", err)
	}

	opt := pipeline.Options{
		Source: set, ModelDir: c.String("model"), Method: method, Target: target,
		OutDir: c.String("out"), Force: c.Bool("force"), MaxShardBytes: maxShard,
		ActivationBudget: budget, ScratchDir: c.String("scratch-dir"), ChunkTokens: c.Int("chunk-tokens"),
		WorkDir: c.String("workdir"), Resume: c.Bool("resume"), Progress: os.Stderr,
	}
	needCalib := method.Solver != nil || method.Metric.NeedsStats()
	seqlen := 0
	if needCalib {
		windows, info, err := loadCalibration(c, cfg)
		if err != nil {
			return err
		}
		opt.Calib, opt.CalibInfo = windows, info
		seqlen = info.SeqLen
		opt.ChunkTokens = min(opt.ChunkTokens, len(windows)*seqlen) // no working set beyond the calibration
	} else if c.IsSet("calib") || c.IsSet("calib-tokens") {
		fmt.Fprintf(os.Stderr, "note: --method %s uses no calibration data; ignoring it\n", methodName)
	}
	opt.Model = newFwdModel(set, cfg, seqlen)
	if c.Bool("pack") {
		// The packed copy is written beside the dense one before it replaces it.
		for _, name := range set.Names() {
			t, _ := set.Tensor(name)
			opt.ExtraBytes += t.Numel() * int64(t.DType.Size())
		}
	}
	opt.Finish = func(dir string, rep *pipeline.Report) error { return finishOutput(c, cfg, dir, rep) }

	rep, err := pipeline.Run(ctx, opt)
	if err != nil {
		if errors.Is(err, context.Canceled) {
			if opt.WorkDir != "" {
				return fmt.Errorf("interrupted (%v); finished layers are checkpointed in %s: run the same command with --resume to continue", err, opt.WorkDir)
			}
			return fmt.Errorf("interrupted: no output was written (%v); use --workdir DIR to be able to resume", err)
		}
		return err
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

func isPluginSpec(s string) bool {
	return strings.HasPrefix(s, "plugin:") || strings.ContainsRune(s, os.PathSeparator)
}
