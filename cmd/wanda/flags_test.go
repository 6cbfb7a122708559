package main

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/wanda-go/wanda/format/config"
	"github.com/wanda-go/wanda/format/dtype"
	"github.com/wanda-go/wanda/format/peft"
	"github.com/wanda-go/wanda/format/safetensors"
	"github.com/wanda-go/wanda/internal/modelgen"
	"github.com/wanda-go/wanda/tensor"
)

// sizeFlags are the string flags that hold sizes.
var sizeFlags = []string{"max-shard-size", "activation-budget", "memory-limit"}

// numericFlags walks every command and subcommand and returns, per command
// name, its flags that take a number, a duration or a size.
func numericFlags() map[string][]string {
	out := map[string][]string{}
	var walk func(cmds []*cli.Command)
	walk = func(cmds []*cli.Command) {
		for _, c := range cmds {
			for _, f := range c.Flags {
				name := f.Names()[0]
				switch f.(type) {
				case *cli.IntFlag, *cli.Int64Flag, *cli.UintFlag, *cli.Uint64Flag, *cli.Float64Flag, *cli.DurationFlag:
					out[c.Name] = append(out[c.Name], name)
				case *cli.StringFlag:
					if slices.Contains(sizeFlags, name) {
						out[c.Name] = append(out[c.Name], name)
					}
				}
			}
			walk(c.Subcommands)
		}
	}
	walk(newApp().Commands)
	return out
}

// TestEveryNumericFlagHasARule: no numeric flag of any command escapes the one
// validation of flags.go.
func TestEveryNumericFlagHasARule(t *testing.T) {
	for cmd, flags := range numericFlags() {
		for _, f := range flags {
			found := false
			for _, r := range flagRules {
				if r.flag == f && strings.Contains(" "+r.cmds+" ", " "+cmd+" ") {
					found = true
				}
			}
			if !found {
				t.Errorf("%s --%s has no rule in flagRules", cmd, f)
			}
		}
	}
}

// Values tried for every flag of a kind: zero, negatives, the int64 limits,
// unparsable and non-finite spellings.
var (
	intValues      = []string{"0", "1", "2", "7", "-1", "-5", "9223372036854775807", "-9223372036854775808", "99999999999999999999", "1e3", "NaN"}
	floatValues    = []string{"0", "-0", "0.5", "1", "-1", "1e308", "-1e308", "1e309", "NaN", "Inf", "-Inf", "5e-324", "x"}
	durationValues = []string{"0", "-1s", "1ns", "3s", "2562047h", "9223372036854775807ns", "-9223372036854775808ns", "1e400h", "x"}
	sizeValues     = []string{"0", "1", "-1", "1B", "64KiB", "1.5MiB", "5GB", "NaN", "Inf", "-Inf", "1e30GB", "9223372036854775807", "9223372036854775808", "x", ""}
)

// mustRefuse lists, per flag, values that must be refused with an error
// naming the flag (any other value may succeed or fail, but never panic).
var mustRefuse = map[string][]string{
	"nsamples":          {"0", "-1", "-5", "9223372036854775807", "-9223372036854775808"},
	"seqlen":            {"0", "-1", "-5", "9223372036854775807", "-9223372036854775808"},
	"chunk-tokens":      {"0", "-1", "-5", "9223372036854775807"},
	"threads":           {"0", "-1", "-5", "9223372036854775807"},
	"gc-percent":        {"-5", "-9223372036854775808"},
	"max-windows":       {"-1", "-5"},
	"memory-mib":        {"0", "-1", "9223372036854775807"},
	"sparsity":          {"-1", "1", "1e308", "NaN", "Inf", "-Inf"},
	"scale":             {"0", "-0", "NaN", "Inf", "-Inf"},
	"max-shard-size":    {"-1", "NaN", "Inf", "1e30GB", "9223372036854775808", "x"},
	"activation-budget": {"-1", "NaN", "Inf", "1e30GB", "x"},
	"memory-limit":      {"0", "-1", "NaN", "Inf", "x"},
	"plugin-timeout":    {"0", "-1s", "-9223372036854775808ns"},
	"timeout":           {"0", "-1s"},
	// Flags of methods that may not be in this build: checked when present.
	"owl-m":                  {"0", "-1", "NaN", "Inf"},
	"owl-lambda":             {"-1", "1", "NaN", "Inf"},
	"dsnot-max-cycles":       {"-1", "-5", "-9223372036854775808"},
	"dsnot-update-threshold": {"-1", "NaN", "Inf"},
	"dsnot-pow-of-var":       {"NaN", "Inf", "-Inf"},
	"ria-a":                  {"NaN", "Inf", "-Inf"},
}

