package main

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/wanda-go/wanda/format/sparse"
	"github.com/wanda-go/wanda/internal/staging"
	"github.com/wanda-go/wanda/pipeline"
	_ "github.com/wanda-go/wanda/stages/metric"
	"github.com/wanda-go/wanda/transform"
)

// One validation of the numeric flags of every subcommand, run (by register)
// before the command does anything: a value out of range is a usage error
// naming the flag, never a panic, a silent default or a late failure.
//
// Flags not listed keep their own checks (strings, enumerations). A rule
// applies only to a flag the user gave; the defaults are valid.

// flagKind is how a flag's value is read.
type flagKind int

const (
	kindInt      flagKind = iota // cli.IntFlag / cli.Int64Flag
	kindFloat                    // cli.Float64Flag
	kindDuration                 // cli.DurationFlag
	kindSize                     // a cli.StringFlag holding a size ("5GB", "512MiB", bytes)
)

// flagRule bounds one numeric flag of some commands.
type flagRule struct {
	cmds     string // the commands it applies to, space-separated
	flag     string
	kind     flagKind
	min, max float64 // inclusive bounds (sizes in bytes, durations in seconds)
	want     string  // what a valid value is, for the message
}

// Limits far beyond any real use that keep arithmetic on the values exact.
const (
	maxSeqLen      = 1 << 20 // tokens per window (the longest context of any model is about 1M)
	maxChunkTokens = 1 << 24
	maxThreads     = 4096
	maxMemoryMiB   = 1 << 24 // 16 TiB
)

var flagRules = []flagRule{
	{"prune", "nsamples", kindInt, 1, math.MaxInt64, "must be at least 1 (its memory is checked against the machine's before sampling)"},
	{"prune", "seqlen", kindInt, 1, maxSeqLen, "must be between 1 and 1048576 (omit it for max_position_embeddings capped at 4096)"},
	{"eval", "seqlen", kindInt, 2, maxSeqLen, "must be at least 2 and at most 1048576 (omit it for max_position_embeddings capped at 4096)"},
	{"prune", "seed", kindInt, math.MinInt64, math.MaxInt64, "must be an integer"},
	{"prune", "sparsity", kindFloat, 0, math.Nextafter(1, 0), "out of range [0, 1) (the fraction pruned)"},
	{"prune", "chunk-tokens", kindInt, 1, maxChunkTokens, "must be between 1 and 16777216"},
	{"prune eval", "threads", kindInt, 1, maxThreads, "must be between 1 and 4096 (omit it to use all CPUs)"},
	{"prune", "gc-percent", kindInt, -1, math.MaxInt32, "must be at least -1 (-1 turns the collector off, like GOGC=off)"},
	{"eval", "max-windows", kindInt, 0, math.MaxInt64, "must be at least 0 (0 evaluates every window)"},
	{"eval", "memory-mib", kindInt, 1, maxMemoryMiB, "must be between 1 and 16777216"},
	{"merge-lora", "scale", kindFloat, -math.MaxFloat64, math.MaxFloat64, "must be finite and nonzero"},
	{"prune pack unpack merge-lora", "max-shard-size", kindSize, 0, math.MaxInt64, "must be a size such as 5GB or 500MiB (0 writes one file)"},
	{"prune", "activation-budget", kindSize, 0, math.MaxInt64, "must be a size such as 4GiB"},
	{"prune", "memory-limit", kindSize, 1, math.MaxInt64, "must be a positive size such as 8GiB"},
	{"prune", "plugin-timeout", kindDuration, 1e-9, math.MaxInt64 / 1e9, "must be a positive duration such as 30s or 5m"},
	{"list", "timeout", kindDuration, 1e-9, math.MaxInt64 / 1e9, "must be a positive duration such as 10s"},
	// Method parameters (OWL, DSnoT, RIA); the methods check their meaning, these
	// rules that they are numbers at all.
	{"prune", "owl-m", kindFloat, math.SmallestNonzeroFloat64, math.MaxFloat64, "must be a positive finite number"},
	{"prune", "owl-lambda", kindFloat, 0, math.Nextafter(1, 0), "out of range [0, 1)"},
	{"prune", "dsnot-max-cycles", kindInt, 0, math.MaxInt32, "must be at least 0"},
	{"prune", "dsnot-update-threshold", kindFloat, 0, math.MaxFloat64, "must be a finite number of at least 0"},
	{"prune", "dsnot-pow-of-var", kindFloat, -math.MaxFloat64, math.MaxFloat64, "must be a finite number"},
	{"prune", "ria-a", kindFloat, -math.MaxFloat64, math.MaxFloat64, "must be a finite number"},
}

// crossChecks are a command's checks of several flags together, also run
// before anything else.
var crossChecks = map[string]func(c *cli.Context) error{
	"prune": checkPruneFlags,
	"demo":  checkDemoFlags,
}

// validateFlags checks the numeric flags of c's command that were given.
func validateFlags(c *cli.Context) error {
	if c.Command == nil {
		return nil
	}
	name := c.Command.Name
	for _, r := range flagRules {
		if !strings.Contains(" "+r.cmds+" ", " "+name+" ") || !c.IsSet(r.flag) {
			continue
		}
		if err := r.check(c); err != nil {
			return err
		}
	}
	if f := crossChecks[name]; f != nil {
		return f(c)
	}
	return nil
}

