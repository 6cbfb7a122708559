package transform

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wanda-go/wanda/format/config"
	"github.com/wanda-go/wanda/format/dtype"
	"github.com/wanda-go/wanda/format/safetensors"
	"github.com/wanda-go/wanda/format/sparse"
)

func readSparsityConfig(t *testing.T, dir string) *sparse.SparsityConfig {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, ConfigName))
	if err != nil {
		t.Fatal(err)
	}
	sc, err := sparse.ReadSparsityConfig(b)
	if err != nil {
		t.Fatal(err)
	}
	return sc
}

// hasNegZero reports whether raw float data of dt holds -0.0.
func hasNegZero(b []byte, dt dtype.DType) bool {
	s := dt.Size()
	for k := 0; k+s <= len(b); k += s {
		if b[k+s-1] == 0x80 && bytes.Count(b[k:k+s-1], []byte{0}) == s-1 {
			return true
		}
	}
	return false
}

func TestPackUnpackRoundTrip(t *testing.T) {
	cases := []struct {
		fo         fixtureOpts
		format     sparse.Format
		wantFormat sparse.Format
		wantStruct string
	}{
		{fixtureOpts{dtype: "bf16", pattern: "2:4", seed: 1}, FormatAuto, sparse.Format24, "2:4"},
		{fixtureOpts{dtype: "f16", pattern: "2:4", maxShard: 60000, masks: true, seed: 2}, FormatAuto, sparse.Format24, "2:4"},
		{fixtureOpts{dtype: "f32", pattern: "2:4", seed: 3}, sparse.FormatBitmask, sparse.FormatBitmask, "2:4"},
		{fixtureOpts{dtype: "bf16", pattern: "unstructured", maxShard: 50000, seed: 4}, FormatAuto, sparse.FormatBitmask, "unstructured"},
		{fixtureOpts{dtype: "f32", pattern: "unstructured", masks: true, seed: 5}, "", sparse.FormatBitmask, "unstructured"},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%s_%s_%s_shard%d", c.fo.dtype, c.fo.pattern, c.format, c.fo.maxShard), func(t *testing.T) {
			f := makePruned(t, c.fo)
			work := t.TempDir()
			packed := filepath.Join(work, "packed")
			res, err := Pack(f.dir, packed, Options{Format: c.format, MaxShardBytes: c.fo.maxShard})
			if err != nil {
				t.Fatal(err)
			}
			if res.Format != c.wantFormat || res.Structure != c.wantStruct || len(res.Packed) != 14 {
				t.Fatalf("result %+v", res)
			}
			sc := readSparsityConfig(t, packed)
			if sc == nil || sc.Format != c.wantFormat || sc.SparsityStructure != c.wantStruct ||
				len(sc.Targets) != 1 || sc.Targets[0] != "Linear" || len(sc.Ignore) != 1 || sc.Ignore[0] != "lm_head" {
				t.Fatalf("sparsity_config %+v", sc)
			}
			// global sparsity: independent count of zeros over all float tensors
			var zeros, total int64
			for n, b := range f.tensors {
				dt, _ := dtype.Parse(f.dtypes[n])
				s := dt.Size()
				for k := 0; k < len(b); k += s {
					if bytes.Count(b[k:k+s], []byte{0}) == s {
						zeros++
					}
					total++
				}
			}
			if want := float64(zeros) / float64(total); sc.GlobalSparsity != want {
				t.Errorf("global_sparsity %v, want %v", sc.GlobalSparsity, want)
			}
			checkPackedFiles(t, packed, f, c.wantFormat)
			if c.fo.maxShard > 0 {
				if sh, _ := filepath.Glob(filepath.Join(packed, "model-*-of-*.safetensors")); len(sh) < 2 {
					t.Errorf("packed model not sharded: %v", sh)
				}
			}

			// The dense view of the packed directory.
			r, err := Open(packed)
			if err != nil {
				t.Fatal(err)
			}
			if r.Format() != c.wantFormat || len(r.Names()) != len(f.tensors) {
				t.Fatalf("Open: format %s, %d names", r.Format(), len(r.Names()))
			}
			for n, want := range f.tensors {
				got, err := r.Bytes(n)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, want) {
					t.Errorf("Open(%s).Bytes(%s) differs", packed, n)
				}
				sh, _ := r.Shape(n)
				if !equalShape(sh, f.shapes[n]) {
					t.Errorf("Shape(%s) = %v, want %v", n, sh, f.shapes[n])
				}
				r.Release(n)
			}
			r.Close()

			unpacked := filepath.Join(work, "unpacked")
			if err := Unpack(packed, unpacked, Options{MaxShardBytes: c.fo.maxShard}); err != nil {
				t.Fatal(err)
			}
			checkDenseEqual(t, unpacked, f)
			if readSparsityConfig(t, unpacked) != nil {
				t.Error("unpacked config.json still has a sparsity_config")
			}
			noTempDirs(t, work)
		})
	}
}

