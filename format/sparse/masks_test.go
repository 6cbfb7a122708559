package sparse

import (
	"encoding/json"
	"errors"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wanda-go/wanda/format/dtype"
	"github.com/wanda-go/wanda/format/safetensors"
)

func TestMaskBytesLayout(t *testing.T) {
	// [2, 5] mask, pruned (0,0), (0,3), (1,4): flat indices 0, 3, 9.
	m := NewMask(2, 5)
	m.Set(0, 0)
	m.Set(0, 3)
	m.Set(1, 4)
	b := m.Bytes()
	// numpy.packbits([1,0,0,1,0, 0,0,0,0,1], bitorder="little") == [9, 2]
	if len(b) != 2 || b[0] != 9 || b[1] != 2 {
		t.Fatalf("Bytes = %v, want [9 2]", b)
	}
	back, err := MaskFromBytes(b, 2, 5)
	if err != nil {
		t.Fatal(err)
	}
	if back.Count() != 3 || !back.Get(0, 3) || !back.Get(1, 4) || back.Get(1, 3) {
		t.Errorf("MaskFromBytes lost bits: %+v", back)
	}
	if _, err := MaskFromBytes([]byte{9, 2 | 4}, 2, 5); !errors.Is(err, ErrMask) {
		t.Errorf("padding bit: got %v", err)
	}
	if _, err := MaskFromBytes([]byte{9}, 2, 5); !errors.Is(err, ErrMask) {
		t.Errorf("short: got %v", err)
	}
}

func TestMaskFromZeros(t *testing.T) {
	vals := []float64{0, 1, -2, 0, 5, 0}
	d := encode(t, vals, dtype.BF16)
	d[1] = 0x80 // element 0 is -0.0: still a zero
	m, err := MaskFromZeros(d, dtype.BF16, 2, 3)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range vals {
		if m.Get(k/3, k%3) != (v == 0) {
			t.Errorf("element %d (%g): pruned=%v", k, v, m.Get(k/3, k%3))
		}
	}
}

func TestMaskFileRoundTrip(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, MaskFileName)
	r := rand.New(rand.NewPCG(7, 8))
	masks := map[string]*Mask{}
	for i, dims := range [][2]int{{8, 16}, {3, 7}, {64, 33}} {
		m := NewMask(dims[0], dims[1])
		for a := 0; a < dims[0]; a++ {
			for b := 0; b < dims[1]; b++ {
				if r.IntN(2) == 0 {
					m.Set(a, b)
				}
			}
		}
		masks["model.layers."+string(rune('0'+i))+".mlp.up_proj.weight"] = m
	}
	if err := WriteMasks(path, masks); err != nil {
		t.Fatal(err)
	}
	got, err := ReadMasks(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(masks) {
		t.Fatalf("read %d masks, wrote %d", len(got), len(masks))
	}
	for n, m := range masks {
		g := got[n]
		if g == nil || g.Rows != m.Rows || g.Cols != m.Cols || !equalU64(g.Bits, m.Bits) {
			t.Errorf("%s: mask differs after round trip", n)
		}
	}
	// The file itself: U8 tensors + shapes and the layout keys in __metadata__.
	f, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Metadata["model.layers.1.mlp.up_proj.weight"] != "[3, 7]" || f.Metadata["bit_meaning"] != "1=pruned" || f.Metadata["bit_order"] != "little" {
		t.Errorf("metadata = %v", f.Metadata)
	}
	tt, ok := f.Tensor("model.layers.2.mlp.up_proj.weight")
	if !ok || tt.DType != dtype.U8 || len(tt.Shape) != 1 || tt.Shape[0] != (64*33+7)/8 {
		t.Errorf("tensor = %+v", tt)
	}
}

func equalU64(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestMaskWriterErrors(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, MaskFileName)
	w, err := CreateMaskWriter(path, []MaskShape{{"a.weight", 2, 2}, {"b.weight", 3, 3}})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write("a.weight", NewMask(2, 3)); !errors.Is(err, ErrMask) {
		t.Errorf("wrong shape: %v", err)
	}
	if err := w.Write("c.weight", NewMask(2, 2)); !errors.Is(err, ErrMask) {
		t.Errorf("undeclared: %v", err)
	}
	if err := w.Write("a.weight", NewMask(2, 2)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); !errors.Is(err, safetensors.ErrIncomplete) {
		t.Errorf("Close with a missing mask: %v", err)
	}
	if _, err := CreateMaskWriter(path, []MaskShape{{"format", 1, 1}}); !errors.Is(err, ErrMask) {
		t.Errorf("reserved name: %v", err)
	}
	// A mask file whose metadata lacks a shape is refused.
	bad := filepath.Join(dir, "bad.safetensors")
	if err := safetensors.WriteFile(bad, []safetensors.Spec{{Name: "x.weight", DType: dtype.U8, Shape: []int64{1}}}, [][]byte{{0}}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenMasks(bad); !errors.Is(err, ErrMask) || !strings.Contains(err.Error(), "x.weight") {
		t.Errorf("no shape: %v", err)
	}
}

func TestSparsityConfig(t *testing.T) {
	orig := []byte(`{"model_type": "llama", "hidden_size": 384, "rms_norm_eps": 1e-05, "chat": "<s>&"}`)
	sc := SparsityConfig{Format: Format24, GlobalSparsity: 0.4375, SparsityStructure: Structure24, Targets: []string{"Linear"}, Ignore: []string{"lm_head"}}
	packed, err := WithSparsityConfig(orig, sc)
	if err != nil {
		t.Fatal(err)
	}
	var top map[string]any
	if err := json.Unmarshal(packed, &top); err != nil {
		t.Fatal(err)
	}
	q := top["quantization_config"].(map[string]any)
	s := q["sparsity_config"].(map[string]any)
	if q["quant_method"] != "compressed-tensors" || q["version"] != "0.14.0" || s["format"] != "sparse-24-bitmask" ||
		s["global_sparsity"] != 0.4375 || s["sparsity_structure"] != "2:4" || s["targets"].([]any)[0] != "Linear" || s["ignore"].([]any)[0] != "lm_head" {
		t.Errorf("quantization_config = %v", q)
	}
	if !strings.Contains(string(packed), `1e-05`) || !strings.Contains(string(packed), `"<s>&"`) {
		t.Errorf("numbers or strings not kept verbatim:\n%s", packed)
	}
	if _, err := WithSparsityConfig(packed, sc); !errors.Is(err, ErrConfig) {
		t.Errorf("second WithSparsityConfig: %v", err)
	}
	stripped, got, err := StripSparsityConfig(packed)
	if err != nil {
		t.Fatal(err)
	}
	if got == nil || got.Format != Format24 || got.GlobalSparsity != 0.4375 {
		t.Errorf("stripped sparsity config = %+v", got)
	}
	var a, b map[string]any
	json.Unmarshal(orig, &a)
	json.Unmarshal(stripped, &b)
	if len(a) != len(b) || b["quantization_config"] != nil || b["rms_norm_eps"] != a["rms_norm_eps"] {
		t.Errorf("stripped config = %s", stripped)
	}
	if _, err := ReadSparsityConfig([]byte(`{"quantization_config": {"quant_method": "gptq"}}`)); !errors.Is(err, ErrConfig) {
		t.Errorf("gptq: %v", err)
	}
	if sc, err := ReadSparsityConfig(orig); sc != nil || err != nil {
		t.Errorf("plain config: %v %v", sc, err)
	}
}
