package safetensors

import (
	"encoding/binary"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wanda-go/wanda/format/dtype"
)

// stFile builds safetensors bytes from a literal header (unpadded) and data.
func stFile(header string, data []byte) []byte {
	b := make([]byte, 8, 8+len(header)+len(data))
	binary.LittleEndian.PutUint64(b, uint64(len(header)))
	b = append(b, header...)
	return append(b, data...)
}

// rawLen builds a file whose length field is n, followed by rest.
func rawLen(n uint64, rest string) []byte {
	b := make([]byte, 8)
	binary.LittleEndian.PutUint64(b, n)
	return append(b, rest...)
}

func TestMalformedFiles(t *testing.T) {
	cases := []struct {
		name   string
		file   []byte
		want   []error
		tensor string // must appear in the message when set
	}{
		{"empty file", []byte{}, []error{ErrMalformedHeader}, ""},
		{"truncated file", []byte{1, 2, 3, 4, 5}, []error{ErrMalformedHeader}, ""},
		{"truncated header", rawLen(100, `{"a":{"dtype":"F32"`), []error{ErrMalformedHeader}, ""},
		{"header length huge", rawLen(1<<63, `{}`), []error{ErrHeaderTooLarge}, ""},
		{"header length over cap", rawLen(MaxHeaderSize+1, `{}`), []error{ErrHeaderTooLarge}, ""},
		{"header length past EOF", rawLen(1000, `{}`), []error{ErrMalformedHeader}, ""},
		{"zero header length", rawLen(0, ``), []error{ErrMalformedHeader}, ""},
		{"bad JSON", stFile(`{"a":{"dtype":"F32",,}}`, nil), []error{ErrMalformedHeader}, ""},
		{"not an object", stFile(`[1,2]   `, nil), []error{ErrMalformedHeader}, ""},
		{"entry not an object", stFile(`{"a":7}`, nil), []error{ErrMalformedHeader}, "a"},
		{"trailing garbage", stFile(`{} x`, nil), []error{ErrMalformedHeader}, ""},
		{"missing field", stFile(`{"w":{"dtype":"F32","shape":[1]}}`, make([]byte, 4)), []error{ErrMalformedHeader}, "w"},
		{"three offsets", stFile(`{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}}`, make([]byte, 4)), []error{ErrMalformedHeader}, "w"},
		{"metadata not strings", stFile(`{"__metadata__":{"a":1}}`, nil), []error{ErrMalformedHeader}, "__metadata__"},
		{"overlapping offsets", stFile(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}`, make([]byte, 12)), []error{ErrOverlap}, "b"},
		{"identical offsets", stFile(`{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"I8","shape":[4],"data_offsets":[0,4]}}`, make([]byte, 4)), []error{ErrOverlap}, "b"},
		{"offsets past EOF", stFile(`{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}`, make([]byte, 8)), []error{ErrOutOfBounds}, "a"},
		{"negative offset", stFile(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}}`, make([]byte, 8)), []error{ErrOutOfBounds}, "a"},
		{"end before begin", stFile(`{"a":{"dtype":"U8","shape":[0],"data_offsets":[4,0]}}`, make([]byte, 4)), []error{ErrOutOfBounds}, "a"},
		{"gap in data", stFile(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}`, make([]byte, 12)), []error{ErrUncoveredData}, "b"},
		{"gap at start", stFile(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, make([]byte, 8)), []error{ErrUncoveredData}, "a"},
		{"trailing data", stFile(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, make([]byte, 9)), []error{ErrUncoveredData}, ""},
		{"data with no tensors", stFile(`{}`, make([]byte, 3)), []error{ErrUncoveredData}, ""},
		{"size mismatch", stFile(`{"a":{"dtype":"BF16","shape":[3],"data_offsets":[0,4]}}`, make([]byte, 4)), []error{ErrSizeMismatch}, "a"},
		{"negative dim", stFile(`{"a":{"dtype":"F32","shape":[-1,-4],"data_offsets":[0,16]}}`, make([]byte, 16)), []error{ErrSizeMismatch}, "a"},
		{"overflow dims", stFile(`{"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,0]}}`, nil), []error{ErrSizeMismatch}, "a"},
		{"overflow bytes", stFile(`{"a":{"dtype":"F64","shape":[2305843009213693952],"data_offsets":[0,0]}}`, nil), []error{ErrSizeMismatch}, "a"},
		{"dim beyond int64", stFile(`{"a":{"dtype":"F32","shape":[18446744073709551616],"data_offsets":[0,0]}}`, nil), []error{ErrMalformedHeader}, "a"},
		{"unknown dtype", stFile(`{"a":{"dtype":"F8_E4M3","shape":[1],"data_offsets":[0,1]}}`, make([]byte, 1)), []error{ErrMalformedHeader, dtype.ErrUnknownDType}, "F8_E4M3"},
		{"duplicate name", stFile(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}`, make([]byte, 2)), []error{ErrMalformedHeader, ErrDuplicateTensor}, `"a"`},
		{"duplicate metadata", stFile(`{"__metadata__":{},"__metadata__":{}}`, nil), []error{ErrMalformedHeader}, "__metadata__"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "broken-"+strings.ReplaceAll(c.name, " ", "_")+".safetensors")
			if err := os.WriteFile(path, c.file, 0o644); err != nil {
				t.Fatal(err)
			}
			var f *File
			var err error
			func() {
				defer func() {
					if r := recover(); r != nil {
						t.Fatalf("Open panicked: %v", r)
					}
				}()
				f, err = Open(path)
			}()
			if err == nil {
				f.Close()
				t.Fatalf("Open succeeded, want %v", c.want)
			}
			for _, w := range c.want {
				if !errors.Is(err, w) {
					t.Errorf("error %q does not wrap %v", err, w)
				}
			}
			if !strings.Contains(err.Error(), path) {
				t.Errorf("error %q does not name the file", err)
			}
			if c.tensor != "" && !strings.Contains(err.Error(), c.tensor) {
				t.Errorf("error %q does not name %q", err, c.tensor)
			}
			// The same file as a one-file model directory gives the same error.
			dir := t.TempDir()
			single := filepath.Join(dir, SingleName)
			if err := os.WriteFile(single, c.file, 0o644); err != nil {
				t.Fatal(err)
			}
			if _, err := OpenDir(dir); !errors.Is(err, c.want[0]) || !strings.Contains(err.Error(), single) {
				t.Errorf("OpenDir: %v", err)
			}
		})
	}
}

// TestMalformedIndex covers the sharded-model index.
func TestMalformedIndex(t *testing.T) {
	good := stFile(`{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}}`, []byte{1, 2})
	cases := []struct {
		name    string
		index   string
		shards  map[string][]byte
		want    []error
		mention []string // file name (relative to dir) or tensor name
	}{
		{"missing shard", `{"metadata":{},"weight_map":{"a":"s1.safetensors","b":"s2.safetensors"}}`,
			map[string][]byte{"s1.safetensors": good}, []error{ErrMissingShard}, []string{"s2.safetensors", IndexName}},
		{"bad JSON", `{"weight_map":{"a":"s1.safetensors",}}`, map[string][]byte{"s1.safetensors": good},
			[]error{ErrMalformedHeader}, []string{IndexName}},
		{"truncated JSON", `{"weight_map":{"a":"s1.safe`, map[string][]byte{"s1.safetensors": good},
			[]error{ErrMalformedHeader}, []string{IndexName}},
		{"no weight_map", `{"metadata":{"total_size":2}}`, map[string][]byte{"s1.safetensors": good},
			[]error{ErrMalformedHeader}, []string{IndexName}},
		{"shard not a string", `{"weight_map":{"a":1}}`, nil, []error{ErrMalformedHeader}, []string{IndexName, `"a"`}},
		{"path traversal", `{"weight_map":{"a":"../s1.safetensors"}}`, nil, []error{ErrMalformedHeader}, []string{IndexName, "../s1.safetensors"}},
		{"duplicate key", `{"weight_map":{"a":"s1.safetensors","a":"s1.safetensors"}}`, map[string][]byte{"s1.safetensors": good},
			[]error{ErrMalformedHeader, ErrDuplicateTensor}, []string{IndexName, `"a"`}},
		{"tensor absent from shard", `{"weight_map":{"a":"s1.safetensors","zz":"s1.safetensors"}}`, map[string][]byte{"s1.safetensors": good},
			[]error{ErrMissingTensor}, []string{"s1.safetensors", `"zz"`}},
		{"corrupt shard", `{"weight_map":{"a":"s1.safetensors"}}`, map[string][]byte{"s1.safetensors": good[:12]},
			[]error{ErrMalformedHeader}, []string{"s1.safetensors"}},
		{"empty dir", "", nil, []error{ErrMissingShard}, []string{SingleName}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			if c.index != "" {
				if err := os.WriteFile(filepath.Join(dir, IndexName), []byte(c.index), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			for n, b := range c.shards {
				if err := os.WriteFile(filepath.Join(dir, n), b, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			var err error
			func() {
				defer func() {
					if r := recover(); r != nil {
						t.Fatalf("OpenDir panicked: %v", r)
					}
				}()
				var s *Set
				s, err = OpenDir(dir)
				if err == nil {
					s.Close()
				}
			}()
			if err == nil {
				t.Fatalf("OpenDir succeeded, want %v", c.want)
			}
			for _, w := range c.want {
				if !errors.Is(err, w) {
					t.Errorf("error %q does not wrap %v", err, w)
				}
			}
			for _, m := range c.mention {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q does not mention %q", err, m)
				}
			}
		})
	}
}

// TestEdgeCases: valid but unusual files.
func TestEdgeCases(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	open := func(p string) *File {
		f, err := Open(p)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return f
	}

	// No tensors at all.
	f := open(write("empty.safetensors", stFile(`{}`, nil)))
	if len(f.Tensors()) != 0 || f.Metadata != nil {
		t.Errorf("empty: %v %v", f.Tensors(), f.Metadata)
	}

	// Zero-length tensors (several at the same offset), a scalar, and an F32
	// tensor whose data is not 4-byte aligned in the file (header length 1 mod 4).
	hdr := `{"__metadata__":{"k":"v"},"z1":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},` +
		`"z2":{"dtype":"BF16","shape":[3,0],"data_offsets":[0,0]},` +
		`"u":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},` +
		`"w":{"dtype":"F32","shape":[2],"data_offsets":[1,9]},` +
		`"s":{"dtype":"I16","shape":[],"data_offsets":[9,11]},` +
		`"z3":{"dtype":"I64","shape":[0],"data_offsets":[11,11]}}`
	for (8+len(hdr)+1)%4 == 0 {
		hdr += " "
	}
	data := []byte{7}
	data = binary.LittleEndian.AppendUint32(data, math.Float32bits(1.5))
	data = binary.LittleEndian.AppendUint32(data, math.Float32bits(-3))
	data = binary.LittleEndian.AppendUint16(data, 0xfffe)
	f = open(write("odd.safetensors", stFile(hdr, data)))
	if f.Metadata["k"] != "v" {
		t.Errorf("metadata %v", f.Metadata)
	}
	for _, n := range []string{"z1", "z2", "z3"} {
		tn, _ := f.Tensor(n)
		if tn.Numel() != 0 || tn.Bytes() == nil || len(tn.Bytes()) != 0 {
			t.Errorf("%s: numel %d bytes %v", n, tn.Numel(), tn.Bytes())
		}
		f.Release(tn)
	}
	z1, _ := f.Tensor("z1")
	if v, err := z1.Float32(); err != nil || len(v) != 0 {
		t.Errorf("z1 Float32: %v %v", v, err)
	}
	w, _ := f.Tensor("w")
	if w.aligned() {
		t.Fatal("test setup: w should be unaligned")
	}
	b := w.Bytes()
	if &b[0] == &f.mm[w.begin] {
		t.Error("unaligned data handed out as a view")
	}
	if v, err := w.Float32(); err != nil || v[0] != 1.5 || v[1] != -3 {
		t.Errorf("w = %v, %v", v, err)
	}
	f.Release(w)
	if v, err := w.Float32(); err != nil || v[1] != -3 {
		t.Errorf("w after Release = %v, %v", v, err)
	}
	s, _ := f.Tensor("s")
	if iv, err := s.Int64s(); err != nil || len(iv) != 1 || iv[0] != -2 || s.Numel() != 1 {
		t.Errorf("scalar = %v, %v", iv, err)
	}
	// Order: by data offset.
	var order []string
	for _, tn := range f.Tensors() {
		order = append(order, tn.Name)
	}
	if strings.Join(order, ",") != "z1,z2,u,w,s,z3" {
		t.Errorf("order %v", order)
	}
	// Views are invalid after Close: Bytes returns nil rather than faulting.
	f.Close()
	u, _ := f.Tensor("u")
	if u.Bytes() != nil {
		t.Error("Bytes after Close should be nil")
	}
	if _, err := u.Int64s(); err == nil {
		t.Error("Int64s after Close should fail")
	}
}
