//go:build openblas

// Command gemm compares tensor.Sgemm with OpenBLAS cblas_sgemm on the GEMM
// shapes wanda uses, timing both in the same run, interleaved.
//
//	go run -tags openblas ./bench/gemm [-threads 2] [-reps 5] [-big=true] [-mintime 100ms] [-cold=true]
//
// It needs cgo and libopenblas (apt-get install libopenblas-dev); see run.sh.
package main

/*
#cgo LDFLAGS: -lopenblas
#include <cblas.h>
void openblas_set_num_threads(int num_threads);
*/
import "C"

import (
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"github.com/wanda-go/wanda/tensor"
)

type shape struct {
	name    string
	tA, tB  bool
	m, n, k int
	big     bool
}

var shapes = []shape{
	{"tiny gate/up  NT", false, true, 512, 1024, 384, false},
	{"tiny down     NT", false, true, 512, 384, 1024, false},
	{"tiny qkvo     NT", false, true, 512, 384, 384, false},
	{"7B gate/up    NT", false, true, 2048, 11008, 4096, true},
	{"tiny H(384)   TN", true, false, 384, 384, 512, false},
	{"tiny H(1024)  TN", true, false, 1024, 1024, 512, false},
	{"7B H(4096)    TN", true, false, 4096, 4096, 2048, true},
	{"7B H(11008)   TN", true, false, 11008, 11008, 2048, true},
}

func main() {
	threads := flag.Int("threads", 2, "threads for both libraries")
	reps := flag.Int("reps", 5, "timed repetitions per library and shape (best is reported)")
	big := flag.Bool("big", true, "include the LLaMA-7B shapes")
	quiet := flag.Duration("quiet", 20*time.Second, "before each timed pair wait up to this long for a quiet machine (>=90% idle CPU over 300ms; 0 disables)")
	mintime := flag.Duration("mintime", 100*time.Millisecond, "repeat each call for about this long per timed sample (1ns: one call per sample)")
	cold := flag.Bool("cold", true, "also time single calls after an idle wait (reported separately)")
	cpuTime := flag.Bool("cputime", true, "also report GFLOP per CPU-second of the process (less sensitive to other jobs taking the CPUs)")
	flag.Parse()

	C.openblas_set_num_threads(C.int(*threads))
	tensor.SetThreads(*threads)
	fmt.Printf("threads=%d reps=%d kernel=%s\n", *threads, *reps, tensor.KernelName())
	fmt.Printf("%-18s %6s %6s %6s %12s %12s %7s %10s\n", "shape", "m", "n", "k", "ours GF/s", "OpenBLAS", "ratio", "maxdiff")
	r := rand.New(rand.NewPCG(1, 2))
	worst := math.Inf(1)
	for _, s := range shapes {
		if s.big && !*big {
			continue
		}
		ar, ac := s.m, s.k
		if s.tA {
			ar, ac = s.k, s.m
		}
		br, bc := s.k, s.n
		if s.tB {
			br, bc = s.n, s.k
		}
		a := randSlice(r, ar*ac)
		b := randSlice(r, br*bc)
		if s.tA && !s.tB && s.m == s.n {
			b = a // Xᵀ·X, as for Hessians
		}
		c1 := make([]float32, s.m*s.n)
		c2 := make([]float32, s.m*s.n)
		ours := func() {
			tensor.Sgemm(s.tA, s.tB, s.m, s.n, s.k, 1, a, ac, b, bc, 0, c1, s.n)
		}
		blas := func() {
			ta, tb := uint32(C.CblasNoTrans), uint32(C.CblasNoTrans)
			if s.tA {
				ta = C.CblasTrans
			}
			if s.tB {
				tb = C.CblasTrans
			}
			C.cblas_sgemm(C.CblasRowMajor, ta, tb, C.blasint(s.m), C.blasint(s.n), C.blasint(s.k), 1,
				(*C.float)(unsafe.Pointer(&a[0])), C.blasint(ac),
				(*C.float)(unsafe.Pointer(&b[0])), C.blasint(bc), 0,
				(*C.float)(unsafe.Pointer(&c2[0])), C.blasint(s.n))
		}
		// Warm up both, then interleave timed runs.
		ours()
		blas()
		// Each timed sample repeats the call for about -mintime (at an
		// assumed 100 GFLOP/s), so that a millisecond-scale call is
		// timed in steady state, as the forward pass issues it, rather
		// than as one call after the idle -quiet wait.
		inner := max(1, int(math.Ceil(mintime.Seconds()*100e9/(2*float64(s.m)*float64(s.n)*float64(s.k)))))
		var to, tb, co, cb, coldO, coldB []float64
		noisy := 0
		// Before each timed sample, wait for a quiet machine: this also
		// lets the other library's idle threads, which spin for a while
		// after a call (OpenBLAS: about 2^28 cycles), stop spinning.
		settle := func() {
			if *quiet > 0 && !waitQuiet(*quiet) {
				noisy++
			}
		}
		for i := 0; i < *reps; i++ {
			// Alternate the order so neither library always runs first.
			runOurs := func() {
				settle()
				w, c := timeIt(ours, inner)
				to, co = append(to, w), append(co, c)
			}
			runBlas := func() {
				settle()
				w, c := timeIt(blas, inner)
				tb, cb = append(tb, w), append(cb, c)
			}
			if i%2 == 0 {
				runOurs()
				runBlas()
			} else {
				runBlas()
				runOurs()
			}
		}
		if *cold {
			// One call each after an idle wait: includes waking the helper
			// threads and the idle CPUs of the VM.
			for i := 0; i < *reps; i++ {
				for _, ours1 := range []bool{i%2 == 0, i%2 != 0} {
					time.Sleep(300 * time.Millisecond)
					if ours1 {
						w, _ := timeIt(ours, 1)
						coldO = append(coldO, w)
					} else {
						w, _ := timeIt(blas, 1)
						coldB = append(coldB, w)
					}
				}
			}
		}
		flop := 2 * float64(s.m) * float64(s.n) * float64(s.k)
		go_, gb := flop/best(to)/1e9, flop/best(tb)/1e9
		var md float64
		for i := range c1 {
			md = math.Max(md, math.Abs(float64(c1[i])-float64(c2[i])))
		}
		// Keep the row format fixed (ratio second to last): bench/run.sh parses it.
		fmt.Printf("%-18s %6d %6d %6d %12.1f %12.1f %7.2f %10.2g\n", s.name, s.m, s.n, s.k, go_, gb, go_/gb, md)
		if noisy > 0 {
			fmt.Printf("  note: %d of %d timed samples above started while the machine was busy\n", noisy, 2**reps)
		}
		if *cpuTime {
			// Total over all repetitions: the kernel samples CPU time at
			// timer ticks, so single millisecond-scale calls are unreliable.
			fmt.Printf("  per CPU-second (process CPU time, all threads, all reps): ours %.1f, OpenBLAS %.1f GFLOP/cpu-s\n",
				flop*float64(len(co))/sum(co)/1e9, flop*float64(len(cb))/sum(cb)/1e9)
		}
		if *cold {
			mo, mb := median(coldO), median(coldB)
			fmt.Printf("  one call after 300 ms idle (median of %d): ours %.2f ms, OpenBLAS %.2f ms, ratio %.2f (wake-up included)\n",
				len(coldO), mo*1e3, mb*1e3, mb/mo)
		}
		worst = math.Min(worst, go_/gb)
	}
	fmt.Printf("worst ratio %.2f\n", worst)
	if worst < 0 {
		os.Exit(1)
	}
}

