//go:build unix

package transform

import (
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wanda-go/wanda/format/config"
	"github.com/wanda-go/wanda/internal/staging"
)

// TestOutputSafety: pack, unpack and merge-lora refuse outputs that would
// destroy an input, the working directory or an unrecognised directory, and
// with Force replace only a model or previous output, and only once the new
// one is complete.
func TestOutputSafety(t *testing.T) {
	f := makePruned(t, fixtureOpts{dtype: "bf16", pattern: "2:4", masks: true, seed: 5})
	work := t.TempDir()
	packed := filepath.Join(work, "packed")
	if _, err := Pack(f.dir, packed, Options{}); err != nil {
		t.Fatal(err)
	}
	adapter := filepath.Join(work, "adapter")
	sh := f.shapes[config.LayerTensor(0, config.PartQ)]
	writeAdapter(t, adapter, map[string]any{"peft_type": "LORA", "r": 2, "lora_alpha": 2, "target_modules": []string{"q_proj"}},
		map[string]loraPair{module(0, config.PartQ): randPair(rand.New(rand.NewPCG(1, 2)), 2, int(sh[1]), int(sh[0]))})
	unrelated := filepath.Join(work, "documents")
	os.Mkdir(unrelated, 0o755)
	os.WriteFile(filepath.Join(unrelated, "thesis.tex"), []byte("years of work"), 0o644)
	t.Chdir(work)

	ops := map[string]func(out string, force bool) error{
		"pack": func(out string, force bool) error {
			_, err := Pack(f.dir, out, Options{Force: force})
			return err
		},
		"unpack": func(out string, force bool) error { return Unpack(packed, out, Options{Force: force}) },
		"merge-lora": func(out string, force bool) error {
			_, err := MergeLoRA(f.dir, adapter, out, MergeOptions{Force: force})
			return err
		},
	}
	input := map[string]string{"pack": f.dir, "unpack": packed, "merge-lora": f.dir}
	for name, op := range ops {
		t.Run(name, func(t *testing.T) {
			in := input[name]
			before := snapshot(t, in)
			for _, tc := range []struct {
				out  string
				want error
				says string
			}{
				{"", staging.ErrUnsafeTarget, "no output directory"},
				{".", staging.ErrUnsafeTarget, "working directory"},
				{in + "/./", staging.ErrUnsafeTarget, "an input of this run"},
				{filepath.Join(in, "out"), staging.ErrUnsafeTarget, "lies inside"},
				{filepath.Dir(in), staging.ErrUnsafeTarget, ""}, // contains the input (or is the working directory)
				{unrelated, staging.ErrUnsafeTarget, "thesis.tex"},
				{"/dev/null", staging.ErrNotDir, "character device"},
			} {
				err := op(tc.out, true)
				if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.says) {
					t.Errorf("%s --out %q --force: %v, want %v saying %q", name, tc.out, err, tc.want, tc.says)
				}
			}
			if name == "merge-lora" {
				if err := op(filepath.Join(adapter, "merged"), true); !errors.Is(err, staging.ErrUnsafeTarget) {
					t.Errorf("output inside the adapter: %v", err)
				}
			}
			if got := snapshot(t, in); !equalSnap(got, before) {
				t.Errorf("the input changed")
			}
			if b, err := os.ReadFile(filepath.Join(unrelated, "thesis.tex")); err != nil || string(b) != "years of work" {
				t.Errorf("an unrelated directory was touched: %v", err)
			}

			// A previous output: refused without force, replaced with it.
			out := filepath.Join(work, name+"-out")
			if err := op(out, false); err != nil {
				t.Fatal(err)
			}
			marker := filepath.Join(out, "old-marker")
			os.WriteFile(marker, nil, 0o644)
			if err := op(out, false); !errors.Is(err, ErrExists) {
				t.Errorf("existing output without force: %v", err)
			}
			if _, err := os.Stat(marker); err != nil {
				t.Errorf("refused run touched the existing output")
			}
			if err := op(out, true); err != nil {
				t.Fatalf("replace a previous output: %v", err)
			}
			if _, err := os.Stat(marker); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("old output not replaced")
			}
			if _, err := os.Stat(filepath.Join(out, "config.json")); err != nil {
				t.Errorf("new output incomplete: %v", err)
			}
			noTempDirs(t, work)

			// A concurrent writer of the same output is refused before any work.
			d, err := staging.New(filepath.Join(work, name+"-busy"))
			if err != nil {
				t.Fatal(err)
			}
			if err := op(filepath.Join(work, name+"-busy"), false); !errors.Is(err, staging.ErrBusy) {
				t.Errorf("concurrent writer: %v, want ErrBusy", err)
			}
			d.Remove()
		})
	}
}

// snapshot maps every file under dir to its content.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	m := map[string]string{}
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			b, _ := os.ReadFile(p)
			m[p] = string(b)
		}
		return nil
	})
	return m
}

func equalSnap(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
