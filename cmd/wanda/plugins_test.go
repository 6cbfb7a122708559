package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wanda-go/wanda/plugins/plugintest"
)

func TestPluginsList(t *testing.T) {
	dir := t.TempDir()
	paths, err := plugintest.Build(dir)
	if err != nil {
		t.Fatal(err)
	}
	// The faulty plugin, linked under names that select its failure modes.
	for _, mode := range []string{"version", "kind"} {
		if err := os.Symlink(paths["faulty"], filepath.Join(dir, "wanda-plugin-faulty-"+mode)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "wanda-plugin-notaplugin"), []byte("#!/bin/sh\necho hi\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	env := t.TempDir() // $WANDA_PLUGIN_DIR: a second ria, shadowed by --plugin-dir's
	if err := os.Symlink(paths["ria"], filepath.Join(env, "wanda-plugin-ria")); err != nil {
		t.Fatal(err)
	}
	t.Setenv("WANDA_PLUGIN_DIR", env)

	run := func(args ...string) (string, error) {
		app := newApp()
		var out, errOut bytes.Buffer
		app.Writer, app.ErrWriter = &out, &errOut
		err := app.Run(append([]string{"wanda", "plugins", "list"}, args...))
		return out.String(), err
	}
	out, err := run("--plugin-dir", dir, "--json")
	if err != nil {
		t.Fatal(err)
	}
	var entries []pluginEntry
	if err := json.Unmarshal([]byte(out), &entries); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	byPath := map[string]pluginEntry{}
	var names []string
	for _, e := range entries {
		byPath[e.Path] = e
		names = append(names, e.Name)
	}
	if got, want := strings.Join(names, " "), "dsnot faulty faulty-kind faulty-version notaplugin owl ria schedule wanda ria"; got != want {
		t.Errorf("names %q, want %q", got, want)
	}
	check := func(path string, f func(e pluginEntry) bool) {
		t.Helper()
		if e, ok := byPath[path]; !ok || !f(e) {
			t.Errorf("%s: entry %+v", path, e)
		}
	}
	check(paths["ria"], func(e pluginEntry) bool {
		return e.Kind == "metric" && e.ProtocolVersion == 2 && e.Error == "" && !e.Shadowed &&
			strings.HasPrefix(e.Description, "RIA") && e.NeedsStats && len(e.Args) == 1 && e.Args[0].Name == "a"
	})
	check(paths["schedule"], func(e pluginEntry) bool { return e.Kind == "pattern" && e.ProtocolVersion == 2 })
	check(paths["owl"], func(e pluginEntry) bool {
		return e.Kind == "allocation" && e.ProtocolVersion == 2 && e.RefineStats == "" && len(e.Args) == 2
	})
	check(paths["dsnot"], func(e pluginEntry) bool {
		return e.Kind == "refine" && e.ProtocolVersion == 2 && e.RefineStats == "sumsq+sum+var" && len(e.Args) == 7
	})
	check(paths["wanda"], func(e pluginEntry) bool { return e.Kind == "metric" && e.Description != "" })
	check(paths["faulty"], func(e pluginEntry) bool { return e.ReportedName == "faulty-ok" })
	check(filepath.Join(env, "wanda-plugin-ria"), func(e pluginEntry) bool { return e.Shadowed && e.Kind == "metric" })
	check(filepath.Join(dir, "wanda-plugin-faulty-version"), func(e pluginEntry) bool {
		return e.Kind == "" && strings.Contains(e.Error, "protocol version mismatch") && strings.Contains(e.Error, "Plugin version: 3")
	})
	check(filepath.Join(dir, "wanda-plugin-faulty-kind"), func(e pluginEntry) bool { return strings.Contains(e.Error, "unknown kind 7") })
	check(filepath.Join(dir, "wanda-plugin-notaplugin"), func(e pluginEntry) bool {
		return strings.Contains(e.Error, "failed to start") && strings.Contains(e.Error, "hi")
	})

	out, err = run("--plugin-dir", dir)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 11 || !strings.HasPrefix(lines[0], "NAME") {
		t.Fatalf("table:\n%s", out)
	}
	for _, want := range []string{"ria ", " metric ", " pattern ", " allocation ", " refine ", "[reads: sumsq+sum+var]",
		"FAILED: plugin protocol version mismatch", "(shadowed by an earlier directory)", "[args: a]"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}

	if _, err := run("--plugin-dir", filepath.Join(dir, "nope")); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("missing --plugin-dir: %v", err)
	}
	t.Setenv("WANDA_PLUGIN_DIR", "")
	if out, err := run("--plugin-dir", t.TempDir()); err != nil || !strings.Contains(out, "no plugins") {
		t.Errorf("empty dir: %q, %v", out, err)
	}
}
