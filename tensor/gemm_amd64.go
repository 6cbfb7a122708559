//go:build amd64 && !purego

package tensor

import "golang.org/x/sys/cpu"

//go:noescape
func sgemmKernel6x16AVX2(k int, a, b, c *float32, ldc int, alpha, beta float32)

//go:noescape
func packBT16AVX2(dst, src *float32, ldb, kc8 int)

//go:noescape
func packAN6AVX2(dst, src *float32, lda, kc8 int)

//go:noescape
func packBN16AVX2(dst, src *float32, ldb, kc int)

//go:noescape
func dgemmKernel6x8AVX2(k int, a, b, c *float64, ldc int, alpha, beta float64)

func init() {
	if cpu.X86.HasAVX2 && cpu.X86.HasFMA {
		s := sgemmImpl
		s.name = "avx2-fma-6x16"
		s.kernel = kernelAVX2
		s.packAN = packAN6Asm
		s.packBT = packBT16Asm
		s.packBN = packBN16Asm
		d := dgemmImpl
		d.name = "avx2-fma-6x8"
		d.kernel = dkernelAVX2
	}
}

// packBT16Asm transposes the first kc&^7 columns of 16 rows of src with
// AVX2 and returns how many it did.
func packBT16Asm(dst, src []float32, ldb, kc int) int {
	kc8 := kc / 8
	if kc8 == 0 {
		return 0
	}
	_ = dst[kc8*8*16-1]
	_ = src[15*ldb+kc8*8-1]
	packBT16AVX2(&dst[0], &src[0], ldb, kc8)
	return kc8 * 8
}

func kernelAVX2(k int, a, b, c []float32, ldc int, alpha, beta float32) {
	_ = a[k*mr-1]
	_ = b[k*16-1]
	_ = c[(mr-1)*ldc+16-1]
	sgemmKernel6x16AVX2(k, &a[0], &b[0], &c[0], ldc, alpha, beta)
}

// packAN6Asm interleaves the first kc&^7 columns of 6 rows of src with AVX2
// and returns how many it did. dst needs 2 floats of capacity beyond
// 6*(kc&^7).
func packAN6Asm(dst, src []float32, lda, kc int) int {
	kc8 := kc / 8
	if kc8 == 0 {
		return 0
	}
	_ = dst[:kc8*8*mr+2]
	_ = src[5*lda+kc8*8-1]
	packAN6AVX2(&dst[0], &src[0], lda, kc8)
	return kc8 * 8
}

// packBN16Asm copies 16 values from each of kc rows of src.
func packBN16Asm(dst, src []float32, ldb, kc int) {
	if kc == 0 {
		return
	}
	_ = dst[kc*16-1]
	_ = src[(kc-1)*ldb+16-1]
	packBN16AVX2(&dst[0], &src[0], ldb, kc)
}

func dkernelAVX2(k int, a, b, c []float64, ldc int, alpha, beta float64) {
	_ = a[k*mr-1]
	_ = b[k*8-1]
	_ = c[(mr-1)*ldc+8-1]
	dgemmKernel6x8AVX2(k, &a[0], &b[0], &c[0], ldc, alpha, beta)
}
