// Package stagetest is a conformance suite for pruning stages: any pipeline.Metric,
// pipeline.Pattern, pipeline.Solver, pipeline.Refiner or pipeline.Allocator, built in or
// served by an out-of-process plugin, can be checked with TestMetric, TestPattern,
// TestSolver, TestRefiner and TestAllocator from an ordinary Go test:
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
// error or a mask that obeys the same rules. A refiner must keep every row's pruned count
// (every N:M group's), treat rows independently (blocks of rows give the whole matrix's
// mask) and leave its inputs alone; an allocator's summaries must depend only on the layer
// observed, and its sparsities be one per layer in [0, 1). Options turn on checks that only
// some implementations promise (the lower-index tie rule, sentinel errors surviving the
// call, an allocation averaging its target).
//
// Data layout: matrices are row-major [out, in] (pipeline.Matrix; an allocator's weights a
// tensor.Mat in F32, BF16 or F16), masks are pipeline.Mask bitsets with a set bit meaning
// "pruned", statistics are indexed by input column. All random data come from a fixed-seed
// generator, so failures are reproducible.
package stagetest
