package plugins

import (
	"math"
	"testing"
)

func TestCopyFinite(t *testing.T) {
	for _, n := range []int{0, 1, 3, 4, 5, 8191, 8192, 8193, 20000} {
		src := make([]float32, n)
		for k := range src {
			src[k] = float32(k%17) - 8 + 1e-39
		}
		dst := make([]float32, n)
		if first, count := copyFinite(dst, src); first != -1 || count != 0 {
			t.Fatalf("n=%d finite: %d, %d", n, first, count)
		}
		for k := range src {
			if dst[k] != src[k] {
				t.Fatalf("n=%d: dst[%d] = %v", n, k, dst[k])
			}
		}
		if n == 0 {
			continue
		}
		bad := []int{n - 1, n / 2, n / 3}
		src[bad[0]] = float32(math.Inf(-1))
		src[bad[1]] = float32(math.NaN())
		src[bad[2]] = float32(math.Inf(1))
		want := map[int]bool{}
		lowest := n
		for _, k := range bad {
			want[k] = true
			lowest = min(lowest, k)
		}
		clear(dst)
		first, count := copyFinite(dst, src)
		if first != lowest || count != len(want) {
			t.Fatalf("n=%d: first %d count %d, want %d %d", n, first, count, lowest, len(want))
		}
		for k := range src {
			if math.Float32bits(dst[k]) != math.Float32bits(src[k]) {
				t.Fatalf("n=%d: not fully copied at %d", n, k)
			}
		}
	}
}
