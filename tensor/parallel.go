package tensor

import (
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"
)

// ParallelFor calls fn(lo, hi) on disjoint ranges that together cover
// [0, n) exactly once, from up to Threads() goroutines at once (see
// SetThreads), and returns when every call has returned.
//
// Every range holds at least grain indices (grain < 1 counts as 1),
// except the last, which holds what is left. When n ≤ grain or Threads()
// is 1, fn(0, n) is called once on the calling goroutine; n ≤ 0 calls
// nothing. Otherwise the ranges, about four per thread, are handed out
// in increasing order, each to whichever goroutine asks next: the caller
// and helpers from the pool of worker goroutines the GEMM uses. A helper
// that is busy (another ParallelFor or GEMM) is not waited for, so a
// thread slowed by other processes simply takes fewer ranges, nested and
// concurrent calls are safe, and ParallelFor never starts a goroutine per
// call. Which goroutine runs a range and where ranges end beyond grain is
// unspecified: results must not depend on them (give each index its own
// output, or combine per-range results in index order afterwards).
//
// fn should compute, not block: a helper held by a blocked fn is not
// available to other ParallelFor or GEMM calls meanwhile. A panic in fn
// stops further ranges from being handed out and is raised again in the
// caller once the other goroutines have left fn (a helper's panic value
// is wrapped in a message that carries its stack).
func ParallelFor(n, grain int, fn func(lo, hi int)) {
	if n <= 0 {
		return
	}
	grain = max(grain, 1)
	nt := Threads()
	if nt == 1 || n <= grain {
		fn(0, n)
		return
	}
	chunk := max(grain, (n+4*nt-1)/(4*nt))
	if chunk >= n {
		fn(0, n)
		return
	}
	j, _ := parJobs.Get().(*parJob)
	if j == nil {
		j = new(parJob)
		j.box.j = j
		j.done = make(chan struct{}, 1)
		j.state.Store(runClosed)
	}
	j.n, j.chunk, j.fn = n, chunk, fn
	j.next.Store(0)
	j.panicked.Store(nil)
	j.state.Store(0) // open for helpers
	offerHelp(&j.box, min(nt-1, (n+chunk-1)/chunk-1))
	defer func() {
		// Also on a panic of fn here: stop handing out ranges and wait
		// for the helpers inside before the caller's frames unwind.
		j.next.Store(int64(n))
		if j.state.Add(runClosed) != runClosed {
			<-j.done // the last helper to leave signals
		}
		p := j.panicked.Load()
		j.fn = nil // drop the reference to the caller's closure
		parJobs.Put(j)
		if p != nil {
			panic(*p)
		}
	}()
	j.run()
}

// parJob is one ParallelFor call, shared with the helpers that join it.
// state follows gemmRun's protocol: the runClosed bit plus the number of
// helpers inside; the helper that leaves a closed job last sends on done.
type parJob struct {
	n, chunk int
	fn       func(lo, hi int)
	next     atomic.Int64 // start of the next range to hand out
	panicked atomic.Pointer[any]
	state    atomic.Int64
	done     chan struct{}
	box      jobBox
}

var parJobs sync.Pool // *parJob

// run takes and runs ranges until none are left.
func (j *parJob) run() {
	for {
		lo := int(j.next.Add(int64(j.chunk)) - int64(j.chunk))
		if lo >= j.n {
			return
		}
		j.fn(lo, min(lo+j.chunk, j.n))
	}
}

// help lets a pool worker join the job if it is still open.
func (j *parJob) help() {
	for {
		s := j.state.Load()
		if s&runClosed != 0 {
			return
		}
		if j.state.CompareAndSwap(s, s+1) {
			break
		}
	}
	defer func() {
		if v := recover(); v != nil {
			var p any = fmt.Sprintf("tensor: ParallelFor: panic in helper goroutine: %v\n\n%s", v, debug.Stack())
			j.panicked.CompareAndSwap(nil, &p)
			j.next.Store(int64(j.n))
		}
		if j.state.Add(-1) == runClosed {
			j.done <- struct{}{}
		}
	}()
	j.run()
}
