package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wanda-go/wanda/internal/modelgen"
)

// writeDemoCalib writes the demo text as a jsonl calibration file.
func writeDemoCalib(t *testing.T, path string) {
	t.Helper()
	var b strings.Builder
	for i := 0; i < 6; i++ {
		for j, p := range demoText {
			line, _ := json.Marshal(map[string]string{"text": p + " " + demoText[(i+j+1)%len(demoText)]})
			b.Write(line)
			b.WriteByte('\n')
		}
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// modelFiles returns the files of an output model directory that must be byte-identical
// between runs: everything except the report (timings) and the LoRA template directory
// (which names the output path).
func modelFiles(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string][]byte{}
	for _, e := range ents {
		if e.Name() == "wanda_report.json" || e.IsDir() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		m[e.Name()] = b
	}
	return m
}

func TestResumeAfterKill(t *testing.T) {
	root := t.TempDir()
	model := filepath.Join(root, "model")
	opt := modelgen.Default()
	opt.Layers = 4
	opt.MaxShardBytes = 200 << 10 // several shards and an index
	if err := modelgen.Write(model, opt); err != nil {
		t.Fatal(err)
	}
	calib := filepath.Join(root, "calib.jsonl")
	writeDemoCalib(t, calib)
	args := func(out string, extra ...string) []string {
		return append([]string{"prune", "--model", model, "--out", out, "--method", "wanda", "--calib", calib,
			"--nsamples", "6", "--seqlen", "48", "--max-shard-size", "200KiB", "--threads", "1"}, extra...)
	}
	ref := filepath.Join(root, "uninterrupted")
	if out, err := cliCommand(t, nil, args(ref)...).CombinedOutput(); err != nil {
		t.Fatalf("uninterrupted run: %v\n%s", err, out)
	}
	want := modelFiles(t, ref)
	if len(want) < 4 {
		t.Fatalf("uninterrupted output has only %d files", len(want))
	}

	for _, point := range []string{"forward:1", "export:2", "between:1", "forward:3"} {
		t.Run(point, func(t *testing.T) {
			out := filepath.Join(root, "out-"+strings.ReplaceAll(point, ":", "-"))
			work := filepath.Join(root, "work-"+strings.ReplaceAll(point, ":", "-"))
			cmd := cliCommand(t, []string{"WANDA_CRASH_AT=" + point}, args(out, "--workdir", work)...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			err := cmd.Run()
			requireKilled(t, err, point, stderr.String())
			if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("output directory exists after the crash (stat: %v)", err)
			}
			// Without --resume the checkpoint is refused, not overwritten.
			if msg, err := cliCommand(t, nil, args(out, "--workdir", work)...).CombinedOutput(); err == nil ||
				!strings.Contains(string(msg), "--resume") {
				t.Fatalf("rerun without --resume: err %v, output:\n%s", err, msg)
			}
			if msg, err := cliCommand(t, nil, args(out, "--workdir", work, "--resume")...).CombinedOutput(); err != nil {
				t.Fatalf("resume: %v\n%s", err, msg)
			}
			// The killed run's staging directory (a hidden sibling of out) is gone too.
			if left, _ := filepath.Glob(filepath.Join(root, "."+filepath.Base(out)+".tmp-*")); len(left) > 0 {
				t.Errorf("staging files of the killed run left beside the output: %q", left)
			}
			got := modelFiles(t, out)
			if len(got) != len(want) {
				t.Fatalf("resumed output has %d files, uninterrupted %d", len(got), len(want))
			}
			for name, b := range want {
				if !bytes.Equal(got[name], b) {
					t.Errorf("%s differs from the uninterrupted run", name)
				}
			}
			// Everything goes, including the temporary files the killed run left.
			if ents, err := os.ReadDir(work); !errors.Is(err, os.ErrNotExist) {
				var left []string
				for _, e := range ents {
					left = append(left, e.Name())
				}
				t.Errorf("work directory not removed after success (err %v), holds %q", err, left)
			}
		})
	}

	t.Run("other run refused", func(t *testing.T) {
		out := filepath.Join(root, "out-other")
		work := filepath.Join(root, "work-other")
		cmd := cliCommand(t, []string{"WANDA_CRASH_AT=between:0"}, args(out, "--workdir", work)...)
		cmd.Run()
		msg, err := cliCommand(t, nil, append(args(out, "--workdir", work, "--resume"), "--sparsity", "0.6")...).CombinedOutput()
		if err == nil || !strings.Contains(string(msg), "different run") {
			t.Fatalf("resume with another sparsity: err %v\n%s", err, msg)
		}
	})
}
