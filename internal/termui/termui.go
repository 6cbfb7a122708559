// Package termui is what a person sees of a long wanda command: log lines and one progress
// bar on the same stream. On a terminal, log lines are human-readable and printed above the
// bar, which is redrawn below them (never interleaved with it); on anything else (a file, a
// pipe, CI) log lines are structured (slog's text format) and no bar is drawn — the log
// lines carry the progress.
//
// The engine never draws: long operations report through a callback (Done of Total steps
// under a label), and the command passes Console.Progress.
package termui

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"
)

// Console is one output stream (usually os.Stderr) shared by log lines and a progress bar.
// It is safe for concurrent use.
type Console struct {
	mu  sync.Mutex
	w   io.Writer
	tty bool
	now func() time.Time

	// the bar
	label       string
	done, total int64
	start, last time.Time
	shown       bool // a bar line is on the screen
}

// IsTerminal reports whether w is a character device.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// New returns a console on w; it draws a bar only when w is a terminal.
func New(w io.Writer) *Console { return &Console{w: w, tty: IsTerminal(w), now: time.Now} }

// Terminal reports whether the console draws (w is a terminal).
func (c *Console) Terminal() bool { return c.tty }

// Progress updates the bar: done of total steps under label (e.g. "layer 3/32"). A new
// label with done == 0 restarts the clock. Redraws at most every 100 ms, and always at the
// last step.
func (c *Console) Progress(label string, done, total int64) {
	if !c.tty {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if c.start.IsZero() || done == 0 && c.done != 0 {
		c.start = now
	}
	c.label, c.done, c.total = label, done, total
	if now.Sub(c.last) < 100*time.Millisecond && done < total {
		return
	}
	c.last = now
	c.draw()
}

// Finish removes the bar from the screen (call when the long operation ends).
func (c *Console) Finish() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.clear()
	c.start, c.done, c.total, c.label = time.Time{}, 0, 0, ""
}

// clear erases the bar line (c.mu held).
func (c *Console) clear() {
	if c.shown {
		io.WriteString(c.w, "\r\x1b[K")
		c.shown = false
	}
}

// draw writes the bar line (c.mu held).
func (c *Console) draw() {
	if c.total <= 0 {
		return
	}
	fmt.Fprint(c.w, "\r"+Bar(c.label, c.done, c.total, c.now().Sub(c.start))+"\x1b[K")
	c.shown = true
}

// Bar formats one progress line: "label [=====     ] 12/40 30% 1m5s eta 2m31s".
func Bar(label string, done, total int64, elapsed time.Duration) string {
	const width = 30
	frac := 0.0
	if total > 0 {
		frac = min(1, max(0, float64(done)/float64(total)))
	}
	filled := int(frac * width)
	s := fmt.Sprintf("%s [%s%s] %d/%d %d%% %s", label, strings.Repeat("=", filled), strings.Repeat(" ", width-filled),
		done, total, int(frac*100), elapsed.Round(time.Second))
	if done > 0 && done < total {
		eta := time.Duration(float64(elapsed) * (1/frac - 1)).Round(time.Second)
		s += " eta " + eta.String()
	}
	return s
}

// Handler is a slog.Handler writing to the console: on a terminal, human-readable lines
// ("12:04:05 layer pruned layer=3 sparsity=0.5000") printed above the bar; otherwise slog's
// text format.
func (c *Console) Handler(level slog.Leveler) slog.Handler {
	if !c.tty {
		return slog.NewTextHandler(c.w, &slog.HandlerOptions{Level: level})
	}
	return &lineHandler{c: c, level: level}
}

type lineHandler struct {
	c     *Console
	level slog.Leveler
	attrs []slog.Attr
	group string
}

func (h *lineHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level.Level() }

func (h *lineHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Time.Format("15:04:05 "))
	if r.Level != slog.LevelInfo {
		b.WriteString(r.Level.String() + " ")
	}
	b.WriteString(r.Message)
	write := func(a slog.Attr) bool {
		if a.Equal(slog.Attr{}) {
			return true
		}
		key := a.Key
		if h.group != "" {
			key = h.group + "." + key
		}
		fmt.Fprintf(&b, " %s=%v", key, a.Value.Resolve())
		return true
	}
	for _, a := range h.attrs {
		write(a)
	}
	r.Attrs(write)
	b.WriteByte('\n')
	c := h.c
	c.mu.Lock()
	defer c.mu.Unlock()
	c.clear()
	_, err := io.WriteString(c.w, b.String())
	if c.total > 0 {
		c.draw()
	}
	return err
}

func (h *lineHandler) WithAttrs(as []slog.Attr) slog.Handler {
	n := *h
	n.attrs = append(append([]slog.Attr(nil), h.attrs...), as...)
	return &n
}

func (h *lineHandler) WithGroup(name string) slog.Handler {
	n := *h
	if n.group != "" {
		name = n.group + "." + name
	}
	n.group = name
	return &n
}