// checkPackedFiles inspects the packed tensors on disk: parts present with the
// layout's shapes and dtypes, no dense weight for a packed linear, unpacked
// linears and others untouched, no -0.0 anywhere.
func checkPackedFiles(t *testing.T, dir string, f *fixture, format sparse.Format) {
	t.Helper()
	set, err := safetensors.OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	for n, want := range f.tensors {
		dt, _ := dtype.Parse(f.dtypes[n])
		if _, p, ok := config.ParseLayerTensor(n); ok && p.IsLinear() {
			if _, ok := set.Tensor(n); ok {
				t.Errorf("%s stored dense in the packed model", n)
			}
			prefix, _ := sparse.Prefix(n)
			rows, cols := f.shapes[n][0], f.shapes[n][1]
			comp, ok1 := set.Tensor(prefix + ".compressed")
			bm, ok2 := set.Tensor(prefix + ".bitmask")
			sh, ok3 := set.Tensor(prefix + ".shape")
			if !ok1 || !ok2 || !ok3 {
				t.Fatalf("%s: packed parts missing", n)
			}
			if hasNegZero(comp.Bytes(), comp.DType) {
				t.Errorf("%s: -0.0 written", comp.Name)
			}
			v, _ := sh.Int64s()
			if comp.DType != dt || bm.DType != dtype.U8 || !equalShape(bm.Shape, []int64{rows, (cols + 7) / 8}) || sh.DType != dtype.I64 || v[0] != rows || v[1] != cols {
				t.Errorf("%s: parts %s%v %s%v %s%v=%v", n, comp.DType, comp.Shape, bm.DType, bm.Shape, sh.DType, sh.Shape, v)
			}
			switch format {
			case sparse.Format24:
				if !equalShape(comp.Shape, []int64{rows, cols / 2}) || !equalShape(sh.Shape, []int64{2, 1}) {
					t.Errorf("%s: 24 shapes %v %v", n, comp.Shape, sh.Shape)
				}
			case sparse.FormatBitmask:
				ro, ok := set.Tensor(prefix + ".row_offsets")
				nnz := rows*cols - int64(f.masks[n].Count())
				if !ok || !equalShape(ro.Shape, []int64{rows}) || !equalShape(comp.Shape, []int64{nnz}) || !equalShape(sh.Shape, []int64{2}) {
					t.Errorf("%s: bitmask shapes comp %v (nnz %d) shape %v", n, comp.Shape, nnz, sh.Shape)
				}
			}
			continue
		}
		tt, ok := set.Tensor(n)
		if !ok || !bytes.Equal(tt.Bytes(), want) {
			t.Errorf("%s not copied unchanged", n)
		}
	}
}