func (r flagRule) check(c *cli.Context) error {
	refuse := func(shown string) error {
		return fmt.Errorf("%w: --%s %s %s", errUsage, r.flag, shown, r.want)
	}
	switch r.kind {
	case kindInt:
		var n int64
		switch v := c.Value(r.flag).(type) {
		case int:
			n = int64(v)
		case int64:
			n = v
		default:
			return fmt.Errorf("--%s: not an integer flag (%T)", r.flag, v) // a programmer's error in flagRules
		}
		// Compare as integers: float64 rounds values near the int64 limits.
		if (r.max < math.MaxInt64 && n > int64(r.max)) || (r.min > math.MinInt64 && n < int64(r.min)) {
			return refuse(strconv.FormatInt(n, 10))
		}
	case kindFloat:
		v := c.Float64(r.flag)
		if math.IsNaN(v) || v < r.min || v > r.max || (r.flag == "scale" && v == 0) {
			return refuse(strconv.FormatFloat(v, 'g', -1, 64))
		}
	case kindDuration:
		d := c.Duration(r.flag)
		if v := d.Seconds(); v < r.min || v > r.max {
			return refuse(d.String())
		}
	case kindSize:
		n, err := parseSize(c.String(r.flag))
		if err != nil {
			return fmt.Errorf("--%s: %w", r.flag, err)
		}
		if float64(n) < r.min {
			return refuse(fmt.Sprintf("%q", c.String(r.flag)))
		}
	}
	return nil
}

// parseSize parses a size: "5GB", "500MiB", "1.5GiB", "1024" (bytes). NaN,
// infinities, negative sizes and sizes beyond 8 EiB are refused.
func parseSize(s string) (int64, error) {
	t := strings.TrimSpace(strings.ToUpper(s))
	mult := int64(1)
	for _, u := range []struct {
		suf string
		m   int64
	}{{"KIB", 1 << 10}, {"MIB", 1 << 20}, {"GIB", 1 << 30}, {"TIB", 1 << 40}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"B", 1}} {
		if strings.HasSuffix(t, u.suf) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suf)), u.m
			break
		}
	}
	f, err := strconv.ParseFloat(t, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f < 0 {
		return 0, fmt.Errorf("%w: size %q (want e.g. 5GB, 512MiB, or a number of bytes)", errUsage, s)
	}
	b := f * float64(mult)
	if b >= math.MaxInt64 {
		return 0, fmt.Errorf("%w: size %q is larger than 8 EiB", errUsage, s)
	}
	return int64(b), nil
}

// checkPruneFlags: --out may be written (staging.CheckTarget: not empty, not
// an input or the working directory, and with --force only a model or a
// previous output); --pack-format names a format, and sparse-24-bitmask needs
// a pattern that guarantees 2:4 (checked here, not after pruning every layer).
func checkPruneFlags(c *cli.Context) error {
	if err := staging.CheckTarget(c.String("out"), c.Bool("force"), c.String("model"), c.String("workdir")); err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	pf := c.String("pack-format")
	f, err := transform.ParseFormat(pf)
	if err != nil {
		return fmt.Errorf("%w: --pack-format %q (want auto, %s)", errUsage, pf, sparse.FormatList())
	}
	// A layout that needs an N:M pattern (sparse-24-bitmask: 2:4) needs a --pattern
	// that guarantees it.
	if l, ok := sparse.LayoutOf(f); ok && c.Bool("pack") && l.Pattern != (sparse.NM{}) {
		pat := c.String("pattern")
		if isPluginSpec(pat) {
			return nil // only the plugin knows; pack checks every tensor
		}
		t, err := parsePattern(pat, 0.5)
		if err != nil {
			return err
		}
		if !t.Structured() || !l.Pattern.GuaranteedBy(t.N, t.M) {
			return fmt.Errorf("%w: --pack-format %s needs a pattern whose every aligned group of %d weights holds at least %d zeros (%s, or any N:M that guarantees it), not --pattern %s; use --pack-format auto or one that takes any sparsity",
				errUsage, f, l.Pattern.M, l.Pattern.N, l.Pattern, pat)
		}
	}
	return nil
}

// checkDemoFlags refuses a --method or --pattern that the demo's prune would
// refuse, before it generates a model.
func checkDemoFlags(c *cli.Context) error {
	m := c.String("method")
	switch {
	case isPluginSpec(m):
	default:
		if _, err := pipeline.BuiltinMethod(m, pipeline.Target{Sparsity: 0.5}, nil); err != nil {
			return fmt.Errorf("%w: --method: %w", errUsage, err)
		}
	}
	if p := c.String("pattern"); !isPluginSpec(p) {
		if _, err := parsePattern(p, 0.5); err != nil {
			return err
		}
	}
	return nil
}

// withValidation makes cmd (and its subcommands) run validateFlags before
// anything else.
func withValidation(cmd *cli.Command) {
	before := cmd.Before
	cmd.Before = func(c *cli.Context) error {
		if err := validateFlags(c); err != nil {
			return err
		}
		if before != nil {
			return before(c)
		}
		return nil
	}
	for _, sub := range cmd.Subcommands {
		withValidation(sub)
	}
}
