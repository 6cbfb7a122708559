//go:build unix

package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wanda-go/wanda/internal/modelgen"
)

// copyDir copies the files of src into a new directory dst.
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// fifoInPlace replaces dir/name with a named pipe that nobody writes.
func fifoInPlace(t *testing.T, path string) string {
	t.Helper()
	os.Remove(path)
	if err := syscall.Mkfifo(path, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestFIFOInputsRefused: a named pipe in place of any input file (config.json,
// a shard, the index, tokenizer.json, calibration or evaluation data, token
// files, adapter files) is refused at once with its path, never blocking.
// Each command runs as a child process (a blocked open would hang it).
func TestFIFOInputsRefused(t *testing.T) {
	root := t.TempDir()
	model := genTiny(t, modelgen.Default())
	shardedOpt := modelgen.Default()
	shardedOpt.MaxShardBytes = 64 << 10
	sharded := genTiny(t, shardedOpt)
	calib := filepath.Join(root, "calib.jsonl")
	writeDemoCalib(t, calib)
	text := filepath.Join(root, "eval.txt")
	os.WriteFile(text, []byte(strings.Repeat(demoText[0]+" ", 4)), 0o644)

	variant := func(name, fifo string, from string) (dir, path string) {
		dir = filepath.Join(root, name)
		copyDir(t, from, dir)
		return dir, fifoInPlace(t, filepath.Join(dir, fifo))
	}
	cfgM, cfgP := variant("cfg", "config.json", model)
	shardM, shardP := variant("shard", "model.safetensors", model)
	idxM, idxP := variant("idx", "model.safetensors.index.json", sharded)
	tokM, tokP := variant("tok", "tokenizer.json", model)
	dataP := fifoInPlace(t, filepath.Join(root, "data.fifo"))
	adapter := filepath.Join(root, "adapter")
	os.Mkdir(adapter, 0o755)
	adCfgP := fifoInPlace(t, filepath.Join(adapter, "adapter_config.json"))

	out := func(n string) string { return filepath.Join(root, "out-"+n) }
	for _, tc := range []struct {
		name string
		fifo string
		args []string
	}{
		{"inspect config", cfgP, []string{"inspect", "--model", cfgM}},
		{"inspect shard", shardP, []string{"inspect", "--model", shardM}},
		{"inspect index", idxP, []string{"inspect", "--model", idxM}},
		{"eval config", cfgP, []string{"eval", "--model", cfgM, "--data", text, "--seqlen", "16"}},
		{"eval tokenizer", tokP, []string{"eval", "--model", tokM, "--data", text, "--seqlen", "16"}},
		{"eval data", dataP, []string{"eval", "--model", model, "--data", dataP, "--seqlen", "16"}},
		{"eval tokens", dataP, []string{"eval", "--model", model, "--tokens", dataP, "--tokens-key", "ids", "--seqlen", "16"}},
		{"prune config", cfgP, []string{"prune", "--model", cfgM, "--out", out("1"), "--method", "magnitude"}},
		{"prune shard", shardP, []string{"prune", "--model", shardM, "--out", out("2"), "--method", "magnitude"}},
		{"prune index", idxP, []string{"prune", "--model", idxM, "--out", out("3"), "--method", "magnitude"}},
		{"prune calib", dataP, []string{"prune", "--model", model, "--out", out("4"), "--calib", dataP, "--nsamples", "2", "--seqlen", "16"}},
		{"prune calib-tokens", dataP, []string{"prune", "--model", model, "--out", out("5"), "--calib-tokens", dataP, "--calib-key", "ids"}},
		{"prune tokenizer", tokP, []string{"prune", "--model", tokM, "--out", out("6"), "--calib", calib, "--nsamples", "2", "--seqlen", "16"}},
		{"pack config", cfgP, []string{"pack", "--model", cfgM, "--out", out("7")}},
		{"unpack config", cfgP, []string{"unpack", "--model", cfgM, "--out", out("8")}},
		{"merge-lora adapter config", adCfgP, []string{"merge-lora", "--model", model, "--adapter", adapter, "--out", out("9")}},
		{"tokenize", tokP, []string{"tokenize", "--model", tokM, "--text", "hello"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := cliCommand(t, nil, tc.args...)
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			done := make(chan struct{})
			var b []byte
			var err error
			go func() {
				b, err = cmd.CombinedOutput()
				close(done)
			}()
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
				<-done
				t.Fatalf("wanda %s blocked on the FIFO %s", strings.Join(tc.args, " "), tc.fifo)
			}
			msg := lastLine(string(b))
			if err == nil || !strings.Contains(msg, tc.fifo) || !strings.Contains(msg, "named pipe (FIFO)") {
				t.Errorf("wanda %s: %v, last line %q: want a refusal naming %s as a named pipe", strings.Join(tc.args, " "), err, msg, tc.fifo)
			}
			for _, n := range []string{"1", "2", "3", "4", "5", "6", "7", "8", "9"} {
				if _, err := os.Stat(out(n)); err == nil {
					t.Errorf("output %s written", out(n))
				}
			}
		})
	}
}
