package tensor

import (
	"errors"
	"fmt"
	"math"
	"slices"
)

// ErrNotPositiveDefinite is returned (wrapped in a *NotPositiveDefiniteError
// carrying the pivot index) when a Cholesky factorisation meets a
// non-positive pivot.
var ErrNotPositiveDefinite = errors.New("tensor: matrix is not positive definite")

// NotPositiveDefiniteError reports the pivot at which a Cholesky
// factorisation failed. errors.Is(err, ErrNotPositiveDefinite) holds.
type NotPositiveDefiniteError struct {
	Op    string  // "Cholesky" or "CholeskyInverseUpper"
	Pivot int     // 0-based row of the input matrix, see the operation's doc
	Value float64 // the non-positive (or NaN) value met at the pivot
}

func (e *NotPositiveDefiniteError) Error() string {
	return fmt.Sprintf("tensor: %s: pivot %d is %g: %v", e.Op, e.Pivot, e.Value, ErrNotPositiveDefinite)
}

func (e *NotPositiveDefiniteError) Unwrap() error { return ErrNotPositiveDefinite }

// cholBlock is the block size of the blocked factorisations: the diagonal
// blocks are done with plain loops, everything else with Dgemm.
const cholBlock = 192

// Cholesky factorises the symmetric positive definite n×n row-major matrix a
// in place into its lower Cholesky factor L (a = L·Lᵀ). Only the lower
// triangle of a is read; on success the strict upper triangle is set to
// zero. If the leading (p+1)×(p+1) block is not positive definite it
// returns a *NotPositiveDefiniteError with Pivot p, leaving a partially
// overwritten.
//
// Arithmetic is float64: a right-looking blocked algorithm whose panel
// solves and trailing updates run on Dgemm (so they use SetThreads threads).
func Cholesky(a []float64, n int) error {
	if n < 0 || len(a) < n*n {
		panic(fmt.Sprintf("tensor: Cholesky: len(a)=%d for n=%d", len(a), n))
	}
	if p, v := cholBlocked(a, n); p >= 0 {
		return &NotPositiveDefiniteError{Op: "Cholesky", Pivot: p, Value: v}
	}
	for i := 0; i < n; i++ {
		clear(a[i*n+i+1 : i*n+n])
	}
	return nil
}

// CholeskyInverseUpper overwrites the symmetric positive definite n×n
// row-major matrix a (= H) with U = chol_upper(H⁻¹), the upper-triangular
// matrix with positive diagonal and UᵀU = H⁻¹. This is the matrix
//
//	torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True)
//
// (SparseGPT's Hinv). Only the lower triangle of a is read; the strict lower
// triangle of the result is zero.
//
// It is computed without forming H⁻¹: with J the order-reversing
// permutation, J·H·J = L̃·L̃ᵀ gives H = R·Rᵀ with R = J·L̃·J upper
// triangular, so H⁻¹ = R⁻ᵀ·R⁻¹ and, by uniqueness of the Cholesky factor,
// U = R⁻¹ = J·L̃⁻¹·J: one Cholesky factorisation and one triangular
// inverse (2n³/3 flops instead of torch's ~4n³/3), float64 throughout,
// blocked on Dgemm. Results agree with torch's route to rounding.
//
// Because the factorisation runs in reverse order, a failure reports the
// largest p such that the trailing block H[p:, p:] is not positive
// definite (for a diagonal H, the row of the non-positive entry). On
// failure a is left scrambled.
func CholeskyInverseUpper(a []float64, n int) error {
	if n < 0 || len(a) < n*n {
		panic(fmt.Sprintf("tensor: CholeskyInverseUpper: len(a)=%d for n=%d", len(a), n))
	}
	a = a[:n*n]
	// Mirror the lower triangle into the upper one, so the reversal below
	// (which maps the lower triangle onto the upper one) keeps the data
	// the factorisation reads.
	for i := 0; i < n; i++ {
		for j := 0; j < i; j++ {
			a[j*n+i] = a[i*n+j]
		}
	}
	slices.Reverse(a) // a = J·H·J
	if p, v := cholBlocked(a, n); p >= 0 {
		return &NotPositiveDefiniteError{Op: "CholeskyInverseUpper", Pivot: n - 1 - p, Value: v}
	}
	triInvLower(a, n) // a = L̃⁻¹ (lower; upper triangle zeroed)
	slices.Reverse(a) // a = J·L̃⁻¹·J = U
	return nil
}