func TestPack24SizeBF16(t *testing.T) {
	f := makePruned(t, fixtureOpts{dtype: "bf16", pattern: "2:4", seed: 11})
	packed := filepath.Join(t.TempDir(), "packed")
	res, err := Pack(f.dir, packed, Options{Format: sparse.Format24})
	if err != nil {
		t.Fatal(err)
	}
	ratio := float64(res.PackedBytes) / float64(res.DenseBytes)
	t.Logf("bf16 2:4: %d linears, dense %d B, packed %d B (%.4f)", len(res.Packed), res.DenseBytes, res.PackedBytes, ratio)
	if ratio > 0.57 {
		t.Errorf("packed/dense = %.4f > 0.57", ratio)
	}
	// per tensor, measured on disk
	set, err := safetensors.OpenDir(packed)
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	for _, n := range res.Packed {
		prefix, _ := sparse.Prefix(n)
		var sz int64
		for _, s := range []string{".compressed", ".bitmask", ".shape"} {
			tt, _ := set.Tensor(prefix + s)
			sz += int64(len(tt.Bytes()))
		}
		if r := float64(sz) / float64(len(f.tensors[n])); r > 0.57 {
			t.Errorf("%s: packed/dense = %.4f > 0.57", n, r)
		}
	}
}

func TestPackRefusals(t *testing.T) {
	f := makePruned(t, fixtureOpts{dtype: "bf16", pattern: "unstructured", seed: 21})
	work := t.TempDir()
	out := filepath.Join(work, "out")
	_, err := Pack(f.dir, out, Options{Format: sparse.Format24})
	if !errors.Is(err, sparse.ErrNot24) || !strings.Contains(err.Error(), "model.layers.0.") || !strings.Contains(err.Error(), "columns") {
		t.Errorf("unstructured as 2:4: got %v", err)
	}
	if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("output created after a refusal")
	}
	noTempDirs(t, work)

	// -0.0 at a pruned position of a 2:4 model.
	g := makePruned(t, fixtureOpts{dtype: "bf16", pattern: "2:4", seed: 22})
	name := config.LayerTensor(1, config.PartUp)
	data := g.tensors[name]
	var k int
	for k = 0; g.masks[name].Bits[k>>6]&(1<<(uint(k)&63)) == 0; k++ {
	}
	data[2*k+1] = 0x80
	rewrite(t, g.dir, name, data)
	_, err = Pack(g.dir, out, Options{})
	if !errors.Is(err, sparse.ErrNegativeZero) || !strings.Contains(err.Error(), name) {
		t.Errorf("-0.0: got %v", err)
	}
	noTempDirs(t, work)

	// An existing output is never overwritten.
	if err := os.Mkdir(out, 0o755); err != nil {
		t.Fatal(err)
	}
	h := makePruned(t, fixtureOpts{dtype: "bf16", pattern: "2:4", seed: 23})
	if _, err := Pack(h.dir, out, Options{}); !errors.Is(err, ErrExists) {
		t.Errorf("existing output: got %v", err)
	}
	// Packing a packed model, unpacking a dense one.
	p := filepath.Join(work, "p")
	if _, err := Pack(h.dir, p, Options{}); err != nil {
		t.Fatal(err)
	}
	if _, err := Pack(p, filepath.Join(work, "pp"), Options{}); err == nil || !strings.Contains(err.Error(), "already packed") {
		t.Errorf("pack of packed: got %v", err)
	}
	if err := Unpack(h.dir, filepath.Join(work, "u"), Options{}); !errors.Is(err, ErrNotPacked) {
		t.Errorf("unpack of dense: got %v", err)
	}
}

