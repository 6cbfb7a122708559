package tensor

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// TestParallelForCover: every index of [0, n) is visited exactly once,
// every range but the last holds at least grain indices, and no more than
// Threads() calls of fn run at once (1: all on the caller).
func TestParallelForCover(t *testing.T) {
	for _, threads := range []int{1, 2, 3, 8} {
		func() {
			defer SetThreads(SetThreads(threads))
			for _, c := range []struct{ n, grain int }{{0, 1}, {1, 1}, {5, 10}, {10, 10}, {11, 10}, {1000, 1}, {1000, 0}, {1000, 7}, {100000, 64}} {
				seen := make([]atomic.Int32, c.n)
				var active, peak atomic.Int32
				var mu sync.Mutex
				var short []string
				ParallelFor(c.n, c.grain, func(lo, hi int) {
					a := active.Add(1)
					for {
						p := peak.Load()
						if a <= p || peak.CompareAndSwap(p, a) {
							break
						}
					}
					if hi-lo < max(c.grain, 1) && hi != c.n || lo >= hi {
						mu.Lock()
						short = append(short, fmt.Sprintf("[%d,%d)", lo, hi))
						mu.Unlock()
					}
					s := 0
					for i := lo; i < hi; i++ {
						seen[i].Add(1)
						s += i * i // a little work so that ranges overlap in time
					}
					_ = s
					active.Add(-1)
				})
				for i := range seen {
					if v := seen[i].Load(); v != 1 {
						t.Fatalf("threads=%d n=%d grain=%d: index %d visited %d times", threads, c.n, c.grain, i, v)
					}
				}
				if len(short) > 0 {
					t.Errorf("threads=%d n=%d grain=%d: ranges below grain: %v", threads, c.n, c.grain, short)
				}
				if p := peak.Load(); int(p) > threads {
					t.Errorf("threads=%d n=%d: %d calls ran at once", threads, c.n, p)
				}
			}
		}()
	}
}

// TestParallelForNested: ParallelFor and GEMM calls inside fn, and
// concurrent ParallelFor calls from several goroutines, complete and
// cover their ranges.
func TestParallelForNested(t *testing.T) {
	defer SetThreads(SetThreads(3))
	var wg sync.WaitGroup
	var total atomic.Int64
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ParallelFor(40, 1, func(lo, hi int) {
				for i := lo; i < hi; i++ {
					ParallelFor(100, 3, func(lo, hi int) { total.Add(int64(hi - lo)) })
					a := []float32{1, 2, 3, 4, 5, 6, 7, 8}
					c := make([]float32, 4*4)
					Sgemm(false, true, 4, 4, 2, 1, a, 2, a, 2, 0, c, 4)
					if c[0] != 5 || c[15] != 113 {
						panic(fmt.Sprint("wrong product ", c))
					}
				}
			})
		}()
	}
	wg.Wait()
	if got := total.Load(); got != 4*40*100 {
		t.Fatalf("nested ranges covered %d indices, want %d", got, 4*40*100)
	}
}

// TestParallelForPanic: a panic in fn, on a helper or on the caller,
// reaches the caller after the other calls have returned, and the pool
// keeps working afterwards.
func TestParallelForPanic(t *testing.T) {
	defer SetThreads(SetThreads(2))
	for round := 0; round < 20; round++ {
		var inside atomic.Int32
		func() {
			defer func() {
				v := recover()
				if v == nil || !strings.Contains(fmt.Sprint(v), "boom") {
					t.Fatalf("round %d: recovered %v, want the panic of fn", round, v)
				}
				if n := inside.Load(); n != 0 {
					t.Fatalf("round %d: %d calls of fn still running after ParallelFor returned", round, n)
				}
			}()
			ParallelFor(64, 1, func(lo, hi int) {
				inside.Add(1)
				defer inside.Add(-1)
				if lo <= 37 && 37 < hi {
					panic("boom")
				}
				for i := 0; i < 10000; i++ {
					_ = i * i
				}
			})
		}()
	}
	var n atomic.Int64
	ParallelFor(1000, 1, func(lo, hi int) { n.Add(int64(hi - lo)) })
	if n.Load() != 1000 {
		t.Fatalf("after panics: covered %d of 1000", n.Load())
	}
}