// cholBlocked factorises the lower triangle of a (n×n) into L in place and
// returns (-1, 0), or the failing pivot and its value. The strict upper
// triangle is left unspecified.
func cholBlocked(a []float64, n int) (int, float64) {
	nb := cholBlock
	var linv, tmp []float64
	for j := 0; j < n; j += nb {
		jb := min(nb, n-j)
		if p, v := cholUnblocked(a[j*n+j:], jb, n); p >= 0 {
			return j + p, v
		}
		r := n - j - jb
		if r == 0 {
			break
		}
		// Panel: A21 = A21 · L11⁻ᵀ, with L11⁻¹ formed explicitly.
		if linv == nil {
			linv = make([]float64, nb*nb)
			tmp = make([]float64, n*nb)
		}
		li := linv[:jb*jb]
		for i := 0; i < jb; i++ {
			copy(li[i*jb:i*jb+i+1], a[(j+i)*n+j:(j+i)*n+j+i+1])
		}
		triInvLower(li, jb)
		t := tmp[:r*jb]
		a21 := a[(j+jb)*n+j:]
		for i := 0; i < r; i++ {
			copy(t[i*jb:(i+1)*jb], a21[i*n:i*n+jb])
		}
		Dgemm(false, true, r, jb, jb, 1, t, jb, li, jb, 0, a21, n)
		// Trailing update of the lower triangle: A22 -= A21·A21ᵀ, one
		// block column at a time (rows from the diagonal down).
		a22 := a[(j+jb)*n+j+jb:]
		const w = 2 * cholBlock
		for c := 0; c < r; c += w {
			cw := min(w, r-c)
			Dgemm(false, true, r-c, cw, jb, -1, a21[c*n:], n, a21[c*n:], n, 1, a22[c*n+c:], n)
		}
	}
	return -1, 0
}

// cholUnblocked factorises the lower triangle of the n×n block at a (row
// stride ld) in place, row by row (each row: dot products with the rows
// above). The strict upper triangle is not touched.
func cholUnblocked(a []float64, n, ld int) (int, float64) {
	for j := 0; j < n; j++ {
		rj := a[j*ld : j*ld+j]
		d := a[j*ld+j]
		for _, v := range rj {
			d -= v * v
		}
		if !(d > 0) {
			return j, d
		}
		d = math.Sqrt(d)
		a[j*ld+j] = d
		for i := j + 1; i < n; i++ {
			ri := a[i*ld : i*ld+j]
			s := a[i*ld+j]
			for p, v := range ri {
				s -= v * rj[p]
			}
			a[i*ld+j] = s / d
		}
	}
	return -1, 0
}

// triInvLower replaces the lower-triangular n×n matrix L in a (positive
// diagonal; the strict upper triangle is ignored) by L⁻¹, with the strict
// upper triangle set to zero. Blocked, from the bottom-right corner up:
// with L = [L11 0; L21 L22] and X22 = L22⁻¹ already in place,
// X21 = -X22·L21·X11.
func triInvLower(a []float64, n int) {
	nb := cholBlock
	for i := 0; i < n; i++ {
		clear(a[i*n+i+1 : i*n+n])
	}
	last := (n - 1) / nb * nb
	var tmp, x11 []float64
	for j := last; j >= 0; j -= nb {
		jb := min(nb, n-j)
		if x11 == nil {
			x11 = make([]float64, nb*nb)
			tmp = make([]float64, n*nb)
		}
		x := x11[:jb*jb]
		for i := 0; i < jb; i++ {
			copy(x[i*jb:(i+1)*jb], a[(j+i)*n+j:(j+i)*n+j+jb])
		}
		triInvUnblocked(x, jb)
		r := n - j - jb
		if r > 0 {
			// T = X22·L21 (X22 lower triangular: block row c of T only
			// needs block columns ≤ c of X22).
			t := tmp[:r*jb]
			l21 := a[(j+jb)*n+j:]
			x22 := a[(j+jb)*n+j+jb:]
			const w = 2 * cholBlock
			for c := 0; c < r; c += w {
				cw := min(w, r-c)
				// rows c..c+cw of T = X22[c:c+cw, 0:c+cw] · L21[0:c+cw, :]
				Dgemm(false, false, cw, jb, c+cw, 1, x22[c*n:], n, l21, n, 0, t[c*jb:], jb)
			}
			// X21 = -T·X11, written over L21.
			Dgemm(false, false, r, jb, jb, -1, t, jb, x, jb, 0, l21, n)
		}
		for i := 0; i < jb; i++ {
			copy(a[(j+i)*n+j:(j+i)*n+j+jb], x[i*jb:(i+1)*jb])
		}
	}
}

// triInvUnblocked inverts the dense-stored lower-triangular n×n matrix a in
// place (upper triangle zero on input and output), by forward substitution
// on the rows: row i of X solves X[i,:]·L = e_i restricted to the lower part,
// i.e. X[i,i] = 1/L[i,i], X[i,j] = -(Σ_{p=j}^{i-1} L[i,p]·X[p,j]) / L[i,i].
func triInvUnblocked(a []float64, n int) {
	li := make([]float64, n)
	for i := 0; i < n; i++ {
		d := a[i*n+i]
		inv := 1 / d
		// s[j] = Σ_{p=j}^{i-1} L[i,p]·X[p,j], accumulated row by row of X.
		copy(li, a[i*n:i*n+i]) // L[i, 0:i]
		row := a[i*n : i*n+i]
		clear(row)
		for p := 0; p < i; p++ {
			lp := li[p]
			xp := a[p*n : p*n+p+1] // X[p, 0:p+1]
			for jj, v := range xp {
				row[jj] += lp * v
			}
		}
		for jj := range row {
			row[jj] *= -inv
		}
		a[i*n+i] = inv
	}
}
