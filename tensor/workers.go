package tensor

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// GEMM helper goroutines.
//
// A multi-threaded GEMM call is run by its caller plus up to Threads()-1
// helpers from a small pool of long-lived worker goroutines. A worker that
// has just finished a job polls for the next one for spinFor before it
// parks: back-to-back GEMM calls (a transformer block issues several in a
// row) then find their helper running instead of paying the ~0.1 ms it
// takes to wake a parked goroutine on an idle CPU of this VM. Helpers are
// optional: a job offered to a worker that is busy elsewhere is simply done
// by its caller (the work-item scheduler of gemmRun needs no fixed team),
// so concurrent GEMM calls from several goroutines never wait on each other.

// spinFor is how long an idle worker keeps polling before it parks.
const spinFor = 200 * time.Microsecond

// helpJob is work a helper can join; help returns when the job has no more
// work for it (possibly at once, if the job already finished).
type helpJob interface{ help() }

type jobBox struct{ j helpJob }

type worker struct {
	slot     atomic.Pointer[jobBox]
	sleeping atomic.Bool
	wake     chan struct{}
}

var workerPool struct {
	mu      sync.Mutex
	workers atomic.Pointer[[]*worker]
}

// offerHelp offers job to up to n workers (starting them on first use) and
// returns how many took it into their slot.
func offerHelp(box *jobBox, n int) int {
	ws := workerPool.workers.Load()
	if ws == nil || len(*ws) < n {
		ws = growWorkers(n)
	}
	got := 0
	for _, w := range (*ws)[:n] {
		if !w.slot.CompareAndSwap(nil, box) {
			continue // still holds an earlier offer
		}
		got++
		if w.sleeping.Load() {
			select {
			case w.wake <- struct{}{}:
			default:
			}
		}
	}
	return got
}

func growWorkers(n int) *[]*worker {
	workerPool.mu.Lock()
	defer workerPool.mu.Unlock()
	ws := workerPool.workers.Load()
	var cur []*worker
	if ws != nil {
		cur = *ws
	}
	if len(cur) >= n {
		return ws
	}
	next := append([]*worker(nil), cur...)
	for len(next) < n {
		w := &worker{wake: make(chan struct{}, 1)}
		next = append(next, w)
		go w.loop()
	}
	workerPool.workers.Store(&next)
	return &next
}

func (w *worker) loop() {
	last := time.Now()
	for {
		if b := w.slot.Swap(nil); b != nil {
			b.j.help()
			last = time.Now()
			continue
		}
		if time.Since(last) < spinFor {
			runtime.Gosched()
			continue
		}
		// Park. The re-check after announcing sleep pairs with offerHelp,
		// which stores the job before it reads sleeping.
		w.sleeping.Store(true)
		if b := w.slot.Swap(nil); b != nil {
			w.sleeping.Store(false)
			b.j.help()
			last = time.Now()
			continue
		}
		<-w.wake
		w.sleeping.Store(false)
		last = time.Now()
	}
}
