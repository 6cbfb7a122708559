// Command peakrss runs a command and reports, from outside it, the peak of its anonymous
// resident memory (RssAnon in /proc/PID/status, summed over the process and its
// descendants, e.g. plugin processes), sampled every -interval, plus its wall time:
//
//	peakrss [-interval 100ms] [-json] -- COMMAND [ARG ...]
//
// It prints one line to standard error ("peakrss: rss_anon_peak_mib=… rss_peak_mib=…
// wall_s=… exit=…", or JSON with -json) and exits with the command's status. Linux only.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

type result struct {
	RSSAnonPeakMiB float64 `json:"rss_anon_peak_mib"`
	RSSPeakMiB     float64 `json:"rss_peak_mib"`
	WallSeconds    float64 `json:"wall_s"`
	Samples        int     `json:"samples"`
	Exit           int     `json:"exit"`
}

func main() {
	interval := flag.Duration("interval", 100*time.Millisecond, "sampling interval")
	asJSON := flag.Bool("json", false, "print the result as JSON")
	flag.Parse()
	if flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: peakrss [-interval 100ms] [-json] -- COMMAND [ARG ...]")
		os.Exit(2)
	}
	cmd := exec.Command(flag.Arg(0), flag.Args()[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "peakrss:", err)
		os.Exit(2)
	}
	// Forward SIGINT/SIGTERM to the command.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		for s := range sig {
			cmd.Process.Signal(s)
		}
	}()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var r result
	tick := time.NewTicker(*interval)
	defer tick.Stop()
	sample := func() {
		anon, rss := tree(cmd.Process.Pid)
		r.RSSAnonPeakMiB = max(r.RSSAnonPeakMiB, float64(anon)/1024)
		r.RSSPeakMiB = max(r.RSSPeakMiB, float64(rss)/1024)
		r.Samples++
	}
	var err error
loop:
	for {
		select {
		case err = <-done:
			break loop
		case <-tick.C:
			sample()
		}
	}
	r.WallSeconds = time.Since(start).Seconds()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.Exit = ee.ExitCode()
		if r.Exit < 0 {
			r.Exit = 128 + int(ee.Sys().(syscall.WaitStatus).Signal())
		}
	} else if err != nil {
		r.Exit = 1
	}
	if *asJSON {
		b, _ := json.Marshal(r)
		fmt.Fprintln(os.Stderr, string(b))
	} else {
		fmt.Fprintf(os.Stderr, "peakrss: rss_anon_peak_mib=%.1f rss_peak_mib=%.1f wall_s=%.2f samples=%d exit=%d\n",
			r.RSSAnonPeakMiB, r.RSSPeakMiB, r.WallSeconds, r.Samples, r.Exit)
	}
	os.Exit(r.Exit)
}

// tree sums RssAnon and VmRSS (kB) over pid and its descendants.
func tree(pid int) (anon, rss int64) {
	children := map[int][]int{}
	procs, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		me, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		children[ppid] = append(children[ppid], me)
	}
	var walk func(int)
	walk = func(p int) {
		a, r := status(p)
		anon += a
		rss += r
		for _, c := range children[p] {
			walk(c)
		}
	}
	walk(pid)
	return anon, rss
}

func status(pid int) (anon, rss int64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch k {
		case "RssAnon":
			anon = n
		case "VmRSS":
			rss = n
		}
	}
	return anon, rss
}
