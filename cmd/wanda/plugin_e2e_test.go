package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wanda-go/wanda/internal/modelgen"
	"github.com/wanda-go/wanda/plugins/plugintest"
)

var pluginBuild struct {
	once  sync.Once
	dir   string
	paths map[string]string
	err   error
}

// builtPlugins compiles the example and test plugins once per test binary.
func builtPlugins(t *testing.T) (dir string, paths map[string]string) {
	t.Helper()
	pluginBuild.once.Do(func() {
		pluginBuild.dir, pluginBuild.err = os.MkdirTemp("", "wanda-e2e-plugins-")
		if pluginBuild.err == nil {
			pluginBuild.paths, pluginBuild.err = plugintest.Build(pluginBuild.dir)
		}
	})
	if pluginBuild.err != nil {
		t.Fatal(pluginBuild.err)
	}
	return pluginBuild.dir, pluginBuild.paths
}

// TestPluginMetricMatchesBuiltin: the Wanda metric run out of process gives the same pruned
// model files as the built-in.
func TestPluginMetricMatchesBuiltin(t *testing.T) {
	dir, _ := builtPlugins(t)
	model := genTiny(t, modelgen.Default())
	root := t.TempDir()
	calib := filepath.Join(root, "calib.jsonl")
	writeDemoCalib(t, calib)
	common := []string{"--model", model, "--calib", calib, "--nsamples", "6", "--seqlen", "48"}
	builtin, plugged := filepath.Join(root, "builtin"), filepath.Join(root, "plugin")
	if _, err := inspRun(t, "", append([]string{"prune", "--out", builtin, "--method", "wanda"}, common...)...); err != nil {
		t.Fatal(err)
	}
	if _, err := inspRun(t, "", append([]string{"prune", "--out", plugged, "--method", "plugin:wanda", "--plugin-dir", dir}, common...)...); err != nil {
		t.Fatal(err)
	}
	a, b := modelFiles(t, builtin), modelFiles(t, plugged)
	for name, data := range a {
		if string(b[name]) != string(data) {
			t.Errorf("%s differs between the built-in and the plugin metric", name)
		}
	}
}

// TestPluginMetricMatchesBuiltinTinyLlama: the same on the real model, all 42 tensors,
// calibrated on the first 16 of the reference's 128 windows (the comparison needs real
// activations, not all of them).
func TestPluginMetricMatchesBuiltinTinyLlama(t *testing.T) {
	if testing.Short() {
		t.Skip("prunes tiny-llama-a; skipped with -short")
	}
	shared := inspSharedDir(t)
	dir, _ := builtPlugins(t)
	calib := refCalib16(shared)
	builtin, _ := prunedTiny(t, shared, "wanda", "unstructured", calib...)
	plugged, _ := prunedTiny(t, shared, "plugin:wanda", "unstructured", append([]string{"--plugin-dir", dir}, calib...)...)
	a, b := modelFiles(t, builtin), modelFiles(t, plugged)
	if len(a) == 0 || len(a) != len(b) {
		t.Fatalf("%d vs %d files", len(a), len(b))
	}
	for name, data := range a {
		if string(b[name]) != string(data) {
			t.Errorf("%s differs between the built-in and the plugin metric", name)
		}
	}
}

// TestPluginFaultsInPrune: a misbehaving plugin fails the run with a message naming the plugin
// and the layer, leaves no output directory and no process behind.
func TestPluginFaultsInPrune(t *testing.T) {
	dir, paths := builtPlugins(t)
	model := genTiny(t, modelgen.Default())
	root := t.TempDir()
	calib := filepath.Join(root, "calib.jsonl")
	writeDemoCalib(t, calib)
	for _, mode := range []string{"crash", "hang", "shape", "nan", "version"} {
		t.Run(mode, func(t *testing.T) {
			out := filepath.Join(root, "out-"+mode)
			pidfile := filepath.Join(root, "pid-"+mode)
			cmd := cliCommand(t, []string{"WANDA_FAULTY_MODE=" + mode, "WANDA_FAULTY_PIDFILE=" + pidfile},
				"prune", "--model", model, "--out", out, "--method", paths["faulty"], "--calib", calib,
				"--nsamples", "4", "--seqlen", "32", "--plugin-timeout", "3s", "--plugin-dir", dir)
			start := time.Now()
			msg, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("prune with a %s plugin succeeded", mode)
			}
			var ee *exec.ExitError
			if !errors.As(err, &ee) {
				t.Fatal(err)
			}
			text := string(msg)
			if !strings.Contains(text, "faulty") {
				t.Errorf("error does not name the plugin:\n%s", text)
			}
			if mode != "version" {
				// Named once: the pipeline does not repeat what the plugin error says.
				if n := strings.Count(lastLine(text), "layer 0 "); n != 1 {
					t.Errorf("error names the layer %d times, want once:\n%s", n, text)
				}
			}
			if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("output directory exists after the failure")
			}
			ents, _ := os.ReadDir(root)
			for _, e := range ents {
				if strings.HasPrefix(e.Name(), ".out-"+mode) {
					t.Errorf("temporary %s left behind", e.Name())
				}
			}
			if out, _ := exec.Command("pgrep", "-f", paths["faulty"]).Output(); len(strings.TrimSpace(string(out))) > 0 {
				t.Errorf("plugin process still running: %s", out)
			}
			t.Logf("%s: failed after %.1fs: %s", mode, time.Since(start).Seconds(), lastLine(text))
		})
	}
}

// lastLine is the last non-empty line of s (the CLI's error message).
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
