//go:build unix

package plugins

import (
	"bufio"
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

// wrapper writes a shell script wanda-plugin-NAME that first starts a background
// child (`sleep 600`, which inherits the plugin's stdout and stderr and writes
// its pid to a file) and then runs body. It returns the script's path and a
// function returning the child's pid.
func wrapper(t *testing.T, name, body string) (path string, child func() int) {
	t.Helper()
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "child.pid")
	path = filepath.Join(dir, "wanda-plugin-"+name)
	script := fmt.Sprintf("#!/bin/sh\nsleep 600 &\necho $! > %s\n%s\n", pidFile, body)
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path, func() int {
		t.Helper()
		for range 500 {
			if b, err := os.ReadFile(pidFile); err == nil && strings.HasSuffix(string(b), "\n") {
				pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
				if err != nil {
					t.Fatal(err)
				}
				return pid
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Fatalf("%s did not start its child", path)
		return 0
	}
}

// gone waits a little for pid to end (a zombie left to init counts as ended)
// and kills it if it does not, so that a failing test leaves nothing behind.
func gone(t *testing.T, pid int, what string) {
	t.Helper()
	for range 300 {
		if !alive(pid) || zombie(pid) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Errorf("%s: process %d outlived the plugin", what, pid)
	syscall.Kill(pid, syscall.SIGKILL)
}

// within runs f and fails the test if it does not return within d (a hang).
func within(t *testing.T, d time.Duration, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s did not return within %v: hung", what, d)
	}
}

// emptyDir fails if dir holds anything (scratch files, socket directories,
// owner locks).
func emptyDir(t *testing.T, dir string) {
	t.Helper()
	ents, _ := os.ReadDir(dir)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if len(names) > 0 {
		t.Errorf("left in the scratch directory: %v", names)
	}
}

// TestWrapperScriptWithChild: a plugin that is a shell script with a child
// process that holds its stdout and stderr never hangs the host, whatever
// happens, and the child does not outlive the plugin.
func TestWrapperScriptWithChild(t *testing.T) {
	real := bins["wanda"]
	faulty := bins["faulty"]
	w := pipeline.Matrix{Rows: 4, Cols: 8, Data: make([]float32, 32)}
	st := &pipeline.Stats{N: 1, Tokens: 4, SumSq: make([]float32, 8)}
	for k := range w.Data {
		w.Data[k] = float32(k) - 10
	}
	for j := range st.SumSq {
		st.SumSq[j] = float32(j + 1)
	}
	for _, tc := range []struct {
		name string
		body string
		want error // of OpenMetric; nil: opens, then Score fails with score (or works when nil)
		says string
		call error // of Score when OpenMetric succeeds
	}{
		{"exits", "exit 1", ErrStart, "exit status 1", nil},
		{"garbage", "echo 'this is not a handshake'\nsleep 600", ErrStart, "this is not a handshake", nil},
		{"silent", "sleep 600", ErrStart, "timeout while waiting for plugin to start", nil},
		{"hang-start", "WANDA_FAULTY_MODE=hang-start exec " + faulty, ErrStart, "timeout while waiting for plugin to start", nil},
		{"exec", "exec " + real, nil, "", nil},
		{"child", real, nil, "", nil}, // the shell waits for the plugin
		{"hang-call", "WANDA_FAULTY_MODE=hang exec " + faulty, nil, "", ErrTimeout},
		{"crash-call", "WANDA_FAULTY_MODE=crash " + faulty, nil, "", ErrCrashed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path, child := wrapper(t, tc.name, tc.body)
			scratch := t.TempDir()
			opts := quiet(nil)
			opts.Timeout = 2 * time.Second
			opts.ScratchDir = scratch
			var (
				m      pipeline.Metric
				closer interface{ Close() error }
				err    error
			)
			within(t, 20*time.Second, "OpenMetric", func() { m, closer, err = OpenMetric(context.Background(), path, opts) })
			pid := child()
			if tc.want != nil {
				if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.says) {
					t.Fatalf("OpenMetric: %v, want %v saying %q", err, tc.want, tc.says)
				}
				gone(t, pid, "after the failed start")
				emptyDir(t, scratch)
				return
			}
			if err != nil {
				t.Fatalf("OpenMetric: %v", err)
			}
			var serr error
			within(t, 20*time.Second, "Score", func() { _, serr = m.Score(context.Background(), w, st, layer(0, "q_proj")) })
			if !errors.Is(serr, tc.call) && (tc.call != nil || serr != nil) {
				t.Errorf("Score: %v, want %v", serr, tc.call)
			}
			within(t, 20*time.Second, "Close", func() { closer.Close() })
			gone(t, pid, "after Close")
			emptyDir(t, scratch)
		})
	}
}

