package plugins

import (
	"context"
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

	"github.com/wanda-go/wanda/pipeline"
)

// faultyCopy installs the faulty plugin as wanda-plugin-faulty-MODE in a fresh directory
// (a hard link or copy, so that /proc/PID/exe identifies it) and returns its path.
func faultyCopy(t *testing.T, mode string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "wanda-plugin-faulty-"+mode)
	if err := os.Link(bins["faulty"], dst); err != nil {
		b, err := os.ReadFile(bins["faulty"])
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// noStray checks that no process runs the executable path.
func noStray(t *testing.T, path string) {
	t.Helper()
	for range 200 {
		if len(procsOf(path)) == 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Errorf("stray plugin processes of %s: %v", path, procsOf(path))
}

func TestCallFaults(t *testing.T) {
	w := pipeline.Matrix{Rows: 4, Cols: 8, Data: make([]float32, 32)}
	for k := range w.Data {
		w.Data[k] = float32(k) - 10
	}
	info := layer(5, "gate_proj")
	for _, tc := range []struct {
		mode    string
		want    []error
		mention []string
		dies    bool // the process is gone after the failed call, before Close
	}{
		{"crash", []error{ErrCrashed}, []string{"exit status 3"}, true},
		{"hang", []error{ErrTimeout}, []string{"no reply after 1s; process killed"}, true},
		{"shape", []error{ErrResult, pipeline.ErrShape}, []string{"result shape [4 9], want [4 8]"}, false},
		{"nan", []error{ErrResult, pipeline.ErrNonFinite}, []string{"score (1, 2) is NaN"}, false},
		{"inf", []error{ErrResult, pipeline.ErrNonFinite}, []string{"score (0, 0) is +Inf"}, false},
		{"nowrite", []error{ErrResult, pipeline.ErrNonFinite}, []string{"score (0, 0) is NaN (32 non-finite scores)"}, false},
		{"error", []error{ErrFailed}, []string{"deliberate failure"}, false},
		{"panic", []error{ErrFailed}, []string{"panic: deliberate panic"}, false},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			path := faultyCopy(t, tc.mode)
			opts := quiet(nil)
			opts.Timeout = time.Second
			m, closer, err := OpenMetric(context.Background(), path, opts)
			if err != nil {
				t.Fatal(err)
			}
			pid := m.(*Metric).c.pid()
			if !alive(pid) {
				t.Fatalf("plugin pid %d not running after open", pid)
			}
			scores, err := m.Score(context.Background(), w, nil, info)
			if err == nil {
				t.Fatalf("no error; scores %v", scores.Data)
			}
			for _, sentinel := range append(tc.want, pipeline.ErrStageFailed) {
				if !errors.Is(err, sentinel) {
					t.Errorf("error %q does not wrap %q", err, sentinel)
				}
			}
			wantIn(t, err, append(tc.mention, `plugin "faulty-`+tc.mode+`"`, path,
				"layer 5 model.layers.5.mlp.gate_proj.weight")...)
			if tc.dies {
				waitGone(t, pid, "after the failed call")
				// Later calls fail at once with the first cause.
				_, err2 := m.Score(context.Background(), w, nil, info)
				if !errors.Is(err2, ErrClosed) || !errors.Is(err2, tc.want[0]) {
					t.Errorf("second call: %v", err2)
				}
			} else if !alive(pid) {
				t.Errorf("a plugin that answered was killed")
			}
			if err := closer.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
			waitGone(t, pid, "after Close")
			noStray(t, path)
		})
	}
}

func TestPatternFaults(t *testing.T) {
	sc := pipeline.Matrix{Rows: 3, Cols: 8, Data: make([]float32, 24)}
	info := layer(2, "down_proj")
	for _, tc := range []struct {
		mode    string
		want    []error
		mention string
	}{
		{"mask-nowrite", []error{ErrResult}, "mask entry (0, 0) is 255, want 0 (keep) or 1 (prune)"},
		{"mask-shape", []error{ErrResult, pipeline.ErrShape}, "result shape [2 8], want [3 8]"},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			path := faultyCopy(t, tc.mode)
			p, closer, err := OpenPattern(context.Background(), path, quiet(nil))
			if err != nil {
				t.Fatal(err)
			}
			pid := p.(*Pattern).c.pid()
			_, err = p.Select(context.Background(), sc, pipeline.Target{Sparsity: 0.5}, info)
			if err == nil {
				t.Fatal("no error")
			}
			for _, sentinel := range append(tc.want, pipeline.ErrStageFailed) {
				if !errors.Is(err, sentinel) {
					t.Errorf("error %q does not wrap %q", err, sentinel)
				}
			}
			wantIn(t, err, tc.mention, `plugin "faulty-`+tc.mode+`"`, "layer 2 model.layers.2.mlp.down_proj.weight")
			closer.Close()
			waitGone(t, pid, "after Close")
			noStray(t, path)
		})
	}
	// A well-behaved pattern of the same binary works.
	path := faultyCopy(t, "mask-ok")
	p, closer, err := OpenPattern(context.Background(), path, quiet(nil))
	if err != nil {
		t.Fatal(err)
	}
	defer closer.Close()
	m, err := p.Select(context.Background(), sc, pipeline.Target{Sparsity: 0.5}, info)
	if err != nil {
		t.Fatal(err)
	}
	for i := range sc.Rows {
		for j := range sc.Cols {
			if m.Get(i, j) != (j == 0) {
				t.Fatalf("mask (%d, %d) = %v", i, j, m.Get(i, j))
			}
		}
	}
}

