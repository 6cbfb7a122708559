package transform

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wanda-go/wanda/format/config"
	"github.com/wanda-go/wanda/format/safetensors"
	"github.com/wanda-go/wanda/format/sparse"
	"github.com/wanda-go/wanda/internal/testenv"
)

// sharedDir returns ../shared next to the module root; skips when absent
// (fails when CI=true).
func sharedDir(t *testing.T) string {
	t.Helper()
	return testenv.SharedDir(t)
}

// TestReferenceWanda24 applies the reference implementation's wanda 2:4 masks
// (shared/reference/tiny-llama-a/reference.safetensors) to the real bf16
// model, packs it (auto must pick sparse-24-bitmask), checks the size, and
// unpacks it bit-exactly.
func TestReferenceWanda24(t *testing.T) {
	shared := sharedDir(t)
	src := filepath.Join(shared, "models", "tiny-llama-a")
	ref, err := safetensors.Open(filepath.Join(shared, "reference", "tiny-llama-a", "reference.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	set, err := safetensors.OpenDir(src)
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()

	work := t.TempDir()
	model := filepath.Join(work, "pruned")
	os.Mkdir(model, 0o755)
	f := &fixture{dir: model, tensors: map[string][]byte{}, shapes: map[string][]int64{}, masks: map[string]*sparse.Mask{},
		other: map[string][]byte{}, dtypes: map[string]string{}}
	var specs []safetensors.Spec
	var data [][]byte
	for _, n := range set.Names() {
		tt, _ := set.Tensor(n)
		b := append([]byte(nil), tt.Bytes()...)
		if _, p, ok := config.ParseLayerTensor(n); ok && p.IsLinear() {
			mt, ok := ref.Tensor("wanda:2:4/" + n)
			if !ok {
				t.Fatalf("reference has no 2:4 mask for %s", n)
			}
			bits := mt.Bytes() // numpy.packbits(W == 0): big-endian bit order, flattened
			rows, cols := int(tt.Shape[0]), int(tt.Shape[1])
			m := sparse.NewMask(rows, cols)
			for k := 0; k < rows*cols; k++ {
				if bits[k/8]&(0x80>>(k%8)) != 0 {
					b[2*k], b[2*k+1] = 0, 0
					m.Bits[k>>6] |= 1 << (uint(k) & 63)
				}
			}
			f.masks[n] = m
		}
		f.tensors[n] = b
		f.shapes[n] = tt.Shape
		f.dtypes[n] = tt.DType.String()
		specs = append(specs, safetensors.Spec{Name: n, DType: tt.DType, Shape: tt.Shape})
		data = append(data, b)
	}
	if err := safetensors.WriteFile(filepath.Join(model, safetensors.SingleName), specs, data, set.Metadata()); err != nil {
		t.Fatal(err)
	}
	if err := sparse.WriteMasks(filepath.Join(model, sparse.MaskFileName), f.masks); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(src)
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".safetensors") {
			continue
		}
		b, _ := os.ReadFile(filepath.Join(src, e.Name()))
		os.WriteFile(filepath.Join(model, e.Name()), b, 0o644)
		if e.Name() == ConfigName {
			f.cfg = nil
			if err := json.Unmarshal(b, &f.cfg); err != nil {
				t.Fatal(err)
			}
		} else {
			f.other[e.Name()] = b
		}
	}
	mb, _ := os.ReadFile(filepath.Join(model, sparse.MaskFileName))
	f.other[sparse.MaskFileName] = mb

	packed := filepath.Join(work, "packed")
	res, err := Pack(model, packed, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ratio := float64(res.PackedBytes) / float64(res.DenseBytes)
	t.Logf("tiny-llama-a wanda 2:4: %d linears as %s, %d -> %d bytes (%.4f), global sparsity %.4f",
		len(res.Packed), res.Format, res.DenseBytes, res.PackedBytes, ratio, res.GlobalSparsity)
	if res.Format != sparse.Format24 || len(res.Packed) != 42 || ratio > 0.57 {
		t.Errorf("result %+v (ratio %.4f)", res, ratio)
	}
	masks, err := sparse.ReadMasks(filepath.Join(packed, sparse.MaskFileName))
	if err != nil || len(masks) != 42 {
		t.Fatalf("mask file in the packed model: %d masks, %v", len(masks), err)
	}
	for n, m := range f.masks {
		if !bytes.Equal(m.Bytes(), masks[n].Bytes()) {
			t.Errorf("%s: mask file differs from the reference mask", n)
		}
	}
	out := filepath.Join(work, "unpacked")
	if err := Unpack(packed, out, Options{}); err != nil {
		t.Fatal(err)
	}
	checkDenseEqual(t, out, f)
}
