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

// methodFlags are the flags of one built-in stage: given without it they are refused.
var methodFlags = []struct {
	stage, value string
	flags        []string
}{
	{"method", "ria", []string{"ria-a"}},
	{"allocation", "owl", []string{"owl-m", "owl-lambda"}},
	{"refine", "dsnot", []string{"dsnot-max-cycles", "dsnot-update-threshold", "dsnot-pow-of-var", "dsnot-same-sign", "dsnot-skip-layer"}},
}

// checkMethodFlags refuses a built-in stage's flag given without that stage.
func checkMethodFlags(c *cli.Context) error {
	for _, m := range methodFlags {
		if c.String(m.stage) == m.value {
			continue
		}
		for _, f := range m.flags {
			if c.IsSet(f) {
				hint := ""
				if isPluginSpec(c.String(m.stage)) {
					hint = map[string]string{"method": " (a plugin takes its arguments as --plugin-arg key=value)",
						"allocation": " (a plugin takes its arguments as --allocation-arg key=value)",
						"refine":     " (a plugin takes its arguments as --refine-arg key=value)"}[m.stage]
				}
				return fmt.Errorf("%w: --%s applies to --%s %s%s", errUsage, f, m.stage, m.value, hint)
			}
		}
	}
	return nil
}

// keyOf is a stable text of v for the run key (never a pointer's address).
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
func methodExtras(c *cli.Context, cfg *config.Config, set *safetensors.Set, opt *pipeline.Options, closers *[]func()) error {
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
	if p := opt.Method.Pattern; p != nil && isPluginSpec(c.String("pattern")) {
		key = append(key, fmt.Sprintf("pattern=%v", p))
	}
	slices.Sort(key)
	opt.RunKey = strings.Join(key, ";")
	return nil
}
