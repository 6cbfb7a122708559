package safetensors_test

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/wanda-go/wanda/format/dtype"
	"github.com/wanda-go/wanda/format/safetensors"
)

// Create declares every tensor up front and splits them into shards; each tensor is then
// written once, in any order (here narrowed from float32 to its stored dtype). Close
// writes the index because there is more than one shard.
func ExampleCreate() {
	dir, err := os.MkdirTemp("", "safetensors-example-")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)

	specs := []safetensors.Spec{
		{Name: "model.embed_tokens.weight", DType: dtype.BF16, Shape: []int64{4, 3}}, // 24 bytes
		{Name: "model.norm.weight", DType: dtype.F32, Shape: []int64{3}},             // 12 bytes
	}
	w, err := safetensors.Create(dir, specs, safetensors.WriterOptions{
		MaxShardBytes: 24, // tiny, to get two shards
		Metadata:      map[string]string{"format": "pt"},
	})
	if err != nil {
		panic(err)
	}
	if err := w.WriteFloat32("model.norm.weight", []float32{1, 1, 1}); err != nil {
		w.Abort()
		panic(err)
	}
	if err := w.WriteFloat32("model.embed_tokens.weight", []float32{0, 0.1, 0.2, 1, 1.1, 1.2, 2, 2.1, 2.2, 3, 3.1, 3.2}); err != nil {
		w.Abort()
		panic(err)
	}
	if err := w.Close(); err != nil {
		panic(err)
	}
	names, _ := filepath.Glob(filepath.Join(dir, "*"))
	for _, n := range names {
		fmt.Println(filepath.Base(n))
	}
	index, _ := os.ReadFile(filepath.Join(dir, safetensors.IndexName))
	fmt.Printf("%s\n", index)
	// Output:
	// model-00001-of-00002.safetensors
	// model-00002-of-00002.safetensors
	// model.safetensors.index.json
	// {
	//   "metadata": {
	//     "total_size": 36
	//   },
	//   "weight_map": {
	//     "model.embed_tokens.weight": "model-00001-of-00002.safetensors",
	//     "model.norm.weight": "model-00002-of-00002.safetensors"
	//   }
	// }
}

// OpenDir opens a model directory, sharded (through the index) or not, and validates every
// header; tensors are memory-mapped views, widened to float32 on request.
func ExampleOpenDir() {
	dir, err := os.MkdirTemp("", "safetensors-example-")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	// A single-file model: dir/model.safetensors.
	raw := []byte{0x80, 0x3f, 0x00, 0x40, 0x40, 0x40, 0x80, 0xbf} // bf16 1, 2, 3, -1
	err = safetensors.WriteFile(filepath.Join(dir, safetensors.SingleName),
		[]safetensors.Spec{{Name: "lm_head.weight", DType: dtype.BF16, Shape: []int64{2, 2}}},
		[][]byte{raw}, map[string]string{"format": "pt"})
	if err != nil {
		panic(err)
	}

	set, err := safetensors.OpenDir(dir)
	if err != nil {
		panic(err)
	}
	defer set.Close()
	fmt.Println(set.Names(), set.Metadata())
	t, err := set.Get("lm_head.weight")
	if err != nil {
		panic(err)
	}
	v, err := t.Float32()
	if err != nil {
		panic(err)
	}
	fmt.Println(t.DType, t.Shape, v)

	// A missing tensor, or a directory without weights, is an error naming what is missing.
	_, err = set.Get("model.norm.weight")
	fmt.Println(errors.Is(err, safetensors.ErrMissingTensor))
	_, err = safetensors.OpenDir(os.TempDir() + "/no-such-model")
	fmt.Println(errors.Is(err, fs.ErrNotExist))
	// Output:
	// [lm_head.weight] map[format:pt]
	// BF16 [2 2] [1 2 3 -1]
	// true
	// true
}

// OpenTensor writes one large tensor in chunks, from any number of goroutines, so that
// memory holds a chunk rather than the tensor. Chunks may come in any order; Close fails
// if a byte was never written.
func ExampleWriter_OpenTensor() {
	dir, err := os.MkdirTemp("", "safetensors-example-")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	w, err := safetensors.Create(dir, []safetensors.Spec{{Name: "big", DType: dtype.F16, Shape: []int64{3, 4}}}, safetensors.WriterOptions{})
	if err != nil {
		panic(err)
	}
	tw, err := w.OpenTensor("big")
	if err != nil {
		panic(err)
	}
	for _, row := range []int64{2, 0, 1} { // one row per chunk, out of order
		chunk := []float32{float32(row), float32(row) + 0.25, float32(row) + 0.5, float32(row) + 0.75}
		if err := tw.WriteFloat32At(chunk, row*4); err != nil {
			panic(err)
		}
	}
	if err := tw.Close(); err != nil {
		panic(err)
	}
	if err := w.Close(); err != nil {
		panic(err)
	}

	f, err := safetensors.Open(filepath.Join(dir, safetensors.SingleName))
	if err != nil {
		panic(err)
	}
	defer f.Close()
	t, _ := f.Tensor("big")
	v, _ := t.Float32()
	fmt.Println(t.DType, t.Shape, v)
	// Output:
	// F16 [3 4] [0 0.25 0.5 0.75 1 1.25 1.5 1.75 2 2.25 2.5 2.75]
}
