package config

import (
	"errors"
	"testing"
)

// FuzzConfig checks that Parse never panics, that every failure wraps one of
// the package's sentinels, and that every success satisfies the invariants
// the rest of wanda relies on.
func FuzzConfig(f *testing.F) {
	f.Add([]byte(`{"model_type":"llama","hidden_size":64,"intermediate_size":128,"num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"vocab_size":100}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if err != nil {
			if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrUnsupported) && !errors.Is(err, ErrUnsupportedArch) {
				t.Fatalf("error wraps no sentinel: %v", err)
			}
			return
		}
		if c.HiddenSize <= 0 || c.IntermediateSize <= 0 || c.NumLayers <= 0 || c.NumHeads <= 0 ||
			c.NumKVHeads <= 0 || c.HeadDim < 0 || c.VocabSize <= 0 || c.MaxPositionEmbeddings < 0 {
			t.Fatalf("bad size: %+v", c)
		}
		if c.NumHeads%c.NumKVHeads != 0 {
			t.Fatalf("heads %d %% kv %d != 0", c.NumHeads, c.NumKVHeads)
		}
		if c.RMSNormEps < 0 || c.RopeTheta < 0 || c.PartialRotaryFactor < 0 || c.PartialRotaryFactor > 1 {
			t.Fatalf("eps %v theta %v partial %v", c.RMSNormEps, c.RopeTheta, c.PartialRotaryFactor)
		}
		if rs := c.RopeScaling; rs != nil {
			if !(rs.Factor > 0) || (rs.Type != "linear" && rs.Type != "llama3") {
				t.Fatalf("rope %+v", rs)
			}
			if rs.Type == "llama3" && (rs.HighFreqFactor <= rs.LowFreqFactor || rs.OriginalMaxPositionEmbeddings <= 0) {
				t.Fatalf("rope %+v", rs)
			}
		}
		if c.HeadDim == 0 {
			return // ExpectedTensors needs a head_dim
		}
		if c.NumLayers <= 64 {
			for _, s := range c.ExpectedTensors() {
				for _, d := range s.Shape {
					if d <= 0 {
						t.Fatalf("%s shape %v", s.Name, s.Shape)
					}
				}
				if l, p, ok := ParseLayerTensor(s.Name); ok && LayerTensor(l, p) != s.Name {
					t.Fatalf("name round trip %s", s.Name)
				}
			}
		}
	})
}
