package stagetest_test

import (
	"testing"

	"github.com/wanda-go/wanda/pipeline"
	"github.com/wanda-go/wanda/stages/allocate"
	"github.com/wanda-go/wanda/stages/refine"
	"github.com/wanda-go/wanda/stages/stagetest"
)

// The built-in refinement and allocation conform (their plugin twins run the same suites in
// package plugins).

func TestRefinerDSnoT(t *testing.T) {
	targets := []pipeline.Target{{Sparsity: 0.5}, {Sparsity: 0.7}, {N: 2, M: 4}, {N: 4, M: 8}}
	noVar := refine.DefaultDSnoT()
	noVar.PowVarRegrowing = 0
	sign := refine.DefaultDSnoT()
	sign.SameSign, sign.SkipLayer, sign.Initial = true, "no_skip", "magnitude"
	for name, d := range map[string]refine.DSnoT{"default": refine.DefaultDSnoT(), "pow 0": noVar, "same sign": sign} {
		t.Run(name, func(t *testing.T) {
			if changed := stagetest.TestRefiner(t, d, targets, stagetest.StrictErrors()); changed == 0 {
				t.Errorf("DSnoT changed none of the masks")
			}
		})
	}
}

func TestAllocatorOWL(t *testing.T) {
	for _, o := range []allocate.OWL{allocate.DefaultOWL(), {M: 3, Lambda: 0.2}} {
		sp := stagetest.TestAllocator(t, allocate.Allocator{OWL: o}, stagetest.MeanTarget(1e-12))
		if len(sp) > 1 && sp[0] == sp[1] && sp[1] == sp[2] {
			t.Errorf("OWL %+v: equal sparsities %v (the model's layers differ in outliers)", o, sp)
		}
	}
}
