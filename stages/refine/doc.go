// Package refine holds mask refiners: stages that run after a metric and a pattern (or a
// solver) have chosen a layer's mask and exchange pruned and kept weights, keeping the number
// pruned in each row (and in each group of M for N:M patterns). The built-in is DSnoT. The
// Refiner interface and Stats are meant to move to pipeline/ when the stage is wired in.
//
// Data layout: W is a row-major [out, in] pipeline.Matrix (row i = output feature, column
// j = input feature); the mask is a pipeline.Mask over the same shape, a set bit meaning
// pruned; Stats slices are indexed by the input column j. Refine updates the mask in place
// and never modifies W or the statistics.
//
// # Statistics (Stats, Accumulator)
//
// DSnoT's WrappedGPT (lib/layerwrapper.py at 4c029df, add_batch, lines 40-60) sees one
// calibration sequence per call and keeps, in float32:
//
//	scaler_row     (1/N)·Σ_seq Σ_tok x_j²    running average over the N sequences (line 59)
//	sum_metric_row (1/N)·Σ_seq Σ_tok x_j     the same running average of token sums (line 60)
//	var            Σ_seq T_seq·var_seq,j / Σ_seq T_seq, var_seq,j = torch.var(unbiased=False)
//	               of the sequence's tokens (lines 49-51)
//
// so Sum is divided by the number of sequences, not tokens, and Var is the pooled
// within-sequence biased variance, not the variance around the overall mean. The mean DSnoT
// also keeps is never read.
//
// NewRunningAccumulator reproduces those float32 running averages operation by operation
// (the squared norm summed token by token in float32, square-rooted and squared again as
// torch.norm(...)**2 does; the token sum and per-sequence variance computed in float64 and
// rounded, standing in for torch's float32 reductions). NewAccumulator computes the same
// quantities exactly in float64. Precision matters here more than for Wanda alone: DSnoT's
// row refinement is chaotic — a Wanda near-tie (scores 9e-8 apart in tiny-llama-a's layer 1)
// decided the other way changes the initial error and so the whole sequence of swaps of that
// row, and the changed outputs move later layers' statistics. With the running accumulator
// the test that prunes all of tiny-llama-a reproduces every reference mask bit for bit
// (sequential_test.go); with the float64 one, DSnoT at 70% ends 90-93% equal in layers 3-5.
//
// # DSnoT, unstructured (lib/prune.py prune_DSnoT, lines 667-852)
//
// Per output row, with d_j = W_j·Sum_j (float32, line 483, "DSnoT_metric"):
//
//  1. e = Σ_{j pruned} d_j, the reconstruction error (lines 695-699; summed in float64 here,
//     rounded to float32), and its sign.
//  2. Regrowing order: all columns sorted stably by (pruned ? d_j : 0) / Var_j^p, ascending,
//     NaN last (lines 700-709).
//  3. Pruning candidates: the kept columns sorted stably by the Wanda score
//     |W_j|·sqrt(SumSq_j) — whatever metric chose the mask — then reordered as
//     return_reorder_indice (lines 109-153, 712-722) does: those with d < 0 in increasing
//     score, then one copy of the lowest-scored kept column for each kept d = 0, then those
//     with d > 0 in decreasing score.
//  4. Up to MaxCycles cycles (lines 758-852): if e > 0 regrow the next column from the top of
//     the regrowing order, else from the bottom; if e < 0 prune the next candidate from the
//     end of the candidate list, else from its start (four independent pointers). The swap
//     is made, and e ← (e + d_pruned) − d_regrown in float32, while |e| > UpdateThreshold
//     (float32 comparison); with SameSign also only while the new e keeps e's initial sign
//     (DSnoT's default, without_same_sign, leaves that check off). The first failed check
//     stops the row for good.
//
// # DSnoT, N:M (lines 520-666)
//
// The same regrowing order and pointers, but the weight pruned in exchange is the kept weight
// of the regrown weight's group of M with the lowest initial score (Wanda or magnitude, see
// DSnoT.Initial; pruned and already exchanged weights count as +Inf; ties to the lower column,
// torch.topk's order being unspecified), and the sign check is always on (line 639).
//
// # What was interpreted and why
//
//   - The count rule. DSnoT's tensor code can change a row's pruned count: its regrowing
//     pointer walks the whole row, so past the pruned weights of one sign it reaches kept
//     weights (whose regrowing metric is 0) and "regrows" one that is already kept while
//     pruning another; its candidate list repeats a column for every d = 0; rows that have
//     stopped keep rewriting the mask at their moving pointers while other rows continue; and
//     pointers that run off the end raise an index error. Here a row stops at the first
//     exchange that is not "a pruned weight for a kept one" (or whose pointer is out of
//     range), with nothing written. Wherever DSnoT's result keeps the row's count — every row
//     of every tiny-llama-a reference mask does — the two agree (rows that have stopped then
//     only rewrite bits to their current values), and rows are independent, so Refine works
//     row by row in parallel.
//   - Sums: torch sums float32 in its own order; here float64 rounded once.
//   - Var^p uses torch's special cases for p ∈ {1, 2, 3, 0.5, −0.5, −1, −2} and float64 pow
//     otherwise; p = 0 skips the division, as DSnoT's `if args.pow_of_var_regrowing:`.
//   - DSnoT's sparsegpt initial method is not reproducible: its WrappedGPT never accumulates
//     the Hessian (H stays 0), so its initial metric is identically 0. Refine takes the mask
//     it is given; with SparseGPT, W must be the dense weights the mask was chosen on.
//   - Skipping follows DSnoT's name test: the module path inside the decoder layer
//     ("self_attn.q_proj") split at dots, first component == SkipLayer ("mlp" by default) or
//     second == SkipSubLayer.
//
// Verified: on tiny-llama-a's first layer (whose inputs no pruning affects) the refined Wanda
// masks equal DSnoT's own masks (methods_masks.safetensors) in every bit at 50%, 70% and 2:4,
// with the MLP left as Wanda's, with either accumulator; pruning the whole model layer by
// layer with the running accumulator reproduces every mask of every layer of the three DSnoT
// runs and the two OWL runs (TestReferenceSequential, WANDA_REFERENCE_LONG=1); random layers
// agree with a literal transcription of DSnoT's whole-tensor loop.
package refine
