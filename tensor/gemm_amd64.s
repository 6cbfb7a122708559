//go:build amd64 && !purego

#include "textflag.h"

// One k step of the 6×16 AVX2 microkernel. The packed A micro-panel holds 6
// values per k (one per row), the packed B micro-panel 16 values per k.
// Y0,Y1: the 16 B values; Y2,Y3: broadcast A values; Y4..Y15: C tile,
// row r in Y(4+2r) (columns 0-7) and Y(5+2r) (columns 8-15).
#define STEP(ao, bo) \
	VMOVUPS      bo(DI), Y0; \
	VMOVUPS      bo+32(DI), Y1; \
	VBROADCASTSS ao(SI), Y2; \
	VFMADD231PS  Y0, Y2, Y4; \
	VFMADD231PS  Y1, Y2, Y5; \
	VBROADCASTSS ao+4(SI), Y3; \
	VFMADD231PS  Y0, Y3, Y6; \
	VFMADD231PS  Y1, Y3, Y7; \
	VBROADCASTSS ao+8(SI), Y2; \
	VFMADD231PS  Y0, Y2, Y8; \
	VFMADD231PS  Y1, Y2, Y9; \
	VBROADCASTSS ao+12(SI), Y3; \
	VFMADD231PS  Y0, Y3, Y10; \
	VFMADD231PS  Y1, Y3, Y11; \
	VBROADCASTSS ao+16(SI), Y2; \
	VFMADD231PS  Y0, Y2, Y12; \
	VFMADD231PS  Y1, Y2, Y13; \
	VBROADCASTSS ao+20(SI), Y3; \
	VFMADD231PS  Y0, Y3, Y14; \
	VFMADD231PS  Y1, Y3, Y15

// Row store, beta == 0: C = alpha*acc.
#define STORE0(lo, hi) \
	VMULPS  Y0, lo, lo; \
	VMULPS  Y0, hi, hi; \
	VMOVUPS lo, (DX); \
	VMOVUPS hi, 32(DX); \
	ADDQ    R8, DX

// Row store, general beta: C = alpha*acc + beta*C.
#define STOREB(lo, hi) \
	VMULPS      Y0, lo, lo; \
	VMULPS      Y0, hi, hi; \
	VFMADD231PS (DX), Y1, lo; \
	VFMADD231PS 32(DX), Y1, hi; \
	VMOVUPS     lo, (DX); \
	VMOVUPS     hi, 32(DX); \
	ADDQ        R8, DX

// func sgemmKernel6x16AVX2(k int, a, b, c *float32, ldc int, alpha, beta float32)
//
// C[0:6, 0:16] (row stride ldc elements) = alpha * Apanel·Bpanel + beta*C,
// where Apanel is k×6 packed (6 values per k) and Bpanel k×16 packed. When
// beta is ±0, C is not read. k >= 0.
TEXT ·sgemmKernel6x16AVX2(SB), NOSPLIT, $0-48
	MOVQ k+0(FP), CX
	MOVQ a+8(FP), SI
	MOVQ b+16(FP), DI
	MOVQ c+24(FP), DX
	MOVQ ldc+32(FP), R8
	SHLQ $2, R8

	// Prefetch the C tile (each row is 64 bytes, possibly over two lines).
	MOVQ       DX, R9
	PREFETCHT0 (R9)
	PREFETCHT0 63(R9)
	ADDQ       R8, R9
	PREFETCHT0 (R9)
	PREFETCHT0 63(R9)
	ADDQ       R8, R9
	PREFETCHT0 (R9)
	PREFETCHT0 63(R9)
	ADDQ       R8, R9
	PREFETCHT0 (R9)
	PREFETCHT0 63(R9)
	ADDQ       R8, R9
	PREFETCHT0 (R9)
	PREFETCHT0 63(R9)
	ADDQ       R8, R9
	PREFETCHT0 (R9)
	PREFETCHT0 63(R9)

	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	VXORPS Y8, Y8, Y8
	VXORPS Y9, Y9, Y9
	VXORPS Y10, Y10, Y10
	VXORPS Y11, Y11, Y11
	VXORPS Y12, Y12, Y12
	VXORPS Y13, Y13, Y13
	VXORPS Y14, Y14, Y14
	VXORPS Y15, Y15, Y15

	MOVQ CX, BX
	SHRQ $2, BX
	ANDQ $3, CX
	TESTQ BX, BX
	JZ   tail

