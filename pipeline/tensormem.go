package pipeline

import "fmt"

// TensorMemory estimates the peak anonymous memory, in bytes, that pruning a rows×cols
// tensor with method m and target t takes: PruneTensor's row blocks, a whole-tensor mask
// where the pattern cannot stream t (2 bits per weight, enough for the built-in per-column
// selection) and whole-tensor scores where the metric is not a RowMetric (it returns them
// from Score); for a solver, the weight in fp32, the Hessian of the statistics
// (cols²·8 bytes, which the caller holds) and what the solver reports through SolverMemory.
// Memory-mapped weights and scratch maps are page cache and not counted.
func TensorMemory(m Method, t Target, rows, cols int) int64 {
	return tensorMemory(m, t, rows, cols).total()
}

type memParts struct{ blocks, weights, hessian, solver, scores, mask int64 }

func (mp memParts) total() int64 {
	return mp.blocks + mp.weights + mp.hessian + mp.solver + mp.scores + mp.mask
}

func tensorMemory(m Method, t Target, rows, cols int) memParts {
	R, C := int64(rows), int64(cols)
	block, workers := blockShape(rows, cols, 0)
	// Per goroutine: weights and scores in fp32, the output bytes (at most 4 per value) and
	// the block mask.
	mp := memParts{blocks: int64(workers) * int64(block) * C * (4 + 4 + 4 + 1)}
	if m.Solver != nil {
		mp.weights = R * C * 4
		mp.hessian = C * C * 8
		if sm, ok := m.Solver.(SolverMemory); ok {
			mp.solver = sm.SolveMemory(rows, cols)
		}
		return mp
	}
	if _, ok := m.Metric.(RowMetric); !ok {
		mp.scores = R * C * 4
	}
	if _, ok := m.Pattern.(RowPattern); !ok || (!t.Structured() && t.Group == GroupColumn) {
		mp.mask = 2 * ((R*C + 63) / 64 * 8)
	}
	return mp
}

// CheckMemory fails with ErrMemoryLimit when pruning the tensor name (rows×cols) with m and t
// needs more than limit bytes of memory (TensorMemory); limit <= 0 means no limit. The
// message names the tensor, the bytes and how to proceed.
func CheckMemory(m Method, t Target, name string, rows, cols int, limit int64) error {
	if limit <= 0 {
		return nil
	}
	mp := tensorMemory(m, t, rows, cols)
	need := mp.total()
	if need <= limit {
		return nil
	}
	if m.Solver != nil {
		return fmt.Errorf("%w: %s on %s [%d, %d] needs about %s (weights in fp32 %s, Hessian %s, %s's working memory %s), over the limit of %s: "+
			"raise the memory limit on a machine with more RAM, or use a method without a Hessian (wanda, magnitude)",
			ErrMemoryLimit, m.Solver.Name(), name, rows, cols, gib(need), gib(mp.weights), gib(mp.hessian), m.Solver.Name(), gib(mp.solver+mp.blocks), gib(limit))
	}
	return fmt.Errorf("%w: %s on %s [%d, %d] needs about %s, over the limit of %s: raise the memory limit, or use stages that work on row blocks",
		ErrMemoryLimit, m.Name, name, rows, cols, gib(need), gib(limit))
}

func gib(n int64) string { return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30)) }

// TensorScratch bounds the bytes of scratch files in TensorJob.ScratchDir that pruning a
// rows×cols tensor with m and t uses at once (for a free-space check before the run): 4 per
// weight for the whole scores when the pattern cannot stream t (or is not a RowPattern), 4
// per weight for the fp32 weights when the metric is not a RowMetric, and 4 per weight for
// the sorted rows of the adaptive variant. The built-in stages need none except for the
// variant and per-column selection.
func TensorScratch(m Method, t Target, rows, cols int) int64 {
	if m.Solver != nil {
		return 0
	}
	n := int64(rows) * int64(cols) * 4
	var b int64
	if _, ok := m.Metric.(RowMetric); !ok {
		b += n
	}
	if _, ok := m.Pattern.(RowPattern); !ok || (!t.Structured() && t.Group == GroupColumn) {
		b += n
	}
	if !t.Structured() && t.Variant {
		b += n
	}
	return b
}
