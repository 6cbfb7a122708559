package tensor

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/wanda-go/wanda/format/dtype"
)

// TestMatMulTMatBitIdentical: the product with stored-dtype weights equals MatMulT on the
// widened weights bit for bit, for every dtype, several weights side by side, and the
// small-m and packed GEMM paths.
func TestMatMulTMatBitIdentical(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, dt := range []dtype.DType{dtype.F32, dtype.BF16, dtype.F16} {
		for _, m := range []int{1, 2, 3, 7, 64, 301} {
			k := 96 + m%5
			ns := []int{17, 300, 5}
			x := make([]float32, m*k)
			for i := range x {
				x[i] = float32(r.NormFloat64())
			}
			var ws []Mat
			var wide [][]float32
			total := 0
			for _, n := range ns {
				f := make([]float32, n*k)
				for i := range f {
					f[i] = float32(r.NormFloat64() * 0.1)
				}
				raw := make([]byte, n*k*dt.Size())
				if err := dtype.FromFloat32(raw, f, dt); err != nil {
					t.Fatal(err)
				}
				if err := dtype.ToFloat32(f, raw, dt); err != nil {
					t.Fatal(err)
				}
				ws = append(ws, Mat{Rows: n, Cols: k, DType: dt, Raw: raw})
				wide = append(wide, f)
				total += n
			}
			ldy := total + 3
			y := make([]float32, m*ldy)
			for i := range y {
				y[i] = float32(math.NaN())
			}
			MatMulTMat(y, ldy, x, m, k, ws...)
			col := 0
			for wi, n := range ns {
				want := make([]float32, m*n)
				MatMulT(want, x, wide[wi], m, n, k)
				for i := 0; i < m; i++ {
					for j := 0; j < n; j++ {
						if g, w := y[i*ldy+col+j], want[i*n+j]; math.Float32bits(g) != math.Float32bits(w) {
							t.Fatalf("%s m=%d weight %d [%d,%d]: %v, MatMulT %v", dt, m, wi, i, j, g, w)
						}
					}
				}
				col += n
			}
			for i := 0; i < m; i++ {
				for j := total; j < ldy; j++ {
					if !math.IsNaN(float64(y[i*ldy+j])) {
						t.Fatalf("column %d beyond the weights was written", j)
					}
				}
			}
		}
	}
}
