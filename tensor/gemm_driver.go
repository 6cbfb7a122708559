package tensor

import (
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"
)

// float is the element type of the blocked GEMM driver.
type float interface{ ~float32 | ~float64 }

// mr is the number of rows of the register tile for both element types;
// the number of columns (nr) depends on the type and is in gemmImpl.
const mr = 6

// maxNR is the widest register tile (float32).
const maxNR = 16

// sgemmNR is the number of columns of the float32 register tile (every
// float32 kernel and packing routine uses it).
const sgemmNR = 16

// gemmImpl is one element type's GEMM engine: its microkernel, optional
// vectorised packing routines and cache blocking.
//
// Cache blocking follows GotoBLAS/BLIS: a kc×nc block of op(B) is packed once
// and reused for every mc-row block of op(A); an mc×kc block of op(A) is
// packed into mr-row micro-panels that stay in L2 while each kc×nr
// micro-panel of B sits in L1.
type gemmImpl[T float] struct {
	name       string
	nr         int
	kc, mc, nc int
	// kernel computes C[0:mr,0:nr] (stride ldc) = alpha*Ap·Bp + beta*C,
	// reading C only when beta != 0. Ap holds k×mr values, Bp k×nr.
	kernel func(k int, a, b, c []T, ldc int, alpha, beta T)
	// packAN, when set, packs the first columns of a full mr-row panel of
	// a non-transposed A (dst[p*mr+r] = src[r*lda+p]) and returns how many
	// it handled; it may write up to 16 elements past them (within cap).
	packAN func(dst, src []T, lda, kc int) int
	// packBT, when set, packs the first columns of a full nr-row panel of
	// a transposed B (dst[p*nr+j] = src[j*ldb+p]) and returns how many it
	// handled.
	packBT func(dst, src []T, ldb, kc int) int
	// packBN, when set, packs a full nr-column panel of a non-transposed B
	// (dst[p*nr+j] = src[p*ldb+j]).
	packBN func(dst, src []T, ldb, kc int)
	// packBMat packs op(B)[pc:pc+kc, jc:jc+nc] like packB when B is a
	// stack of stored-dtype weights (gemmProblem.bm; float32 only).
	packBMat func(dst []T, g *gemmProblem[T], pc, kc, jc, nc int)

	runs    sync.Pool // *gemmRun[T]
	threads sync.Pool // *threadBuf[T]
}

var (
	sgemmImpl = &gemmImpl[float32]{name: "go-6x16", nr: sgemmNR, kc: 256, mc: 144, nc: 3072, kernel: kernelGo[float32], packBMat: packBMats}
	dgemmImpl = &gemmImpl[float64]{name: "go-6x8", nr: 8, kc: 256, mc: 144, nc: 1536, kernel: kernelGo[float64]}
)

// KernelName reports which float32 GEMM microkernel was selected at start-up.
func KernelName() string { return sgemmImpl.name }

// kernelGo is the portable microkernel for an mr×nr tile, nr = len(b)/k.
func kernelGo[T float](k int, a, b, c []T, ldc int, alpha, beta T) {
	var acc [mr * maxNR]T
	if k == 0 {
		return
	}
	nr := len(b) / k
	if nr > maxNR {
		nr = maxNR
	}
	a = a[:k*mr]
	b = b[:k*nr]
	for p := 0; p < k; p++ {
		ap := a[p*mr : p*mr+mr]
		bp := b[p*nr : p*nr+nr]
		for i := 0; i < mr; i++ {
			av := ap[i]
			row := acc[i*nr : i*nr+nr]
			for j, bv := range bp {
				row[j] += av * bv
			}
		}
	}
	for i := 0; i < mr; i++ {
		row := c[i*ldc : i*ldc+nr]
		if beta == 0 {
			for j := range row {
				row[j] = alpha * acc[i*nr+j]
			}
		} else {
			for j := range row {
				row[j] = alpha*acc[i*nr+j] + beta*row[j]
			}
		}
	}
}

// aligned returns a 64-byte aligned slice of n elements backed by *raw,
// growing it when needed. Its capacity exceeds n by at least 16 elements of
// slack, which the packing routines may scribble on.
func aligned[T float](raw *[]T, n int) []T {
	if cap(*raw) < n+32 {
		*raw = make([]T, n+32)
	}
	r := (*raw)[:cap(*raw)]
	off := 0
	if mis := uintptr(unsafe.Pointer(&r[0])) & 63; mis != 0 {
		off = int((64 - mis) / unsafe.Sizeof(r[0]))
	}
	return r[off : off+n]
}

