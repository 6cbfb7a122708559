package modelgen

import "hash/fnv"

// rng is a SplitMix64 generator. It is used instead of math/rand so that the
// fixture bytes are fixed by this code alone, on every platform and Go release.
type rng struct{ state uint64 }

// newRNG derives an independent stream for one tensor from the seed and the
// tensor's name, so a tensor's values do not depend on which other tensors
// the model has or on the order they are written in.
func newRNG(seed uint64, name string) *rng {
	h := fnv.New64a()
	h.Write([]byte(name))
	r := &rng{state: seed ^ h.Sum64()}
	r.next()
	return r
}

func (r *rng) next() uint64 {
	r.state += 0x9e3779b97f4a7c15
	z := r.state
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// perm returns a pseudo-random permutation of [0, n) (Fisher–Yates).
func (r *rng) perm(n int) []int {
	p := make([]int, n)
	for i := range p {
		p[i] = i
	}
	for i := n - 1; i > 0; i-- {
		j := int(r.next() % uint64(i+1))
		p[i], p[j] = p[j], p[i]
	}
	return p
}
