package allocate

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func tensorNames(layers int) []string {
	var out []string
	for l := range layers {
		for _, m := range []string{"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
			"mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"} {
			out = append(out, fmt.Sprintf("model.layers.%d.%s.weight", l, m))
		}
	}
	return out
}

func TestFileResolve(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sparsity.json")
	src := `{
  "default": 0.5,
  "layers": [0.4, null, 0.6],
  "tensors": [
    {"match": "self_attn\\.[qk]_proj", "sparsity": 0.3},
    {"match": "^model\\.layers\\.2\\.mlp\\.down_proj\\.weight$", "sparsity": 0},
    {"match": "q_proj", "sparsity": 0.9}
  ]
}`
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Check(3, tensorNames(3)); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		layer  int
		tensor string
		want   float64
		src    Source
	}{
		{0, "model.layers.0.self_attn.q_proj.weight", 0.3, FromTensorRule}, // first rule wins over the third
		{1, "model.layers.1.self_attn.k_proj.weight", 0.3, FromTensorRule},
		{0, "model.layers.0.self_attn.v_proj.weight", 0.4, FromLayer},
		{1, "model.layers.1.mlp.up_proj.weight", 0.5, FromDefault}, // null layer entry
		{2, "model.layers.2.mlp.down_proj.weight", 0, FromTensorRule},
		{2, "model.layers.2.mlp.gate_proj.weight", 0.6, FromLayer},
		{7, "model.layers.7.mlp.gate_proj.weight", 0.5, FromDefault}, // beyond the list
	} {
		got, src := f.Sparsity(c.layer, c.tensor, 0.77)
		if got != c.want || src != c.src {
			t.Errorf("%s: %v from %s, want %v from %s", c.tensor, got, src, c.want, c.src)
		}
	}

	g, err := ParseFile("only-layers.json", []byte(`{"layers": [0.1, 0.2]}`))
	if err != nil {
		t.Fatal(err)
	}
	if s, src := g.Sparsity(1, "model.layers.1.mlp.up_proj.weight", 0.77); s != 0.2 || src != FromLayer {
		t.Errorf("layer entry: %v %s", s, src)
	}
	g.Layers[1] = nil
	if s, src := g.Sparsity(1, "model.layers.1.mlp.up_proj.weight", 0.77); s != 0.77 || src != FromFallback {
		t.Errorf("fallback: %v %s", s, src)
	}
}

// TestFileErrors: each bad file is rejected with ErrBadFile and a message naming the file
// and the entry.
func TestFileErrors(t *testing.T) {
	for _, c := range []struct {
		src  string
		want []string
	}{
		{``, []string{"empty file"}},
		{`{}`, []string{"sets no sparsity"}},
		{`[0.5]`, []string{"line 1", "want an object, got a JSON array"}},
		{`{"default": 0.5,}`, []string{"line 1 column"}},
		{"{\n  \"default\": 0.5,\n  \"layers\": [0.1, \"x\"]\n}", []string{"line 3", "layers: want a number, got a JSON string"}},
		{`{"default": 1}`, []string{"default", "out of range"}},
		{`{"default": -0.1}`, []string{"default", "out of range"}},
		{`{"layers": [0.1, 0.2, 1.5]}`, []string{"layers[2]", "1.5"}},
		{`{"tensors": [{"match": "q_proj", "sparsity": 0.2}, {"match": "(", "sparsity": 0.2}]}`, []string{"tensors[1]", `"("`}},
		{`{"tensors": [{"match": "q_proj"}]}`, []string{"tensors[0]", "no \"sparsity\""}},
		{`{"tensors": [{"sparsity": 0.2}]}`, []string{"tensors[0]", "no \"match\""}},
		{`{"tensors": [{"match": "", "sparsity": 0.2}]}`, []string{"tensors[0]", "empty"}},
		{`{"tensors": [{"match": "q", "sparsity": 2}]}`, []string{"tensors[0]", `"q"`, "out of range"}},
		{`{"tensors": [{"match": "q", "sparsity": 0.2, "ratio": 1}]}`, []string{"unknown field", "ratio"}},
		{`{"defaults": 0.5}`, []string{"unknown field", "defaults", "known keys"}},
		{`{"default": 0.5} {"default": 0.6}`, []string{"more than one JSON value"}},
		{`{"default": 0.5} x`, []string{"more than one JSON value"}},
	} {
		_, err := ParseFile("s.json", []byte(c.src))
		if !errors.Is(err, ErrBadFile) {
			t.Errorf("%q: %v, want ErrBadFile", c.src, err)
			continue
		}
		msg := err.Error()
		for _, w := range append(c.want, "s.json") {
			if !strings.Contains(msg, w) {
				t.Errorf("%q: %q does not say %q", c.src, msg, w)
			}
		}
	}
	if _, err := LoadFile(filepath.Join(t.TempDir(), "missing.json")); !errors.Is(err, ErrBadFile) || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

func TestFileCheck(t *testing.T) {
	f, err := ParseFile("s.json", []byte(`{"layers": [0.1, 0.2], "tensors": [{"match": "q_proj", "sparsity": 0.3}, {"match": "qproj", "sparsity": 0.3}]}`))
	if err != nil {
		t.Fatal(err)
	}
	err = f.Check(3, tensorNames(3))
	if !errors.Is(err, ErrBadFile) || !strings.Contains(err.Error(), "2 entries") || !strings.Contains(err.Error(), "3 decoder layers") {
		t.Errorf("layer count: %v", err)
	}
	err = f.Check(2, tensorNames(2))
	if !errors.Is(err, ErrBadFile) || !strings.Contains(err.Error(), `tensors[1] ("qproj") matches none`) {
		t.Errorf("unmatched rule: %v", err)
	}
}
