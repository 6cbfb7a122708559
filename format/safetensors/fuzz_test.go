package safetensors

import (
	"bytes"
	"encoding/binary"
	"math/big"
	"os"
	"path/filepath"
	"testing"
)

// FuzzHeader feeds arbitrary bytes as a safetensors file. Parsing must never
// panic, and when it succeeds every invariant of a valid file must hold.
func FuzzHeader(f *testing.F) {
	f.Add(stFile(`{}`, nil))
	f.Add(stFile(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, make([]byte, 8)))
	f.Fuzz(func(t *testing.T, b []byte) {
		const name = "fuzz.safetensors"
		h, err := parseHeader(name, b)
		if err != nil {
			if !bytes.Contains([]byte(err.Error()), []byte(name)) {
				t.Fatalf("error %q does not name the file", err)
			}
			return
		}
		checkInvariants(t, b, h)

		// The mmap path agrees and decoding every tensor is safe.
		if len(b) > 1<<16 {
			return
		}
		p := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		file, err := Open(p)
		if err != nil {
			t.Fatalf("parseHeader accepted but Open failed: %v", err)
		}
		defer file.Close()
		if len(file.Tensors()) != len(h.entries) {
			t.Fatalf("Open found %d tensors, parseHeader %d", len(file.Tensors()), len(h.entries))
		}
		for _, tn := range file.Tensors() {
			raw := tn.Bytes()
			if int64(len(raw)) != tn.Numel()*int64(tn.DType.Size()) || !bytes.Equal(raw, b[tn.begin:tn.end]) {
				t.Fatalf("%s: Bytes disagree with the file", tn.Name)
			}
			if tn.DType.IsFloat() {
				if v, err := tn.Float32(); err != nil || int64(len(v)) != tn.Numel() {
					t.Fatalf("%s: Float32: %v", tn.Name, err)
				}
			} else if v, err := tn.Int64s(); err != nil || int64(len(v)) != tn.Numel() {
				t.Fatalf("%s: Int64s: %v", tn.Name, err)
			}
			file.Release(tn)
		}
	})
}

func checkInvariants(t *testing.T, b []byte, h *header) {
	t.Helper()
	n := binary.LittleEndian.Uint64(b)
	if n > MaxHeaderSize || h.dataOff != 8+int64(n) || h.dataOff > int64(len(b)) {
		t.Fatalf("header length %d, data offset %d, file %d", n, h.dataOff, len(b))
	}
	pos := h.dataOff
	seen := map[string]bool{}
	for _, e := range h.entries {
		if seen[e.name] || e.name == metadataKey {
			t.Fatalf("duplicate or reserved name %q", e.name)
		}
		seen[e.name] = true
		if e.begin != pos || e.end < e.begin || e.end > int64(len(b)) {
			t.Fatalf("%s: span [%d,%d) not contiguous from %d in %d bytes", e.name, e.begin, e.end, pos, len(b))
		}
		pos = e.end
		if !e.dt.Valid() {
			t.Fatalf("%s: invalid dtype", e.name)
		}
		// Independent size check in arbitrary precision: dims are
		// non-negative and prod(shape)*size equals the span.
		want := big.NewInt(int64(e.dt.Size()))
		for _, d := range e.shape {
			if d < 0 {
				t.Fatalf("%s: negative dim", e.name)
			}
			want.Mul(want, big.NewInt(d))
		}
		if want.Cmp(big.NewInt(e.end-e.begin)) != 0 {
			t.Fatalf("%s: %s%v spans %d bytes, want %v", e.name, e.dt, e.shape, e.end-e.begin, want)
		}
	}
	if pos != int64(len(b)) {
		t.Fatalf("data section not covered: ends at %d of %d", pos, len(b))
	}
}
