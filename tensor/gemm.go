package tensor

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
)

// numThreads is the number of goroutines the GEMM driver may use.
var numThreads atomic.Int64

func init() { numThreads.Store(int64(runtime.GOMAXPROCS(0))) }

// SetThreads sets the number of goroutines GEMM, MatMulTMat and
// ParallelFor use (default runtime.GOMAXPROCS(0)) and returns the previous
// value. n < 1 is treated as 1.
func SetThreads(n int) int {
	if n < 1 {
		n = 1
	}
	return int(numThreads.Swap(int64(n)))
}

// Threads reports the number of goroutines GEMM, MatMulTMat and
// ParallelFor use.
func Threads() int { return int(numThreads.Load()) }

// Sgemm computes C = alpha*op(A)*op(B) + beta*C on row-major matrices, with
// the semantics of BLAS sgemm called with row-major storage (CblasRowMajor).
//
// op(A) is m×k: A is stored m×k (A[i*lda+p]) when tA is false and k×m
// (A[p*lda+i]) when tA is true. op(B) is k×n: B is stored k×n (B[p*ldb+j])
// when tB is false and n×k (B[j*ldb+p]) when tB is true. C is m×n with row
// stride ldc. When beta is 0, C is overwritten without being read (NaNs in C
// do not propagate), as in BLAS.
//
// It uses up to Threads() goroutines and is safe for concurrent use (C
// blocks of concurrent calls must not overlap each other or their inputs).
// Invalid dimensions, strides or too-short slices are programmer errors and
// panic.
func Sgemm(tA, tB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	checkGemm(tA, tB, m, n, k, a, lda, b, ldb, c, ldc)
	if m == 0 || n == 0 {
		return
	}
	if alpha == 0 || k == 0 {
		scaleC(m, n, beta, c, ldc)
		return
	}
	if m <= smallM {
		sgemmSmallM(tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
		return
	}
	sgemm(tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// smallM is the largest m handled without packing: for a few rows of C
// (matrix-vector products) packing B would cost as much as the product.
const smallM = 3

// sgemmSmallM computes C = alpha*op(A)*op(B) + beta*C row by row with Dot
// (B transposed: every C entry is a dot product of two contiguous vectors)
// or Axpy (B not transposed: each C row accumulates rows of B), splitting
// the columns of C over threads when the product is large.
func sgemmSmallM(tA, tB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	rows := make([]float32, m*k)
	for i := 0; i < m; i++ {
		if tA {
			for p := 0; p < k; p++ {
				rows[i*k+p] = a[p*lda+i]
			}
		} else {
			copy(rows[i*k:(i+1)*k], a[i*lda:i*lda+k])
		}
	}
	cols := func(j0, j1 int) {
		for i := 0; i < m; i++ {
			ai := rows[i*k : (i+1)*k]
			crow := c[i*ldc+j0 : i*ldc+j1]
			if tB {
				for j := range crow {
					v := alpha * Dot(ai, b[(j0+j)*ldb:(j0+j)*ldb+k])
					if beta != 0 {
						v += beta * crow[j]
					}
					crow[j] = v
				}
				continue
			}
			scaleC(1, len(crow), beta, crow, len(crow))
			for p, av := range ai {
				Axpy(alpha*av, b[p*ldb+j0:p*ldb+j1], crow)
			}
		}
	}
	nt := Threads()
	if 2*float64(m)*float64(n)*float64(k) < minParallelFlops || n < 64*nt {
		cols(0, n)
		return
	}
	var wg sync.WaitGroup
	for t := 1; t < nt; t++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cols(n*t/nt, n*(t+1)/nt)
		}()
	}
	cols(0, n/nt)
	wg.Wait()
}

// MatMulT computes y = x · wᵀ, where x is [m×k], w is [n×k] (the [out,in]
// weight layout) and y is [m×n], all row-major and contiguous. y is
// overwritten.
func MatMulT(y, x, w []float32, m, n, k int) {
	Sgemm(false, true, m, n, k, 1, x, max(k, 1), w, max(k, 1), 0, y, max(n, 1))
}

// Dgemm is Sgemm for float64 matrices (same semantics and layout). The
// linear algebra of this package (Cholesky, CholeskyInverseUpper) is built
// on it.
func Dgemm(tA, tB bool, m, n, k int, alpha float64, a []float64, lda int, b []float64, ldb int, beta float64, c []float64, ldc int) {
	checkGemm(tA, tB, m, n, k, a, lda, b, ldb, c, ldc)
	if m == 0 || n == 0 {
		return
	}
	if alpha == 0 || k == 0 {
		scaleC(m, n, beta, c, ldc)
		return
	}
	dgemmImpl.gemm(gemmProblem[float64]{tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, nil})
}

func checkGemm[T float](tA, tB bool, m, n, k int, a []T, lda int, b []T, ldb int, c []T, ldc int) {
	if m < 0 || n < 0 || k < 0 {
		panic(fmt.Sprintf("tensor: gemm: negative dimension m=%d n=%d k=%d", m, n, k))
	}
	ar, ac := m, k
	if tA {
		ar, ac = k, m
	}
	br, bc := k, n
	if tB {
		br, bc = n, k
	}
	checkMat("A", a, ar, ac, lda)
	checkMat("B", b, br, bc, ldb)
	checkMat("C", c, m, n, ldc)
}

func checkMat[T float](name string, s []T, rows, cols, ld int) {
	if ld < max(cols, 1) {
		panic(fmt.Sprintf("tensor: gemm: ld%s=%d < max(1,%d)", name, ld, cols))
	}
	if rows == 0 || cols == 0 {
		return
	}
	if need := (rows-1)*ld + cols; len(s) < need {
		panic(fmt.Sprintf("tensor: gemm: len(%s)=%d < %d for %d×%d with stride %d", name, len(s), need, rows, cols, ld))
	}
}

// scaleC sets C = beta*C (C = 0 exactly when beta is 0).
func scaleC[T float](m, n int, beta T, c []T, ldc int) {
	if beta == 1 {
		return
	}
	for i := 0; i < m; i++ {
		row := c[i*ldc : i*ldc+n]
		if beta == 0 {
			clear(row)
			continue
		}
		for j := range row {
			row[j] *= beta
		}
	}
}
