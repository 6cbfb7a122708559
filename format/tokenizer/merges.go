package tokenizer

// mergeTable maps a pair of token ids to (rank, merged id): an
// open-addressing hash table keyed by uint64(a)<<32 | uint64(b).
type mergeTable struct {
	keys  []uint64
	vals  []uint64 // rank<<32 | newID
	shift uint
	n     int
}

const emptyKey = ^uint64(0)

func newMergeTable(n int) *mergeTable {
	size := 16
	bits := uint(4)
	for size < 2*n {
		size <<= 1
		bits++
	}
	t := &mergeTable{keys: make([]uint64, size), vals: make([]uint64, size), shift: 64 - bits}
	for i := range t.keys {
		t.keys[i] = emptyKey
	}
	return t
}

func pairKey(a, b int32) uint64 { return uint64(uint32(a))<<32 | uint64(uint32(b)) }

func (t *mergeTable) slot(k uint64) int {
	return int((k * 0x9E3779B97F4A7C15) >> t.shift)
}

// put inserts or overwrites (a later duplicate merge wins, as in HF's
// HashMap collect).
func (t *mergeTable) put(a, b, rank, newID int32) {
	k := pairKey(a, b)
	mask := len(t.keys) - 1
	for i := t.slot(k); ; i = (i + 1) & mask {
		if t.keys[i] == emptyKey {
			t.keys[i] = k
			t.vals[i] = uint64(uint32(rank))<<32 | uint64(uint32(newID))
			t.n++
			return
		}
		if t.keys[i] == k {
			t.vals[i] = uint64(uint32(rank))<<32 | uint64(uint32(newID))
			return
		}
	}
}

func (t *mergeTable) get(a, b int32) (rank, newID int32, ok bool) {
	k := pairKey(a, b)
	mask := len(t.keys) - 1
	for i := t.slot(k); ; i = (i + 1) & mask {
		switch t.keys[i] {
		case k:
			v := t.vals[i]
			return int32(v >> 32), int32(uint32(v)), true
		case emptyKey:
			return 0, 0, false
		}
	}
}
