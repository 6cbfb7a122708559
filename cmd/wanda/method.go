package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
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
	if name == "ria" {
		p["a"] = strconv.FormatFloat(c.Float64("ria-a"), 'g', -1, 64)
	}
	return p
}

// methodFlags are the flags of one stage's parameters and the stage they belong to: giving
// one without its stage is refused (checkMethodFlags) rather than silently ignored.
var methodFlags = []struct {
	stage, value string // the flag choosing the stage, and its value
	flags        []string
}{
	{"method", "ria", []string{"ria-a"}},
	{"allocation", "owl", []string{"owl-m", "owl-lambda"}},
	{"refine", "dsnot", []string{"dsnot-max-cycles", "dsnot-update-threshold", "dsnot-pow-of-var", "dsnot-same-sign", "dsnot-skip-layer"}},
}

// checkMethodFlags refuses a stage's parameter flags given without the stage (e.g. --ria-a
// without --method ria; a metric plugin takes its arguments as --plugin-arg key=value).
func checkMethodFlags(c *cli.Context) error {
	for _, m := range methodFlags {
		if c.String(m.stage) == m.value {
			continue
		}
		for _, f := range m.flags {
			if c.IsSet(f) {
				hint := ""
				if m.stage == "method" && isPluginSpec(c.String("method")) {
					hint = " (a plugin takes its arguments as --plugin-arg key=value)"
				}
				return fmt.Errorf("%w: --%s applies to --%s %s%s", errUsage, f, m.stage, m.value, hint)
			}
		}
	}
	return nil
}

// keyOf describes a built-in stage's settings for the run key: its exported fields as JSON
// (deterministic, unlike fmt's %v, which prints the addresses of nested pointers).
func keyOf(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("wanda: run key of %T: %v", v, err))
	}
	return string(b)
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
func methodExtras(c *cli.Context, cfg *config.Config, set *safetensors.Set, opt *pipeline.Options) error {
	if err := checkMethodFlags(c); err != nil {
		return err
	}
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
		// The file's settings, not its name or layout: a resumed run may name the same
		// sparsities by another path.
		named := *f
		named.Path = ""
		sum := sha256.Sum256([]byte(keyOf(named)))
		key = append(key, "sparsity-file="+hex.EncodeToString(sum[:]))
	}
	if name := c.String("allocation"); name != "" {
		if opt.SparsityOf != nil {
			return fmt.Errorf("%w: --allocation and --sparsity-file both set the layers' sparsities; give one", errUsage)
		}
		if opt.Target.Structured() {
			return fmt.Errorf("%w: --allocation %s sets unstructured sparsities; it does not apply to --pattern %s", errUsage, name, c.String("pattern"))
		}
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
	if r := opt.Method.Refiner; r != nil {
		key = append(key, "refine="+r.Name()+keyOf(r))
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
	// A plugin is known by its spec (a metric plugin's is the Method's name) and arguments.
	metricPlugin, patternPlugin := isPluginSpec(c.String("method")), isPluginSpec(c.String("pattern"))
	if m := opt.Method.Metric; m != nil && !metricPlugin {
		key = append(key, "metric="+m.Name()+keyOf(m))
	}
	if patternPlugin {
		key = append(key, "pattern-plugin="+c.String("pattern"))
	}
	if metricPlugin || patternPlugin {
		args := slices.Sorted(slices.Values(c.StringSlice("plugin-arg")))
		key = append(key, "plugin-args="+keyOf(args))
	}
	slices.Sort(key)
	opt.RunKey = strings.Join(key, ";")
	return nil
}
