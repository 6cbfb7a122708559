package allocate

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"
)

func countAll(t *testing.T, m float64, blocks ...[]float32) Outliers {
	t.Helper()
	c := NewOutlierCounter(m)
	for _, b := range blocks {
		if err := c.AddSum(b); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Threshold(); err != nil {
		t.Fatal(err)
	}
	for _, b := range blocks {
		if err := c.AddCount(b); err != nil {
			t.Fatal(err)
		}
	}
	o, err := c.Outliers()
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// TestOutlierCounterHand: scores 1, 2, 3, 4, 100 have mean 22; with M = 2 only 100 exceeds
// 44. A score equal to the threshold is not an outlier (OWL's W > max_shred).
func TestOutlierCounterHand(t *testing.T) {
	if o := countAll(t, 2, []float32{1, 2}, []float32{3, 4, 100}); o != (Outliers{Above: 1, Total: 5}) {
		t.Errorf("got %+v", o)
	}
	if o := countAll(t, 1, []float32{1, 1, 1, 1}); o.Above != 0 {
		t.Errorf("scores equal to M·mean counted: %+v", o)
	}
	if o := countAll(t, 1, []float32{0, 2, 1, 1}); o.Above != 1 || o.Ratio() != 25 {
		t.Errorf("got %+v ratio %v, want 1 of 4 = 25%%", o, o.Ratio())
	}
}

// TestOutlierCounterBlocks streams random heavy-tailed scores in random blocks, part of them
// through Fork/Merge, and compares with a direct computation over the whole array: float64
// sum, float32 mean, float32 threshold, strict comparison.
func TestOutlierCounterBlocks(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for trial := range 20 {
		n := 1 + r.IntN(50000)
		scores := make([]float32, n)
		for k := range scores {
			scores[k] = float32(math.Abs(r.NormFloat64()) * math.Exp(r.NormFloat64()))
		}
		m := []float64{5, 3, 1.5, 10}[trial%4]

		var sum float64
		for _, v := range scores {
			sum += float64(v)
		}
		thr := float32(sum/float64(n)) * float32(m)
		var want int64
		for _, v := range scores {
			if v > thr {
				want++
			}
		}

		c := NewOutlierCounter(m)
		blocks := split(r, scores)
		for i, b := range blocks {
			if i%3 == 1 { // a worker's share, merged back
				w := c.Fork()
				if err := w.AddSum(b); err != nil {
					t.Fatal(err)
				}
				if err := c.Merge(w); err != nil {
					t.Fatal(err)
				}
				continue
			}
			if err := c.AddSum(b); err != nil {
				t.Fatal(err)
			}
		}
		got, err := c.Threshold()
		if err != nil {
			t.Fatal(err)
		}
		if got != thr {
			t.Errorf("trial %d: threshold %v, direct %v", trial, got, thr)
		}
		for i, b := range split(r, scores) {
			if i%2 == 0 {
				w := c.Fork()
				if err := w.AddCount(b); err != nil {
					t.Fatal(err)
				}
				if err := c.Merge(w); err != nil {
					t.Fatal(err)
				}
				continue
			}
			if err := c.AddCount(b); err != nil {
				t.Fatal(err)
			}
		}
		o, err := c.Outliers()
		if err != nil {
			t.Fatal(err)
		}
		if o.Above != want || o.Total != int64(n) {
			t.Errorf("trial %d: %+v, direct %d of %d", trial, o, want, n)
		}
	}
}

func split(r *rand.Rand, x []float32) [][]float32 {
	var out [][]float32
	for len(x) > 0 {
		k := min(len(x), 1+r.IntN(3000))
		out = append(out, x[:k])
		x = x[k:]
	}
	return out
}

func TestOutlierCounterErrors(t *testing.T) {
	c := NewOutlierCounter(5)
	for _, bad := range []float32{float32(math.NaN()), float32(math.Inf(1)), -1} {
		if err := c.AddSum([]float32{1, bad}); !errors.Is(err, ErrBadStats) {
			t.Errorf("score %v: %v", bad, err)
		}
	}
	if err := c.AddCount([]float32{1}); !errors.Is(err, ErrBadStats) {
		t.Errorf("AddCount in pass 1: %v", err)
	}
	if _, err := c.Outliers(); !errors.Is(err, ErrBadStats) {
		t.Errorf("Outliers in pass 1: %v", err)
	}
	if _, err := NewOutlierCounter(5).Threshold(); !errors.Is(err, ErrBadStats) {
		t.Errorf("no scores: %v", err)
	}
	c = NewOutlierCounter(5)
	if err := c.AddSum([]float32{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Threshold(); err != nil {
		t.Fatal(err)
	}
	if err := c.AddSum([]float32{1}); !errors.Is(err, ErrBadStats) {
		t.Errorf("AddSum in pass 2: %v", err)
	}
	if err := c.AddCount([]float32{1, 2}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Outliers(); !errors.Is(err, ErrBadStats) {
		t.Errorf("pass 2 saw fewer scores: %v", err)
	}
	if err := c.Merge(NewOutlierCounter(5)); !errors.Is(err, ErrBadStats) {
		t.Errorf("merging a pass-1 counter into pass 2: %v", err)
	}
}
