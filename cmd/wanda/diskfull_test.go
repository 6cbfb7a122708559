package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wanda-go/wanda/internal/modelgen"
)

// smallDisk mounts a tmpfs of size bytes (root only; skips where it cannot).
func smallDisk(t *testing.T, size int64) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d", size), "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a small tmpfs here (%v: %s); full-disk behaviour not tested", err, strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() { exec.Command("umount", dir).Run() })
	return dir
}

func TestFullDisk(t *testing.T) {
	model := genTiny(t, modelgen.Default()) // ~320 KB of weights
	calib := filepath.Join(t.TempDir(), "calib.jsonl")
	writeDemoCalib(t, calib)
	args := func(out string) []string {
		return []string{"prune", "--model", model, "--out", out, "--calib", calib, "--nsamples", "4", "--seqlen", "32"}
	}
	t.Run("checked before writing", func(t *testing.T) {
		disk := smallDisk(t, 128<<10)
		out := filepath.Join(disk, "pruned")
		msg, err := cliCommand(t, nil, args(out)...).CombinedOutput()
		if err == nil {
			t.Fatal("prune onto a 128 KiB disk succeeded")
		}
		if !strings.Contains(string(msg), "not enough free disk space") || !strings.Contains(string(msg), "KiB free") || strings.Contains(string(msg), "0.00 GiB") {
			t.Fatalf("error does not say how much space is needed:\n%s", msg)
		}
		if ents, _ := os.ReadDir(disk); len(ents) != 0 {
			t.Fatalf("%d entries left on the disk", len(ents))
		}
	})
	// Sizes that run out at different points: reserving the shard, copying the tokenizer,
	// writing the masks or the report.
	for _, size := range []int64{256 << 10, 300 << 10, 316 << 10, 332 << 10, 340 << 10} {
		t.Run(fmt.Sprintf("runs out while writing/%dKiB", size>>10), func(t *testing.T) {
			fullDiskRun(t, size, args)
		})
	}
}

func fullDiskRun(t *testing.T, size int64, args func(string) []string) {
	{
		disk := smallDisk(t, size)
		out := filepath.Join(disk, "pruned")
		msg, err := cliCommand(t, []string{"WANDA_SKIP_SPACE_CHECK=1"}, args(out)...).CombinedOutput()
		if err == nil {
			t.Skipf("the run fits in %d KiB", size>>10)
		}
		if !strings.Contains(string(msg), disk) || !strings.Contains(strings.ToLower(string(msg)), "no space") {
			t.Fatalf("error does not name the file and the cause:\n%s", msg)
		}
		if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("output directory exists")
		}
		if ents, _ := os.ReadDir(disk); len(ents) != 0 {
			t.Fatalf("%d entries left on the disk: %v", len(ents), ents[0].Name())
		}
		t.Logf("error: %s", lastLine(string(msg)))
	}
}
