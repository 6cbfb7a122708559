package pyrandom

import (
	"errors"
	"fmt"
	"math/big"
	"math/bits"
)

const (
	n         = 624
	m         = 397
	matrixA   = 0x9908b0df
	upperMask = 0x80000000
	lowerMask = 0x7fffffff
)

// ErrEmptyRange is returned by RandInt when b < a (CPython raises ValueError).
var ErrEmptyRange = errors.New("pyrandom: empty range")

// Rand is a CPython-compatible Mersenne Twister. The zero value is not
// seeded; use New or call Seed first. A Rand is not safe for concurrent use.
type Rand struct {
	mt  [n]uint32
	mti int
}

// New returns a generator seeded like CPython's random.seed(seed).
func New(seed int64) *Rand {
	r := &Rand{}
	r.Seed(seed)
	return r
}

// Seed reseeds like CPython's random.seed(seed) for an int argument:
// init_by_array over the 32-bit words (least significant first) of abs(seed).
func (r *Rand) Seed(seed int64) {
	u := uint64(seed)
	if seed < 0 {
		u = -u // two's complement negation also gives |MinInt64| correctly
	}
	if u>>32 == 0 {
		r.initByArray([]uint32{uint32(u)})
		return
	}
	r.initByArray([]uint32{uint32(u), uint32(u >> 32)})
}

// SeedBig reseeds like CPython's random.seed(x) for an arbitrary-size int x.
func (r *Rand) SeedBig(x *big.Int) {
	a := new(big.Int).Abs(x)
	words := a.Bits()
	var key []uint32
	for _, w := range words {
		if bits.UintSize == 64 {
			key = append(key, uint32(w), uint32(uint64(w)>>32))
		} else {
			key = append(key, uint32(w))
		}
	}
	for len(key) > 1 && key[len(key)-1] == 0 {
		key = key[:len(key)-1]
	}
	if len(key) == 0 {
		key = []uint32{0}
	}
	r.initByArray(key)
}

func (r *Rand) initGenrand(s uint32) {
	r.mt[0] = s
	for i := 1; i < n; i++ {
		r.mt[i] = 1812433253*(r.mt[i-1]^(r.mt[i-1]>>30)) + uint32(i)
	}
	r.mti = n
}

func (r *Rand) initByArray(key []uint32) {
	r.initGenrand(19650218)
	i, j := 1, 0
	k := n
	if len(key) > k {
		k = len(key)
	}
	for ; k > 0; k-- {
		r.mt[i] = (r.mt[i] ^ ((r.mt[i-1] ^ (r.mt[i-1] >> 30)) * 1664525)) + key[j] + uint32(j)
		i++
		j++
		if i >= n {
			r.mt[0] = r.mt[n-1]
			i = 1
		}
		if j >= len(key) {
			j = 0
		}
	}
	for k = n - 1; k > 0; k-- {
		r.mt[i] = (r.mt[i] ^ ((r.mt[i-1] ^ (r.mt[i-1] >> 30)) * 1566083941)) - uint32(i)
		i++
		if i >= n {
			r.mt[0] = r.mt[n-1]
			i = 1
		}
	}
	r.mt[0] = 0x80000000
	r.mti = n
}

// Uint32 returns the next raw 32-bit output (CPython genrand_uint32).
func (r *Rand) Uint32() uint32 {
	if r.mti >= n {
		if r.mti == n+1 {
			r.initGenrand(5489)
		}
		var kk int
		for kk = 0; kk < n-m; kk++ {
			y := (r.mt[kk] & upperMask) | (r.mt[kk+1] & lowerMask)
			r.mt[kk] = r.mt[kk+m] ^ (y >> 1) ^ (-(y & 1) & matrixA)
		}
		for ; kk < n-1; kk++ {
			y := (r.mt[kk] & upperMask) | (r.mt[kk+1] & lowerMask)
			r.mt[kk] = r.mt[kk+(m-n)] ^ (y >> 1) ^ (-(y & 1) & matrixA)
		}
		y := (r.mt[n-1] & upperMask) | (r.mt[0] & lowerMask)
		r.mt[n-1] = r.mt[m-1] ^ (y >> 1) ^ (-(y & 1) & matrixA)
		r.mti = 0
	}
	y := r.mt[r.mti]
	r.mti++
	y ^= y >> 11
	y ^= (y << 7) & 0x9d2c5680
	y ^= (y << 15) & 0xefc60000
	y ^= y >> 18
	return y
}

// GetRandBits returns CPython's getrandbits(k) for 0 <= k <= 64. It panics
// for k outside that range (a programmer error); use GetRandBitsBig for more.
func (r *Rand) GetRandBits(k int) uint64 {
	if k < 0 || k > 64 {
		panic(fmt.Sprintf("pyrandom: GetRandBits(%d): k must be in [0, 64]", k))
	}
	if k == 0 {
		return 0
	}
	if k <= 32 {
		return uint64(r.Uint32() >> (32 - k))
	}
	lo := uint64(r.Uint32())
	hi := r.Uint32()
	if k < 64 {
		hi >>= 64 - k
	}
	return lo | uint64(hi)<<32
}

// GetRandBitsBig returns CPython's getrandbits(k) for any k >= 0.
func (r *Rand) GetRandBitsBig(k int) *big.Int {
	if k < 0 {
		panic(fmt.Sprintf("pyrandom: GetRandBitsBig(%d): negative k", k))
	}
	out := new(big.Int)
	shift := uint(0)
	for k > 0 {
		w := r.Uint32()
		if k < 32 {
			w >>= 32 - k
		}
		out.Or(out, new(big.Int).Lsh(big.NewInt(int64(w)), shift))
		shift += 32
		k -= 32
	}
	return out
}

// randBelow is CPython's _randbelow_with_getrandbits for 1 <= nn < 2^64.
func (r *Rand) randBelow(nn uint64) uint64 {
	k := bits.Len64(nn)
	v := r.GetRandBits(k)
	for v >= nn {
		v = r.GetRandBits(k)
	}
	return v
}

// RandInt returns CPython's randint(a, b) = a + _randbelow(b-a+1), inclusive
// of both ends. It returns ErrEmptyRange when b < a.
func (r *Rand) RandInt(a, b int64) (int64, error) {
	if b < a {
		return 0, fmt.Errorf("pyrandom: randint(%d, %d): %w", a, b, ErrEmptyRange)
	}
	width := uint64(b) - uint64(a) + 1 // wraps to 0 only for the full int64 range
	if width == 0 {
		// Full 2^64 range: bit_length is 65, beyond uint64; compose from big.
		v := r.randBelowBig(new(big.Int).Lsh(big.NewInt(1), 64))
		return a + int64(v.Uint64()), nil
	}
	return a + int64(r.randBelow(width)), nil
}

func (r *Rand) randBelowBig(nn *big.Int) *big.Int {
	k := nn.BitLen()
	v := r.GetRandBitsBig(k)
	for v.Cmp(nn) >= 0 {
		v = r.GetRandBitsBig(k)
	}
	return v
}

// Float64 returns CPython's random(): a float in [0, 1) with 53 random bits.
func (r *Rand) Float64() float64 {
	a := r.Uint32() >> 5
	b := r.Uint32() >> 6
	return (float64(a)*67108864.0 + float64(b)) * (1.0 / 9007199254740992.0)
}
