package pattern

import (
	"context"
	"fmt"
	"math"
	"math/bits"
	"sync"
	"sync/atomic"

	"github.com/wanda-go/wanda/pipeline"
	"github.com/wanda-go/wanda/tensor"
)

// sortKey maps a non-NaN float32 to a uint32 whose unsigned order is the numeric order of
// the floats, with -0 and +0 mapped to the same key (they compare equal in IEEE and in torch).
func sortKey(f float32) uint32 {
	u := math.Float32bits(f)
	if u == 0x80000000 { // -0 -> +0
		u = 0
	}
	if u&0x80000000 != 0 {
		return ^u
	}
	return u | 0x80000000
}

// keyValue inverts sortKey (-0 comes back as +0).
func keyValue(k uint32) float32 {
	if k&0x80000000 != 0 {
		return math.Float32frombits(k &^ 0x80000000)
	}
	return math.Float32frombits(^k)
}

// Radix digits for radixSort, most significant first: 11 + 11 + 10 bits.
var (
	digitShift = [3]uint{21, 10, 0}
	digitBits  = [3]uint{11, 11, 10}
)

// selectDigit is the width of a radix-select digit.
const selectDigit = 11

// selector is per-goroutine scratch for radix selection.
type selector struct {
	hist     [1 << selectDigit]int32
	buf      []uint32
	candKeys []uint32 // markFirstK's candidates
	candIdx  []int32
}

// kth returns the key at 0-based position k of keys in ascending order, and the number of
// keys strictly smaller than it. keys is not modified. It panics unless 0 <= k < len(keys).
//
// The digits are taken below the common prefix of the smallest and largest key, so the
// first histogram spreads over the actual range of the data (scores of one row often span
// only a few binades, which the top bits of a float would put in a handful of buckets).
func (s *selector) kth(keys []uint32, k int) (t uint32, less int) {
	if k < 0 || k >= len(keys) {
		panic(fmt.Sprintf("pattern: kth(%d) of %d keys", k, len(keys)))
	}
	lo, hi := keys[0], keys[0]
	for _, x := range keys {
		lo = min(lo, x)
		hi = max(hi, x)
	}
	rem := uint(bits.Len32(lo ^ hi)) // bits below the common prefix
	t = lo &^ (1<<rem - 1)           // the common prefix
	cand := keys
	owned := false // whether cand lives in s.buf (and may be filtered in place)
	for rem > 0 {
		sh := rem - min(rem, selectDigit)
		mask := uint32(1)<<(rem-sh) - 1
		h := s.hist[:mask+1]
		clear(h)
		for _, x := range cand {
			h[(x>>sh)&mask]++
		}
		b, cum := 0, 0
		for ; cum+int(h[b]) <= k; b++ {
			cum += int(h[b])
		}
		less += cum
		k -= cum
		t |= uint32(b) << sh
		rem = sh
		if rem == 0 || int(h[b]) == len(cand) {
			continue
		}
		// Keep only the candidates whose digit equals b.
		var out []uint32
		if owned {
			out = cand[:0]
		} else {
			if cap(s.buf) < int(h[b]) {
				s.buf = make([]uint32, 0, max(int(h[b]), 256))
			}
			out = s.buf[:0]
		}
		ub := uint32(b)
		for _, x := range cand {
			if (x>>sh)&mask == ub {
				out = append(out, x)
			}
		}
		cand, owned = out, true
	}
	return t, less
}

// radixSort sorts keys ascending (LSD, 3 passes), using tmp (len >= len(keys)) as scratch.
func radixSort(keys, tmp []uint32) {
	var hist [1 << 11]int
	src, dst := keys, tmp[:len(keys)]
	for p := 2; p >= 0; p-- {
		sh, nb := digitShift[p], 1<<digitBits[p]
		mask := uint32(nb - 1)
		h := hist[:nb]
		clear(h)
		for _, x := range src {
			h[(x>>sh)&mask]++
		}
		sum := 0
		for i, c := range h {
			h[i] = sum
			sum += c
		}
		for _, x := range src {
			d := (x >> sh) & mask
			dst[h[d]] = x
			h[d]++
		}
		src, dst = dst, src
	}
	// Three passes: the result is in tmp.
	copy(keys, src)
}

// rowKeys fills keys with the sort keys of row, failing on a NaN.
func rowKeys(keys []uint32, row []float32) (bad int) {
	for j, v := range row {
		if v != v {
			return j
		}
		keys[j] = sortKey(v)
	}
	return -1
}

func nanError(name string, info pipeline.LayerInfo, i, j int) error {
	return fmt.Errorf("pattern %s: %s: score [%d,%d] is NaN: %w", name, info, i, j, pipeline.ErrNonFinite)
}

// rowGrain is the smallest number of rows whose bits fill whole mask words, so that
// goroutines owning different row chunks never write the same uint64.
func rowGrain(cols int) int {
	g := 64 // 64 / gcd(cols, 64)
	for c := cols; c%2 == 0 && g > 1; c /= 2 {
		g /= 2
	}
	return g
}

// parallelChunks calls fn(lo, hi) over [0, n) in chunks that are multiples of grain (except
// the last) of about target indices, on tensor.ParallelFor (so from up to tensor.Threads()
// goroutines). The first error (in chunk order of discovery) stops further chunks and is
// returned; ctx cancellation is checked per chunk.
func parallelChunks(ctx context.Context, n, grain, target int, fn func(lo, hi int) error) error {
	if n == 0 {
		return ctx.Err()
	}
	chunk := max(grain, (target+grain-1)/grain*grain)
	nchunks := (n + chunk - 1) / chunk
	var once sync.Once
	var firstErr error
	var failed atomic.Bool
	tensor.ParallelFor(nchunks, 1, func(c0, c1 int) {
		for c := c0; c < c1 && !failed.Load(); c++ {
			err := ctx.Err()
			if err == nil {
				lo := c * chunk
				err = fn(lo, min(n, lo+chunk))
			}
			if err != nil {
				once.Do(func() { firstErr = err })
				failed.Store(true)
				return
			}
		}
	})
	return firstErr
}

// Kth returns sorted(values)[k], the value at 0-based position k of values in ascending
// order (-0 and +0 equal; -0 is returned as +0). values is not modified. A NaN is an error
// wrapping pipeline.ErrNonFinite; k out of range panics (programmer error).
func Kth(values []float32, k int) (float32, error) {
	if k < 0 || k >= len(values) {
		panic(fmt.Sprintf("pattern: Kth(%d) of %d values", k, len(values)))
	}
	keys := make([]uint32, len(values))
	if j := rowKeys(keys, values); j >= 0 {
		return 0, fmt.Errorf("pattern: value %d is NaN: %w", j, pipeline.ErrNonFinite)
	}
	var s selector
	t, _ := s.kth(keys, k)
	return keyValue(t), nil
}
