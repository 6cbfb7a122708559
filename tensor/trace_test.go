package tensor

import (
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"testing"
	"time"
)

func TestTraceRun(t *testing.T) {
	if os.Getenv("TUNE") == "" {
		t.Skip()
	}
	r := rand.New(rand.NewPCG(1, 1))
	m, n, k := 512, 384, 1024
	a := randSlice(r, m*k)
	b := randSlice(r, n*k)
	c := make([]float32, m*n)
	g := gemmProblem[float32]{false, true, m, n, k, 1, a, k, b, k, 0, c, n}
	for rep := 0; rep < 6; rep++ {
		run := &gemmRun[float32]{}
		run.cond.L = &run.mu
		run.init(sgemmImpl, g, 2)
		var wg sync.WaitGroup
		t0 := time.Now()
		var s1, e1 time.Duration
		wg.Add(1)
		go func() {
			s1 = time.Since(t0)
			run.work()
			e1 = time.Since(t0)
			wg.Done()
		}()
		run.work()
		e0 := time.Since(t0)
		wg.Wait()
		fmt.Printf("main end %v; helper start %v end %v; total %v  %.1f GF/s\n", e0, s1, e1, time.Since(t0), 2*float64(m*n*k)/time.Since(t0).Seconds()/1e9)
	}
}
