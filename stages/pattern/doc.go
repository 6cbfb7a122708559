// Package pattern turns a score matrix into a pruning mask (pipeline.Pattern).
//
// Data layout: scores are a row-major [out, in] pipeline.Matrix (the layout of a linear
// layer's weight: row i = output feature i, column j = input feature j). A set mask bit
// means "pruned". A low score is pruned first.
//
// Two patterns are built in:
//
//   - Unstructured ("unstructured") prunes a fraction t.Sparsity of each comparison group
//     (pipeline.Target.Group):
//     GroupRow: every output row prunes exactly floor(Cols·s) entries, the first ones of a
//     stable ascending sort (ties: the lower column is pruned first), i.e. the reference's
//     torch.sort(W_metric, dim=-1, stable=True)[1][:, :int(C*s)] (lib/prune.py:198-200).
//     GroupColumn: the same per input column, floor(Rows·s) per column, ties to the lower row.
//     GroupMatrix: the reference's magnitude rule (lib/prune.py:122-123):
//     thresh = sort(flatten(scores))[int(numel·s)], and every score <= thresh is pruned, so
//     all ties at the threshold are pruned and at least int(numel·s)+1 entries go.
//     t.Variant: Wanda's adaptive-alpha variant (lib/prune.py:97-103, :178-196), see
//     selectVariant for the exact arithmetic.
//     Sparsity 0 prunes nothing in every mode (the reference skips pruning entirely when
//     sparsity_ratio == 0, main.py), although the raw matrix rule would prune the minimum.
//
//   - NM ("nm") prunes, in every output row, the N lowest scores of each aligned group of M
//     consecutive input columns (columns 0..M-1, M..2M-1, ...), the reference's
//     topk(W_metric[:, ii:ii+M], N, largest=False). PyTorch does not specify which of
//     equal scores topk returns; on the CPU its implementation fixes it, and TorchSmallestK
//     replays that (libstdc++'s nth_element / partial_sort over the group in column order).
//
// Ordering: scores are compared as IEEE floats with -0 == +0. A NaN score is an error
// wrapping pipeline.ErrNonFinite. ±Inf are ordered normally, except by the variant, which
// sums scores and rejects them. Selection is exact and deterministic: an O(n) radix
// select on order-preserving 32-bit keys followed by a tie pass in index order, which
// yields exactly the set a stable sort would give.
//
// Rows (or columns) are processed in chunks by tensor.ParallelFor, so by up to
// tensor.Threads() goroutines; the masks do not depend on how many.
//
// Both patterns also select over row blocks of a tensor (pipeline.RowPattern, rows.go), for
// every target except unstructured per-column selection: per-row and N:M rules row by row,
// the whole-matrix threshold in two read passes of 16-bit key histograms, the adaptive
// variant from rows sorted once into caller-lent scratch memory. The masks are Select's.
package pattern
