package tensor

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestTune is a temporary tuning harness (run with TUNE=1).
// TUNE_CFG="kc,mc,nc;kc,mc,nc" TUNE_THR=1
func TestTune(t *testing.T) {
	if os.Getenv("TUNE") == "" {
		t.Skip()
	}
	r := rand.New(rand.NewPCG(1, 1))
	type sh struct {
		tA, tB  bool
		m, n, k int
	}
	shs := []sh{{false, true, 512, 1024, 384}, {false, true, 512, 384, 1024}, {false, true, 512, 384, 384}, {false, true, 1024, 2048, 4096}, {true, false, 1024, 1024, 512}}
	var cfgs [][3]int
	for _, c := range strings.Split(os.Getenv("TUNE_CFG"), ";") {
		f := strings.Split(c, ",")
		var x [3]int
		for i := range x {
			x[i], _ = strconv.Atoi(f[i])
		}
		cfgs = append(cfgs, x)
	}
	thr, _ := strconv.Atoi(os.Getenv("TUNE_THR"))
	SetThreads(thr)
	for _, s := range shs {
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
		c := make([]float32, s.m*s.n)
		f := func() { Sgemm(s.tA, s.tB, s.m, s.n, s.k, 1, a, ac, b, bc, 0, c, s.n) }
		best := make([]time.Duration, len(cfgs))
		for i := range best {
			best[i] = time.Hour
		}
		reps := 12
		if s.m*s.n*s.k > 1<<30 {
			reps = 4
		}
		for rep := 0; rep < reps; rep++ {
			for i, cf := range cfgs {
				sgemmImpl.kc, sgemmImpl.mc, sgemmImpl.nc = cf[0], cf[1], cf[2]
				f()
				t0 := time.Now()
				f()
				if d := time.Since(t0); d < best[i] {
					best[i] = d
				}
			}
		}
		line := fmt.Sprintf("thr=%d %v:", thr, s)
		for i := range cfgs {
			line += fmt.Sprintf(" %v=%.1f", cfgs[i], 2*float64(s.m*s.n*s.k)/best[i].Seconds()/1e9)
		}
		fmt.Println(line)
	}
}
