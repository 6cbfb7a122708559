package safetensors

import (
	"encoding/json"
	"fmt"
	"math"
	"math/bits"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/wanda-go/wanda/format/dtype"
)

// TestTinyLlamaModel reads the real bf16 model and checks every tensor against
// the shapes implied by its config.json.
func TestTinyLlamaModel(t *testing.T) {
	p := sharedFile(t, "models/tiny-llama-a/model.safetensors")
	dir := filepath.Dir(p)
	var cfg struct {
		Hidden int64 `json:"hidden_size"`
		Inter  int64 `json:"intermediate_size"`
		Layers int   `json:"num_hidden_layers"`
		Heads  int64 `json:"num_attention_heads"`
		KV     int64 `json:"num_key_value_heads"`
		HeadD  int64 `json:"head_dim"`
		Vocab  int64 `json:"vocab_size"`
	}
	b, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	want := map[string][]int64{
		"model.embed_tokens.weight": {cfg.Vocab, cfg.Hidden},
		"lm_head.weight":            {cfg.Vocab, cfg.Hidden},
		"model.norm.weight":         {cfg.Hidden},
	}
	for l := 0; l < cfg.Layers; l++ {
		pre := fmt.Sprintf("model.layers.%d.", l)
		want[pre+"self_attn.q_proj.weight"] = []int64{cfg.Heads * cfg.HeadD, cfg.Hidden}
		want[pre+"self_attn.k_proj.weight"] = []int64{cfg.KV * cfg.HeadD, cfg.Hidden}
		want[pre+"self_attn.v_proj.weight"] = []int64{cfg.KV * cfg.HeadD, cfg.Hidden}
		want[pre+"self_attn.o_proj.weight"] = []int64{cfg.Hidden, cfg.Heads * cfg.HeadD}
		want[pre+"mlp.gate_proj.weight"] = []int64{cfg.Inter, cfg.Hidden}
		want[pre+"mlp.up_proj.weight"] = []int64{cfg.Inter, cfg.Hidden}
		want[pre+"mlp.down_proj.weight"] = []int64{cfg.Hidden, cfg.Inter}
		want[pre+"input_layernorm.weight"] = []int64{cfg.Hidden}
		want[pre+"post_attention_layernorm.weight"] = []int64{cfg.Hidden}
	}
	s, err := OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	names := s.Names()
	if len(names) != 57 || len(want) != 57 {
		t.Fatalf("got %d tensors (config implies %d), want 57", len(names), len(want))
	}
	if s.Metadata()["format"] != "pt" {
		t.Errorf("metadata = %v", s.Metadata())
	}
	for _, n := range names {
		tn, err := s.Get(n)
		if err != nil {
			t.Fatal(err)
		}
		if tn.DType != dtype.BF16 {
			t.Errorf("%s: dtype %s, want BF16", n, tn.DType)
		}
		if !reflect.DeepEqual(tn.Shape, want[n]) {
			t.Errorf("%s: shape %v, want %v", n, tn.Shape, want[n])
		}
		raw := tn.Bytes()
		if int64(len(raw)) != tn.Numel()*2 {
			t.Fatalf("%s: %d bytes for %d elements", n, len(raw), tn.Numel())
		}
		f, err := tn.Float32()
		if err != nil {
			t.Fatal(err)
		}
		// Independent decode: bf16 is the top half of an f32.
		for i := range f {
			w := math.Float32frombits((uint32(raw[2*i]) | uint32(raw[2*i+1])<<8) << 16)
			if math.Float32bits(w) != math.Float32bits(f[i]) {
				t.Fatalf("%s[%d]: Float32 %v, manual decode %v", n, i, f[i], w)
			}
			if math.IsNaN(float64(w)) || math.IsInf(float64(w), 0) {
				t.Fatalf("%s[%d]: non-finite weight %v", n, i, w)
			}
		}
		if strings.HasSuffix(n, "layernorm.weight") || n == "model.norm.weight" {
			var mean float64
			for _, v := range f {
				mean += float64(v)
			}
			mean /= float64(len(f))
			if mean < 0.1 || mean > 10 {
				t.Errorf("%s: mean %v, implausible for a norm weight", n, mean)
			}
		}
		s.Release(n)
		// Data is still readable after Release (pages fault back in from the file).
		if g, err := tn.Float32(); err != nil || math.Float32bits(g[len(g)-1]) != math.Float32bits(f[len(f)-1]) {
			t.Fatalf("%s: data changed after Release: %v", n, err)
		}
	}
	if _, err := s.Get("model.layers.99.mlp.up_proj.weight"); err == nil || !strings.Contains(err.Error(), dir) {
		t.Errorf("Get of a missing tensor: %v", err)
	}
}

// TestReferenceFile reads the reference outputs: I32 ids and U8 packed masks,
// whose shapes are described in __metadata__.
func TestReferenceFile(t *testing.T) {
	p := sharedFile(t, "reference/tiny-llama-a/reference.safetensors")
	f, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ids, ok := f.Tensor("calib_input_ids")
	if !ok {
		t.Fatal("calib_input_ids missing")
	}
	if ids.DType != dtype.I32 || !reflect.DeepEqual(ids.Shape, []int64{128, 512}) {
		t.Fatalf("calib_input_ids: %s%v", ids.DType, ids.Shape)
	}
	v, err := ids.Int64s()
	if err != nil {
		t.Fatal(err)
	}
	for i, x := range v {
		if x < 0 || x >= 4096 {
			t.Fatalf("calib_input_ids[%d] = %d outside the 4096-token vocab", i, x)
		}
	}
	if _, err := ids.Float32(); err == nil {
		t.Error("Float32 of an I32 tensor should fail")
	}
	if wt, ok := f.Tensor("wikitext_test_ids"); !ok || wt.DType != dtype.I32 {
		t.Errorf("wikitext_test_ids missing or not I32")
	}
	nMasks := 0
	for _, tn := range f.Tensors() {
		if !strings.HasPrefix(tn.Name, "wanda:") {
			continue
		}
		nMasks++
		if tn.DType != dtype.U8 {
			t.Errorf("%s: dtype %s, want U8", tn.Name, tn.DType)
		}
		var shape []int64
		if err := json.Unmarshal([]byte(f.Metadata[tn.Name]), &shape); err != nil || len(shape) != 2 {
			t.Fatalf("%s: metadata shape %q: %v", tn.Name, f.Metadata[tn.Name], err)
		}
		if want := (shape[0]*shape[1] + 7) / 8; tn.Numel() != want {
			t.Errorf("%s: %d packed bytes, metadata shape %v needs %d", tn.Name, tn.Numel(), shape, want)
		}
		// Count pruned weights: unstructured 50%, 2:4 exactly half.
		var zeros int64
		for _, by := range tn.Bytes() {
			zeros += int64(bits.OnesCount8(by))
		}
		frac := float64(zeros) / float64(shape[0]*shape[1])
		if frac < 0.45 || frac > 0.6 {
			t.Errorf("%s: pruned fraction %.3f, want about 0.5", tn.Name, frac)
		}
	}
	if nMasks != 84 {
		t.Errorf("%d masks, want 84 (2 methods x 6 layers x 7 linears)", nMasks)
	}
}