// idleFraction returns the fraction of idle CPU time over d, from
// /proc/stat (Linux), or 1 if it cannot be read.
func idleFraction(d time.Duration) float64 {
	read := func() (idle, total uint64, ok bool) {
		b, err := os.ReadFile("/proc/stat")
		if err != nil {
			return 0, 0, false
		}
		line, _, _ := strings.Cut(string(b), "\n")
		f := strings.Fields(line)
		if len(f) < 5 || f[0] != "cpu" {
			return 0, 0, false
		}
		for i, x := range f[1:] {
			v, err := strconv.ParseUint(x, 10, 64)
			if err != nil {
				return 0, 0, false
			}
			total += v
			if i == 3 || i == 4 { // idle, iowait
				idle += v
			}
		}
		return idle, total, true
	}
	i0, t0, ok0 := read()
	time.Sleep(d)
	i1, t1, ok1 := read()
	if !ok0 || !ok1 || t1 == t0 {
		return 1
	}
	return float64(i1-i0) / float64(t1-t0)
}

// waitQuiet waits until the machine looks idle (other tenants share it) or
// max has passed; it reports whether it saw a quiet moment.
func waitQuiet(max time.Duration) bool {
	deadline := time.Now().Add(max)
	for time.Now().Before(deadline) {
		if idleFraction(300*time.Millisecond) >= 0.9 {
			return true
		}
	}
	return false
}

// timeIt returns the wall time and the process CPU time (user+system, all
// threads) per call of f.
func timeIt(f func(), inner int) (wall, cpu float64) {
	c0 := cpuSeconds()
	t := time.Now()
	for i := 0; i < inner; i++ {
		f()
	}
	wall = time.Since(t).Seconds() / float64(inner)
	return wall, (cpuSeconds() - c0) / float64(inner)
}

func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return tv(ru.Utime) + tv(ru.Stime)
}

func sum(xs []float64) float64 {
	var s float64
	for _, x := range xs {
		s += x
	}
	return s
}

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return s[len(s)/2]
}

func best(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return s[0]
}

func randSlice(r *rand.Rand, n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(r.Float64()*2 - 1)
	}
	return s
}
