package pipeline

import (
	"bufio"
	"bytes"
	"os"
	"strconv"
	"sync"
	"time"
)

// MemStats are the process's memory figures read from /proc/self/status (Linux), in bytes.
type MemStats struct {
	RSS     int64 // VmRSS: resident, including mapped file pages (the weights' page cache)
	RSSAnon int64 // RssAnon: resident anonymous memory (heap, stacks): what the process owns
	HWM     int64 // VmHWM: peak VmRSS so far
}

// ReadMem returns the current figures; zeros where /proc is not available.
func ReadMem() MemStats {
	var m MemStats
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return m
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Bytes()
		field := func(prefix string) (int64, bool) {
			if !bytes.HasPrefix(line, []byte(prefix)) {
				return 0, false
			}
			f := bytes.Fields(line[len(prefix):])
			if len(f) == 0 {
				return 0, false
			}
			v, err := strconv.ParseInt(string(f[0]), 10, 64)
			if err != nil {
				return 0, false
			}
			return v * 1024, true
		}
		if v, ok := field("VmRSS:"); ok {
			m.RSS = v
		} else if v, ok := field("RssAnon:"); ok {
			m.RSSAnon = v
		} else if v, ok := field("VmHWM:"); ok {
			m.HWM = v
		}
	}
	return m
}

// PeakMeter samples the anonymous resident memory in the background and keeps its peak:
// the kernel keeps a high-water mark only for the total (VmHWM), which counts the
// memory-mapped weights' page cache too.
type PeakMeter struct {
	mu   sync.Mutex
	peak MemStats
	stop chan struct{}
	done chan struct{}
}

// StartPeakMeter samples every interval until Stop.
func StartPeakMeter(interval time.Duration) *PeakMeter {
	p := &PeakMeter{stop: make(chan struct{}), done: make(chan struct{})}
	p.Sample()
	go func() {
		defer close(p.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-t.C:
				p.Sample()
			}
		}
	}()
	return p
}

// Sample takes one reading now (call it at known high points too).
func (p *PeakMeter) Sample() {
	m := ReadMem()
	p.mu.Lock()
	if m.RSSAnon > p.peak.RSSAnon {
		p.peak.RSSAnon = m.RSSAnon
	}
	if m.RSS > p.peak.RSS {
		p.peak.RSS = m.RSS
	}
	if m.HWM > p.peak.HWM {
		p.peak.HWM = m.HWM
	}
	p.mu.Unlock()
}

// Peak returns the peaks seen so far.
func (p *PeakMeter) Peak() MemStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.peak
}

// Stop ends sampling and returns the peaks.
func (p *PeakMeter) Stop() MemStats {
	p.Sample()
	close(p.stop)
	<-p.done
	return p.Peak()
}

// SystemMemory is the memory this process can expect to use, in bytes: the machine's
// MemTotal, or the memory cgroup's limit when it is lower (v2 memory.max or v1
// memory.limit_in_bytes); 0 when none can be read.
func SystemMemory() int64 {
	var total int64
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range bytes.Split(b, []byte("\n")) {
			if f := bytes.Fields(line); len(f) >= 2 && string(f[0]) == "MemTotal:" {
				if v, err := strconv.ParseInt(string(f[1]), 10, 64); err == nil {
					total = v * 1024
				}
			}
		}
	}
	for _, path := range []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"} {
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		if v, err := strconv.ParseInt(string(bytes.TrimSpace(b)), 10, 64); err == nil && v > 0 && (total == 0 || v < total) {
			total = v
		}
	}
	return total
}
