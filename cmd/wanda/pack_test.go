package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/wanda-go/wanda/format/config"
	"github.com/wanda-go/wanda/format/dtype"
	"github.com/wanda-go/wanda/format/peft"
	"github.com/wanda-go/wanda/format/safetensors"
	"github.com/wanda-go/wanda/internal/modelgen"
)

// packRun runs the CLI in-process and returns its stdout.
func packRun(t *testing.T, args ...string) (string, error) {
	t.Helper()
	app := newApp()
	var out, errOut bytes.Buffer
	app.Writer, app.ErrWriter = &out, &errOut
	app.ExitErrHandler = func(*cli.Context, error) {}
	err := app.Run(append([]string{"wanda"}, args...))
	return out.String(), err
}

// packFixture writes a generated bf16 model to dir whose linears are zeroed
// 2:4 (nm) or in an irregular pattern, and returns every tensor's bytes.
func packFixture(t *testing.T, dir string, nm bool) map[string][]byte {
	t.Helper()
	src := filepath.Join(t.TempDir(), "dense")
	if err := modelgen.Write(src, modelgen.Default()); err != nil {
		t.Fatal(err)
	}
	set, err := safetensors.OpenDir(src)
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	os.MkdirAll(dir, 0o755)
	tensors := map[string][]byte{}
	var specs []safetensors.Spec
	var data [][]byte
	for _, n := range set.Names() {
		tt, _ := set.Tensor(n)
		b := append([]byte(nil), tt.Bytes()...)
		if _, p, ok := config.ParseLayerTensor(n); ok && p.IsLinear() {
			for k := 0; k < len(b)/2; k++ {
				drop := k%4 == 1 || k%4 == 2 // 2:4
				if !nm {
					drop = k%3 == 0 // breaks 2:4
				}
				if drop {
					b[2*k], b[2*k+1] = 0, 0
				}
			}
		}
		tensors[n] = b
		specs = append(specs, safetensors.Spec{Name: n, DType: tt.DType, Shape: tt.Shape})
		data = append(data, b)
	}
	if err := safetensors.WriteFile(filepath.Join(dir, safetensors.SingleName), specs, data, map[string]string{"format": "pt"}); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json"} {
		b, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, f), b, 0o644)
	}
	return tensors
}

func TestCLIPackUnpack(t *testing.T) {
	work := t.TempDir()
	model := filepath.Join(work, "pruned")
	want := packFixture(t, model, true)
	out, err := packRun(t, "pack", "--model", model, "--out", filepath.Join(work, "packed"), "--json")
	if err != nil {
		t.Fatal(err)
	}
	var res map[string]any
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if res["format"] != "sparse-24-bitmask" || res["packed_tensors"] != 14.0 || res["packed_ratio"].(float64) > 0.57 {
		t.Errorf("pack result %v", res)
	}
	t.Logf("pack --json: %s", out)
	if _, err := packRun(t, "unpack", "--model", filepath.Join(work, "packed"), "--out", filepath.Join(work, "dense"), "--max-shard-size", "30KB"); err != nil {
		t.Fatal(err)
	}
	set, err := safetensors.OpenDir(filepath.Join(work, "dense"))
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	if len(set.Shards()) < 2 || len(set.Names()) != len(want) {
		t.Errorf("%d shards, %d tensors", len(set.Shards()), len(set.Names()))
	}
	for n, b := range want {
		tt, ok := set.Tensor(n)
		if !ok || !bytes.Equal(tt.Bytes(), b) {
			t.Errorf("%s differs after pack/unpack", n)
		}
	}
}

func TestCLIPackRefusals(t *testing.T) {
	work := t.TempDir()
	model := filepath.Join(work, "pruned")
	packFixture(t, model, false)
	_, err := packRun(t, "pack", "--model", model, "--out", filepath.Join(work, "p"), "--format", "sparse-24-bitmask")
	if err == nil || !strings.Contains(err.Error(), "model.layers.0.") || !strings.Contains(err.Error(), "2:4") {
		t.Errorf("not 2:4: %v", err)
	}
	if _, err := packRun(t, "pack", "--model", model, "--out", filepath.Join(work, "p"), "--format", "zip"); !errors.Is(err, errUsage) {
		t.Errorf("bad format: %v", err)
	}
	if _, err := os.Stat(filepath.Join(work, "p")); !errors.Is(err, os.ErrNotExist) {
		t.Error("output written after a refusal")
	}
	out, err := packRun(t, "pack", "--model", model, "--out", filepath.Join(work, "p"))
	if err != nil || !strings.Contains(out, "sparse-bitmask (unstructured)") {
		t.Errorf("auto on unstructured: %v %q", err, out)
	}
}

func TestCLIMergeLoRA(t *testing.T) {
	work := t.TempDir()
	model := filepath.Join(work, "pruned")
	want := packFixture(t, model, true)
	q := config.LayerTensor(0, config.PartQ)
	mod := strings.TrimSuffix(q, ".weight")
	adir := filepath.Join(work, "adapter")
	os.MkdirAll(adir, 0o755)
	os.WriteFile(filepath.Join(adir, peft.ConfigName), []byte(`{"peft_type":"LORA","r":1,"lora_alpha":1,"target_modules":["q_proj"]}`), 0o644)
	// rank 1: A = 0.01 everywhere, B = 1 everywhere → ΔW = 0.01·s everywhere.
	a := make([]byte, 4*64)
	b := make([]byte, 4*64)
	for i := 0; i < 64; i++ {
		binary.LittleEndian.PutUint32(a[4*i:], math.Float32bits(0.01))
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(1))
	}
	if err := safetensors.WriteFile(filepath.Join(adir, peft.WeightsName), []safetensors.Spec{
		{Name: "base_model.model." + mod + ".lora_A.weight", DType: dtype.F32, Shape: []int64{1, 64}},
		{Name: "base_model.model." + mod + ".lora_B.weight", DType: dtype.F32, Shape: []int64{64, 1}},
	}, [][]byte{a, b}, nil); err != nil {
		t.Fatal(err)
	}
	out, err := packRun(t, "merge-lora", "--model", model, "--adapter", adir, "--out", filepath.Join(work, "merged"), "--scale", "2")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "merged 1 weights") {
		t.Errorf("output %q", out)
	}
	set, err := safetensors.OpenDir(filepath.Join(work, "merged"))
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	got, _ := set.Tensor(q)
	g, w := got.Bytes(), want[q]
	for k := 0; k < len(w)/2; k++ {
		wv := dtype.BF16ToF32(binary.LittleEndian.Uint16(w[2*k:]))
		gv := dtype.BF16ToF32(binary.LittleEndian.Uint16(g[2*k:]))
		if wv == 0 {
			if g[2*k] != 0 || g[2*k+1] != 0 {
				t.Fatalf("pruned weight %d became %v", k, gv)
			}
			continue
		}
		if d := math.Abs(float64(gv) - (float64(wv) + 0.02)); d > 0.004 {
			t.Fatalf("weight %d: %v, want %v + 0.02", k, gv, wv)
		}
	}
	// A bad adapter is refused with the file named.
	os.WriteFile(filepath.Join(adir, peft.ConfigName), []byte(`{"peft_type":"LORA","r":1,"fan_in_fan_out":true}`), 0o644)
	_, err = packRun(t, "merge-lora", "--model", model, "--adapter", adir, "--out", filepath.Join(work, "m2"))
	if err == nil || !strings.Contains(err.Error(), "fan_in_fan_out") || !strings.Contains(err.Error(), peft.ConfigName) {
		t.Errorf("fan_in_fan_out: %v", err)
	}
}
