package pattern

// The reference picks the N pruned entries of each N:M group with
// torch.topk(tmp, N, dim=1, largest=False) on the CPU. Which of several equal values
// topk returns is not specified by PyTorch, but on the CPU it is fixed by its
// implementation (aten/src/ATen/native/TopKImpl.h): the (value, index) pairs of a row, in
// index order, go through libstdc++'s std::nth_element(begin, begin+k-1, end, less-by-value)
// — or std::partial_sort when k·64 <= n — and the first k pairs are the answer. Magnitude
// pruning of bf16/fp16 weights meets such ties all the time (equal |w| in a group of 4), so
// to give the reference's masks we replay exactly those algorithms here (they have not
// changed in libstdc++ for many years). Without ties the result is simply the k smallest.

type topkElem struct {
	v float32
	i int
}

func topkLess(a, b topkElem) bool { return a.v < b.v }

// TorchSmallestK marks in pruned (len(vals)) the k entries of vals that torch.topk(largest=False)
// returns on the CPU. vals must hold no NaN. q is scratch of len(vals) (allocated when nil).
func TorchSmallestK(vals []float32, k int, pruned []bool, q []topkElem) {
	n := len(vals)
	if len(q) < n {
		q = make([]topkElem, n)
	}
	q = q[:n]
	for j, v := range vals {
		q[j] = topkElem{v, j}
		pruned[j] = false
	}
	if k <= 0 {
		return
	}
	if k >= n {
		for j := range pruned {
			pruned[j] = true
		}
		return
	}
	if k*64 <= n {
		heapSelect(q, 0, k, n)
	} else {
		nthElement(q, k-1)
	}
	for _, e := range q[:k] {
		pruned[e.i] = true
	}
}

func floorLog2(n int) int {
	r := 0
	for n > 1 {
		n >>= 1
		r++
	}
	return r
}

// nthElement is libstdc++'s std::nth_element (__introselect).
func nthElement(q []topkElem, nth int) {
	first, last := 0, len(q)
	if first == last || nth == last {
		return
	}
	depth := 2 * floorLog2(last-first)
	for last-first > 3 {
		if depth == 0 {
			heapSelect(q, first, nth+1, last)
			q[first], q[nth] = q[nth], q[first]
			return
		}
		depth--
		cut := unguardedPartitionPivot(q, first, last)
		if cut <= nth {
			first = cut
		} else {
			last = cut
		}
	}
	insertionSort(q, first, last)
}

func unguardedPartitionPivot(q []topkElem, first, last int) int {
	mid := first + (last-first)/2
	moveMedianToFirst(q, first, first+1, mid, last-1)
	return unguardedPartition(q, first+1, last, first)
}

func moveMedianToFirst(q []topkElem, result, a, b, c int) {
	swap := func(x int) { q[result], q[x] = q[x], q[result] }
	if topkLess(q[a], q[b]) {
		switch {
		case topkLess(q[b], q[c]):
			swap(b)
		case topkLess(q[a], q[c]):
			swap(c)
		default:
			swap(a)
		}
	} else {
		switch {
		case topkLess(q[a], q[c]):
			swap(a)
		case topkLess(q[b], q[c]):
			swap(c)
		default:
			swap(b)
		}
	}
}

func unguardedPartition(q []topkElem, first, last, pivot int) int {
	for {
		for topkLess(q[first], q[pivot]) {
			first++
		}
		last--
		for topkLess(q[pivot], q[last]) {
			last--
		}
		if first >= last {
			return first
		}
		q[first], q[last] = q[last], q[first]
		first++
	}
}

func insertionSort(q []topkElem, first, last int) {
	if first == last {
		return
	}
	for i := first + 1; i < last; i++ {
		v := q[i]
		if topkLess(v, q[first]) {
			copy(q[first+1:i+1], q[first:i])
			q[first] = v
			continue
		}
		j := i
		for topkLess(v, q[j-1]) {
			q[j] = q[j-1]
			j--
		}
		q[j] = v
	}
}

// heapSelect is libstdc++'s std::__heap_select: afterwards [first, middle) holds the
// middle-first smallest (as a max-heap).
func heapSelect(q []topkElem, first, middle, last int) {
	makeHeap(q[first:middle])
	for i := middle; i < last; i++ {
		if topkLess(q[i], q[first]) {
			// __pop_heap(first, middle, i)
			v := q[i]
			q[i] = q[first]
			adjustHeap(q[first:middle], 0, middle-first, v)
		}
	}
}

func makeHeap(h []topkElem) {
	n := len(h)
	if n < 2 {
		return
	}
	for parent := (n - 2) / 2; ; parent-- {
		adjustHeap(h, parent, n, h[parent])
		if parent == 0 {
			return
		}
	}
}

func adjustHeap(h []topkElem, hole, n int, v topkElem) {
	top := hole
	child := hole
	for child < (n-1)/2 {
		child = 2 * (child + 1)
		if topkLess(h[child], h[child-1]) {
			child--
		}
		h[hole] = h[child]
		hole = child
	}
	if n&1 == 0 && child == (n-2)/2 {
		child = 2 * (child + 1)
		h[hole] = h[child-1]
		hole = child - 1
	}
	// __push_heap(first, hole, top, v)
	parent := (hole - 1) / 2
	for hole > top && topkLess(h[parent], v) {
		h[hole] = h[parent]
		hole = parent
		parent = (hole - 1) / 2
	}
	h[hole] = v
}
