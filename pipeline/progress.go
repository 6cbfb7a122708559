package pipeline

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// Progress draws a one-line progress bar on a terminal; on anything else it is silent
// (logs carry the progress instead).
type Progress struct {
	mu     sync.Mutex
	w      io.Writer
	label  string
	total  int
	done   int
	start  time.Time
	last   time.Time
	active bool
}

// NewProgress returns a bar writing to w when w is a terminal.
func NewProgress(w io.Writer, label string, total int) *Progress {
	p := &Progress{w: w, label: label, total: total, start: time.Now()}
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			p.active = true
		}
	}
	return p
}

// SetLabel changes the text before the bar.
func (p *Progress) SetLabel(s string) {
	p.mu.Lock()
	p.label = s
	p.mu.Unlock()
	p.Add(0)
}

// Add advances the bar by n steps.
func (p *Progress) Add(n int) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done += n
	if !p.active {
		return
	}
	now := time.Now()
	if now.Sub(p.last) < 100*time.Millisecond && p.done < p.total {
		return
	}
	p.last = now
	const width = 30
	frac := 0.0
	if p.total > 0 {
		frac = float64(p.done) / float64(p.total)
	}
	filled := int(frac * width)
	if filled > width {
		filled = width
	}
	el := now.Sub(p.start).Round(time.Second)
	eta := ""
	if p.done > 0 && p.done < p.total {
		rem := time.Duration(float64(now.Sub(p.start)) * (1/frac - 1)).Round(time.Second)
		eta = " eta " + rem.String()
	}
	fmt.Fprintf(p.w, "\r%s [%s%s] %d/%d %s%s\x1b[K", p.label, strings.Repeat("=", filled),
		strings.Repeat(" ", width-filled), p.done, p.total, el, eta)
}

// Finish ends the line.
func (p *Progress) Finish() {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.active {
		fmt.Fprintln(p.w)
	}
}
