// Package allocate chooses each layer's (or tensor's) sparsity before the pruning pass: OWL's
// outlier-weighted layer-wise allocation (OWL, OutlierCounter) and a user's sparsity file
// (File). It holds pure functions over per-layer statistics; gathering the statistics (a
// dense streaming pre-pass) is the pipeline's job.
//
// # OWL
//
// Reference: luuyin/OWL @dddb7a4, lib/prune_all.py prune_wanda_outlier (lines 853-975) and
// check_outlier_mean (lines 139-154).
//
// Pre-pass (prune_all.py 880-951): the dense model runs layer by layer on the calibration
// windows; nothing is pruned and each layer's dense output feeds the next. For every decoder
// layer, the Wanda scores |W_ij|·sqrt(SumSq_j) (float32, SumSq = WrappedGPT's scaler_row,
// the same statistic as pipeline.Stats.SumSq) of all its nn.Linear modules — q, k, v, o,
// gate, up, down for LLaMA, every linear find_layers returns (a MoE router too) — are
// flattened and concatenated into one vector.
//
// Outlier ratio (check_outlier_mean): threshold = torch.mean(scores) · M, computed in
// float32; count = number of scores strictly greater than the threshold; ratio =
// float(count) / numel · 100 — a percentage, in float64. One mean per layer over all its
// linears together, not per linear. OutlierCounter streams this in two passes over the
// scores (sum, then count); see its documentation for the precision.
//
// Allocation (prune_all.py 962-966, numpy float64):
//
//	r ← (r − min r) · ((1 / (max r − min r)) · λ · 2)
//	d ← (r − mean r) + (1 − target)
//	s_l = 1 − d_l, and s_l = 0.01 if s_l ≤ 0 (lines 1054-1058)
//
// with numpy's pairwise summation for the mean. Layer l then prunes int(cols · s_l) weights
// of each row of each of its linears (line 1091: the usual Wanda per-row pattern, the
// float64 product truncated), so the realised sparsity is a little below s_l.
//
// Interpretations: equal ratios in every layer (0/0 in OWL) give every layer the target; a
// layer whose sparsity reaches 1 is an error instead of pruning it whole; N:M patterns are
// outside OWL's unstructured allocation (its code ignores the layer value for N:M).
//
// Verified: FromRatios on OWL's own printed ratios reproduces its densities and targets bit
// for bit for both tiny-llama-a runs (methods.json); the dense pre-pass written in the test
// with model.Block and OutlierCounter reproduces OWL's outlier counts in all six layers
// exactly, hence its per-layer sparsities bit for bit — with SumSq accumulated in float64 and
// also with OWL's own float32 running average (WrappedGPT.add_batch).
//
// # Sparsity file
//
// File is --sparsity-file: one JSON object with optional "default", "layers" (one value or
// null per decoder layer) and "tensors" (rules {"match": RE2 regexp, unanchored, on the full
// tensor name; "sparsity": s}, first match wins). Resolution order: tensor rule, layer entry,
// default, the caller's fallback. Every sparsity is a fraction in [0, 1). Errors name the
// file and the entry ("layers[3]", "tensors[1] ("q_proj")"), with line and column for JSON
// syntax and type errors.
//
// Data layout: per-layer slices are indexed by decoder layer; scores are the float32 values
// of row-major [out, in] matrices, given in any blocks and any order.
package allocate