loop4:
	PREFETCHT0 384(DI)
	STEP(0, 0)
	STEP(24, 64)
	PREFETCHT0 448(DI)
	STEP(48, 128)
	STEP(72, 192)
	ADDQ $96, SI
	ADDQ $256, DI
	DECQ BX
	JNZ  loop4

tail:
	TESTQ CX, CX
	JZ    store

loop1:
	STEP(0, 0)
	ADDQ $24, SI
	ADDQ $64, DI
	DECQ CX
	JNZ  loop1

store:
	VBROADCASTSS alpha+40(FP), Y0
	MOVL         beta+44(FP), AX
	TESTL        $0x7fffffff, AX
	JZ           store0
	VBROADCASTSS beta+44(FP), Y1
	STOREB(Y4, Y5)
	STOREB(Y6, Y7)
	STOREB(Y8, Y9)
	STOREB(Y10, Y11)
	STOREB(Y12, Y13)
	STOREB(Y14, Y15)
	VZEROUPPER
	RET

store0:
	STORE0(Y4, Y5)
	STORE0(Y6, Y7)
	STORE0(Y8, Y9)
	STORE0(Y10, Y11)
	STORE0(Y12, Y13)
	STORE0(Y14, Y15)
	VZEROUPPER
	RET

// func packBT16AVX2(dst, src *float32, ldb, kc8 int)
//
// Transposes 16 rows of B (row stride ldb elements) into a packed nr=16
// micro-panel: dst[p*16+j] = src[j*ldb+p] for j < 16 and p < 8*kc8.
// Each 8×8 block is transposed in registers (unpack, shuffle, 128-bit lane
// permute).
TEXT ·packBT16AVX2(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ ldb+16(FP), R8
	MOVQ kc8+24(FP), CX
	SHLQ $2, R8
	LEAQ (R8)(R8*2), R9 // 3 rows
	TESTQ CX, CX
	JZ   done

loop:
	MOVQ SI, R10         // rows 0-3
	LEAQ (SI)(R8*4), R11 // rows 4-7
	MOVQ DI, DX
	MOVQ $2, BX

half:
	VMOVUPS (R10), Y0
	VMOVUPS (R10)(R8*1), Y1
	VMOVUPS (R10)(R8*2), Y2
	VMOVUPS (R10)(R9*1), Y3
	VMOVUPS (R11), Y4
	VMOVUPS (R11)(R8*1), Y5
	VMOVUPS (R11)(R8*2), Y6
	VMOVUPS (R11)(R9*1), Y7

	VUNPCKLPS Y1, Y0, Y8
	VUNPCKHPS Y1, Y0, Y9
	VUNPCKLPS Y3, Y2, Y10
	VUNPCKHPS Y3, Y2, Y11
	VUNPCKLPS Y5, Y4, Y12
	VUNPCKHPS Y5, Y4, Y13
	VUNPCKLPS Y7, Y6, Y14
	VUNPCKHPS Y7, Y6, Y15

	VSHUFPS $0x44, Y10, Y8, Y0
	VSHUFPS $0xEE, Y10, Y8, Y1
	VSHUFPS $0x44, Y11, Y9, Y2
	VSHUFPS $0xEE, Y11, Y9, Y3
	VSHUFPS $0x44, Y14, Y12, Y4
	VSHUFPS $0xEE, Y14, Y12, Y5
	VSHUFPS $0x44, Y15, Y13, Y6
	VSHUFPS $0xEE, Y15, Y13, Y7

	VPERM2F128 $0x20, Y4, Y0, Y8
	VPERM2F128 $0x20, Y5, Y1, Y9
	VPERM2F128 $0x20, Y6, Y2, Y10
	VPERM2F128 $0x20, Y7, Y3, Y11
	VPERM2F128 $0x31, Y4, Y0, Y12
	VPERM2F128 $0x31, Y5, Y1, Y13
	VPERM2F128 $0x31, Y6, Y2, Y14
	VPERM2F128 $0x31, Y7, Y3, Y15

	VMOVUPS Y8, (DX)
	VMOVUPS Y9, 64(DX)
	VMOVUPS Y10, 128(DX)
	VMOVUPS Y11, 192(DX)
	VMOVUPS Y12, 256(DX)
	VMOVUPS Y13, 320(DX)
	VMOVUPS Y14, 384(DX)
	VMOVUPS Y15, 448(DX)

	LEAQ (R11)(R8*4), R10 // rows 8-11
	LEAQ (R10)(R8*4), R11 // rows 12-15
	ADDQ $32, DX
	DECQ BX
	JNZ  half

	ADDQ $32, SI
	ADDQ $512, DI
	DECQ CX
	JNZ  loop

done:
	VZEROUPPER
	RET

// func packAN6AVX2(dst, src *float32, lda, kc8 int)
//
// Interleaves 6 rows of A (row stride lda elements) into a packed mr=6
// micro-panel: dst[p*6+r] = src[r*lda+p] for r < 6 and p < 8*kc8. Each 6×8
// block goes through an 8×8 register transpose (rows 6 and 7 are don't-care
// copies); column p is written with a 32-byte store whose last two floats
// are overwritten by column p+1, so dst needs 2 floats of slack after
// 48*kc8 floats.
TEXT ·packAN6AVX2(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ lda+16(FP), R8
	MOVQ kc8+24(FP), CX
	SHLQ $2, R8
	LEAQ (R8)(R8*2), R9 // 3 rows
	TESTQ CX, CX
	JZ   done

loop:
	LEAQ (SI)(R8*4), R11 // rows 4-5
	VMOVUPS (SI), Y0
	VMOVUPS (SI)(R8*1), Y1
	VMOVUPS (SI)(R8*2), Y2
	VMOVUPS (SI)(R9*1), Y3
	VMOVUPS (R11), Y4
	VMOVUPS (R11)(R8*1), Y5

	VUNPCKLPS Y1, Y0, Y8
	VUNPCKHPS Y1, Y0, Y9
	VUNPCKLPS Y3, Y2, Y10
	VUNPCKHPS Y3, Y2, Y11
	VUNPCKLPS Y5, Y4, Y12
	VUNPCKHPS Y5, Y4, Y13

	VSHUFPS $0x44, Y10, Y8, Y0
	VSHUFPS $0xEE, Y10, Y8, Y1
	VSHUFPS $0x44, Y11, Y9, Y2
	VSHUFPS $0xEE, Y11, Y9, Y3
	VSHUFPS $0x44, Y12, Y12, Y4
	VSHUFPS $0xEE, Y12, Y12, Y5
	VSHUFPS $0x44, Y13, Y13, Y6
	VSHUFPS $0xEE, Y13, Y13, Y7

	VPERM2F128 $0x20, Y4, Y0, Y8
	VPERM2F128 $0x20, Y5, Y1, Y9
	VPERM2F128 $0x20, Y6, Y2, Y10
	VPERM2F128 $0x20, Y7, Y3, Y11
	VPERM2F128 $0x31, Y4, Y0, Y12
	VPERM2F128 $0x31, Y5, Y1, Y13
	VPERM2F128 $0x31, Y6, Y2, Y14
	VPERM2F128 $0x31, Y7, Y3, Y15

	VMOVUPS Y8, (DI)
	VMOVUPS Y9, 24(DI)
	VMOVUPS Y10, 48(DI)
	VMOVUPS Y11, 72(DI)
	VMOVUPS Y12, 96(DI)
	VMOVUPS Y13, 120(DI)
	VMOVUPS Y14, 144(DI)
	VMOVUPS Y15, 168(DI)

	ADDQ $32, SI
	ADDQ $192, DI
	DECQ CX
	JNZ  loop

done:
	VZEROUPPER
	RET

// func packBN16AVX2(dst, src *float32, ldb, kc int)
//
// Copies 16 contiguous values from each of kc rows of B (row stride ldb
// elements) into a packed nr=16 micro-panel: dst[p*16+j] = src[p*ldb+j].
TEXT ·packBN16AVX2(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ ldb+16(FP), R8
	MOVQ kc+24(FP), CX
	SHLQ $2, R8
	TESTQ CX, CX
	JZ   done

loop:
	VMOVUPS (SI), Y0
	VMOVUPS 32(SI), Y1
	VMOVUPS Y0, (DI)
	VMOVUPS Y1, 32(DI)
	ADDQ R8, SI
	ADDQ $64, DI
	DECQ CX
	JNZ  loop

done:
	VZEROUPPER
	RET
