package pipeline_test

import (
	"context"
	"fmt"

	"github.com/wanda-go/wanda/format/dtype"
	"github.com/wanda-go/wanda/pipeline"
	"github.com/wanda-go/wanda/stages/metric"
	"github.com/wanda-go/wanda/stages/pattern"
	"github.com/wanda-go/wanda/tensor"
)

// bytesAt is an io.WriterAt over a byte slice.
type bytesAt []byte

func (b bytesAt) WriteAt(p []byte, off int64) (int, error) { return copy(b[off:], p), nil }

// ExamplePruneTensor prunes a 2×8 bf16 weight to 2:4 by magnitude, one row per block, and
// reads the pruned weights back. In the last group three magnitudes tie at 1: the one pruned
// is the one the reference's torch.topk picks on the CPU.
func ExamplePruneTensor() {
	vals := []float32{
		0.5, -0.25, 0.125, 1, -2, 0.75, 0.0625, -0.5,
		3, 0.25, -0.25, 0.5, 1, 1, -1, 0.125,
	}
	raw := make([]byte, 2*len(vals))
	if err := dtype.FromFloat32(raw, vals, dtype.BF16); err != nil {
		panic(err)
	}
	target := pipeline.Target{N: 2, M: 4}
	out := make(bytesAt, len(raw))
	res, err := pipeline.PruneTensor(context.Background(),
		pipeline.Method{Name: "magnitude", Metric: metric.Magnitude{}, Pattern: pattern.ForTarget(target)},
		pipeline.TensorJob{
			W:      tensor.Mat{Rows: 2, Cols: 8, DType: dtype.BF16, Raw: raw},
			Target: target,
			Info:   pipeline.LayerInfo{Tensor: "model.layers.0.mlp.up_proj.weight", Part: "up_proj"},
			Out:    out, BlockRows: 1,
		})
	if err != nil {
		panic(err)
	}
	pruned := make([]float32, len(vals))
	if err := dtype.ToFloat32(pruned, out, dtype.BF16); err != nil {
		panic(err)
	}
	fmt.Println(res.Zeros, "zeros")
	fmt.Println(pruned[:8])
	fmt.Println(pruned[8:])
	// Output:
	// 8 zeros
	// [0.5 0 0 1 -2 0.75 0 0]
	// [3 0 0 0.5 1 1 0 0]
}
