package pipeline

import (
	"context"
	"errors"
)

// Row blocks.
//
// PruneTensor prunes one tensor with anonymous memory that does not grow with the tensor:
// it widens, scores, selects, applies, rounds and writes blocks of whole rows of the stored
// weights, a few blocks at a time. A Metric or Pattern says it can work on row blocks by
// implementing the optional interfaces below; one that does not still works, through
// whole-tensor buffers in a file-backed scratch map (page cache, not anonymous memory) and a
// 1-bit-per-weight mask.
//
// Data layout: a block is rows [row0, row0+Rows) of the tensor, a row-major [Rows, Cols]
// Matrix (Cols = the tensor's input width); a block mask is a [Rows, Cols] Mask of that
// block, bit (i, j) standing for entry (row0+i, j) of the tensor. Errors name entries by
// their row in the whole tensor (row0+i), so that they read as the whole-tensor Score or
// Select would have put them.

// RowMetric is implemented by a Metric whose score of weight (i, j) depends only on row i
// of W and on the statistics (Wanda, magnitude), so that it can be computed block by block.
type RowMetric interface {
	Metric
	// RowScorer checks st for a tensor with cols input columns (the checks and errors of
	// Score that do not depend on W) and returns the scorer of the tensor's row blocks.
	RowScorer(st *Stats, cols int, info LayerInfo) (RowScorer, error)
}

// RowScorer scores the row blocks of one tensor. ScoreRows may be called concurrently from
// several goroutines for disjoint blocks.
type RowScorer interface {
	// ScoreRows writes into dst the scores of w, which holds rows [row0, row0+w.Rows) of the
	// tensor: bit for bit the rows Score would return for the whole tensor. dst has w's
	// shape. W is not modified; its checks (non-finite weights) are Score's.
	ScoreRows(dst, w Matrix, row0 int) error
}

// RowPattern is implemented by a Pattern that can select over the row blocks of a tensor for
// some targets: in one pass when each row's mask depends only on that row's scores
// (unstructured per row, N:M), or after read passes that gather what the rule needs (the
// whole-matrix threshold, Wanda's adaptive variant).
type RowPattern interface {
	Pattern
	// RowSelector returns the selector of target t for a rows×cols tensor, or (nil, nil)
	// when this pattern needs the whole score matrix for t (PruneTensor then calls Select).
	// An invalid target is an error, as in Select.
	RowSelector(t Target, rows, cols int, info LayerInfo, env RowEnv) (RowSelector, error)
}

// RowEnv is what the caller lends a RowSelector.
type RowEnv struct {
	// Scratch returns n zeroed float32s that stay valid until the caller is done with the
	// selector. PruneTensor backs them with a file in its scratch directory (page cache, not
	// anonymous memory), so a selector may keep per-weight data there.
	Scratch func(n int) ([]float32, error)
}

// RowSelector selects the mask of one tensor over its row blocks. The caller drives it so:
//
//	for sel.NextPass() {
//		for every row block: sel.Observe(scores of the block, row0)
//		sel.EndPass(ctx)
//	}
//	for every row block: sel.SelectRows(block mask, scores of the block, row0)
//
// Within a pass every block of the tensor is given once, in any order and possibly
// concurrently from several goroutines (disjoint rows); the scores of a row are bit-identical
// in every pass. The masks put together equal what Select returns on the whole scores.
type RowSelector interface {
	// NextPass reports whether another read pass is needed before the mask pass; false at
	// once for a row-local rule.
	NextPass() bool
	// Observe reads a block's scores in a read pass.
	Observe(scores Matrix, row0 int) error
	// EndPass is called alone after every block of a read pass has been observed.
	EndPass(ctx context.Context) error
	// SelectRows sets in mask (scores' shape, all kept on entry) the pruned entries of a block.
	SelectRows(mask *Mask, scores Matrix, row0 int) error
}

// SolverMemory is implemented by a Solver that can tell, before a run, how much memory
// Solve allocates for one tensor (beyond the weights and statistics it is given).
type SolverMemory interface {
	Solver
	SolveMemory(rows, cols int) int64
}

// Errors of PruneTensor.
var (
	// ErrMemoryLimit: a tensor's pruning needs more memory than the limit allows.
	ErrMemoryLimit = errors.New("pipeline: memory limit")
	// ErrScratch: a scratch file could not be created or mapped.
	ErrScratch = errors.New("pipeline: scratch file")
)
