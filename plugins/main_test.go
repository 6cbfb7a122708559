package plugins

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/wanda-go/wanda/pipeline"
	"github.com/wanda-go/wanda/plugins/plugintest"
)

// bins maps a plugin name (wanda, ria, schedule, faulty) to its executable, built once.
var (
	bins   map[string]string
	binDir string
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if os.Getenv("WANDA_TEST_ORPHAN_HOST") != "" {
		orphanHost() // exits
	}
	if os.Getenv("WANDA_TEST_KILLED_HOST") != "" {
		killedHost() // waits to be killed
	}
	dir, err := os.MkdirTemp("", "wanda-plugins-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	binDir = dir
	if bins, err = plugintest.Build(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// quiet returns options with a logger that drops everything (or writes to buf).
func quiet(buf io.Writer) HostOptions {
	if buf == nil {
		buf = io.Discard
	}
	return HostOptions{Logger: slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))}
}

func openMetric(t testing.TB, name string, opts HostOptions) *Metric {
	t.Helper()
	m, closer, err := OpenMetric(context.Background(), bins[name], opts)
	if err != nil {
		t.Fatalf("OpenMetric(%s): %v", name, err)
	}
	t.Cleanup(func() { closer.Close() })
	return m.(*Metric)
}

func openPattern(t testing.TB, name string, opts HostOptions) *Pattern {
	t.Helper()
	p, closer, err := OpenPattern(context.Background(), bins[name], opts)
	if err != nil {
		t.Fatalf("OpenPattern(%s): %v", name, err)
	}
	t.Cleanup(func() { closer.Close() })
	return p.(*Pattern)
}

// alive reports whether process pid exists (a zombie counts as existing).
func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// waitGone waits a little for pid to disappear (a killed process is reaped asynchronously
// only when nobody waits for it; go-plugin waits, so this is normally immediate).
func waitGone(t *testing.T, pid int, what string) {
	t.Helper()
	for range 200 {
		if !alive(pid) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Errorf("%s: process %d still exists", what, pid)
}

// procsOf lists the running processes whose executable is path (Linux /proc; nil elsewhere).
func procsOf(path string) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe"))
		if err == nil && exe == path {
			pids = append(pids, pid)
		}
	}
	return pids
}

// syncBuffer is a bytes.Buffer safe for the logger's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func layer(i int, part string) pipeline.LayerInfo {
	return pipeline.LayerInfo{
		Layer: i, Tensor: fmt.Sprintf("model.layers.%d.mlp.%s.weight", i, part), Part: part,
		ModelType: "llama", Hidden: 64, Intermediate: 128, NumLayers: 4,
	}
}

func wantIn(t *testing.T, err error, subs ...string) {
	t.Helper()
	for _, s := range subs {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not mention %q", err, s)
		}
	}
}