// gemmProblem is one validated GEMM call.
type gemmProblem[T float] struct {
	tA, tB  bool
	m, n, k int
	alpha   T
	a       []T
	lda     int
	b       []T
	ldb     int
	beta    T
	c       []T
	ldc     int
	// bm, when set, is op(B) instead of b: a stack of stored-dtype
	// weights [n, k] (tB is true, b is nil; float32 only).
	bm *matB
}

// minParallelFlops is the problem size below which GEMM stays on the
// calling goroutine.
const minParallelFlops = 1 << 22

// bChunkPanels is the number of nr-column micro-panels one B packing work
// item covers.
const bChunkPanels = 8

// gemmRun is the shared state of one (possibly multi-threaded) GEMM call.
//
// The work is a sequence of steps, one per (jc, pc) block pair in GotoBLAS
// order (jc outer). Step s packs the kc×nc block of op(B) into the shared
// buffer bufB[s%2] (sB work items) and then multiplies every mc-row block
// of op(A) by it (sC work items; each packs its own A block into a
// per-thread buffer). Threads take work items in order from one ticket
// counter, so a thread that starts late (waking a goroutine on an idle VM
// CPU takes ~100µs) or is slowed by a noisy neighbour simply does fewer
// items. The only waits are true dependencies:
//   - a C item of step s needs all B items of step s;
//   - a B item of step s overwrites bufB[s%2] and so needs all C items of
//     step s-2;
//   - a C item of step s with pc > 0 accumulates into the C block written
//     by the same item of step s-1 and so needs that item.
type gemmRun[T float] struct {
	impl            *gemmImpl[T]
	g               gemmProblem[T]
	kc, mc, nc      int
	bChunk          int
	nJC, nPC, steps int
	sB, sC, perStep int
	total           int
	ticket          atomic.Int64
	bDone, cDone    []atomic.Int32 // per step: finished B / C items
	itemDone        []atomic.Bool  // per step×sC: C item finished
	rawB0, rawB1    []T
	bufB            [2][]T
	mu              sync.Mutex
	cond            sync.Cond
	waiters         atomic.Int32
	state           atomic.Int64 // runClosed bit | number of helpers inside
	box             jobBox       // this run as a helpJob, for offerHelp
}

// threadBuf is one thread's A packing buffer and edge tile.
type threadBuf[T float] struct {
	rawA []T
	tile [mr * maxNR]T
}

// runClosed marks a gemmRun that helpers may no longer join; the low bits
// of gemmRun.state count the helpers inside work().
const runClosed = 1 << 62

// gemm runs a validated problem with m, n, k > 0 and alpha != 0.
func (impl *gemmImpl[T]) gemm(g gemmProblem[T]) {
	nt := Threads()
	if 2*float64(g.m)*float64(g.n)*float64(g.k) < minParallelFlops {
		nt = 1
	}
	r, _ := impl.runs.Get().(*gemmRun[T])
	if r == nil {
		r = new(gemmRun[T])
		r.cond.L = &r.mu
		r.box.j = r
		r.state.Store(runClosed)
	}
	r.init(impl, g, nt)
	r.state.Store(0) // open for helpers
	if nt > 1 {
		offerHelp(&r.box, nt-1)
	}
	r.work()
	// Close the run and wait for helpers still inside it. A helper that
	// reaches a stale offer later sees it closed (or, if the run was reused
	// meanwhile, legitimately joins that later call).
	r.state.Add(runClosed)
	r.waitUntil(func() bool { return r.state.Load() == runClosed })
	r.g = gemmProblem[T]{} // drop references to caller memory
	impl.runs.Put(r)
}

// help lets a pool worker join the run if it is still open.
func (r *gemmRun[T]) help() {
	for {
		s := r.state.Load()
		if s&runClosed != 0 {
			return
		}
		if r.state.CompareAndSwap(s, s+1) {
			break
		}
	}
	r.work()
	r.state.Add(-1)
	r.progress()
}

// sgemm is the optimised float32 path; arguments are already validated and
// m, n, k > 0, alpha != 0.
func sgemm(tA, tB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	sgemmImpl.gemm(gemmProblem[float32]{tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, nil})
}

