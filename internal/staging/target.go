package staging

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/wanda-go/wanda/internal/regfile"
)

// ReportFile is the report every wanda output holds; a directory with it is
// recognisably a previous output.
const ReportFile = "wanda_report.json"

// CheckTarget decides, before any work, whether out may be written (force
// false) or written and, if it exists, replaced (force true). It refuses:
//
//   - an empty out (an unset variable in a script must not mean ".");
//   - an out that is, contains or lies inside the working directory's
//     tree upwards (out is the working directory or one of its ancestors) or
//     any of the protected paths (the run's inputs: model, adapter, work
//     directory...), compared after resolving symbolic links, so "M/" and
//     "./M/." and a link to M are all M;
//   - an existing out that is not a directory (a file, a symbolic link, a
//     device node, a FIFO, a socket): ErrNotDir, with or without force;
//   - without force, an existing directory: ErrExists;
//   - with force, an existing directory that is neither a model directory
//     (config.json and *.safetensors files) nor a previous wanda output
//     (wanda_report.json), unless it is empty; the error names what it holds.
//
// Refusals wrap ErrUnsafeTarget, ErrNotDir or ErrExists; ErrBusy when
// another process is writing out now. CheckTarget first sweeps out's stale
// staging directories (which restores an output that a killed Replace had
// moved aside) and removes a lock file that a killed run left.
func CheckTarget(out string, force bool, protect ...string) error {
	if strings.TrimSpace(out) == "" {
		return fmt.Errorf("%w: no output directory given (an empty path would mean the working directory)", ErrUnsafeTarget)
	}
	abs, err := filepath.Abs(out)
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrUnsafeTarget, out, err)
	}
	Sweep(abs)
	real := resolve(abs)
	if cwd, err := os.Getwd(); err == nil {
		if within(resolve(cwd), real) {
			what := "is"
			if resolve(cwd) != real {
				what = "contains"
			}
			return fmt.Errorf("%w: %s %s the working directory", ErrUnsafeTarget, abs, what)
		}
	}
	for _, p := range protect {
		if p == "" {
			continue
		}
		pa, err := filepath.Abs(p)
		if err != nil {
			continue
		}
		pr := resolve(pa)
		switch {
		case pr == real || sameFile(pr, real):
			if filepath.Clean(pa) != abs {
				return fmt.Errorf("%w: %s is %s, an input of this run", ErrUnsafeTarget, abs, pa)
			}
			return fmt.Errorf("%w: %s is an input of this run", ErrUnsafeTarget, abs)
		case within(pr, real):
			return fmt.Errorf("%w: %s contains %s, an input of this run", ErrUnsafeTarget, abs, pa)
		case within(real, pr):
			return fmt.Errorf("%w: %s lies inside %s, an input of this run", ErrUnsafeTarget, abs, pa)
		}
	}
	fi, err := os.Lstat(abs)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %w", ErrUnsafeTarget, err)
	}
	if err == nil && !fi.IsDir() {
		return fmt.Errorf("%w: %s is %s; refusing to write a directory in its place", ErrNotDir, abs, describe(fi))
	}
	// A run writing out now is refused here already; a lock file that a
	// killed run left is removed.
	if pi, perr := os.Stat(filepath.Dir(abs)); perr == nil && pi.IsDir() {
		l, err := acquire(outLockPath(abs), "writing "+abs)
		if err != nil {
			return err
		}
		l.release()
	}
	if fi == nil {
		return nil
	}
	if !force {
		return fmt.Errorf("%w: %s", ErrExists, abs)
	}
	return replaceable(abs)
}

// replaceable accepts an empty directory, a model directory and a previous
// wanda output.
func replaceable(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrUnsafeTarget, err)
	}
	if len(ents) == 0 {
		return nil
	}
	var names []string
	config, weights, report := false, false, false
	for _, e := range ents {
		names = append(names, e.Name())
		if !e.Type().IsRegular() {
			continue
		}
		switch n := e.Name(); {
		case n == "config.json":
			config = true
		case n == ReportFile:
			report = true
		case strings.HasSuffix(n, ".safetensors"):
			weights = true
		}
	}
	if report || (config && weights) {
		return nil
	}
	slices.Sort(names)
	held := strings.Join(names[:min(len(names), 8)], ", ")
	if len(names) > 8 {
		held += fmt.Sprintf(", ... (%d entries)", len(names))
	}
	return fmt.Errorf("%w: %s is neither a model directory (config.json + *.safetensors) nor a wanda output (%s), the only directories that are replaced. It holds: %s",
		ErrUnsafeTarget, dir, ReportFile, held)
}

// describe names what a non-directory file is.
func describe(fi fs.FileInfo) string { return regfile.Describe(fi.Mode()) }

// resolve returns the absolute, clean path p with the symbolic links of its
// longest existing prefix resolved (the rest does not exist yet).
func resolve(p string) string {
	p = filepath.Clean(p)
	rest := ""
	for {
		if r, err := filepath.EvalSymlinks(p); err == nil {
			return filepath.Join(r, rest)
		}
		parent := filepath.Dir(p)
		if parent == p {
			return filepath.Join(p, rest)
		}
		rest = filepath.Join(filepath.Base(p), rest)
		p = parent
	}
}

// within reports whether child is parent or lies inside it (resolved paths),
// also comparing file identities, which catches bind mounts and
// case-insensitive file systems.
func within(child, parent string) bool {
	if child == parent {
		return true
	}
	if parent == string(filepath.Separator) || strings.HasPrefix(child, strings.TrimSuffix(parent, string(filepath.Separator))+string(filepath.Separator)) {
		return true
	}
	pi, err := os.Stat(parent)
	if err != nil {
		return false
	}
	for c := child; ; {
		if ci, err := os.Stat(c); err == nil && os.SameFile(ci, pi) {
			return true
		}
		up := filepath.Dir(c)
		if up == c {
			return false
		}
		c = up
	}
}

// sameFile reports whether a and b exist and are the same file.
func sameFile(a, b string) bool {
	ai, err1 := os.Stat(a)
	bi, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(ai, bi)
}
