package sparse

import (
	"bytes"
	"testing"

	"github.com/wanda-go/wanda/format/dtype"
)

// fuzzDType maps a byte to one of the float dtypes (or an invalid one).
func fuzzDType(b uint8) dtype.DType {
	return [...]dtype.DType{dtype.F32, dtype.F16, dtype.BF16, dtype.F64, dtype.I8}[int(b)%5]
}

// FuzzUnpack24: arbitrary bitmask/values/dims never panic; whatever unpacks
// without zeros among the kept values packs back to the same bytes.
func FuzzUnpack24(f *testing.F) {
	f.Fuzz(func(t *testing.T, compressed, bitmask []byte, rows, cols int, dt uint8) {
		d := fuzzDType(dt)
		dense, err := Unpack24(compressed, bitmask, d, rows, cols)
		if err != nil {
			return
		}
		if len(dense) != rows*cols*d.Size() {
			t.Fatalf("dense has %d bytes for [%d, %d] %s", len(dense), rows, cols, d)
		}
		size := d.Size()
		for k := 0; k < len(compressed); k += size {
			if zeroKind(compressed[k:k+size]) != 0 {
				return // kept zeros may be re-selected differently; -0.0 is refused by Pack24
			}
		}
		c2, b2, err := Pack24(dense, d, rows, cols)
		if err != nil {
			t.Fatalf("repack: %v", err)
		}
		if !bytes.Equal(c2, compressed) || !bytes.Equal(b2, bitmask) {
			t.Fatalf("repack differs")
		}
	})
}

// FuzzUnpackBitmask: arbitrary inputs never panic; a successful unpack of
// nonzero values packs back to the same bytes.
func FuzzUnpackBitmask(f *testing.F) {
	f.Fuzz(func(t *testing.T, compressed, bitmask, offsets []byte, rows, cols int, dt uint8) {
		d := fuzzDType(dt)
		offs := make([]int64, len(offsets))
		var acc int64
		for i, o := range offsets { // small deltas make valid offsets reachable
			acc += int64(o)
			offs[i] = acc
		}
		dense, err := UnpackBitmask(compressed, bitmask, offs, d, rows, cols)
		if err != nil {
			return
		}
		size := d.Size()
		for k := 0; k < len(compressed); k += size {
			if zeroKind(compressed[k:k+size]) != 0 {
				return
			}
		}
		c2, b2, o2, err := PackBitmask(dense, d, rows, cols)
		if err != nil {
			t.Fatalf("repack: %v", err)
		}
		if !bytes.Equal(c2, compressed) || !bytes.Equal(b2, bitmask) || !equalI64(o2, offs) {
			t.Fatalf("repack differs")
		}
	})
}
