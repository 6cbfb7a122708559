// Package tensor is the dense float32 math leaf of wanda: GEMM (Sgemm,
// MatMulT, and Dgemm for float64), products with weights kept in their
// stored dtype (Mat, MatMulTMat), small kernels (Dot, Axpy, RMSNorm), the
// float64 Cholesky routines (Cholesky, and CholeskyInverseUpper, which
// SparseGPT uses) and the parallel loop the other packages share
// (ParallelFor). Of wanda's packages it imports only format/dtype.
//
// # Data layout
//
// Every matrix is a row-major []float32 (or []float64) with an explicit row
// stride (lda, ldb, ldc ≥ the number of columns). Weights use the PyTorch
// nn.Linear layout [out,in] (n×k), so a linear layer over a batch of tokens
// is MatMulT(y, x, w, tokens, out, in): y[tokens×out] = x[tokens×in] · wᵀ.
// The Hessian of a layer input X [tokens×in] is
// Sgemm(true, false, in, in, tokens, alpha, X, in, X, in, beta, H, in).
//
// A Mat is a weight [out,in] in its stored dtype (float32, bfloat16 or
// float16, little-endian, row-major, any byte alignment), usually a view
// of a memory-mapped safetensors file. MatMulTMat(y, ldy, x, tokens, in,
// w₀, w₁, …) writes x·wᵢᵀ side by side into the row-major y [tokens×ldy]
// (q|k|v or gate|up in one call).
//
// # GEMM
//
// Sgemm follows BLAS sgemm with row-major storage: C = alpha·op(A)·op(B) +
// beta·C; beta == 0 overwrites C without reading it. Invalid sizes or
// strides panic (programmer errors).
//
// The implementation is GotoBLAS/BLIS style. For each block of nc ≤ 3072
// columns and kc ≤ 256 rows of op(B), the block is packed into contiguous
// 16-column micro-panels (3 MiB, shared by the threads, L3); for each block
// of mc ≤ 144 rows of op(A), the block is packed into 6-row micro-panels
// (≤ 144 KiB per thread, L2), and a 6×16 register-tile microkernel
// multiplies one A micro-panel by one kc×16 B micro-panel (16 KiB, L1) at a
// time. Edge tiles go through a scratch tile; packing buffers are reused
// through sync.Pool. One to three rows of C (matrix-vector products) skip
// packing and use Dot/Axpy.
//
// MatMulTMat runs the same driver with a virtual B: the weights stacked by
// rows, never concatenated or widened as a whole. The B packer reads the
// stored bytes and converts while it transposes (assembly: bfloat16 and
// float16 blocks are transposed as 16-bit values, then widened by
// interleaving with zeros or with F16C's VCVTPH2PS), so its only buffers
// are the packing buffers above; the values packed, and so the results,
// are bit-identical to MatMulT on the widened weights. Its m ≤ 3 path
// widens one weight row at a time into a per-thread buffer of k values.
//
// Threads (SetThreads, default GOMAXPROCS): the calling goroutine and up to
// Threads()-1 helpers from a pool of long-lived workers take work items —
// "pack this chunk of the B block", "multiply this mc-row block of A by the
// B block" — in order from one atomic ticket counter and wait only on true
// dependencies (B packed before use, a B buffer free before it is repacked
// — two are used alternately —, and the k-blocks of one C block applied in
// order). A helper that starts late or runs slowly because another process
// shares its CPU just does fewer items, and a helper busy with another
// caller's GEMM is not waited for, so concurrent calls from several
// goroutines are safe and do not serialise. Idle workers poll for 200 µs
// before parking (waking a parked goroutine on an idle CPU of this VM takes
// ~0.1 ms); waits between threads spin briefly and then block, so a loaded
// machine degrades gracefully instead of collapsing as spin-waiting BLAS
// thread pools do. ParallelFor hands out ranges of a loop to the same
// workers in the same way (one atomic counter, no fixed team), so
// elementwise and row-wise passes of other packages honour SetThreads and
// share the pool with the GEMM.
//
// # Kernels and why
//
// The target machine is an AMD EPYC Zen 4 VM with 2 cores. Zen 4 has two
// 256-bit FMA pipes per core (512-bit instructions are executed as two
// halves), so AVX2 and AVX-512 have the same peak: 2 × 8 lanes × 2 flops =
// 32 flop/cycle/core, ≈ 100 GFLOP/s per core at this clock. (That VM's
// CPUID did not report AVX-512; the VM of November 2026, an "Oxide Virtual
// Turin-like Processor", reports avx2, fma, f16c, avx512f and avx512_bf16,
// which this package does not use yet.) The float32 microkernel is therefore
// hand-written Go assembly (gemm_amd64.s) for AVX2+FMA: a 6×16 tile held in
// 12 ymm accumulators, two ymm B loads and six broadcasts of A per k step
// (16 of 16 registers, no spills), k unrolled by 4. In isolation, on
// L1-resident panels, it runs at 99 GFLOP/s on one core
// (BenchmarkMicroKernel), i.e. at peak. Packing of the common cases is in
// assembly too: an 8×8 register transpose for a transposed B (the [out,in]
// weights of MatMulT) and for interleaving 6 rows of A. Dgemm uses a 6×8
// float64 kernel of the same shape (dgemm_amd64.s). The kernels are selected
// at run time with golang.org/x/sys/cpu; without AVX2+FMA, on other
// architectures or with the purego build tag, portable Go kernels with the
// same tiling are used (correct, several times slower). No cgo, no build
// tags and no GOEXPERIMENT are needed for the fast path.
//
// # Measured
//
// bench/gemm/run.sh times tensor.Sgemm against OpenBLAS 0.3.21 cblas_sgemm
// (Debian libopenblas-dev) on the shapes that matter, interleaved in one
// run, best of several repetitions (go run -tags openblas ./bench/gemm).
// GFLOP/s on this 2-core Zen 4 VM, November 2026:
//
//	                         1 thread            2 threads (machine busy)
//	shape (m,n,k)            ours  OpenBLAS      ours  OpenBLAS  ratio
//	NT 512,1024,384          91.8  88.5          71.2   65.7     1.08
//	NT 512,384,1024          91.8  90.0         134.2  116.2     1.16
//	NT 512,384,384           95.6  91.5          84.0   90.3     0.93
//	NT 2048,11008,4096       61.5  61.4          45.0   41.7     1.08
//	TN 384,384,512 (Xᵀ·X)    90.2  92.9          79.7   69.3     1.15
//	TN 1024,1024,512         89.7  91.2          79.7   59.9     1.33
//	TN 4096,4096,2048        61.7  61.2          39.0   43.5     0.90
//	TN 11008,11008,2048      57.1  60.9          52.0   56.9     0.91
//
// The machine was shared with other jobs during all of these runs (its
// CPUs were ~100% busy before every timed pair), which is why the 7B-sized
// rows and the 2-thread columns are far below the ~100 GFLOP/s per core
// both libraries reach on an idle core; the ratio is the meaningful part.
// Per CPU-second actually obtained, the 7B shapes ran at 81–86 (ours) and
// 86–90 (OpenBLAS) GFLOP/s on one thread. The microkernel alone reaches
// 99 GFLOP/s on one core (BenchmarkMicroKernel).
//
// MatMulTMat against MatMulT on the same weights in float32
// (BenchmarkMatMulTMatInterleaved: the variants called in turn, fastest
// call of each; ratio > 1 means faster than the fp32 path; 2 threads,
// November 2026, on the 2-core VM at a load average of 8 to 16):
//
//	shape (m, Σn, k)            rounds  bf16/fp32 wall (CPU)  f16/fp32 wall (CPU)
//	128, 1024, 384                300   1.01 (1.01)           1.01 (1.01)
//	2, 4096, 4096 (no packing)    300   2.32 (1.52)           1.62 (1.97)
//	512, 4096, 4096                40   0.99 (0.99)           0.87 (0.99)
//	2048, 3·4096, 4096 (qkv)        3   0.62 (0.97)           1.08 (1.03)
//	2048, 2·11008, 4096 (gate|up)   3   0.96 (0.98)           1.25 (0.97)
//	2048, 4096, 11008 (down)        3   1.40 (1.13)           1.06 (1.10)
//	512, 2048, 53248 (405B down)    3   1.17 (1.07)           1.06 (0.99)
//
// With a few calls of seconds each on a machine that busy, the wall
// ratios of the large shapes are noise; the ratios of CPU time and those
// of the small shapes (hundreds of calls) are the measurement. The paths
// differ only in the B packing, and packing a 256×3072 block from
// bfloat16 takes 151–177 µs, from float16 191–215 µs and from float32
// 220–239 µs (BenchmarkPackB, fastest of 500, same run; 16-bit values are
// half the bytes to read and are transposed as 16-bit values).
//
// # Numerics
//
// GEMM accumulates in float32 (FMA), summing over k in blocks of kc; results
// differ from a sequential dot product by normal rounding (the tests bound
// the difference relative to k). Dot uses 32 partial sums. RMSNorm follows
// Hugging Face LlamaRMSNorm in fp32 (float64 sum of squares, then fp32
// rsqrt and products in torch's order). The Cholesky routines work in
// float64. (The activation and softmax kernels of the forward pass live in
// package model, next to the fast exponential they share.)
package tensor
