package transform

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/wanda-go/wanda/format/safetensors"
	"github.com/wanda-go/wanda/internal/regfile"
	"github.com/wanda-go/wanda/internal/staging"
)

// ErrExists: the output directory already exists (and Force was not set).
var ErrExists = staging.ErrExists

// ConfigName is the model configuration file.
const ConfigName = "config.json"

// checkOut refuses, before any work, an output that must not be written (see
// staging.CheckTarget): empty, an input or inside one, the working directory,
// not a directory, existing without force, or with force not a model or
// previous output.
func checkOut(op, out string, force bool, inputs ...string) error {
	if err := staging.CheckTarget(out, force, inputs...); err != nil {
		return fmt.Errorf("%s: output: %w", op, err)
	}
	return nil
}

// buildDir runs fill on a fresh staging sibling of out (see package staging)
// and moves it to out when fill succeeds: replacing an existing out only with
// force (checked by checkOut first), never removing it before the new one is
// in place. Otherwise the staging directory is removed.
func buildDir(out string, force bool, fill func(tmp string) error) (err error) {
	out, err = filepath.Abs(out)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	stage, err := staging.New(out)
	if err != nil {
		return fmt.Errorf("output: %w", err)
	}
	tmp := stage.Path
	defer func() {
		if err != nil {
			if rerr := stage.Remove(); rerr != nil {
				slog.Warn("pack: could not remove the temporary directory", "dir", tmp, "err", rerr)
			}
		}
	}()
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	if err := fill(tmp); err != nil {
		return err
	}
	if force {
		return stage.Replace(out)
	}
	return stage.Commit(out)
}

// copyOtherFiles copies every regular file (symlinks followed) of src into dst
// except the top-level ones for which skip returns true; subdirectories (such
// as the LoRA template's) are copied recursively, hidden ones (names starting
// with ".", e.g. a leftover temporary directory) are not.
func copyOtherFiles(src, dst string, skip func(name string) bool) error {
	return copyTree(src, dst, skip, 0)
}

func copyTree(src, dst string, skip func(name string) bool, depth int) error {
	if depth > 8 {
		slog.Warn("pack: directory tree too deep, not copied", "dir", src)
		return nil
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	for _, e := range entries {
		name := e.Name()
		if skip != nil && skip(name) {
			continue
		}
		p := filepath.Join(src, name)
		fi, err := os.Stat(p)
		if err != nil {
			return err
		}
		switch {
		case fi.IsDir():
			if strings.HasPrefix(name, ".") {
				continue
			}
			d := filepath.Join(dst, name)
			if err := os.Mkdir(d, 0o755); err != nil {
				return err
			}
			if err := copyTree(p, d, nil, depth+1); err != nil {
				return err
			}
		case fi.Mode().IsRegular():
			if err := regfile.Copy(p, filepath.Join(dst, name)); err != nil {
				return err
			}
		}
	}
	return nil
}

// writeFileSync writes data to path and syncs it.
func writeFileSync(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("%s: %w", path, err)
	}
	return f.Close()
}

// skipper returns a skip function for copyOtherFiles that drops the given
// shard paths, the safetensors index and config.json.
func skipper(shards []string) func(string) bool {
	drop := map[string]bool{ConfigName: true, safetensors.IndexName: true}
	for _, s := range shards {
		drop[filepath.Base(s)] = true
	}
	return func(name string) bool {
		if drop[name] {
			return true
		}
		// Never copy weight files that would collide with the ones written.
		m, _ := filepath.Match("model-*-of-*.safetensors", name)
		return m || name == safetensors.SingleName
	}
}
