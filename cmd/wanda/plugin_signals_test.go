//go:build unix

package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wanda-go/wanda/internal/modelgen"
)

// wrapperPlugin writes a shell-script plugin wanda-plugin-NAME into a new
// directory: it starts a background child (`sleep 600`, holding the plugin's
// stdout and stderr, its pid written to a file) and then runs body. It returns
// the directory, the script and a function waiting for the child's pid.
func wrapperPlugin(t *testing.T, name, body string) (dir, path string, child func() int) {
	t.Helper()
	dir = t.TempDir()
	pidFile := filepath.Join(dir, "child.pid")
	path = filepath.Join(dir, "wanda-plugin-"+name)
	if err := os.WriteFile(path, []byte(fmt.Sprintf("#!/bin/sh\nsleep 600 &\necho $! > %s\n%s\n", pidFile, body)), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir, path, func() int {
		t.Helper()
		b, ok := waitFile(pidFile, 30*time.Second)
		if !ok || !strings.HasSuffix(string(b), "\n") {
			t.Fatalf("%s did not start its child", path)
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			t.Fatal(err)
		}
		return pid
	}
}

// waitFile waits up to d for path to exist and returns its content.
func waitFile(path string, d time.Duration) ([]byte, bool) {
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if b, err := os.ReadFile(path); err == nil && len(b) > 0 {
			return b, true
		}
	}
	return nil, false
}

// processGone waits a little for pid to end (a zombie left to init counts as
// ended), else fails and kills it.
func processGone(t *testing.T, pid int, what string) {
	t.Helper()
	for range 300 {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return
		}
		if i := bytes.LastIndexByte(b, ')'); i > 0 && i+2 < len(b) && b[i+2] == 'Z' {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Errorf("%s: process %d is still running", what, pid)
	syscall.Kill(pid, syscall.SIGKILL)
}

// runBounded starts cmd and waits up to d for it; on a hang it kills it and fails.
func runBounded(t *testing.T, cmd *exec.Cmd, d time.Duration, afterStart func()) (string, error) {
	t.Helper()
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	if afterStart != nil {
		afterStart()
	}
	select {
	case err := <-done:
		return buf.String(), err
	case <-time.After(d):
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		t.Fatalf("wanda %s hung (killed after %v):\n%s", strings.Join(cmd.Args[1:], " "), d, buf.String())
		return "", nil
	}
}

// noLeftovers fails when dir holds hidden staging entries or plugin scratch.
func noLeftovers(t *testing.T, dirs ...string) {
	t.Helper()
	for _, d := range dirs {
		ents, _ := os.ReadDir(d)
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), ".") || strings.HasPrefix(e.Name(), "wanda-plugin") {
				t.Errorf("left behind: %s", filepath.Join(d, e.Name()))
			}
		}
	}
}

