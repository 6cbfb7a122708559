package transform

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/wanda-go/wanda/format/config"
	"github.com/wanda-go/wanda/format/peft"
	"github.com/wanda-go/wanda/format/safetensors"
	"github.com/wanda-go/wanda/format/sparse"
	"github.com/wanda-go/wanda/internal/modelgen"
)

// fixture is a generated pruned model.
type fixture struct {
	dir     string
	tensors map[string][]byte          // every tensor's bytes as written
	shapes  map[string][]int64         // every tensor's shape
	masks   map[string]*sparse.Mask    // pruned positions of each linear
	other   map[string][]byte          // non-weight files
	dtypes  map[string]string          // tensor -> dtype string
	cfg     map[string]json.RawMessage // config.json top level
}

type fixtureOpts struct {
	dtype    string // "bf16", "f16", "f32"
	pattern  string // "2:4" or "unstructured"
	maxShard int64
	masks    bool // write sparsity_masks.safetensors
	seed     uint64
}

// makePruned generates a dense model with internal/modelgen and prunes its seven
// linears per layer by zeroing (+0.0) a random selection: exactly 2 of every 4
// (sometimes 3) for "2:4", about 50% for "unstructured".
func makePruned(t *testing.T, o fixtureOpts) *fixture {
	t.Helper()
	src := filepath.Join(t.TempDir(), "dense")
	g := modelgen.Default()
	g.DType = o.dtype
	g.Seed = o.seed
	if err := modelgen.Write(src, g); err != nil {
		t.Fatal(err)
	}
	set, err := safetensors.OpenDir(src)
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	dir := filepath.Join(t.TempDir(), "pruned")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	f := &fixture{dir: dir, tensors: map[string][]byte{}, shapes: map[string][]int64{}, masks: map[string]*sparse.Mask{},
		other: map[string][]byte{}, dtypes: map[string]string{}}
	r := rand.New(rand.NewPCG(o.seed, 99))
	var specs []safetensors.Spec
	for _, n := range set.Names() {
		tt, _ := set.Tensor(n)
		specs = append(specs, safetensors.Spec{Name: n, DType: tt.DType, Shape: tt.Shape})
		data := append([]byte(nil), tt.Bytes()...)
		f.shapes[n] = tt.Shape
		f.dtypes[n] = tt.DType.String()
		if _, p, ok := config.ParseLayerTensor(n); ok && p.IsLinear() {
			f.masks[n] = pruneRandomly(r, data, tt.Shape, tt.DType.Size(), o.pattern)
		}
		f.tensors[n] = data
	}
	w, err := safetensors.Create(dir, specs, safetensors.WriterOptions{MaxShardBytes: o.maxShard, Metadata: map[string]string{"format": "pt"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range specs {
		if err := w.Write(s.Name, f.tensors[s.Name]); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(src)
	for _, e := range ents {
		if filepath.Ext(e.Name()) == ".safetensors" || e.Name() == safetensors.IndexName {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
		if e.Name() == ConfigName {
			if err := json.Unmarshal(b, &f.cfg); err != nil {
				t.Fatal(err)
			}
		} else {
			f.other[e.Name()] = b
		}
	}
	if err := peft.WriteTemplate(dir, nil, dir); err != nil {
		t.Fatal(err)
	}
	tpl := filepath.Join(peft.TemplateDir, peft.TemplateName)
	f.other[tpl], _ = os.ReadFile(filepath.Join(dir, tpl))
	f.other["README.md"] = []byte("pruned by a test\n")
	os.WriteFile(filepath.Join(dir, "README.md"), f.other["README.md"], 0o644)
	if o.masks {
		if err := sparse.WriteMasks(filepath.Join(dir, sparse.MaskFileName), f.masks); err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(filepath.Join(dir, sparse.MaskFileName))
		f.other[sparse.MaskFileName] = b
	}
	return f
}

// checkDenseEqual asserts that dir holds exactly want's tensors with the same
// bytes, dtypes and shapes, the same other files, and a config.json equal to
// want's (as JSON, without quantization_config).
func checkDenseEqual(t *testing.T, dir string, want *fixture) {
	t.Helper()
	set, err := safetensors.OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	names := set.Names()
	var wantNames []string
	for n := range want.tensors {
		wantNames = append(wantNames, n)
	}
	sort.Strings(wantNames)
	if len(names) != len(wantNames) {
		t.Fatalf("%s: %d tensors, want %d", dir, len(names), len(wantNames))
	}
	for i, n := range names {
		if n != wantNames[i] {
			t.Fatalf("%s: tensor %d is %q, want %q", dir, i, n, wantNames[i])
		}
		tt, _ := set.Tensor(n)
		if tt.DType.String() != want.dtypes[n] || !equalShape(tt.Shape, want.shapes[n]) {
			t.Errorf("%s: %s%v, want %s%v", n, tt.DType, tt.Shape, want.dtypes[n], want.shapes[n])
		}
		if !bytes.Equal(tt.Bytes(), want.tensors[n]) {
			t.Errorf("%s: tensor bytes differ", n)
		}
	}
	for name, b := range want.other {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || !bytes.Equal(got, b) {
			t.Errorf("%s: file %s not copied unchanged (%v)", dir, name, err)
		}
	}
	var cfg map[string]json.RawMessage
	b, err := os.ReadFile(filepath.Join(dir, ConfigName))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	if len(cfg) != len(want.cfg) {
		t.Errorf("config.json has %d keys, want %d", len(cfg), len(want.cfg))
	}
	for k, v := range want.cfg {
		var a, c any
		json.Unmarshal(v, &a)
		json.Unmarshal(cfg[k], &c)
		ja, _ := json.Marshal(a)
		jc, _ := json.Marshal(c)
		if !bytes.Equal(ja, jc) {
			t.Errorf("config.json %q = %s, want %s", k, jc, ja)
		}
	}
}

func equalShape(a, b []int64) bool {
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

// noTempDirs asserts that parent holds no leftover ".X.tmp-" directories.
func noTempDirs(t *testing.T, parent string) {
	t.Helper()
	ents, _ := os.ReadDir(parent)
	for _, e := range ents {
		if len(e.Name()) > 0 && e.Name()[0] == '.' {
			t.Errorf("leftover %s in %s", e.Name(), parent)
		}
	}
}

// pruneRandomly zeroes entries of the [rows, cols] tensor data (elements of size bytes) in
// groups of 4 consecutive entries: 2 or (25%) 3 of every 4 for "2:4", each with probability
// 1/2 otherwise; it returns the mask of the zeroed entries.
func pruneRandomly(r *rand.Rand, data []byte, shape []int64, size int, pattern string) *sparse.Mask {
	rows, cols := int(shape[0]), int(shape[1])
	m := sparse.NewMask(rows, cols)
	for k := 0; k < rows*cols; k += 4 {
		var drop []int
		if pattern == "2:4" {
			drop = r.Perm(4)[:2+r.IntN(4)/3]
		} else {
			for q := 0; q < 4; q++ {
				if r.IntN(2) == 0 {
					drop = append(drop, q)
				}
			}
		}
		for _, q := range drop {
			clear(data[(k+q)*size : (k+q+1)*size])
			m.Set((k+q)/cols, (k+q)%cols)
		}
	}
	return m
}
