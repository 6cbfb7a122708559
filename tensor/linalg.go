package tensor

import (
	"errors"
	"fmt"
	"math"
)

// ErrNotPositiveDefinite is returned (wrapped in a *NotPositiveDefiniteError
// carrying the pivot index) when a Cholesky factorisation meets a
// non-positive pivot.
var ErrNotPositiveDefinite = errors.New("matrix is not positive definite")

// NotPositiveDefiniteError reports the 0-based pivot at which a Cholesky
// factorisation failed. errors.Is(err, ErrNotPositiveDefinite) holds.
type NotPositiveDefiniteError struct {
	Op    string  // the operation, e.g. "Cholesky"
	Pivot int     // 0-based index of the failing diagonal element
	Value float64 // the non-positive (or NaN) value of the pivot
}

func (e *NotPositiveDefiniteError) Error() string {
	return fmt.Sprintf("tensor: %s: pivot %d is %g: %v", e.Op, e.Pivot, e.Value, ErrNotPositiveDefinite)
}

func (e *NotPositiveDefiniteError) Unwrap() error { return ErrNotPositiveDefinite }

// Cholesky factorises the symmetric positive definite n×n row-major matrix a
// in place into its lower Cholesky factor L (a = L·Lᵀ). Only the lower
// triangle of a is read; on success the strict upper triangle is set to
// zero. On failure it returns a *NotPositiveDefiniteError and a is left
// partially overwritten. Arithmetic is float64.
func Cholesky(a []float64, n int) error {
	if n < 0 || len(a) < n*n {
		panic(fmt.Sprintf("tensor: Cholesky: len(a)=%d for n=%d", len(a), n))
	}
	return cholLower(a, n, "Cholesky")
}

func cholLower(a []float64, n int, op string) error {
	for j := 0; j < n; j++ {
		rj := a[j*n : j*n+j]
		d := a[j*n+j]
		for _, v := range rj {
			d -= v * v
		}
		if !(d > 0) {
			return &NotPositiveDefiniteError{Op: op, Pivot: j, Value: d}
		}
		d = math.Sqrt(d)
		a[j*n+j] = d
		for i := j + 1; i < n; i++ {
			ri := a[i*n : i*n+j]
			s := a[i*n+j]
			for p, v := range ri {
				s -= v * rj[p]
			}
			a[i*n+j] = s / d
		}
	}
	for i := 0; i < n; i++ {
		clear(a[i*n+i+1 : i*n+n])
	}
	return nil
}

// CholeskyInverseUpper overwrites the symmetric positive definite n×n
// row-major matrix a (= H) with U = chol_upper(H⁻¹), the upper-triangular
// matrix with UᵀU = H⁻¹ and positive diagonal, exactly what
//
//	torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True)
//
// computes (SparseGPT's Hinv). The strict lower triangle is set to zero.
// Arithmetic is float64. A failure of either factorisation returns a
// *NotPositiveDefiniteError.
func CholeskyInverseUpper(a []float64, n int) error {
	if n < 0 || len(a) < n*n {
		panic(fmt.Sprintf("tensor: CholeskyInverseUpper: len(a)=%d for n=%d", len(a), n))
	}
	if err := cholLower(a, n, "CholeskyInverseUpper"); err != nil {
		return err
	}
	// Invert L in place (lower triangular): column by column forward solve.
	linv := make([]float64, n*n)
	for j := 0; j < n; j++ {
		linv[j*n+j] = 1 / a[j*n+j]
		for i := j + 1; i < n; i++ {
			var s float64
			for p := j; p < i; p++ {
				s += a[i*n+p] * linv[p*n+j]
			}
			linv[i*n+j] = -s / a[i*n+i]
		}
	}
	// H⁻¹ = L⁻ᵀ L⁻¹ ; only the lower triangle is needed.
	for i := 0; i < n; i++ {
		for j := 0; j <= i; j++ {
			var s float64
			for p := i; p < n; p++ {
				s += linv[p*n+i] * linv[p*n+j]
			}
			a[i*n+j] = s
		}
	}
	if err := cholLower(a, n, "CholeskyInverseUpper"); err != nil {
		return err
	}
	// Transpose L to U in place.
	for i := 0; i < n; i++ {
		for j := i + 1; j < n; j++ {
			a[i*n+j], a[j*n+i] = a[j*n+i], 0
		}
	}
	return nil
}
