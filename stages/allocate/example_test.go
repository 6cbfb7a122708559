package allocate_test

import (
	"fmt"

	"github.com/wanda-go/wanda/stages/allocate"
)

// OWL's per-layer sparsities from the layers' outlier counts, for a 60% target.
func ExampleOWL_Allocate() {
	layers := []allocate.Outliers{{Above: 300, Total: 100000}, {Above: 250, Total: 100000}, {Above: 150, Total: 100000}}
	a, err := allocate.DefaultOWL().Allocate(layers, 0.6)
	if err != nil {
		fmt.Println(err)
		return
	}
	for l, s := range a.Sparsities {
		fmt.Printf("layer %d: outliers %.2f%%, sparsity %.4f\n", l, a.Ratios[l], s)
	}
	// The ratios 0.30, 0.25, 0.15 scale to 0.16, 0.107, 0 (span 2λ = 0.16), mean 0.089; the
	// densities are those minus the mean plus 0.4.

	// Output:
	// layer 0: outliers 0.30%, sparsity 0.5289
	// layer 1: outliers 0.25%, sparsity 0.5822
	// layer 2: outliers 0.15%, sparsity 0.6889
}

// A layer's outlier count from its Wanda scores, streamed in blocks and read twice.
func ExampleOutlierCounter() {
	blocks := [][]float32{{0.1, 0.2, 0.1}, {0.3, 2.5, 0.2}, {0.1, 0.1, 0.2}}
	c := allocate.NewOutlierCounter(5)
	for _, b := range blocks {
		if err := c.AddSum(b); err != nil {
			fmt.Println(err)
			return
		}
	}
	thr, _ := c.Threshold()
	for _, b := range blocks {
		if err := c.AddCount(b); err != nil {
			fmt.Println(err)
			return
		}
	}
	o, _ := c.Outliers()
	fmt.Printf("threshold %.4f: %d of %d above (%.2f%%)\n", thr, o.Above, o.Total, o.Ratio())
	// Output:
	// threshold 2.1111: 1 of 9 above (11.11%)
}

func ExampleParseFile() {
	f, err := allocate.ParseFile("sparsity.json", []byte(`{
		"default": 0.5,
		"layers": [0.4, null],
		"tensors": [{"match": "mlp\\.down_proj", "sparsity": 0.6}]
	}`))
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, c := range []struct {
		layer int
		name  string
	}{
		{0, "model.layers.0.self_attn.q_proj.weight"},
		{0, "model.layers.0.mlp.down_proj.weight"},
		{1, "model.layers.1.self_attn.q_proj.weight"},
	} {
		s, src := f.Sparsity(c.layer, c.name, 0.7)
		fmt.Printf("%s: %.2f (%s)\n", c.name, s, src)
	}
	// Output:
	// model.layers.0.self_attn.q_proj.weight: 0.40 (layers)
	// model.layers.0.mlp.down_proj.weight: 0.60 (tensors)
	// model.layers.1.self_attn.q_proj.weight: 0.50 (default)
}
