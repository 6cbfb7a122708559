package plugins

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func touch(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"), mode); err != nil {
		t.Fatal(err)
	}
}

func TestDiscoverAndResolve(t *testing.T) {
	d1, d2, d3 := t.TempDir(), t.TempDir(), t.TempDir()
	touch(t, filepath.Join(d1, "wanda-plugin-b"), 0o755)
	touch(t, filepath.Join(d1, "wanda-plugin-a"), 0o755)
	touch(t, filepath.Join(d1, "wanda-plugin-noexec"), 0o644)   // not executable: skipped
	touch(t, filepath.Join(d1, "other-tool"), 0o755)            // no prefix: skipped
	touch(t, filepath.Join(d1, "wanda-plugin-"), 0o755)         // empty name: skipped
	touch(t, filepath.Join(d1, "wanda-plugin-bad name"), 0o755) // invalid name: skipped
	if err := os.Mkdir(filepath.Join(d1, "wanda-plugin-dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	touch(t, filepath.Join(d2, "wanda-plugin-a"), 0o755) // shadowed by d1's
	touch(t, filepath.Join(d2, "wanda-plugin-c"), 0o755)
	if err := os.Symlink(filepath.Join(d2, "wanda-plugin-c"), filepath.Join(d3, "wanda-plugin-link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(d3, "missing"), filepath.Join(d3, "wanda-plugin-dangling")); err != nil {
		t.Fatal(err)
	}
	t.Setenv(EnvDir, d2+string(os.PathListSeparator)+d3+string(os.PathListSeparator)+d1)

	found, err := Discover(d1, filepath.Join(d1, "does-not-exist"))
	if err != nil {
		t.Fatal(err)
	}
	want := []Found{
		{"a", filepath.Join(d1, "wanda-plugin-a")},
		{"b", filepath.Join(d1, "wanda-plugin-b")},
		{"a", filepath.Join(d2, "wanda-plugin-a")},
		{"c", filepath.Join(d2, "wanda-plugin-c")},
		{"link", filepath.Join(d3, "wanda-plugin-link")},
	}
	if !reflect.DeepEqual(found, want) {
		t.Errorf("Discover:\n got %v\nwant %v", found, want)
	}

	for spec, want := range map[string]string{
		"plugin:a": filepath.Join(d1, "wanda-plugin-a"), // --plugin-dir before $WANDA_PLUGIN_DIR
		"plugin:c": filepath.Join(d2, "wanda-plugin-c"),
		"link":     filepath.Join(d3, "wanda-plugin-link"),
		"plugin:" + filepath.Join(d2, "wanda-plugin-a"): filepath.Join(d2, "wanda-plugin-a"),
	} {
		got, err := Resolve(spec, []string{d1})
		if err != nil || got != want {
			t.Errorf("Resolve(%q) = %q, %v; want %q", spec, got, err, want)
		}
	}
	// A relative path resolves against the working directory.
	t.Chdir(d2)
	if got, err := Resolve("plugin:./wanda-plugin-c", nil); err != nil || got != filepath.Join(d2, "wanda-plugin-c") {
		t.Errorf("relative path: %q, %v", got, err)
	}
	for _, spec := range []string{"plugin:nope", "plugin:noexec", "plugin:" + filepath.Join(d1, "wanda-plugin-noexec"), "plugin:", "plugin:a b"} {
		if _, err := Resolve(spec, []string{d1}); !errors.Is(err, ErrNotFound) {
			t.Errorf("Resolve(%q): %v, want ErrNotFound", spec, err)
		}
	}
	_, err = Resolve("plugin:nope", []string{d1})
	wantIn(t, err, "wanda-plugin-nope", d1, d2, d3, "found: a, b, c, link")

	t.Setenv(EnvDir, "")
	_, err = Resolve("plugin:nope", nil)
	wantIn(t, err, "give --plugin-dir or set $WANDA_PLUGIN_DIR")
}

func TestParseArgs(t *testing.T) {
	got, err := ParseArgs([]string{"a=0.5", "name=x=y", "empty="})
	if err != nil || !reflect.DeepEqual(got, map[string]string{"a": "0.5", "name": "x=y", "empty": ""}) {
		t.Errorf("ParseArgs: %v, %v", got, err)
	}
	for _, bad := range [][]string{{"novalue"}, {"=1"}, {"a=1", "a=2"}} {
		if _, err := ParseArgs(bad); err == nil {
			t.Errorf("ParseArgs(%q): no error", bad)
		}
	}
}