func (r *gemmRun[T]) init(impl *gemmImpl[T], g gemmProblem[T], nt int) {
	nr := impl.nr
	r.impl = impl
	r.g = g
	r.kc = min(impl.kc, g.k)
	// Enough C items per step for dynamic load balancing.
	mc := (g.m + 2*nt - 1) / (2 * nt)
	mc = (mc + mr - 1) / mr * mr
	r.mc = min(impl.mc, mc)
	r.nc = min(impl.nc, (g.n+nr-1)/nr*nr)
	r.bChunk = bChunkPanels * nr
	r.nJC = (g.n + r.nc - 1) / r.nc
	r.nPC = (g.k + r.kc - 1) / r.kc
	r.steps = r.nJC * r.nPC
	r.sB = (r.nc + r.bChunk - 1) / r.bChunk
	r.sC = (g.m + r.mc - 1) / r.mc
	r.perStep = r.sB + r.sC
	r.total = r.steps * r.perStep
	r.ticket.Store(0)
	if cap(r.bDone) < r.steps {
		r.bDone = make([]atomic.Int32, r.steps)
		r.cDone = make([]atomic.Int32, r.steps)
	}
	r.bDone, r.cDone = r.bDone[:r.steps], r.cDone[:r.steps]
	for i := range r.bDone {
		r.bDone[i].Store(0)
		r.cDone[i].Store(0)
	}
	if n := r.steps * r.sC; cap(r.itemDone) < n {
		r.itemDone = make([]atomic.Bool, n)
	} else {
		r.itemDone = r.itemDone[:n]
		for i := range r.itemDone {
			r.itemDone[i].Store(false)
		}
	}
	r.bufB[0] = aligned(&r.rawB0, r.kc*r.nc)
	if r.steps > 1 {
		r.bufB[1] = aligned(&r.rawB1, r.kc*r.nc)
	}
}

// waitUntil waits until cond holds: it spins briefly (the other thread
// usually finishes within microseconds), then blocks on r.cond so that a
// thread whose partner was descheduled by the OS (a loaded machine) gives
// its CPU away instead of burning it.
func (r *gemmRun[T]) waitUntil(cond func() bool) {
	for i := 0; i < 200; i++ {
		if cond() {
			return
		}
		if i >= 16 {
			runtime.Gosched()
		}
	}
	r.mu.Lock()
	r.waiters.Add(1)
	for !cond() {
		r.cond.Wait()
	}
	r.waiters.Add(-1)
	r.mu.Unlock()
}

// progress wakes blocked waiters after a work item was published.
func (r *gemmRun[T]) progress() {
	if r.waiters.Load() > 0 {
		r.mu.Lock()
		r.cond.Broadcast()
		r.mu.Unlock()
	}
}

// work takes and runs work items until none are left.
func (r *gemmRun[T]) work() {
	impl := r.impl
	tb, _ := impl.threads.Get().(*threadBuf[T])
	if tb == nil {
		tb = new(threadBuf[T])
	}
	defer impl.threads.Put(tb)
	bufA := aligned(&tb.rawA, r.kc*r.mc)
	g := &r.g
	for {
		t := int(r.ticket.Add(1) - 1)
		if t >= r.total {
			return
		}
		s, item := t/r.perStep, t%r.perStep
		jc := (s / r.nPC) * r.nc
		pc := (s % r.nPC) * r.kc
		nc := min(r.nc, g.n-jc)
		kc := min(r.kc, g.k-pc)
		buf := r.bufB[s%2]
		if item < r.sB {
			if s >= 2 {
				prev := &r.cDone[s-2]
				want := int32(r.sC)
				r.waitUntil(func() bool { return prev.Load() == want })
			}
			j0 := item * r.bChunk
			if j0 < nc {
				impl.packB(buf[j0*kc:], g, pc, kc, jc+j0, min(r.bChunk, nc-j0))
			}
			r.bDone[s].Add(1)
			r.progress()
			continue
		}
		q := item - r.sB
		bd := &r.bDone[s]
		wantB := int32(r.sB)
		r.waitUntil(func() bool { return bd.Load() == wantB })
		if pc > 0 {
			r.waitUntil(r.itemDone[(s-1)*r.sC+q].Load)
		}
		ic := q * r.mc
		mc := min(r.mc, g.m-ic)
		impl.packA(bufA, g, ic, mc, pc, kc)
		beta := g.beta
		if pc > 0 {
			beta = 1
		}
		impl.macroKernel(g, bufA, buf, tb.tile[:], ic, mc, jc, nc, kc, beta)
		r.itemDone[s*r.sC+q].Store(true)
		r.cDone[s].Add(1)
		r.progress()
	}
}

// macroKernel multiplies the packed mc×kc A block by the packed kc×nc B
// block into C[ic:ic+mc, jc:jc+nc].
func (impl *gemmImpl[T]) macroKernel(g *gemmProblem[T], pa, pb, tile []T, ic, mc, jc, nc, kc int, beta T) {
	kern := impl.kernel
	nr := impl.nr
	ldc := g.ldc
	for jr := 0; jr < nc; jr += nr {
		nn := min(nr, nc-jr)
		bp := pb[jr*kc : jr*kc+kc*nr]
		for ir := 0; ir < mc; ir += mr {
			mm := min(mr, mc-ir)
			ap := pa[ir*kc : ir*kc+kc*mr]
			off := (ic+ir)*ldc + jc + jr
			if mm == mr && nn == nr {
				kern(kc, ap, bp, g.c[off:], ldc, g.alpha, beta)
				continue
			}
			kern(kc, ap, bp, tile, nr, g.alpha, 0)
			for i := 0; i < mm; i++ {
				crow := g.c[off+i*ldc : off+i*ldc+nn]
				trow := tile[i*nr : i*nr+nn]
				if beta == 0 {
					copy(crow, trow)
				} else {
					for j := range crow {
						crow[j] = trow[j] + beta*crow[j]
					}
				}
			}
		}
	}
}

