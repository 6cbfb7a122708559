package tensor

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"
)

// randSPD returns X·Xᵀ/cols + damp·I for a random n×cols X: symmetric
// positive definite, and ill-conditioned when cols < n and damp is small.
func randSPD(r *rand.Rand, n, cols int, damp float64) []float64 {
	x := make([]float64, n*cols)
	for i := range x {
		x[i] = r.NormFloat64()
	}
	h := make([]float64, n*n)
	for i := 0; i < n; i++ {
		for j := 0; j <= i; j++ {
			var s float64
			for p := 0; p < cols; p++ {
				s += x[i*cols+p] * x[j*cols+p]
			}
			s /= float64(cols)
			h[i*n+j], h[j*n+i] = s, s
		}
		h[i*n+i] += damp
	}
	return h
}

func TestCholeskySmall(t *testing.T) {
	// [[4,2],[2,3]] = L·Lᵀ with L = [[2,0],[1,√2]].
	a := []float64{4, 2, 2, 3}
	if err := Cholesky(a, 2); err != nil {
		t.Fatal(err)
	}
	want := []float64{2, 0, 1, math.Sqrt2}
	for i := range a {
		if math.Abs(a[i]-want[i]) > 1e-15 {
			t.Fatalf("L = %v, want %v", a, want)
		}
	}
	// chol_upper(inv([[4,2],[2,3]])): inv = [[3,-2],[-2,4]]/8.
	a = []float64{4, 2, 2, 3}
	if err := CholeskyInverseUpper(a, 2); err != nil {
		t.Fatal(err)
	}
	u11 := math.Sqrt(3.0 / 8)
	u12 := -0.25 / u11
	u22 := math.Sqrt(0.5 - u12*u12)
	want = []float64{u11, u12, 0, u22}
	for i := range a {
		if math.Abs(a[i]-want[i]) > 1e-15 {
			t.Fatalf("U = %v, want %v", a, want)
		}
	}
}

func TestCholesky(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	for _, n := range []int{1, 2, 5, 17, 64, 130, 300} {
		h := randSPD(r, n, n+3, 0.1)
		l := append([]float64(nil), h...)
		if err := Cholesky(l, n); err != nil {
			t.Fatalf("n=%d: %v", n, err)
		}
		for i := 0; i < n; i++ {
			if !(l[i*n+i] > 0) {
				t.Fatalf("n=%d: L[%d,%d] = %g", n, i, i, l[i*n+i])
			}
			for j := 0; j < n; j++ {
				if j > i && l[i*n+j] != 0 {
					t.Fatalf("n=%d: L[%d,%d] = %g above the diagonal", n, i, j, l[i*n+j])
				}
				var s float64
				for p := 0; p <= min(i, j); p++ {
					s += l[i*n+p] * l[j*n+p]
				}
				if math.Abs(s-h[i*n+j]) > 1e-12*(1+math.Abs(h[i*n+j])) {
					t.Fatalf("n=%d: (L·Lᵀ)[%d,%d] = %g, want %g", n, i, j, s, h[i*n+j])
				}
			}
		}
	}
}

func TestCholeskyNotPD(t *testing.T) {
	n := 6
	a := make([]float64, n*n)
	for i := 0; i < n; i++ {
		a[i*n+i] = 1
	}
	a[3*n+3] = -2
	err := Cholesky(a, n)
	var pe *NotPositiveDefiniteError
	if !errors.Is(err, ErrNotPositiveDefinite) || !errors.As(err, &pe) || pe.Pivot != 3 {
		t.Fatalf("err = %v, want pivot 3", err)
	}
	// CholeskyInverseUpper factorises in reverse order and reports the
	// largest p with H[p:, p:] not positive definite.
	a = make([]float64, n*n)
	for i := 0; i < n; i++ {
		a[i*n+i] = 1
	}
	a[3*n+3] = -2
	err = CholeskyInverseUpper(a, n)
	if !errors.As(err, &pe) || pe.Pivot != 3 {
		t.Fatalf("CholeskyInverseUpper diagonal: err = %v, want pivot 3", err)
	}
	// Rows 0 and 1 equal: H[1:,1:] is fine, H itself singular.
	h := []float64{1, 1, 0, 1, 1, 0, 0, 0, 1}
	err = CholeskyInverseUpper(h, 3)
	if !errors.As(err, &pe) || pe.Pivot != 0 {
		t.Fatalf("singular: err = %v, want pivot 0", err)
	}
	nan := []float64{math.NaN()}
	if err := Cholesky(nan, 1); !errors.Is(err, ErrNotPositiveDefinite) {
		t.Fatalf("NaN: err = %v", err)
	}
}

// TestCholeskyInverseUpper checks that U is upper triangular with positive
// diagonal and H·(UᵀU) ≈ I, which by uniqueness of the Cholesky factor
// makes U = chol_upper(H⁻¹).
func TestCholeskyInverseUpper(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	for _, tc := range []struct {
		n, cols int
		damp    float64
	}{{1, 1, 1}, {3, 5, 0.5}, {16, 40, 0.01}, {100, 60, 0.05}, {257, 300, 0.01}, {400, 128, 0.01}} {
		n := tc.n
		h := randSPD(r, n, tc.cols, tc.damp)
		u := append([]float64(nil), h...)
		if err := CholeskyInverseUpper(u, n); err != nil {
			t.Fatalf("n=%d: %v", n, err)
		}
		for i := 0; i < n; i++ {
			if !(u[i*n+i] > 0) {
				t.Fatalf("n=%d: U[%d,%d] = %g", n, i, i, u[i*n+i])
			}
			for j := 0; j < i; j++ {
				if u[i*n+j] != 0 {
					t.Fatalf("n=%d: U[%d,%d] = %g below the diagonal", n, i, j, u[i*n+j])
				}
			}
		}
		// M = UᵀU, then H·M.
		m := make([]float64, n*n)
		for i := 0; i < n; i++ {
			for j := 0; j < n; j++ {
				var s float64
				for p := 0; p <= min(i, j); p++ {
					s += u[p*n+i] * u[p*n+j]
				}
				m[i*n+j] = s
			}
		}
		var maxErr float64
		for i := 0; i < n; i++ {
			for j := 0; j < n; j++ {
				var s float64
				for p := 0; p < n; p++ {
					s += h[i*n+p] * m[p*n+j]
				}
				if i == j {
					s--
				}
				maxErr = math.Max(maxErr, math.Abs(s))
			}
		}
		if maxErr > 1e-9 {
			t.Fatalf("n=%d: max |H·UᵀU - I| = %g", n, maxErr)
		}
	}
}
