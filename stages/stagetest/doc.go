// Package stagetest is a conformance suite for pruning stages: any pipeline.Metric,
// pipeline.Pattern or pipeline.Solver, built in or served by an out-of-process plugin, can
// be checked with TestMetric, TestPattern and TestSolver from an ordinary Go test:
//
//	func TestConformance(t *testing.T) {
//		stagetest.TestPattern(t, pattern.Unstructured{}, targets, stagetest.LowerIndexTies())
//	}
//
// The suite uses only the pipeline interfaces and checks what every conforming
// implementation must do: output shapes, determinism (two calls give bit-identical
// results), inputs left unmodified, exact pruned counts (floor(C·s) per row for row groups,
// floor(R·s) per column, the reference threshold rule for whole-matrix groups, N per
// aligned N:M group), that the pruned entries are the lowest scores of their group,
// sparsity 0 pruning nothing, degenerate shapes (1×M, M×1), ties, and errors (not
// garbage) for NaN inputs, invalid targets and shape mismatches. ±Inf scores must give an
// error or a mask that obeys the same rules. Options turn on checks that only some
// implementations promise (the lower-index tie rule, sentinel errors surviving the call).
//
// Data layout: matrices are row-major [out, in] (pipeline.Matrix), masks are
// pipeline.Mask bitsets with a set bit meaning "pruned". All random data come from a
// fixed-seed generator, so failures are reproducible.
package stagetest