// packA packs op(A)[ic:ic+mc, pc:pc+kc] into mr-row micro-panels: panel q
// holds, for each p, the mr values op(A)[ic+q*mr+r, pc+p], zero-padded
// past mc.
func (impl *gemmImpl[T]) packA(dst []T, g *gemmProblem[T], ic, mc, pc, kc int) {
	for ir := 0; ir < mc; ir += mr {
		mm := min(mr, mc-ir)
		d := dst[ir*kc : ir*kc+kc*mr]
		i0 := ic + ir
		if g.tA {
			// op(A)[i,p] = A[p*lda+i]: mr contiguous values per p.
			for p := 0; p < kc; p++ {
				src := g.a[(pc+p)*g.lda+i0:]
				dp := d[p*mr : p*mr+mr]
				if mm == mr {
					dp[0], dp[1], dp[2], dp[3], dp[4], dp[5] = src[0], src[1], src[2], src[3], src[4], src[5]
				} else {
					n := copy(dp[:mm], src[:mm])
					clear(dp[n:])
				}
			}
			continue
		}
		// op(A)[i,p] = A[i*lda+p]: rows are contiguous in p.
		if mm == mr {
			p0 := 0
			if impl.packAN != nil {
				p0 = impl.packAN(dst[ir*kc:], g.a[i0*g.lda+pc:], g.lda, kc)
			}
			r0 := g.a[(i0+0)*g.lda+pc : (i0+0)*g.lda+pc+kc]
			r1 := g.a[(i0+1)*g.lda+pc : (i0+1)*g.lda+pc+kc]
			r2 := g.a[(i0+2)*g.lda+pc : (i0+2)*g.lda+pc+kc]
			r3 := g.a[(i0+3)*g.lda+pc : (i0+3)*g.lda+pc+kc]
			r4 := g.a[(i0+4)*g.lda+pc : (i0+4)*g.lda+pc+kc]
			r5 := g.a[(i0+5)*g.lda+pc : (i0+5)*g.lda+pc+kc]
			for p := p0; p < kc; p++ {
				dp := d[p*mr : p*mr+mr : p*mr+mr]
				dp[0], dp[1], dp[2], dp[3], dp[4], dp[5] = r0[p], r1[p], r2[p], r3[p], r4[p], r5[p]
			}
			continue
		}
		clear(d)
		for r := 0; r < mm; r++ {
			row := g.a[(i0+r)*g.lda+pc : (i0+r)*g.lda+pc+kc]
			for p, v := range row {
				d[p*mr+r] = v
			}
		}
	}
}

// packB packs op(B)[pc:pc+kc, jc:jc+nc] into nr-column micro-panels: panel
// q holds, for each p, the nr values op(B)[pc+p, jc+q*nr+j], zero-padded
// past nc.
func (impl *gemmImpl[T]) packB(dst []T, g *gemmProblem[T], pc, kc, jc, nc int) {
	if g.bm != nil {
		impl.packBMat(dst, g, pc, kc, jc, nc)
		return
	}
	nr := impl.nr
	for jr := 0; jr < nc; jr += nr {
		nn := min(nr, nc-jr)
		d := dst[jr*kc : jr*kc+kc*nr]
		j0 := jc + jr
		if !g.tB {
			// op(B)[p,j] = B[p*ldb+j]: nr contiguous values per p.
			if nn == nr && impl.packBN != nil {
				impl.packBN(d, g.b[pc*g.ldb+j0:], g.ldb, kc)
				continue
			}
			for p := 0; p < kc; p++ {
				src := g.b[(pc+p)*g.ldb+j0:]
				dp := d[p*nr : p*nr+nr]
				n := copy(dp[:nn], src[:nn])
				clear(dp[n:])
			}
			continue
		}
		// op(B)[p,j] = B[j*ldb+p]: transpose nn rows of B.
		p0 := 0
		if nn == nr && impl.packBT != nil {
			p0 = impl.packBT(d, g.b[j0*g.ldb+pc:], g.ldb, kc)
		} else if nn < nr {
			clear(d)
		}
		for j := 0; j < nn; j++ {
			row := g.b[(j0+j)*g.ldb+pc : (j0+j)*g.ldb+pc+kc]
			for p := p0; p < kc; p++ {
				d[p*nr+j] = row[p]
			}
		}
	}
}
