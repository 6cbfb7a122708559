package pipeline

import (
	"errors"
	"path/filepath"
)

// ErrNoSpace reports that a file system lacks the room a run needs.
var ErrNoSpace = errors.New("not enough free disk space")

// checkDiskSpace fails early when the output's file system cannot hold the pruned model
// (same size as the source), or the work directory its checkpoints.
func checkDiskSpace(opt *Options, out string, seqlen int) error {
	var need int64
	for _, name := range opt.Source.Names() {
		t, _ := opt.Source.Tensor(name)
		need += t.Numel() * int64(t.DType.Size())
	}
	need += 1 << 20 // headers, index, config and tokenizer files
	if err := requireFree(filepath.Dir(out), need); err != nil {
		return err
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