// TestStartCancelled: cancelling the context (what SIGINT and SIGTERM do in
// wanda) ends a plugin start at once, before the start timeout.
func TestStartCancelled(t *testing.T) {
	path, child := wrapper(t, "slow", "sleep 600")
	scratch := t.TempDir()
	opts := quiet(nil)
	opts.Timeout = time.Hour
	opts.ScratchDir = scratch
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		child() // the script runs
		cancel()
	}()
	var err error
	within(t, 20*time.Second, "OpenMetric with a cancelled context", func() { _, _, err = OpenMetric(ctx, path, opts) })
	if !errors.Is(err, context.Canceled) || !errors.Is(err, ErrStart) {
		t.Fatalf("OpenMetric: %v, want ErrStart and context.Canceled", err)
	}
	gone(t, child(), "after the cancelled start")
	emptyDir(t, scratch)
}

// TestProbeWrapper: `wanda plugins list` (Probe) of hanging and garbage wrappers
// returns with their errors.
func TestProbeWrapper(t *testing.T) {
	for _, body := range []string{"echo garbage\nsleep 600", "exit 3", "exec " + bins["wanda"]} {
		path, child := wrapper(t, "probe", body)
		opts := quiet(nil)
		opts.Timeout = 2 * time.Second
		opts.ScratchDir = t.TempDir()
		var err error
		var info Info
		within(t, 20*time.Second, "Probe", func() { info, err = Probe(context.Background(), path, opts) })
		if strings.HasPrefix(body, "exec") {
			if err != nil || info.Name != "wanda" {
				t.Errorf("Probe of a working wrapper: %+v, %v", info, err)
			}
		} else if !errors.Is(err, ErrStart) {
			t.Errorf("Probe(%q): %v, want ErrStart", body, err)
		}
		gone(t, child(), "after Probe")
		emptyDir(t, opts.ScratchDir)
	}
}

// killedHost is the child of TestHostKilled: it opens the plugin
// $WANDA_TEST_KILLED_HOST with the scratch directory $WANDA_TEST_SCRATCH, makes
// one call (so that scratch files exist), prints the plugin's pid and its two
// owner directories, and waits to be killed.
func killedHost() {
	opts := quiet(nil)
	opts.ScratchDir = os.Getenv("WANDA_TEST_SCRATCH")
	m, _, err := OpenMetric(context.Background(), os.Getenv("WANDA_TEST_KILLED_HOST"), opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	st := &pipeline.Stats{N: 1, Tokens: 1, SumSq: []float32{1, 2}}
	if _, err := m.Score(context.Background(), pipeline.NewMatrix(2, 2), st, layer(0, "q_proj")); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	c := m.(*Metric).c
	fmt.Printf("%d %s %s\n", c.pid(), c.sock.Path, c.scratch.Path)
	for {
		time.Sleep(time.Hour)
	}
}

// TestHostKilled: when wanda is killed with SIGKILL, the plugin dies with it,
// and its scratch files and socket directory are removed by the next plugin
// start.
func TestHostKilled(t *testing.T) {
	scratch := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "WANDA_TEST_KILLED_HOST="+bins["wanda"], "WANDA_TEST_SCRATCH="+scratch)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("host: %v", err)
	}
	var pid int
	var sock, scr string
	if _, err := fmt.Sscan(line, &pid, &sock, &scr); err != nil {
		t.Fatalf("host printed %q: %v", line, err)
	}
	if ents, _ := os.ReadDir(scr); len(ents) == 0 {
		t.Fatalf("no scratch files in %s while the plugin is open", scr)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	gone(t, pid, "after the host was killed")
	for _, d := range []string{sock, scr} {
		if _, err := os.Stat(d); err != nil {
			t.Fatalf("%s: %v (expected the killed host to leave it)", d, err)
		}
	}
	// The next start sweeps them.
	opts := quiet(nil)
	opts.ScratchDir = scratch
	_, closer, err := OpenMetric(context.Background(), bins["wanda"], opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{sock, scr, sock + ".lock", scr + ".lock"} {
		if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left behind by the killed host was not swept: %v", d, err)
		}
	}
	closer.Close()
	emptyDir(t, scratch)
}

// TestLongTempDir: a $TMPDIR too long for a Unix socket address does not break
// plugins (the socket goes to /tmp instead).
func TestLongTempDir(t *testing.T) {
	long := filepath.Join(t.TempDir(), strings.Repeat("d", 60))
	if err := os.Mkdir(long, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TMPDIR", long)
	opts := quiet(nil)
	_, closer, err := OpenMetric(context.Background(), bins["wanda"], opts)
	if err != nil {
		t.Fatalf("OpenMetric with TMPDIR=%s: %v", long, err)
	}
	closer.Close()
	emptyDir(t, long)
}
