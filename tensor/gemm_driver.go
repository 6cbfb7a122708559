package tensor

import (
	"sync"
	"unsafe"
)

// Register tile of the microkernel: it computes an mr×nr block of C from an
// mr-row packed A micro-panel and an nr-column packed B micro-panel.
const (
	mr = 6
	nr = 16
)

// Cache blocking (GotoBLAS/BLIS loop order): a kc×nc block of op(B) is
// packed once and reused for every mc-row block of op(A); an mc×kc block of
// op(A) is packed into mr-row micro-panels that stay in L2 while each
// kc×nr micro-panel of B sits in L1. Variables, not constants, so that the
// benchmarks can tune them.
var (
	blockKC = 256
	blockMC = 144
	blockNC = 3072
)

// microKernel computes C[0:mr,0:nr] (stride ldc) = alpha*Ap·Bp + beta*C,
// reading C only when beta != 0. Ap holds k×mr values, Bp k×nr values.
var microKernel func(k int, a, b, c []float32, ldc int, alpha, beta float32) = kernelGeneric

// kernelName describes the selected microkernel (for benchmarks and docs).
var kernelName = "go-6x16"

// KernelName reports which GEMM microkernel was selected at start-up.
func KernelName() string { return kernelName }

// kernelGeneric is the portable microkernel.
func kernelGeneric(k int, a, b, c []float32, ldc int, alpha, beta float32) {
	var acc [mr * nr]float32
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

// gemmBuf holds one thread's packing buffers, 64-byte aligned.
type gemmBuf struct {
	rawA, rawB []float32
	a, b       []float32
}

var bufPool = sync.Pool{New: func() any { return new(gemmBuf) }}

func aligned(raw *[]float32, n int) []float32 {
	if cap(*raw) < n+16 {
		*raw = make([]float32, n+16)
	}
	r := (*raw)[:cap(*raw)]
	off := 0
	if mis := uintptr(unsafe.Pointer(&r[0])) & 63; mis != 0 {
		off = int((64 - mis) / 4)
	}
	return r[off : off+n]
}

// gemmProblem is one validated Sgemm call (or a sub-block of one).
type gemmProblem struct {
	tA, tB  bool
	m, n, k int
	alpha   float32
	a       []float32
	lda     int
	b       []float32
	ldb     int
	beta    float32
	c       []float32
	ldc     int
}

// rows returns the sub-problem for rows [i0,i1) of C.
func (g gemmProblem) rows(i0, i1 int) gemmProblem {
	s := g
	s.m = i1 - i0
	if g.tA {
		s.a = g.a[i0:]
	} else {
		s.a = g.a[i0*g.lda:]
	}
	s.c = g.c[i0*g.ldc:]
	return s
}

// cols returns the sub-problem for columns [j0,j1) of C.
func (g gemmProblem) cols(j0, j1 int) gemmProblem {
	s := g
	s.n = j1 - j0
	if g.tB {
		s.b = g.b[j0*g.ldb:]
	} else {
		s.b = g.b[j0:]
	}
	s.c = g.c[j0:]
	return s
}

// minParallelFlops is the problem size below which GEMM stays on one
// goroutine.
const minParallelFlops = 1 << 21

// sgemm is the optimised path; arguments are already validated and
// m, n, k > 0, alpha != 0.
func sgemm(tA, tB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	g := gemmProblem{tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc}
	nt := Threads()
	if 2*m*n*k < minParallelFlops {
		nt = 1
	}
	parts := splitProblem(g, nt)
	if len(parts) == 1 {
		gemmSerial(parts[0])
		return
	}
	var wg sync.WaitGroup
	for _, p := range parts[1:] {
		wg.Add(1)
		go func(p gemmProblem) {
			defer wg.Done()
			gemmSerial(p)
		}(p)
	}
	gemmSerial(parts[0])
	wg.Wait()
}

// splitProblem divides C into at most nt independent blocks along M or N,
// choosing the dimension whose split duplicates less packing work: each
// part packs all of the operand it does not split.
func splitProblem(g gemmProblem, nt int) []gemmProblem {
	mTiles := (g.m + mr - 1) / mr
	nTiles := (g.n + nr - 1) / nr
	if nt <= 1 || (mTiles < 2 && nTiles < 2) {
		return []gemmProblem{g}
	}
	// Packing work per part (elements): splitting M packs all of B
	// (k×n) plus A once per nc block; splitting N packs all of A once per
	// nc block of its share plus its share of B.
	ncBlocks := func(n int) int { return (n + blockNC - 1) / blockNC }
	costM := g.k*g.n + (g.m/nt)*g.k*ncBlocks(g.n)
	costN := g.m*g.k*ncBlocks(g.n/nt) + g.k*g.n/nt
	splitM := costM <= costN
	if mTiles < nt {
		splitM = false
	}
	if nTiles < nt {
		splitM = true
	}
	var parts []gemmProblem
	if splitM {
		nt = min(nt, mTiles)
		for t := 0; t < nt; t++ {
			i0, i1 := mTiles*t/nt*mr, min(mTiles*(t+1)/nt*mr, g.m)
			parts = append(parts, g.rows(i0, i1))
		}
	} else {
		nt = min(nt, nTiles)
		for t := 0; t < nt; t++ {
			j0, j1 := nTiles*t/nt*nr, min(nTiles*(t+1)/nt*nr, g.n)
			parts = append(parts, g.cols(j0, j1))
		}
	}
	return parts
}

// gemmSerial runs the blocked algorithm on one goroutine.
func gemmSerial(g gemmProblem) {
	kcMax, mcMax, ncMax := blockKC, blockMC, blockNC
	buf := bufPool.Get().(*gemmBuf)
	defer bufPool.Put(buf)
	kcb := min(kcMax, g.k)
	mcb := min(mcMax, (g.m+mr-1)/mr*mr)
	ncb := min(ncMax, (g.n+nr-1)/nr*nr)
	bufA := aligned(&buf.rawA, kcb*mcb)
	bufB := aligned(&buf.rawB, kcb*ncb)
	var tile [mr * nr]float32
	for jc := 0; jc < g.n; jc += ncMax {
		nc := min(ncMax, g.n-jc)
		for pc := 0; pc < g.k; pc += kcMax {
			kc := min(kcMax, g.k-pc)
			packB(bufB, g, pc, kc, jc, nc)
			beta := g.beta
			if pc > 0 {
				beta = 1
			}
			for ic := 0; ic < g.m; ic += mcMax {
				mc := min(mcMax, g.m-ic)
				packA(bufA, g, ic, mc, pc, kc)
				macroKernel(g, bufA, bufB, &tile, ic, mc, jc, nc, kc, beta)
			}
		}
	}
}

// macroKernel multiplies the packed mc×kc A block by the packed kc×nc B
// block into C[ic:ic+mc, jc:jc+nc].
func macroKernel(g gemmProblem, pa, pb []float32, tile *[mr * nr]float32, ic, mc, jc, nc, kc int, beta float32) {
	kern := microKernel
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
			kern(kc, ap, bp, tile[:], nr, g.alpha, 0)
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
func packA(dst []float32, g gemmProblem, ic, mc, pc, kc int) {
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
					copy(dp, src[:mr])
				} else {
					n := copy(dp[:mm], src[:mm])
					clear(dp[n:])
				}
			}
			continue
		}
		// op(A)[i,p] = A[i*lda+p]: rows are contiguous in p.
		if mm == mr {
			r0 := g.a[(i0+0)*g.lda+pc : (i0+0)*g.lda+pc+kc]
			r1 := g.a[(i0+1)*g.lda+pc : (i0+1)*g.lda+pc+kc]
			r2 := g.a[(i0+2)*g.lda+pc : (i0+2)*g.lda+pc+kc]
			r3 := g.a[(i0+3)*g.lda+pc : (i0+3)*g.lda+pc+kc]
			r4 := g.a[(i0+4)*g.lda+pc : (i0+4)*g.lda+pc+kc]
			r5 := g.a[(i0+5)*g.lda+pc : (i0+5)*g.lda+pc+kc]
			for p := 0; p < kc; p++ {
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
func packB(dst []float32, g gemmProblem, pc, kc, jc, nc int) {
	for jr := 0; jr < nc; jr += nr {
		nn := min(nr, nc-jr)
		d := dst[jr*kc : jr*kc+kc*nr]
		j0 := jc + jr
		if !g.tB {
			// op(B)[p,j] = B[p*ldb+j]: nr contiguous values per p.
			for p := 0; p < kc; p++ {
				src := g.b[(pc+p)*g.ldb+j0:]
				dp := d[p*nr : p*nr+nr]
				if nn == nr {
					copy(dp, src[:nr])
				} else {
					n := copy(dp[:nn], src[:nn])
					clear(dp[n:])
				}
			}
			continue
		}
		// op(B)[p,j] = B[j*ldb+p]: transpose nn rows of B.
		if nn < nr {
			clear(d)
		}
		for j := 0; j < nn; j++ {
			row := g.b[(j0+j)*g.ldb+pc : (j0+j)*g.ldb+pc+kc]
			for p, v := range row {
				d[p*nr+j] = v
			}
		}
	}
}
