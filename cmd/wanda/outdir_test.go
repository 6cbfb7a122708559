//go:build unix

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wanda-go/wanda/internal/modelgen"
	"github.com/wanda-go/wanda/internal/staging"
)

// TestOutputNeverDestroysInputs: --out "" , the model, a parent of the model,
// the working directory, a device node or an unrelated directory are refused
// (with --force too) before any work, and nothing is touched; --force replaces
// a previous output.
func TestOutputNeverDestroysInputs(t *testing.T) {
	root := t.TempDir()
	work := filepath.Join(root, "work")
	models := filepath.Join(work, "models")
	model := filepath.Join(models, "M")
	if err := modelgen.Write(model, modelgen.Default()); err != nil {
		t.Fatal(err)
	}
	precious := filepath.Join(work, "precious.txt")
	os.WriteFile(precious, []byte("keep"), 0o644)
	unrelated := filepath.Join(root, "documents")
	os.Mkdir(unrelated, 0o755)
	os.WriteFile(filepath.Join(unrelated, "thesis.tex"), []byte("keep"), 0o644)
	wd := filepath.Join(root, "checkpoints")
	t.Chdir(work)
	before := snapshotFiles(t, root)

	for _, tc := range []struct {
		name string
		args []string
		says string
	}{
		{"empty out", []string{"--out", ""}, "no output directory given"},
		{"the model", []string{"--out", model}, model + " is an input of this run"},
		{"the model spelled differently", []string{"--model", "models/M/", "--out", "./models/M/."}, model + " is an input of this run"},
		{"a parent of the model", []string{"--out", models}, "contains " + model},
		{"inside the model", []string{"--out", filepath.Join(model, "pruned")}, "lies inside " + model},
		{"the working directory", []string{"--out", "."}, "is the working directory"},
		{"a parent of the working directory", []string{"--out", root}, "contains the working directory"},
		{"inside the work directory", []string{"--workdir", wd, "--out", filepath.Join(wd, "out")}, "lies inside " + wd},
		{"a device node", []string{"--out", "/dev/null"}, "a character device"},
		{"an unrelated directory", []string{"--out", unrelated}, "thesis.tex"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{"prune", "--model", model, "--method", "magnitude", "--force"}
			args = append(args, tc.args...)
			stdout, err := inspRun(t, "", args...)
			if err == nil || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("wanda %s: %v, want a refusal saying %q", strings.Join(args, " "), err, tc.says)
			}
			if stdout != "" {
				t.Errorf("output: %s", stdout)
			}
			if after := snapshotFiles(t, root); !sameFiles(before, after) {
				t.Errorf("files changed: %s", diffFiles(before, after))
			}
		})
	}

	// A previous output is replaced with --force, refused without.
	out := filepath.Join(root, "pruned")
	if _, err := inspRun(t, "", "prune", "--model", model, "--out", out, "--method", "magnitude"); err != nil {
		t.Fatal(err)
	}
	if _, err := inspRun(t, "", "prune", "--model", model, "--out", out, "--method", "magnitude"); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("existing output without --force: %v", err)
	}
	if _, err := inspRun(t, "", "prune", "--model", model, "--out", out, "--method", "magnitude", "--pattern", "2:4", "--force"); err != nil {
		t.Errorf("replacing a previous output: %v", err)
	}

	// A concurrent run writing the same output is refused, naming its pid.
	busy := filepath.Join(root, "busy")
	d, err := staging.New(busy)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Remove()
	for _, args := range [][]string{
		{"prune", "--model", model, "--out", busy, "--method", "magnitude"},
		{"pack", "--model", out, "--out", busy},
	} {
		b, err := cliCommand(t, nil, args...).CombinedOutput()
		if err == nil || !strings.Contains(string(b), fmt.Sprintf("process %d ", os.Getpid())) {
			t.Errorf("wanda %s while this process writes %s: %v\n%s", args[0], busy, err, b)
		}
	}
}

func snapshotFiles(t *testing.T, dir string) map[string]string {
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

func sameFiles(a, b map[string]string) bool { return diffFiles(a, b) == "" }

func diffFiles(a, b map[string]string) string {
	var d []string
	for k, v := range a {
		if w, ok := b[k]; !ok {
			d = append(d, "removed "+k)
		} else if w != v {
			d = append(d, "changed "+k)
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			d = append(d, "added "+k)
		}
	}
	return strings.Join(d, ", ")
}