// mergeFixture writes a pruned model and a rank-1 adapter of its q_proj.
func mergeFixture(t *testing.T, root string) (model, adapter string) {
	t.Helper()
	model = filepath.Join(root, "pruned")
	packFixture(t, model, true)
	adapter = filepath.Join(root, "adapter")
	os.MkdirAll(adapter, 0o755)
	os.WriteFile(filepath.Join(adapter, peft.ConfigName), []byte(`{"peft_type":"LORA","r":1,"lora_alpha":1,"target_modules":["q_proj"]}`), 0o644)
	mod := strings.TrimSuffix(config.LayerTensor(0, config.PartQ), ".weight")
	a, b := make([]byte, 4*64), make([]byte, 4*64)
	for i := range 64 {
		binary.LittleEndian.PutUint32(a[4*i:], math.Float32bits(0.01))
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(1))
	}
	if err := safetensors.WriteFile(filepath.Join(adapter, peft.WeightsName), []safetensors.Spec{
		{Name: "base_model.model." + mod + ".lora_A.weight", DType: dtype.F32, Shape: []int64{1, 64}},
		{Name: "base_model.model." + mod + ".lora_B.weight", DType: dtype.F32, Shape: []int64{64, 1}},
	}, [][]byte{a, b}, nil); err != nil {
		t.Fatal(err)
	}
	return model, adapter
}

// TestNumericFlagValuesNeverPanic runs every numeric flag of every command
// with each value of its kind, in-process, on real small inputs: no value may
// panic, and the values of mustRefuse must be refused naming the flag.
func TestNumericFlagValuesNeverPanic(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the CLI a few hundred times")
	}
	root := t.TempDir()
	model := genTiny(t, modelgen.Default())
	calib := filepath.Join(root, "calib.jsonl")
	writeDemoCalib(t, calib)
	text := filepath.Join(root, "eval.txt")
	os.WriteFile(text, []byte(strings.Repeat(demoText[1]+" ", 4)), 0o644)
	pruned, adapter := mergeFixture(t, root)
	packed := filepath.Join(root, "packed")
	if _, err := packRun(t, "pack", "--model", pruned, "--out", packed); err != nil {
		t.Fatal(err)
	}
	plugins := t.TempDir()

	n := 0
	out := func() string { n++; return filepath.Join(root, fmt.Sprintf("out-%d", n)) }
	// base returns args that make cmd valid and quick, without flag f.
	base := func(cmd, f string) []string {
		var a []string
		switch cmd {
		case "prune":
			a = []string{"prune", "--model", model, "--out", out()}
			if slices.Contains([]string{"nsamples", "seqlen", "seed", "chunk-tokens"}, f) {
				a = append(a, "--method", "wanda", "--calib", calib, "--nsamples", "2", "--seqlen", "16")
			} else {
				a = append(a, "--method", "magnitude")
			}
		case "eval":
			a = []string{"eval", "--model", model, "--data", text, "--seqlen", "16", "--max-windows", "1"}
		case "pack":
			a = []string{"pack", "--model", pruned, "--out", out()}
		case "unpack":
			a = []string{"unpack", "--model", packed, "--out", out()}
		case "merge-lora":
			a = []string{"merge-lora", "--model", pruned, "--adapter", adapter, "--out", out()}
		case "list":
			a = []string{"plugins", "list", "--plugin-dir", plugins}
		default:
			t.Fatalf("no base arguments for %s", cmd)
		}
		// Drop f and its value when the base has it (the tested value replaces it).
		for i := 0; i+1 < len(a); i++ {
			if a[i] == "--"+f {
				a = append(a[:i:i], a[i+2:]...)
			}
		}
		return a
	}
	kindOf := func(cmd, f string) []string {
		for _, c := range newApp().Commands {
			for _, cc := range append([]*cli.Command{c}, c.Subcommands...) {
				if cc.Name != cmd {
					continue
				}
				for _, fl := range cc.Flags {
					if fl.Names()[0] != f {
						continue
					}
					switch fl.(type) {
					case *cli.Float64Flag:
						return floatValues
					case *cli.DurationFlag:
						return durationValues
					case *cli.StringFlag:
						return sizeValues
					}
					return intValues
				}
			}
		}
		t.Fatalf("%s has no flag %s", cmd, f)
		return nil
	}

	runs, refused := 0, 0
	for cmd, flags := range numericFlags() {
		for _, f := range flags {
			for _, v := range kindOf(cmd, f) {
				args := append(base(cmd, f), "--"+f, v)
				err, panicked := runGuarded(t, args)
				runs++
				if panicked != nil {
					t.Errorf("wanda %s panicked: %v", strings.Join(args, " "), panicked)
					continue
				}
				if slices.Contains(mustRefuse[f], v) {
					refused++
					if err == nil || !strings.Contains(err.Error(), "-"+f) {
						t.Errorf("wanda %s --%s %q: %v, want a refusal naming --%s", cmd, f, v, err, f)
					}
				}
			}
		}
	}
	t.Logf("%d runs, %d values that must be refused", runs, refused)
}

