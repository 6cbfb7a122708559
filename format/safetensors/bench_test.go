package safetensors

import (
	"testing"
)

// BenchmarkTinyLlamaFloat32 widens every bf16 tensor of the real model.
func BenchmarkTinyLlamaFloat32(b *testing.B) {
	p := sharedFile(b, "models/tiny-llama-a/model.safetensors")
	f, err := Open(p)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	var total int64
	bufs := map[string][]float32{}
	for _, t := range f.Tensors() {
		total += t.end - t.begin
		bufs[t.Name] = make([]float32, t.Numel())
	}
	b.SetBytes(total)
	for b.Loop() {
		for _, t := range f.Tensors() {
			if err := t.ReadFloat32(bufs[t.Name]); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkOpen measures header parsing and validation of the real model.
func BenchmarkOpen(b *testing.B) {
	p := sharedFile(b, "models/tiny-llama-a/model.safetensors")
	for b.Loop() {
		f, err := Open(p)
		if err != nil {
			b.Fatal(err)
		}
		f.Close()
	}
}
