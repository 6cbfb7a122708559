package tensor_test

import (
	"fmt"
	"sync/atomic"

	"github.com/wanda-go/wanda/format/dtype"
	"github.com/wanda-go/wanda/tensor"
)

// Two weights in their stored dtypes (as a memory-mapped safetensors file
// holds them) multiply a batch of two tokens in one call; their outputs
// land side by side in y, whose row stride leaves one spare column.
func ExampleMatMulTMat() {
	x := []float32{ // 2 tokens × 2 features
		1, 2,
		3, 4,
	}
	raw := func(dt dtype.DType, v ...float32) []byte {
		b := make([]byte, len(v)*dt.Size())
		if err := dtype.FromFloat32(b, v, dt); err != nil {
			panic(err)
		}
		return b
	}
	q := tensor.Mat{Rows: 3, Cols: 2, DType: dtype.BF16, Raw: raw(dtype.BF16, 1, 0, 0, 1, 0.5, 0.5)}
	k := tensor.Mat{Rows: 1, Cols: 2, DType: dtype.F16, Raw: raw(dtype.F16, 2, -1)}
	const ldy = 5
	y := make([]float32, 2*ldy)
	tensor.MatMulTMat(y, ldy, x, 2, 2, q, k)
	fmt.Println(y[0:4])
	fmt.Println(y[ldy : ldy+4])
	// Output:
	// [1 2 1.5 0]
	// [3 4 3.5 2]
}

// ParallelFor splits a loop over rows among Threads() goroutines; each
// index gets its own output, so the result does not depend on the split.
func ExampleParallelFor() {
	const rows = 1000
	norms := make([]float64, rows)
	var calls atomic.Int32
	tensor.ParallelFor(rows, 64, func(lo, hi int) {
		calls.Add(1)
		for r := lo; r < hi; r++ {
			norms[r] = float64(r) * 2
		}
	})
	sum := 0.0
	for _, v := range norms {
		sum += v
	}
	fmt.Println(sum, calls.Load() >= 1)
	// Output: 999000 true
}
