package plugins

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
)

// Prefix starts the file name of every plugin executable: wanda-plugin-NAME.
const Prefix = "wanda-plugin-"

// EnvDir names the environment variable with more plugin directories (a path list).
const EnvDir = "WANDA_PLUGIN_DIR"

// Found is a plugin executable found by Discover.
type Found struct {
	Name string `json:"name"` // NAME of wanda-plugin-NAME
	Path string `json:"path"` // absolute path
}

// SearchDirs returns dirs followed by the entries of $WANDA_PLUGIN_DIR, without empty
// entries or repeats.
func SearchDirs(dirs ...string) []string {
	all := append(slices.Clone(dirs), filepath.SplitList(os.Getenv(EnvDir))...)
	var out []string
	for _, d := range all {
		if d == "" {
			continue
		}
		if abs, err := filepath.Abs(d); err == nil {
			d = abs
		}
		if !slices.Contains(out, d) {
			out = append(out, d)
		}
	}
	return out
}

// Discover lists the plugin executables (regular files or links to them, executable,
// named wanda-plugin-NAME) in dirs and then in $WANDA_PLUGIN_DIR, in that order, sorted by
// name within a directory. A name found twice is listed twice; the first one wins in Resolve.
// Directories that do not exist are skipped; other read errors are returned.
func Discover(dirs ...string) ([]Found, error) {
	var found []Found
	var errs []error
	for _, dir := range SearchDirs(dirs...) {
		entries, err := os.ReadDir(dir)
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
			}
			continue
		}
		for _, e := range entries { // sorted by file name
			name, ok := pluginName(e.Name())
			if !ok {
				continue
			}
			path := filepath.Join(dir, e.Name())
			if checkExecutable(path) != nil {
				continue
			}
			found = append(found, Found{Name: name, Path: path})
		}
	}
	return found, errors.Join(errs...)
}

func pluginName(file string) (string, bool) {
	if runtime.GOOS == "windows" {
		file = strings.TrimSuffix(file, ".exe")
	}
	name, ok := strings.CutPrefix(file, Prefix)
	return name, ok && validName(name)
}

func validName(name string) bool {
	if name == "" {
		return false
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}

// Resolve turns a plugin spec into an executable path. The spec is "plugin:NAME" or
// "plugin:PATH" (the "plugin:" prefix is optional). A PATH contains a path separator or
// starts with "."; a NAME is looked up as wanda-plugin-NAME in dirs, then $WANDA_PLUGIN_DIR.
func Resolve(spec string, dirs []string) (string, error) {
	s := strings.TrimPrefix(spec, "plugin:")
	if s == "" {
		return "", fmt.Errorf("%w: empty plugin spec %q", ErrNotFound, spec)
	}
	if strings.ContainsRune(s, '/') || strings.ContainsRune(s, filepath.Separator) || strings.HasPrefix(s, ".") {
		abs, err := filepath.Abs(s)
		if err != nil {
			return "", fmt.Errorf("%w: %s: %w", ErrNotFound, spec, err)
		}
		if err := checkExecutable(abs); err != nil {
			return "", fmt.Errorf("%w: %s: %w", ErrNotFound, spec, err)
		}
		return abs, nil
	}
	if !validName(s) {
		return "", fmt.Errorf("%w: %q is not a plugin name (letters, digits, '-', '_', '.')", ErrNotFound, s)
	}
	found, err := Discover(dirs...)
	for _, f := range found {
		if f.Name == s {
			return f.Path, nil
		}
	}
	searched := SearchDirs(dirs...)
	var names []string
	for _, f := range found {
		names = append(names, f.Name)
	}
	sort.Strings(names)
	names = slices.Compact(names)
	msg := fmt.Sprintf("no executable %s%s in %s", Prefix, s, dirList(searched))
	if len(names) > 0 {
		msg += fmt.Sprintf(" (found: %s)", strings.Join(names, ", "))
	}
	if err != nil {
		msg += fmt.Sprintf(" (%v)", err)
	}
	return "", fmt.Errorf("%w: %s", ErrNotFound, msg)
}

func dirList(dirs []string) string {
	if len(dirs) == 0 {
		return "no directory (give --plugin-dir or set $" + EnvDir + ")"
	}
	return strings.Join(dirs, ", ")
}

// ParseArgs parses --plugin-arg values "key=value" into a map; a key given twice is an error.
func ParseArgs(kvs []string) (map[string]string, error) {
	args := map[string]string{}
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, fmt.Errorf("plugin argument %q: want key=value", kv)
		}
		if _, dup := args[k]; dup {
			return nil, fmt.Errorf("plugin argument %q given twice", k)
		}
		args[k] = v
	}
	return args, nil
}
