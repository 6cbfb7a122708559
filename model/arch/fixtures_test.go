package arch

import (
	"maps"
	"path/filepath"
	"slices"
	"testing"

	"github.com/wanda-go/wanda/format/safetensors"
	"github.com/wanda-go/wanda/internal/testenv"
)

// TestFixtureTensors: the table names exactly the tensors (and shapes) of the
// reference models in ../shared: tiny-llama-a and one model per new architecture,
// written as the released checkpoints store them.
func TestFixtureTensors(t *testing.T) {
	dirs := []string{"models/tiny-llama-a"}
	for _, typ := range []string{"qwen3", "mixtral", "qwen3_moe", "qwen2_moe", "phi3", "gemma2", "gemma3_text"} {
		dirs = append(dirs, "models/arch/"+typ)
	}
	for _, rel := range dirs {
		t.Run(filepath.Base(rel), func(t *testing.T) {
			dir := testenv.SharedPath(t, rel)
			c, a, err := LoadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			set, err := safetensors.OpenDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer set.Close()
			want := map[string][]int64{}
			for _, n := range set.Names() {
				tt, _ := set.Tensor(n)
				want[n] = tt.Shape
			}
			got := map[string][]int64{}
			for _, s := range a.Tensors(c) {
				if _, dup := got[s.Name]; dup {
					t.Errorf("%s listed twice", s.Name)
				}
				got[s.Name] = s.Shape
			}
			for _, n := range slices.Sorted(maps.Keys(want)) {
				if g, ok := got[n]; !ok {
					t.Errorf("file tensor %s not in the table", n)
				} else if !slices.Equal(g, want[n]) {
					t.Errorf("%s: table shape %v, file %v", n, g, want[n])
				}
			}
			for _, n := range slices.Sorted(maps.Keys(got)) {
				if _, ok := want[n]; !ok {
					t.Errorf("table tensor %s not in the file", n)
				}
			}
			t.Logf("%s: %d tensors, layer types %v, window %d", c.ModelType, len(got), c.LayerTypes, c.SlidingWindow)
		})
	}
}
