package sparse

import (
	"math/rand/v2"
	"testing"

	"github.com/wanda-go/wanda/format/dtype"
)

func benchDense(b *testing.B, nm bool) ([]byte, int, int) {
	rows, cols := 2048, 2048
	r := rand.New(rand.NewPCG(1, 1))
	return encode(b, randomPruned(r, rows, cols, nm), dtype.BF16), rows, cols
}

func BenchmarkPack24(b *testing.B) {
	d, rows, cols := benchDense(b, true)
	b.SetBytes(int64(len(d)))
	for b.Loop() {
		if _, _, err := Pack24(d, dtype.BF16, rows, cols); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkUnpack24(b *testing.B) {
	d, rows, cols := benchDense(b, true)
	c, m, err := Pack24(d, dtype.BF16, rows, cols)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(d)))
	for b.Loop() {
		if _, err := Unpack24(c, m, dtype.BF16, rows, cols); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPackBitmask(b *testing.B) {
	d, rows, cols := benchDense(b, false)
	b.SetBytes(int64(len(d)))
	for b.Loop() {
		if _, _, _, err := PackBitmask(d, dtype.BF16, rows, cols); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkUnpackBitmask(b *testing.B) {
	d, rows, cols := benchDense(b, false)
	c, m, o, err := PackBitmask(d, dtype.BF16, rows, cols)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(d)))
	for b.Loop() {
		if _, err := UnpackBitmask(c, m, o, dtype.BF16, rows, cols); err != nil {
			b.Fatal(err)
		}
	}
}
