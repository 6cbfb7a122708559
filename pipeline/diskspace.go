package pipeline

import (
	"errors"
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
	if os.Getenv("WANDA_SKIP_SPACE_CHECK") == "1" {
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
