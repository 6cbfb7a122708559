// Package tensor is the dense float32 math leaf of wanda: GEMM (Sgemm,
// MatMulT), the small kernels of a LLaMA decoder block (Dot, Axpy, RMSNorm,
// SiLUMul, Softmax) and the float64 Cholesky routines SparseGPT needs.
//
// Data layout: every matrix is row-major. Weights use the PyTorch nn.Linear
// layout [out,in] (n×k), so a linear layer is MatMulT(y, x, w, tokens, out, in):
// y[tokens×out] = x[tokens×in] · wᵀ.
package tensor