func TestOpenFaults(t *testing.T) {
	for _, tc := range []struct {
		mode    string
		pattern bool
		want    error
		mention string
	}{
		{"version", false, ErrProtocol, "host speaks protocol versions 1-2: incompatible API version with plugin. Plugin version: 3"},
		{"infoversion", false, ErrProtocol, "plugin reports protocol version 3, the handshake chose 2"},
		{"kind", false, ErrKind, "unknown kind 7"},
		{"ok", true, ErrKind, "it is a metric plugin, not a pattern plugin"},
		{"mask-ok", false, ErrKind, "it is a pattern plugin, not a metric plugin"},
		{"hang-start", false, ErrStart, "timeout while waiting for plugin to start"},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			path := faultyCopy(t, tc.mode)
			opts := quiet(nil)
			opts.Timeout = time.Second
			var err error
			if tc.pattern {
				_, _, err = OpenPattern(context.Background(), path, opts)
			} else {
				_, _, err = OpenMetric(context.Background(), path, opts)
			}
			if !errors.Is(err, tc.want) || !errors.Is(err, pipeline.ErrStageFailed) {
				t.Fatalf("error %v, want %v", err, tc.want)
			}
			wantIn(t, err, tc.mention, path, "faulty")
			noStray(t, path)
		})
	}
	t.Run("missing", func(t *testing.T) {
		_, _, err := OpenMetric(context.Background(), filepath.Join(t.TempDir(), "wanda-plugin-nope"), quiet(nil))
		if !errors.Is(err, ErrNotFound) {
			t.Fatalf("error %v", err)
		}
		wantIn(t, err, `plugin "nope"`)
	})
	t.Run("not a plugin", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "wanda-plugin-true")
		if err := os.WriteFile(path, []byte("#!/bin/sh\necho hello\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		_, _, err := OpenMetric(context.Background(), path, quiet(nil))
		if !errors.Is(err, ErrStart) {
			t.Fatalf("error %v", err)
		}
		wantIn(t, err, `plugin "true"`, "hello")
	})
}

func TestTimeoutKillsProcessGroup(t *testing.T) {
	path := faultyCopy(t, "grandchild")
	pidFile := filepath.Join(t.TempDir(), "pid")
	opts := quiet(nil)
	opts.Timeout = time.Second
	opts.Env = []string{"WANDA_FAULTY_PIDFILE=" + pidFile}
	m, closer, err := OpenMetric(context.Background(), path, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer closer.Close()
	_, err = m.Score(context.Background(), pipeline.NewMatrix(2, 2), nil, layer(0, "q_proj"))
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("error %v", err)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	child, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	// The grandchild is not our child, so nobody reaps it here: it is gone once the init
	// process (or a subreaper) reaps it, or it lingers as a zombie. Accept a zombie.
	for range 200 {
		if !alive(child) || zombie(child) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if alive(child) && !zombie(child) {
		t.Errorf("grandchild %d still running", child)
	}
	noStray(t, path)
}

// zombie reports whether pid is a zombie (Linux /proc; false elsewhere).
func zombie(pid int) bool {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] == 'Z'
}

// TestPluginExitsWithHost: a host that dies without closing its plugin (simulated by a
// child test process that exits at once) leaves no plugin behind.
func TestPluginExitsWithHost(t *testing.T) {
	if os.Getenv("WANDA_TEST_ORPHAN_HOST") != "" {
		return // the child's part runs in TestMain's helper below
	}
	path := faultyCopy(t, "orphan")
	pidFile := filepath.Join(t.TempDir(), "pid")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "WANDA_TEST_ORPHAN_HOST="+path, "WANDA_TEST_ORPHAN_PIDFILE="+pidFile)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("host process: %v\n%s", err, out)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(string(b))
	for range 500 {
		if !alive(pid) || zombie(pid) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Errorf("plugin %d outlived its host", pid)
	syscall.Kill(pid, syscall.SIGKILL)
}

// orphanHost is the child of TestPluginExitsWithHost: it opens a plugin and exits without
// closing it.
func orphanHost() {
	m, _, err := OpenMetric(context.Background(), os.Getenv("WANDA_TEST_ORPHAN_HOST"), quiet(nil))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	pid := m.(*Metric).c.pid()
	if err := os.WriteFile(os.Getenv("WANDA_TEST_ORPHAN_PIDFILE"), []byte(strconv.Itoa(pid)), 0o644); err != nil {
		os.Exit(1)
	}
	os.Exit(0)
}
