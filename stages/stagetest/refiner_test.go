package stagetest

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/wanda-go/wanda/pipeline"
)

// fakeRefiner breaks one rule of the refiner contract.
type fakeRefiner struct {
	mode  string
	calls atomic.Int64
}

func (f *fakeRefiner) Name() string                    { return "fake-" + f.mode }
func (f *fakeRefiner) NeedsStats() pipeline.StatsKind  { return pipeline.StatsSum }
func (f *fakeRefiner) Applies(pipeline.LayerInfo) bool { return true }
func (f *fakeRefiner) Refine(_ context.Context, w pipeline.Matrix, m *pipeline.Mask, _ *pipeline.Stats, t pipeline.Target, _ pipeline.LayerInfo) error {
	n := f.calls.Add(1)
	first := func(i int, pruned bool) int {
		for j := range m.Cols {
			if m.Get(i, j) == pruned {
				return j
			}
		}
		return -1
	}
	switch f.mode {
	case "count": // row 0 prunes one more
		if j := first(0, false); j >= 0 {
			m.Set(0, j)
		}
	case "group": // row 0 moves a pruned weight into the next group of M
		p := first(0, true)
		g := (p/t.M + 1) * t.M % m.Cols
		for j := g; j < g+t.M; j++ {
			if !m.Get(0, j) {
				k := p
				m.Bits[k>>6] &^= 1 << (uint(k) & 63)
				m.Set(0, j)
				break
			}
		}
	case "writes-w":
		w.Data[0] = 42
	case "blocks": // a swap only in blocks of one row
		if m.Rows == 1 {
			p, k := first(0, true), first(0, false)
			if p >= 0 && k >= 0 {
				m.Bits[p>>6] &^= 1 << (uint(p) & 63)
				m.Set(0, k)
			}
		}
	case "flaky": // every other call swaps row 0
		if n%2 == 0 {
			p, k := first(0, true), first(0, false)
			m.Bits[p>>6] &^= 1 << (uint(p) & 63)
			m.Set(0, k)
		}
	}
	return nil
}

// The checks of TestRefiner catch refiners that break the contract.
func TestRefinerChecksCatchViolations(t *testing.T) {
	c := newConfig(nil)
	ctx := context.Background()
	rng := c.rng(1)
	w := pipeline.Matrix{Rows: 8, Cols: 16, Data: randNormal32(rng, 128, 0.05)}
	st := refineStats(rng, 16, 2, 4)
	info := refinerInfos[0]
	for _, tc := range []struct {
		mode, want string
		tg         pipeline.Target
	}{
		{"count", "row 0 prunes 9 weights, the chosen mask 8", pipeline.Target{Sparsity: 0.5}},
		{"group", "row 0 columns [", pipeline.Target{N: 2, M: 4}},
		{"writes-w", "Refine modified W", pipeline.Target{Sparsity: 0.5}},
		{"flaky", "two calls gave different masks", pipeline.Target{Sparsity: 0.5}},
	} {
		m0 := chosenMask(rng, w, st, tc.tg, false)
		_, err := c.refineChecked(ctx, &fakeRefiner{mode: tc.mode}, cloneMatrix(w), m0, st, tc.tg, info)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.mode, err, tc.want)
		}
	}
	tg := pipeline.Target{Sparsity: 0.5}
	m0 := chosenMask(rng, w, st, tg, false)
	whole, err := c.refineChecked(ctx, &fakeRefiner{mode: "blocks"}, w, m0, st, tg, info)
	if err != nil {
		t.Fatal(err)
	}
	err = c.refineBlocks(ctx, &fakeRefiner{mode: "blocks"}, w, m0, st, tg, info, whole, 3)
	if err == nil || !strings.Contains(err.Error(), "refining blocks of 1 rows gives another mask") {
		t.Errorf("blocks: %v", err)
	}
	// A conforming no-op passes all of them.
	if _, err := c.refineChecked(ctx, &fakeRefiner{mode: "none"}, w, m0, st, tg, info); err != nil {
		t.Errorf("no-op: %v", err)
	}
}
