package pipeline

import (
	"errors"
	"fmt"
	"github.com/wanda-go/wanda/internal/testhook"
	"os"
	"path/filepath"
)

// ErrNoSpace reports that a file system lacks the room a run needs.
var ErrNoSpace = errors.New("pipeline: not enough free disk space")

// checkDiskSpace fails early when the output's file system cannot hold the pruned model
// (same size as the source, plus the mask file of the linear pruned weights), or the work
// directory its checkpoints, or the scratch directory the largest tensor's scratch maps.
//
// WANDA_SKIP_SPACE_CHECK=1 skips the check (a test hook: it lets tests run out of space
// in the middle of writing).
func checkDiskSpace(opt *Options, out string, seqlen int, linear, scratch int64) error {
	if testhook.SkipSpaceCheck() {
		return nil
	}
	var need int64
	for _, name := range opt.Source.Names() {
		t, _ := opt.Source.Tensor(name)
		need += t.Numel() * int64(t.DType.Size())
	}
	need += linear/8 + 1<<20 // the mask file, headers, index, config and tokenizer files
	need += opt.ExtraBytes
	if err := requireFree(filepath.Dir(out), need); err != nil {
		return err
	}
	if scratch > 0 {
		dir := opt.ScratchDir
		if dir == "" {
			dir = os.TempDir()
		}
		if err := requireFree(dir, scratch); err != nil {
			return err
		}
	}
	if opt.WorkDir != "" {
		cfg := opt.Model.Config()
		acts := 2 * int64(len(opt.Calib)) * int64(seqlen) * int64(cfg.HiddenSize) * 4
		if err := requireFree(opt.WorkDir, need+acts); err != nil {
			return err
		}
	}
	return nil
}

// FormatBytes prints a byte count for people: "512 bytes", "12.5 MiB",
// "3.02 GiB" (three significant digits, binary units), so that small and large
// amounts both read sensibly.
func FormatBytes(n int64) string {
	if n < 1024 && n > -1024 {
		return fmt.Sprintf("%d bytes", n)
	}
	f := float64(n)
	unit := "bytes"
	for _, u := range []string{"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"} {
		if f < 1024 && f > -1024 {
			break
		}
		f /= 1024
		unit = u
	}
	switch {
	case f >= 100 || f <= -100:
		return fmt.Sprintf("%.0f %s", f, unit)
	case f >= 10 || f <= -10:
		return fmt.Sprintf("%.1f %s", f, unit)
	}
	return fmt.Sprintf("%.2f %s", f, unit)
}