// TestPrunePluginSignalsAndTimeout: a wrapper-script plugin with a child that
// holds its pipes, which never answers the handshake, hangs in a call, or
// works, never hangs wanda: SIGINT, SIGTERM and --plugin-timeout end the run
// promptly, a successful run ends, and no process, output, staging directory
// or plugin scratch is left.
func TestPrunePluginSignalsAndTimeout(t *testing.T) {
	_, paths := builtPlugins(t)
	model := genTiny(t, modelgen.Default())
	root := t.TempDir()
	calib := filepath.Join(root, "calib.jsonl")
	writeDemoCalib(t, calib)
	hang := func(mark string) string {
		return "WANDA_FAULTY_MODE=hang WANDA_FAULTY_MARK=" + mark + " exec " + paths["faulty"]
	}
	for _, tc := range []struct {
		name    string
		body    func(mark string) string
		signal  syscall.Signal
		timeout string
		says    string // the last line; "wrote" for success
	}{
		{"call SIGINT", hang, syscall.SIGINT, "10m", "interrupted"},
		{"call SIGTERM", hang, syscall.SIGTERM, "10m", "interrupted"},
		{"call timeout", hang, 0, "1s", "no reply after 1s; process killed"},
		{"start SIGTERM", func(string) string { return "sleep 600" }, syscall.SIGTERM, "10m", "context canceled"},
		{"start timeout", func(string) string { return "sleep 600" }, 0, "2s", "timeout while waiting for plugin to start"},
		{"start garbage", func(string) string { return "echo garbage\nsleep 600" }, 0, "10m", "Unrecognized remote plugin message: garbage"},
		{"success", func(string) string { return "exec " + paths["wanda"] }, 0, "10m", "wrote"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mark := filepath.Join(t.TempDir(), "in-score")
			_, path, child := wrapperPlugin(t, "w", tc.body(mark))
			scratch := t.TempDir()
			outParent := t.TempDir()
			out := filepath.Join(outParent, "out")
			// A short $TMPDIR of the test's own, to see the socket directory go too.
			tmp, err := os.MkdirTemp("/tmp", "w")
			if err != nil {
				t.Fatal(err)
			}
			defer os.RemoveAll(tmp)
			cmd := cliCommand(t, []string{"TMPDIR=" + tmp}, "prune", "--model", model, "--out", out, "--method", path,
				"--calib", calib, "--nsamples", "4", "--seqlen", "32", "--plugin-timeout", tc.timeout, "--scratch-dir", scratch)
			var pid int
			text, err := runBounded(t, cmd, 60*time.Second, func() {
				pid = child()
				if tc.signal != 0 {
					if strings.HasPrefix(tc.name, "call") {
						if _, ok := waitFile(mark, 30*time.Second); !ok {
							t.Errorf("the plugin call never started")
						}
					}
					cmd.Process.Signal(tc.signal)
				}
			})
			if !strings.Contains(lastLine(text), tc.says) {
				t.Errorf("last line %q does not say %q", lastLine(text), tc.says)
			}
			_, serr := os.Stat(out)
			if tc.says == "wrote" {
				if err != nil || serr != nil {
					t.Errorf("run failed: %v, output: %v\n%s", err, serr, text)
				}
			} else {
				var ee *exec.ExitError
				if !errors.As(err, &ee) {
					t.Errorf("wanda: %v, want a failure\n%s", err, text)
				}
				if !errors.Is(serr, os.ErrNotExist) {
					t.Errorf("output written")
				}
			}
			processGone(t, pid, "the plugin's child")
			noLeftovers(t, outParent, scratch)
			if ents, _ := os.ReadDir(tmp); len(ents) > 0 {
				t.Errorf("left in $TMPDIR: %v (plugin socket or scratch)", ents)
			}
		})
	}
}

// TestPluginsListWrappers: `wanda plugins list` lists wrapper scripts that
// print garbage or never answer (with a child holding their pipes) as FAILED
// within its --timeout, and stops at SIGINT.
func TestPluginsListWrappers(t *testing.T) {
	dir, _, child := wrapperPlugin(t, "garbage", "echo 'not a handshake'\nsleep 600")
	var pid int
	out, err := runBounded(t, cliCommand(t, nil, "plugins", "list", "--plugin-dir", dir, "--timeout", "2s"),
		60*time.Second, func() { pid = child() })
	if err != nil || !strings.Contains(out, "FAILED") || !strings.Contains(out, "not a handshake") {
		t.Errorf("plugins list: %v\n%s", err, out)
	}
	processGone(t, pid, "the plugin's child")

	dir, _, child = wrapperPlugin(t, "silent", "sleep 600")
	cmd := cliCommand(t, nil, "plugins", "list", "--plugin-dir", dir, "--timeout", "10m")
	out, err = runBounded(t, cmd, 60*time.Second, func() {
		pid = child()
		cmd.Process.Signal(syscall.SIGINT)
	})
	if err == nil || !strings.Contains(out, "interrupted") {
		t.Errorf("plugins list after SIGINT: %v\n%s", err, out)
	}
	processGone(t, pid, "the plugin's child after SIGINT")
}