// rewrite replaces one tensor's bytes in the single-file model in dir.
func rewrite(t *testing.T, dir, name string, data []byte) {
	t.Helper()
	path := filepath.Join(dir, safetensors.SingleName)
	f, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	var specs []safetensors.Spec
	var datas [][]byte
	for _, tt := range f.Tensors() {
		specs = append(specs, safetensors.Spec{Name: tt.Name, DType: tt.DType, Shape: tt.Shape})
		b := append([]byte(nil), tt.Bytes()...)
		if tt.Name == name {
			b = data
		}
		datas = append(datas, b)
	}
	meta := f.Metadata
	f.Close()
	if err := safetensors.WriteFile(path, specs, datas, meta); err != nil {
		t.Fatal(err)
	}
}

func TestPackMaskFileSelectsTargets(t *testing.T) {
	f := makePruned(t, fixtureOpts{dtype: "bf16", pattern: "2:4", seed: 31})
	// Only layer 0's linears are listed as pruned.
	sub := map[string]*sparse.Mask{}
	for n, m := range f.masks {
		if l, _, _ := config.ParseLayerTensor(n); l == 0 {
			sub[n] = m
		}
	}
	if err := sparse.WriteMasks(filepath.Join(f.dir, sparse.MaskFileName), sub); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(f.dir, sparse.MaskFileName))
	f.other[sparse.MaskFileName] = b
	work := t.TempDir()
	res, err := Pack(f.dir, filepath.Join(work, "p"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Packed) != 7 {
		t.Fatalf("packed %d tensors, want 7", len(res.Packed))
	}
	sc := readSparsityConfig(t, filepath.Join(work, "p"))
	if len(sc.Targets) != 7 || !strings.HasPrefix(sc.Targets[0], "model.layers.0.") {
		t.Errorf("targets %v", sc.Targets)
	}
	if err := Unpack(filepath.Join(work, "p"), filepath.Join(work, "u"), Options{}); err != nil {
		t.Fatal(err)
	}
	checkDenseEqual(t, filepath.Join(work, "u"), f)
}

func TestOpenDense(t *testing.T) {
	f := makePruned(t, fixtureOpts{dtype: "bf16", pattern: "2:4", seed: 41})
	r, err := Open(f.dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.Format() != sparse.FormatDense || r.SparsityConfig() != nil || len(r.Names()) != len(f.tensors) {
		t.Fatalf("dense Open: %s %v %d", r.Format(), r.SparsityConfig(), len(r.Names()))
	}
	n := config.LayerTensor(0, config.PartQ)
	v, sh, err := r.Float32(n)
	if err != nil {
		t.Fatal(err)
	}
	if !equalShape(sh, f.shapes[n]) || len(v) != int(sh[0]*sh[1]) {
		t.Fatalf("Float32 shape %v", sh)
	}
	for k, x := range v {
		want := dtype.BF16ToF32(uint16(f.tensors[n][2*k]) | uint16(f.tensors[n][2*k+1])<<8)
		if x != want {
			t.Fatalf("element %d = %v, want %v", k, x, want)
		}
	}
	if r.Packed(n) {
		t.Error("dense tensor reported packed")
	}
	if _, err := r.Bytes("nope"); !errors.Is(err, safetensors.ErrMissingTensor) {
		t.Errorf("missing tensor: %v", err)
	}
}

func TestOpenCorruptPacked(t *testing.T) {
	f := makePruned(t, fixtureOpts{dtype: "bf16", pattern: "2:4", seed: 51})
	p := filepath.Join(t.TempDir(), "p")
	if _, err := Pack(f.dir, p, Options{}); err != nil {
		t.Fatal(err)
	}
	// Claim the other format in config.json: the parts no longer fit.
	b, _ := os.ReadFile(filepath.Join(p, ConfigName))
	var top map[string]any
	json.Unmarshal(b, &top)
	top["quantization_config"].(map[string]any)["sparsity_config"].(map[string]any)["format"] = "sparse-bitmask"
	b, _ = json.Marshal(top)
	os.WriteFile(filepath.Join(p, ConfigName), b, 0o644)
	if _, err := Open(p); !errors.Is(err, ErrPacked) {
		t.Errorf("mismatched format: got %v", err)
	}
}
