package stagetest_test

import (
	"testing"

	"github.com/wanda-go/wanda/pipeline"
	"github.com/wanda-go/wanda/stages/metric"
	"github.com/wanda-go/wanda/stages/pattern"
	"github.com/wanda-go/wanda/stages/stagetest"
)

// Every metric, pattern, solver, refiner or allocator — built in or a plugin behind its host
// adapter — passes the same conformance suite from its own test file. A metric's test:
//
//	func TestMyMetric(t *testing.T) { stagetest.TestMetric(t, MyMetric{}) }
//
// and a pattern's, with the targets it supports and the built-ins' tie rule:
//
//	func TestMyPattern(t *testing.T) {
//		stagetest.TestPattern(t, MyPattern{}, []pipeline.Target{{Sparsity: 0.5}, {N: 2, M: 4}}, stagetest.LowerIndexTies())
//	}
func Example() {
	suite := func(t *testing.T) {
		stagetest.TestMetric(t, metric.Wanda{})
		stagetest.TestPattern(t, pattern.Unstructured{}, []pipeline.Target{{Sparsity: 0.5}}, stagetest.LowerIndexTies())
	}
	_ = suite // run from a Test function with its *testing.T
}
