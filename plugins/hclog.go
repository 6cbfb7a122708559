package plugins

import (
	"bytes"
	"context"
	"io"
	"log"
	"log/slog"
	"strings"
	"sync"

	"github.com/hashicorp/go-hclog"
)

// hclogAdapter sends go-plugin's logging, and the hclog-format lines the plugin writes to
// its original standard error (what sdk.Logger writes), to a slog.Logger. go-plugin's own lifecycle messages (the root logger)
// are demoted to debug: failures reach the caller as errors. Lines of the plugin's stderr (a
// Named logger) keep their level: JSON lines in hclog's format carry one, other lines are
// debug unless they start with "[INFO]", "[WARN]", "[ERROR]" or belong to a panic. (A Go
// plugin's later writes to os.Stdout/os.Stderr are relayed over gRPC instead: lineLogger.)
type hclogAdapter struct {
	l      *slog.Logger
	name   string
	args   []any
	demote bool
}

func newHCLog(l *slog.Logger, plugin string) hclog.Logger {
	if l == nil {
		l = slog.Default()
	}
	return &hclogAdapter{l: l.With("plugin", plugin), demote: true}
}

func (a *hclogAdapter) slogLevel(level hclog.Level) slog.Level {
	if a.demote {
		return slog.LevelDebug
	}
	switch level {
	case hclog.Trace:
		return slog.LevelDebug - 4
	case hclog.Debug:
		return slog.LevelDebug
	case hclog.Warn:
		return slog.LevelWarn
	case hclog.Error:
		return slog.LevelError
	}
	return slog.LevelInfo
}

func (a *hclogAdapter) Log(level hclog.Level, msg string, args ...any) {
	lv := a.slogLevel(level)
	ctx := context.Background()
	if !a.l.Enabled(ctx, lv) {
		return
	}
	all := make([]any, 0, len(a.args)+len(args)+2)
	if a.name != "" {
		all = append(all, "source", a.name)
	}
	all = append(all, a.args...)
	all = append(all, args...)
	a.l.Log(ctx, lv, msg, all...)
}

func (a *hclogAdapter) Trace(msg string, args ...any) { a.Log(hclog.Trace, msg, args...) }
func (a *hclogAdapter) Debug(msg string, args ...any) { a.Log(hclog.Debug, msg, args...) }
func (a *hclogAdapter) Info(msg string, args ...any)  { a.Log(hclog.Info, msg, args...) }
func (a *hclogAdapter) Warn(msg string, args ...any)  { a.Log(hclog.Warn, msg, args...) }
func (a *hclogAdapter) Error(msg string, args ...any) { a.Log(hclog.Error, msg, args...) }

func (a *hclogAdapter) enabled(level hclog.Level) bool {
	return a.l.Enabled(context.Background(), a.slogLevel(level))
}

func (a *hclogAdapter) IsTrace() bool { return a.enabled(hclog.Trace) }
func (a *hclogAdapter) IsDebug() bool { return a.enabled(hclog.Debug) }
func (a *hclogAdapter) IsInfo() bool  { return a.enabled(hclog.Info) }
func (a *hclogAdapter) IsWarn() bool  { return a.enabled(hclog.Warn) }
func (a *hclogAdapter) IsError() bool { return a.enabled(hclog.Error) }

func (a *hclogAdapter) ImpliedArgs() []any { return a.args }

func (a *hclogAdapter) With(args ...any) hclog.Logger {
	b := *a
	b.args = append(append([]any(nil), a.args...), args...)
	return &b
}

func (a *hclogAdapter) Name() string { return a.name }

// Named returns the logger for a sub-system; go-plugin names the plugin's stderr relay this
// way, and those records keep their own level.
func (a *hclogAdapter) Named(name string) hclog.Logger {
	b := *a
	b.demote = a.demote && name == "stdio" // go-plugin's stdio relay: lifecycle chatter
	if b.name != "" {
		name = b.name + "." + name
	}
	b.name = name
	return &b
}

func (a *hclogAdapter) ResetNamed(name string) hclog.Logger {
	b := *a
	b.demote = false
	b.name = name
	return &b
}

// SetLevel is a no-op: the slog handler decides.
func (a *hclogAdapter) SetLevel(hclog.Level) {}

func (a *hclogAdapter) GetLevel() hclog.Level {
	for _, lv := range []hclog.Level{hclog.Trace, hclog.Debug, hclog.Info, hclog.Warn, hclog.Error} {
		if a.enabled(lv) {
			return lv
		}
	}
	return hclog.Off
}

func (a *hclogAdapter) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(a.StandardWriter(opts), "", 0)
}

func (a *hclogAdapter) StandardWriter(*hclog.StandardLoggerOptions) io.Writer {
	return writerFunc(func(p []byte) (int, error) {
		a.Info(strings.TrimRight(string(p), "\n"))
		return len(p), nil
	})
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// lineLogger logs what a plugin writes to its (go-plugin relayed) stdout or stderr, a line
// at a time, at the level its prefix names ("[DEBUG]", "[INFO]", "[WARN]", "[ERROR]"),
// else at level def.
type lineLogger struct {
	l      *slog.Logger
	stream string
	def    slog.Level
	mu     sync.Mutex
	buf    []byte
}

func (w *lineLogger) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			if len(w.buf) > 64<<10 { // a line that never ends: log what we have
				w.emit(string(w.buf))
				w.buf = w.buf[:0]
			}
			return len(p), nil
		}
		w.emit(string(w.buf[:i]))
		w.buf = w.buf[i+1:]
	}
}

func (w *lineLogger) emit(line string) {
	line = strings.TrimRight(line, "\r")
	if line == "" {
		return
	}
	lv := w.def
	for _, p := range []struct {
		prefix string
		level  slog.Level
	}{{"[TRACE]", slog.LevelDebug - 4}, {"[DEBUG]", slog.LevelDebug}, {"[INFO]", slog.LevelInfo},
		{"[WARN]", slog.LevelWarn}, {"[ERROR]", slog.LevelError}} {
		if strings.HasPrefix(line, p.prefix) {
			lv = p.level
			break
		}
	}
	w.l.Log(context.Background(), lv, line, "stream", w.stream)
}
