package refine_test

import (
	"context"
	"fmt"

	"github.com/wanda-go/wanda/pipeline"
	"github.com/wanda-go/wanda/stages/refine"
)

// DSnoT refines a Wanda mask: statistics from the dense pass (here two sequences of three
// tokens over four input channels), then a 50% mask, then Refine.
func ExampleDSnoT_Refine() {
	acc := refine.NewAccumulator(4, 3, refine.DefaultDSnoT().NeedsStats())
	x := []float32{ // [2 sequences × 3 tokens, 4 channels]
		1, 0.5, -2, 0.1,
		2, 0.4, -1, 0.3,
		3, 0.6, -3, -0.2,
		1, 0.2, 2, 0.1,
		0, 0.3, 1, 0.0,
		2, 0.1, 3, 0.2,
	}
	if err := acc.Add(x, 2); err != nil {
		fmt.Println(err)
		return
	}
	st := acc.Stats()
	w := pipeline.Matrix{Rows: 1, Cols: 4, Data: []float32{0.3, -1.2, 0.2, 2.5}}
	mask := pipeline.NewMask(1, 4)
	mask.Set(0, 2) // Wanda's choice: |W|·sqrt(SumSq) = 0.92, 0.81, 0.75, 0.77
	mask.Set(0, 3)
	info := pipeline.LayerInfo{Layer: 0, Tensor: "model.layers.0.self_attn.q_proj.weight", Part: "q_proj"}
	d := refine.DefaultDSnoT()
	if err := d.Refine(context.Background(), w, mask, st, pipeline.Target{Sparsity: 0.5}, info); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("sum %.2f, var %.3f\n", st.Sum, st.Var)
	for j := range 4 {
		fmt.Print(mask.Get(0, j), " ")
	}
	fmt.Println()
	// DSnoT metric W·Sum = 1.35, −1.26, 0, 0.625: the pruned weights add 0.625 to the error.
	// DSnoT regrows column 3 (the largest (W·Sum)/Var among the pruned) and prunes the kept
	// weight with negative W·Sum, column 1; the error becomes −1.26, and the next exchange
	// would regrow a kept weight, so the row stops. Var is the within-sequence variance
	// (channel 2: 0.667, not the 2.667 of all six tokens together).

	// Output:
	// sum [4.50 1.05 0.00 0.25], var [0.667 0.007 0.667 0.024]
	// false true true false
}
