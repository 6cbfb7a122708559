package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wanda-go/wanda/format/config"
	"github.com/wanda-go/wanda/format/dtype"
	"github.com/wanda-go/wanda/format/safetensors"
	"github.com/wanda-go/wanda/internal/modelgen"
)

// rewriteModel rewrites the single-file model in dir, letting edit change each
// tensor's dtype and bytes (same shape).
func rewriteModel(t *testing.T, dir string, edit func(name string, dt dtype.DType, b []byte) (dtype.DType, []byte)) {
	t.Helper()
	set, err := safetensors.OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var specs []safetensors.Spec
	var data [][]byte
	for _, n := range set.Names() {
		tt, _ := set.Tensor(n)
		dt, b := edit(n, tt.DType, append([]byte(nil), tt.Bytes()...))
		specs = append(specs, safetensors.Spec{Name: n, DType: dt, Shape: tt.Shape})
		data = append(data, b)
	}
	set.Close()
	if err := safetensors.WriteFile(filepath.Join(dir, safetensors.SingleName), specs, data, nil); err != nil {
		t.Fatal(err)
	}
}

// TestInspectReportsUnsoundModels: inspect reports NaN and ±Inf per tensor and
// a non-float prunable linear, and exits non-zero whenever it prints a
// problem; eval refuses such a model instead of printing ppl NaN.
func TestInspectReportsUnsoundModels(t *testing.T) {
	clean := genTiny(t, modelgen.Default())
	if out, err := inspRun(t, "", "inspect", "--model", clean); err != nil || strings.Contains(out, "problem:") {
		t.Fatalf("inspect of a sound model: %v\n%s", err, out)
	}

	bad := genTiny(t, modelgen.Default())
	down := config.LayerTensor(1, config.PartDown)
	q := config.LayerTensor(0, config.PartQ)
	rewriteModel(t, bad, func(name string, dt dtype.DType, b []byte) (dtype.DType, []byte) {
		switch name {
		case down: // bf16 NaN at [1, 2] and -Inf at [1, 3]; down_proj is [64, 128]
			b[2*(128+2)], b[2*(128+2)+1] = 0xc0, 0x7f
			b[2*(128+3)], b[2*(128+3)+1] = 0x80, 0xff
		case config.FinalNorm: // +Inf at [5]
			b[10], b[11] = 0x80, 0x7f
		case q: // stored as int16: not a float dtype
			return dtype.I16, b
		}
		return dt, b
	})
	out, err := inspRun(t, "", "inspect", "--model", bad)
	if !errors.Is(err, errInspectProblems) {
		t.Errorf("inspect of an unsound model: %v, want a non-zero exit", err)
	}
	for _, want := range []string{
		"problem: " + down + ": 1 NaN and 1 ±Inf values (the first at [1, 2])",
		"problem: " + config.FinalNorm + ": 0 NaN and 1 ±Inf values (the first at [5])",
		"problem: " + q + ": dtype I16 is not a float dtype",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("inspect output lacks %q:\n%s", want, out)
		}
	}
	rep := inspectJSON(t, bad)
	for _, ti := range rep.Tensors {
		switch ti.Name {
		case down:
			if ti.NaN != 1 || ti.Inf != 1 {
				t.Errorf("%s: nan %d inf %d", ti.Name, ti.NaN, ti.Inf)
			}
		case config.FinalNorm:
			if ti.NaN != 0 || ti.Inf != 1 {
				t.Errorf("%s: nan %d inf %d", ti.Name, ti.NaN, ti.Inf)
			}
		default:
			if ti.NaN != 0 || ti.Inf != 0 {
				t.Errorf("%s: nan %d inf %d", ti.Name, ti.NaN, ti.Inf)
			}
		}
	}

	// eval of a model with NaN weights (float dtypes only, so that it loads).
	nan := genTiny(t, modelgen.Default())
	rewriteModel(t, nan, func(name string, dt dtype.DType, b []byte) (dtype.DType, []byte) {
		if name == down {
			b[2*(128+2)], b[2*(128+2)+1] = 0xc0, 0x7f
		}
		return dt, b
	})
	text := filepath.Join(t.TempDir(), "eval.txt")
	writeText(t, text, strings.Repeat(demoText[0]+" ", 3))
	stdout, err := inspRun(t, "", "eval", "--model", nan, "--data", text, "--seqlen", "32")
	if err == nil || !strings.Contains(err.Error(), "layer 1 produced NaN activations") || !strings.Contains(err.Error(), down+" holds NaN at [1, 2]") {
		t.Errorf("eval of a NaN model: %v", err)
	}
	if strings.Contains(stdout, "ppl") {
		t.Errorf("eval printed a perplexity: %s", stdout)
	}
}

func writeText(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}
