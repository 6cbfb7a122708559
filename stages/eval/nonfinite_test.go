package eval

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wanda-go/wanda/format/config"
	"github.com/wanda-go/wanda/format/safetensors"
	"github.com/wanda-go/wanda/internal/modelgen"
)

// corrupted generates a small bf16 model and rewrites it with edit applied to
// the bytes of tensor name; it returns the opened weights and config.
func corrupted(t *testing.T, name string, edit func(b []byte)) (*safetensors.Set, *config.Config) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "m")
	if err := modelgen.Write(dir, modelgen.Default()); err != nil {
		t.Fatal(err)
	}
	set, err := safetensors.OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var specs []safetensors.Spec
	var data [][]byte
	for _, n := range set.Names() {
		tt, _ := set.Tensor(n)
		b := append([]byte(nil), tt.Bytes()...)
		if n == name {
			edit(b)
		}
		specs = append(specs, safetensors.Spec{Name: n, DType: tt.DType, Shape: tt.Shape})
		data = append(data, b)
	}
	set.Close()
	if err := safetensors.WriteFile(filepath.Join(dir, safetensors.SingleName), specs, data, nil); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if set, err = safetensors.OpenDir(dir); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { set.Close() })
	return set, cfg
}

// bf16At sets element k of bf16 bytes b to the bf16 bits v.
func bf16At(b []byte, k int, v uint16) { b[2*k], b[2*k+1] = byte(v), byte(v>>8) }

const (
	bf16NaN  = 0x7fc0
	bf16Inf  = 0x7f80
	bf16Huge = 0x7f7f // the largest finite bf16, about 3.4e38
)

// TestNonFinite: NaN or ±Inf weights, or activations that overflow, are an
// error naming where they appear and the tensor holding them, never a NaN
// perplexity.
func TestNonFinite(t *testing.T) {
	down1 := config.LayerTensor(1, config.PartDown)
	for _, tc := range []struct {
		name   string
		tensor string
		edit   func(b []byte)
		says   []string
	}{
		{"NaN in a layer", down1, func(b []byte) { bf16At(b, 70, bf16NaN) },
			[]string{"layer 1 produced NaN activations", "tensor " + down1 + " holds NaN at [0, 70]"}},
		{"Inf in a layer", config.LayerTensor(0, config.PartQ), func(b []byte) { bf16At(b, 3*64+1, bf16Inf) },
			[]string{"layer 0 produced", "tensor " + config.LayerTensor(0, config.PartQ) + " holds +Inf at [3, 1]"}},
		{"NaN embedding", config.EmbedTokens, func(b []byte) {
			for j := range 64 {
				bf16At(b, 5*64+j, bf16NaN) // token id 5's row
			}
		}, []string{"embedding of token id 5", "tensor " + config.EmbedTokens + " holds NaN at [5, 0] (64 non-finite values)"}},
		{"NaN lm_head", config.LMHead, func(b []byte) { bf16At(b, 7, bf16NaN) },
			[]string{"loss (final norm and lm_head)", "tensor " + config.LMHead + " holds NaN at [0, 7]"}},
		{"overflow", config.LayerTensor(0, config.PartUp), func(b []byte) {
			for k := range len(b) / 2 {
				bf16At(b, k, bf16Huge)
			}
		}, []string{"layer 0 produced", "the weights used there are finite, so the computation overflowed"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			set, cfg := corrupted(t, tc.tensor, tc.edit)
			ids := make([]int32, 64)
			for i := range ids {
				ids[i] = int32(i % 11)
			}
			res, err := Perplexity(context.Background(), set, cfg, ids, Options{SeqLen: 16})
			if !errors.Is(err, ErrNonFinite) {
				t.Fatalf("ppl %v, err %v: want ErrNonFinite", res.PPL, err)
			}
			for _, w := range tc.says {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}
