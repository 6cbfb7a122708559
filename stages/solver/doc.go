// Package solver holds the built-in weight-updating pruners (pipeline.Solver). SparseGPT
// is the reference's vendored SparseGPT (lib/sparsegpt.py fasterprune, IST-DASLab/sparsegpt
// f5c2500): it chooses the mask block by block from W²/diag(H⁻¹)² and updates the kept
// weights with the OBS rule, column by column within a block and lazily (one GEMM) for the
// columns after it.
//
// Data layout: W is a row-major [out, in] pipeline.Matrix (rows = output features); the
// Hessian in Stats.Hessian is the row-major [in, in] float64 matrix (2/N)·Σ x xᵀ. A set
// mask bit means "pruned"; pruned weights are exactly +0.0 afterwards.
//
// Precision: the Hessian preparation (dead inputs, damping) and the three factorisations
// (Cholesky, inverse, upper Cholesky of the inverse, tensor.CholeskyInverseUpper) are done
// in float64 and the result rounded to float32; the reference does them in float32 on the
// GPU. Everything after that is float32 like torch: W²/d² element by element, the OBS
// step err = w/d and W1[:, j] -= err·Hinv1[i, j] with the product rounded to float32
// before the subtraction (explicit conversions keep Go from fusing it into an FMA), and
// the lazy block update W[:, i2:] -= Err1 · Hinv[i1:i2, i2:] as one float32 GEMM
// (tensor.Sgemm; cuBLAS's summation order is not reproduced, TF32 is off in both).
package solver
