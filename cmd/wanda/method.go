package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/wanda-go/wanda/format/config"
	"github.com/wanda-go/wanda/format/safetensors"
	"github.com/wanda-go/wanda/pipeline"
	"github.com/wanda-go/wanda/stages/allocate"
	_ "github.com/wanda-go/wanda/stages/refine" // the built-in refinements
)

// methodParams are the stage parameters of built-in method name given by flags.
func methodParams(c *cli.Context, name string) pipeline.Params {
	p := pipeline.Params{}
	if name == "ria" || c.IsSet("ria-a") {
		p["a"] = strconv.FormatFloat(c.Float64("ria-a"), 'g', -1, 64)
		if name != "ria" {
			p["a"] = "" // rejected by the method: --ria-a applies to --method ria
		}
	}
	return p
}

// refineParams are the parameters of refinement name given by flags.
func refineParams(c *cli.Context, name string) pipeline.Params {
	if name != "dsnot" {
		return nil
	}
	return pipeline.Params{
		"max-cycles":       strconv.Itoa(c.Int("dsnot-max-cycles")),
		"update-threshold": strconv.FormatFloat(c.Float64("dsnot-update-threshold"), 'g', -1, 64),
		"pow-of-var":       strconv.FormatFloat(c.Float64("dsnot-pow-of-var"), 'g', -1, 64),
		"same-sign":        strconv.FormatBool(c.Bool("dsnot-same-sign")),
		"skip-layer":       c.String("dsnot-skip-layer"),
		"initial":          map[bool]string{true: "magnitude", false: "wanda"}[c.String("method") == "magnitude"],
	}
}

// methodExtras sets what prune's flags add to the method: --ignore, --sparsity-file,
// --allocation, --stats, and the run key that makes a checkpoint specific to them.
func methodExtras(c *cli.Context, cfg *config.Config, set *safetensors.Set, opt *pipeline.Options, closers *[]func()) error {
	var key []string
	for _, expr := range c.StringSlice("ignore") {
		re, err := regexp.Compile(expr)
		if err != nil {
			return fmt.Errorf("%w: --ignore %q: %w", errUsage, expr, err)
		}
		opt.Ignore = append(opt.Ignore, re)
		key = append(key, "ignore="+expr)
	}
	if path := c.String("sparsity-file"); path != "" {
		if opt.Target.Structured() {
			return fmt.Errorf("%w: --sparsity-file sets unstructured sparsities; it does not apply to --pattern %s", errUsage, c.String("pattern"))
		}
		f, err := allocate.LoadFile(path)
		if err != nil {
			return err
		}
		var names []string
		for l := 0; l < cfg.NumLayers; l++ {
			for _, lin := range opt.Model.Layer(l).Linears {
				if lin.Prune {
					names = append(names, lin.Name)
				}
			}
		}
		if err := f.Check(cfg.NumLayers, names); err != nil {
			return err
		}
		opt.SparsityOf = func(l int, name string) (float64, string, bool) {
			s, src := f.Sparsity(l, name, -1)
			if s < 0 {
				return 0, "", false
			}
			return s, "sparsity file: " + string(src), true
		}
		sum := sha256.New()
		fmt.Fprintf(sum, "%+v", *f)
		key = append(key, "sparsity-file="+hex.EncodeToString(sum.Sum(nil)))
	}
	if name := c.String("allocation"); name != "" {
		if opt.SparsityOf != nil {
			return fmt.Errorf("%w: --allocation and --sparsity-file both set the layers' sparsities; give one", errUsage)
		}
		if opt.Target.Structured() {
			return fmt.Errorf("%w: --allocation %s sets unstructured sparsities; it does not apply to --pattern %s", errUsage, name, c.String("pattern"))
		}
		if isPluginSpec(name) {
			a, closeFn, err := loadAllocationPlugin(c, name)
			if err != nil {
				return err
			}
			*closers = append(*closers, closeFn)
			opt.Allocator = a
			key = append(key, fmt.Sprintf("allocation=%v", a))
		} else {
			p := pipeline.Params{}
			if name == "owl" {
				p["m"] = strconv.FormatFloat(c.Float64("owl-m"), 'g', -1, 64)
				p["lambda"] = strconv.FormatFloat(c.Float64("owl-lambda"), 'g', -1, 64)
			}
			a, err := pipeline.BuiltinAllocator(name, p)
			if err != nil {
				return fmt.Errorf("%w: --allocation: %w", errUsage, err)
			}
			opt.Allocator = a
			key = append(key, fmt.Sprintf("allocation=%s%v", name, p))
		}
	}
	if r := opt.Method.Refiner; r != nil {
		key = append(key, fmt.Sprintf("refine=%s%+v", r.Name(), r))
	}
	switch s := c.String("stats"); s {
	case "auto":
		opt.RunningStats = opt.Method.Refiner != nil && opt.Method.Refiner.Name() == "dsnot"
	case "running":
		opt.RunningStats = true
	case "float64":
	default:
		return fmt.Errorf("%w: --stats %q (want auto, float64 or running)", errUsage, s)
	}
	if opt.RunningStats {
		key = append(key, "stats=running")
	}
	if ms := c.String("moe-stats"); ms != "all" {
		key = append(key, "moe-stats="+ms)
	}
	if m := opt.Method.Metric; m != nil {
		key = append(key, fmt.Sprintf("metric=%+v", m))
	}
	slices.Sort(key)
	opt.RunKey = strings.Join(key, ";")
	return nil
}