// runGuarded runs the CLI in-process, recovering a panic and restoring the
// process-wide settings prune changes (threads, GC percent, memory limit).
func runGuarded(t *testing.T, args []string) (err error, panicked any) {
	threads := tensor.Threads()
	gc := debug.SetGCPercent(100)
	debug.SetGCPercent(gc)
	limit := debug.SetMemoryLimit(-1)
	defer func() {
		panicked = recover()
		tensor.SetThreads(threads)
		debug.SetGCPercent(gc)
		debug.SetMemoryLimit(limit)
	}()
	_, err = inspRun(t, "", args...)
	return err, nil
}

// TestFlagRefusalsBeforeWork: refusals that used to come after the work (or
// never) come before it.
func TestFlagRefusalsBeforeWork(t *testing.T) {
	root := t.TempDir()
	model := genTiny(t, modelgen.Default())
	calib := filepath.Join(root, "calib.jsonl")
	writeDemoCalib(t, calib)
	tokens := filepath.Join(root, "tokens.safetensors")
	ids := make([]byte, 8*4*16)
	for i := range 4 * 16 {
		binary.LittleEndian.PutUint64(ids[8*i:], uint64(i%300))
	}
	if err := safetensors.WriteFile(tokens, []safetensors.Spec{{Name: "ids", DType: dtype.I64, Shape: []int64{4, 16}}}, [][]byte{ids}, nil); err != nil {
		t.Fatal(err)
	}
	demoDir := filepath.Join(root, "demo")
	for _, tc := range []struct {
		name string
		args []string
		says string
	}{
		{"calib-tokens with a negative seqlen", []string{"prune", "--model", model, "--out", filepath.Join(root, "o1"), "--calib-tokens", tokens, "--calib-key", "ids", "--seqlen", "-5"}, "--seqlen -5"},
		{"text calibration with a negative seqlen", []string{"prune", "--model", model, "--out", filepath.Join(root, "o2"), "--calib", calib, "--seqlen", "-5"}, "--seqlen -5"},
		{"huge nsamples", []string{"prune", "--model", model, "--out", filepath.Join(root, "o3"), "--calib", calib, "--nsamples", "9223372036854775807", "--seqlen", "16"},
			"9223372036854775807 calibration windows of 16 tokens (hidden size 64) need 5.9e+20 bytes of token ids and 7.56e+22 bytes of activations"},
		{"nsamples beyond the token file", []string{"prune", "--model", model, "--out", filepath.Join(root, "o4"), "--calib-tokens", tokens, "--calib-key", "ids", "--nsamples", "128"},
			"--nsamples 128 asks for more windows than " + tokens + "#ids holds (4 windows of 16 tokens)"},
		{"negative threads", []string{"prune", "--model", model, "--out", filepath.Join(root, "o5"), "--method", "magnitude", "--threads", "-3"}, "--threads -3"},
		{"zero chunk-tokens", []string{"prune", "--model", model, "--out", filepath.Join(root, "o6"), "--method", "magnitude", "--chunk-tokens", "0"}, "--chunk-tokens 0"},
		{"2:4 packing of an unstructured pattern", []string{"prune", "--model", model, "--out", filepath.Join(root, "o7"), "--method", "magnitude", "--pack", "--pack-format", "sparse-24-bitmask"},
			"--pack-format sparse-24-bitmask needs a pattern"},
		{"2:4 packing of 4:8", []string{"prune", "--model", model, "--out", filepath.Join(root, "o8"), "--method", "magnitude", "--pattern", "4:8", "--pack", "--pack-format", "sparse-24-bitmask"},
			"not --pattern 4:8"},
		{"unknown pack format", []string{"prune", "--model", model, "--out", filepath.Join(root, "o9"), "--method", "magnitude", "--pack", "--pack-format", "dense"}, `--pack-format "dense"`},
		{"demo with an unknown method", []string{"demo", "--dir", demoDir, "--method", "bogus"}, "bogus"},
		{"demo with a bad pattern", []string{"demo", "--dir", demoDir, "--pattern", "5:4"}, "0 < N < M"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stdout, err := inspRun(t, "", tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("wanda %s: %v, want an error saying %q", strings.Join(tc.args, " "), err, tc.says)
			}
			if stdout != "" {
				t.Errorf("work was done before the refusal:\n%s", stdout)
			}
			ents, _ := os.ReadDir(root)
			for _, e := range ents {
				if e.Name() != "calib.jsonl" && e.Name() != "tokens.safetensors" {
					t.Errorf("%s written", e.Name())
				}
			}
		})
	}
	// demo --dir never overwrites what it did not write.
	other := filepath.Join(t.TempDir(), "project")
	os.Mkdir(other, 0o755)
	os.WriteFile(filepath.Join(other, "calib.jsonl"), []byte("mine"), 0o644)
	os.WriteFile(filepath.Join(other, "notes.txt"), []byte("mine"), 0o644)
	if _, err := inspRun(t, "", "demo", "--dir", other); err == nil || !strings.Contains(err.Error(), "notes.txt") {
		t.Errorf("demo --dir of a directory with other files: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(other, "calib.jsonl")); string(b) != "mine" {
		t.Errorf("demo overwrote calib.jsonl")
	}

	// 2:4 packing with 2:4 (and 1:2, which guarantees it) is accepted.
	for _, p := range []string{"2:4", "1:2"} {
		if _, err := inspRun(t, "", "prune", "--model", model, "--out", filepath.Join(t.TempDir(), "o"), "--method", "magnitude",
			"--pattern", p, "--pack", "--pack-format", "sparse-24-bitmask"); err != nil {
			t.Errorf("--pattern %s --pack-format sparse-24-bitmask: %v", p, err)
		}
	}
}

// TestSeqLenWarning: prune warns when --seqlen exceeds max_position_embeddings,
// as eval does.
func TestSeqLenWarning(t *testing.T) {
	opt := modelgen.Default()
	opt.MaxPos = 32
	model := genTiny(t, opt)
	calib := filepath.Join(t.TempDir(), "calib.jsonl")
	writeDemoCalib(t, calib)
	app := newApp()
	var stdout, stderr strings.Builder
	app.Writer, app.ErrWriter = &stdout, &stderr
	app.ExitErrHandler = func(*cli.Context, error) {}
	err := app.Run([]string{"wanda", "prune", "--model", model, "--out", filepath.Join(t.TempDir(), "o"), "--calib", calib, "--nsamples", "2", "--seqlen", "48"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stderr.String(), "warning: seqlen 48 exceeds max_position_embeddings 32") {
		t.Errorf("no warning; stderr:\n%s", stderr.String())
	}
}
