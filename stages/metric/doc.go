// Package metric holds the built-in pruning metrics (pipeline.Metric): a score per weight,
// low = pruned first.
//
// Data layout: W and the returned scores are row-major [out, in] pipeline.Matrix values
// (row i = output feature i, column j = input feature j); Stats.SumSq is indexed by the
// input column j.
//
//   - Magnitude ("magnitude"): S_ij = |W_ij|. Needs no calibration statistics.
//   - Wanda ("wanda"): S_ij = |W_ij| · sqrt(SumSq_j), lib/prune.py:166
//     (torch.abs(W) * torch.sqrt(scaler_row.reshape((1,-1)))): sqrt is the correctly
//     rounded float32 square root and the product one float32 multiplication, so scores are
//     bit-identical to torch's for the same float32 inputs.
//   - RIA ("ria", parameter a): S_ij = (|W_ij|/Σ_k|W_ik| + |W_ij|/Σ_k|W_kj|) · SumSq_j^(a/2),
//     relative importance times the input norm to the power a (see RIA for the arithmetic).
//
// The three are registered with the pipeline's registry (register.go), which gives the CLI
// their names, help and parameters.
//
// All reject NaN/±Inf in W (and, for Wanda and RIA, in SumSq, or a negative SumSq whose
// sqrt would be NaN) with an error wrapping pipeline.ErrNonFinite, and a SumSq whose length
// is not Cols with pipeline.ErrShape. W is never modified. Rows (and RIA's column sums) are
// computed on tensor.ParallelFor; the scores do not depend on the number of threads.
//
// Magnitude and Wanda are row-local and implement pipeline.RowMetric: RowScorer checks the
// statistics once per tensor and ScoreRows scores blocks of rows, bit for bit as Score
// (errors name the row in the whole tensor). RIA needs whole columns and does not.
package metric
