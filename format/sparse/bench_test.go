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

// BenchmarkScan: the cost of checking N:M patterns on top of counting zeros
// (inspect asks for 2:4 and 4:8, pack for 2:4).
func BenchmarkScan(b *testing.B) {
	d, rows, cols := benchDense(b, true)
	for _, c := range []struct {
		name string
		pats []NM
	}{{"zeros", nil}, {"2:4", []NM{Pattern24}}, {"2:4+4:8", []NM{Pattern24, Pattern48}}} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(d)))
			for b.Loop() {
				if _, err := Scan(d, dtype.BF16, rows, cols, c.pats...); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
