package termui

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// A fake terminal: what a person would see is the buffer's text interpreted line by line,
// where "\r\x1b[K" erases the current line.
func screen(raw string) []string {
	var lines []string
	cur := ""
	for i := 0; i < len(raw); {
		switch {
		case strings.HasPrefix(raw[i:], "\r\x1b[K"):
			cur = ""
			i += 4
		case strings.HasPrefix(raw[i:], "\x1b[K"):
			i += 3
		case raw[i] == '\r':
			cur = ""
			i++
		case raw[i] == '\n':
			lines = append(lines, cur)
			cur = ""
			i++
		default:
			cur += raw[i : i+1]
			i++
		}
	}
	if cur != "" {
		lines = append(lines, cur)
	}
	return lines
}

func TestLogLinesAboveTheBar(t *testing.T) {
	var buf bytes.Buffer
	c := &Console{w: &buf, tty: true}
	clock := time.Date(2026, 11, 30, 9, 4, 49, 0, time.UTC)
	c.now = func() time.Time { clock = clock.Add(time.Second); return clock }
	log := slog.New(c.Handler(slog.LevelInfo))
	c.Progress("layer 1/8", 0, 8)
	c.Progress("layer 1/8", 1, 8)
	log.Info("layer pruned", "layer", 0, "sparsity", "0.5000")
	c.Progress("layer 2/8", 2, 8)
	log.Warn("slow", "layer", 1)
	lines := screen(buf.String())
	if len(lines) != 3 {
		t.Fatalf("screen %q", lines)
	}
	if !strings.HasSuffix(lines[0], "layer pruned layer=0 sparsity=0.5000") || strings.Contains(lines[0], "[") {
		t.Errorf("log line mixed with the bar: %q", lines[0])
	}
	if !strings.Contains(lines[1], "WARN slow layer=1") {
		t.Errorf("second log line %q", lines[1])
	}
	if !strings.HasPrefix(lines[2], "layer 2/8 [=======") || !strings.Contains(lines[2], "2/8 25%") {
		t.Errorf("bar %q", lines[2])
	}
	c.Finish()
	if l := screen(buf.String()); len(l) != 2 {
		t.Errorf("bar not removed: %q", l)
	}
}

func TestNotATerminal(t *testing.T) {
	var buf bytes.Buffer
	c := New(&buf)
	c.Progress("x", 1, 2)
	slog.New(c.Handler(slog.LevelInfo)).Info("layer pruned", "layer", 3)
	out := buf.String()
	if strings.Contains(out, "\r") || strings.Contains(out, "[=") {
		t.Errorf("bar drawn off a terminal: %q", out)
	}
	if !strings.Contains(out, `level=INFO msg="layer pruned" layer=3`) {
		t.Errorf("not structured: %q", out)
	}
}

func TestBar(t *testing.T) {
	if got := Bar("eval", 10, 40, 30*time.Second); got != "eval [=======                       ] 10/40 25% 30s eta 1m30s" {
		t.Errorf("%q", got)
	}
	if got := Bar("eval", 40, 40, 30*time.Second); strings.Contains(got, "eta") || !strings.Contains(got, "100%") {
		t.Errorf("%q", got)
	}
}
