//go:build amd64 && !purego

#include "textflag.h"

// Packing and widening of weights stored as float32, bfloat16 or float16
// bytes (tensor.Mat), converting to float32 on the way. Sources may have
// any alignment (a memory-mapped safetensors file need not align its
// tensors), so every load is unaligned.
//
// bfloat16 → float32 is exact: the 16 bits become the upper half of the
// float32 (VPMOVZXWD then VPSLLD $16). float16 → float32 is exact too
// (VCVTPH2PS, F16C): subnormals become normal float32s, NaNs are made
// quiet with their payload kept, as dtype.F16ToF32 does.

// TRANSPOSE_STORE transposes the 8×8 block held in Y0..Y7 (row r in Yr)
// and stores its 8 columns to DX, 64 bytes apart (one packed k step of a
// 16-wide micro-panel is 64 bytes). Clobbers Y0..Y15.
#define TRANSPOSE_STORE \
	VUNPCKLPS  Y1, Y0, Y8; \
	VUNPCKHPS  Y1, Y0, Y9; \
	VUNPCKLPS  Y3, Y2, Y10; \
	VUNPCKHPS  Y3, Y2, Y11; \
	VUNPCKLPS  Y5, Y4, Y12; \
	VUNPCKHPS  Y5, Y4, Y13; \
	VUNPCKLPS  Y7, Y6, Y14; \
	VUNPCKHPS  Y7, Y6, Y15; \
	VSHUFPS    $0x44, Y10, Y8, Y0; \
	VSHUFPS    $0xEE, Y10, Y8, Y1; \
	VSHUFPS    $0x44, Y11, Y9, Y2; \
	VSHUFPS    $0xEE, Y11, Y9, Y3; \
	VSHUFPS    $0x44, Y14, Y12, Y4; \
	VSHUFPS    $0xEE, Y14, Y12, Y5; \
	VSHUFPS    $0x44, Y15, Y13, Y6; \
	VSHUFPS    $0xEE, Y15, Y13, Y7; \
	VPERM2F128 $0x20, Y4, Y0, Y8; \
	VPERM2F128 $0x20, Y5, Y1, Y9; \
	VPERM2F128 $0x20, Y6, Y2, Y10; \
	VPERM2F128 $0x20, Y7, Y3, Y11; \
	VPERM2F128 $0x31, Y4, Y0, Y12; \
	VPERM2F128 $0x31, Y5, Y1, Y13; \
	VPERM2F128 $0x31, Y6, Y2, Y14; \
	VPERM2F128 $0x31, Y7, Y3, Y15; \
	VMOVUPS    Y8, (DX); \
	VMOVUPS    Y9, 64(DX); \
	VMOVUPS    Y10, 128(DX); \
	VMOVUPS    Y11, 192(DX); \
	VMOVUPS    Y12, 256(DX); \
	VMOVUPS    Y13, 320(DX); \
	VMOVUPS    Y14, 384(DX); \
	VMOVUPS    Y15, 448(DX)

// Loads of 8 consecutive values into a ymm register as float32.
#define LOADF32(addr, reg) VMOVUPS addr, reg
#define LOADBF16(addr, reg) VPMOVZXWD addr, reg; VPSLLD $16, reg, reg
#define LOADF16(addr, reg) VCVTPH2PS addr, reg

// func packBT16F32AVX2(dst *float32, src *byte, ldb, kc8 int)
//
// Transposes 16 rows of float32 values (row stride ldb elements) into a packed
// nr=16 micro-panel: dst[p*16+j] = float32(src[j*ldb+p]) for j < 16 and
// p < 8*kc8, one 8×8 block at a time.
TEXT ·packBT16F32AVX2(SB), NOSPLIT, $0-32
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
	LOADF32((R10), Y0)
	LOADF32((R10)(R8*1), Y1)
	LOADF32((R10)(R8*2), Y2)
	LOADF32((R10)(R9*1), Y3)
	LOADF32((R11), Y4)
	LOADF32((R11)(R8*1), Y5)
	LOADF32((R11)(R8*2), Y6)
	LOADF32((R11)(R9*1), Y7)
	TRANSPOSE_STORE
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

// TRANSPOSE16 transposes, within each 128-bit lane, the 8×8 block of
// 16-bit values held in Y0..Y7 (row r in Yr) into Y8..Y15 (column c in
// Y(8+c)) in three rounds of interleaves (words, dwords, qwords). Clobbers
// Y0..Y15.
#define TRANSPOSE16 \
	VPUNPCKLWD  Y1, Y0, Y8; \
	VPUNPCKHWD  Y1, Y0, Y9; \
	VPUNPCKLWD  Y3, Y2, Y10; \
	VPUNPCKHWD  Y3, Y2, Y11; \
	VPUNPCKLWD  Y5, Y4, Y12; \
	VPUNPCKHWD  Y5, Y4, Y13; \
	VPUNPCKLWD  Y7, Y6, Y14; \
	VPUNPCKHWD  Y7, Y6, Y15; \
	VPUNPCKLDQ  Y10, Y8, Y0; \
	VPUNPCKHDQ  Y10, Y8, Y1; \
	VPUNPCKLDQ  Y11, Y9, Y2; \
	VPUNPCKHDQ  Y11, Y9, Y3; \
	VPUNPCKLDQ  Y14, Y12, Y4; \
	VPUNPCKHDQ  Y14, Y12, Y5; \
	VPUNPCKLDQ  Y15, Y13, Y6; \
	VPUNPCKHDQ  Y15, Y13, Y7; \
	VPUNPCKLQDQ Y4, Y0, Y8; \
	VPUNPCKHQDQ Y4, Y0, Y9; \
	VPUNPCKLQDQ Y5, Y1, Y10; \
	VPUNPCKHQDQ Y5, Y1, Y11; \
	VPUNPCKLQDQ Y6, Y2, Y12; \
	VPUNPCKHQDQ Y6, Y2, Y13; \
	VPUNPCKLQDQ Y7, Y3, Y14; \
	VPUNPCKHQDQ Y7, Y3, Y15

// LOAD2 loads 8 16-bit values from lo into the low lane of Y(reg) and 8
// from hi into its high lane.
#define LOAD2(lo, hi, x, y) \
	VMOVDQU     lo, x; \
	VINSERTI128 $1, hi, y, y

// func packBT16BF16AVX2(dst *float32, src *byte, ldb, kc8 int)
//
// Transposes 16 rows of bfloat16 values (row stride ldb elements) into a
// packed nr=16 micro-panel of float32: dst[p*16+j] = float32(src[j*ldb+p])
// for j < 16 and p < 8*kc8. Each 16×8 block is transposed as 16-bit values,
// two 8×8 transposes side by side in the two lanes, and then widened by
// interleaving with zeros (a bfloat16 is the upper half of its float32).
// The rows are distributed over the lanes so that the interleave with
// zeros yields columns in order: lane 0 holds rows 0-3 and 8-11, lane 1
// rows 4-7 and 12-15, so that the low interleave of a transposed column
// is rows 0-7 and the high one rows 8-15.
TEXT ·packBT16BF16AVX2(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ ldb+16(FP), R8
	MOVQ kc8+24(FP), CX
	SHLQ $1, R8
	LEAQ (R8)(R8*2), R9   // 3 rows
	LEAQ (SI)(R8*4), R11  // row 4
	LEAQ (R11)(R8*4), R12 // row 8
	LEAQ (R12)(R8*4), R13 // row 12
	TESTQ CX, CX
	JZ   done

loop:
	LOAD2((SI), (R11), X0, Y0)
	LOAD2((SI)(R8*1), (R11)(R8*1), X1, Y1)
	LOAD2((SI)(R8*2), (R11)(R8*2), X2, Y2)
	LOAD2((SI)(R9*1), (R11)(R9*1), X3, Y3)
	LOAD2((R12), (R13), X4, Y4)
	LOAD2((R12)(R8*1), (R13)(R8*1), X5, Y5)
	LOAD2((R12)(R8*2), (R13)(R8*2), X6, Y6)
	LOAD2((R12)(R9*1), (R13)(R9*1), X7, Y7)
	TRANSPOSE16
	VPXOR      Y0, Y0, Y0
	VPUNPCKLWD Y8, Y0, Y1
	VPUNPCKHWD Y8, Y0, Y2
	VPUNPCKLWD Y9, Y0, Y3
	VPUNPCKHWD Y9, Y0, Y4
	VMOVUPS    Y1, (DI)
	VMOVUPS    Y2, 32(DI)
	VMOVUPS    Y3, 64(DI)
	VMOVUPS    Y4, 96(DI)
	VPUNPCKLWD Y10, Y0, Y5
	VPUNPCKHWD Y10, Y0, Y6
	VPUNPCKLWD Y11, Y0, Y7
	VPUNPCKHWD Y11, Y0, Y1
	VMOVUPS    Y5, 128(DI)
	VMOVUPS    Y6, 160(DI)
	VMOVUPS    Y7, 192(DI)
	VMOVUPS    Y1, 224(DI)
	VPUNPCKLWD Y12, Y0, Y2
	VPUNPCKHWD Y12, Y0, Y3
	VPUNPCKLWD Y13, Y0, Y4
	VPUNPCKHWD Y13, Y0, Y5
	VMOVUPS    Y2, 256(DI)
	VMOVUPS    Y3, 288(DI)
	VMOVUPS    Y4, 320(DI)
	VMOVUPS    Y5, 352(DI)
	VPUNPCKLWD Y14, Y0, Y6
	VPUNPCKHWD Y14, Y0, Y7
	VPUNPCKLWD Y15, Y0, Y1
	VPUNPCKHWD Y15, Y0, Y2
	VMOVUPS    Y6, 384(DI)
	VMOVUPS    Y7, 416(DI)
	VMOVUPS    Y1, 448(DI)
	VMOVUPS    Y2, 480(DI)
	ADDQ       $16, SI
	ADDQ       $16, R11
	ADDQ       $16, R12
	ADDQ       $16, R13
	ADDQ       $512, DI
	DECQ       CX
	JNZ        loop

done:
	VZEROUPPER
	RET

// CVTSTORE widens the 16 float16 values of Y(col) (rows 0-7 in the low
// lane, 8-15 in the high lane) and stores them at off(DI).
#define CVTSTORE(col, xcol, off) \
	VCVTPH2PS    xcol, Y0; \
	VEXTRACTI128 $1, col, X1; \
	VCVTPH2PS    X1, Y1; \
	VMOVUPS      Y0, off(DI); \
	VMOVUPS      Y1, off+32(DI)

// func packBT16F16AVX2(dst *float32, src *byte, ldb, kc8 int)
//
// packBT16BF16AVX2 for float16 values (needs F16C): the 16-bit transpose
// keeps rows 0-7 in the low lane and rows 8-15 in the high lane, and each
// lane of a transposed column is widened with VCVTPH2PS.
TEXT ·packBT16F16AVX2(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ ldb+16(FP), R8
	MOVQ kc8+24(FP), CX
	SHLQ $1, R8
	LEAQ (R8)(R8*2), R9   // 3 rows
	LEAQ (SI)(R8*4), R11  // row 4
	LEAQ (R11)(R8*4), R12 // row 8
	LEAQ (R12)(R8*4), R13 // row 12
	TESTQ CX, CX
	JZ   done

loop:
	LOAD2((SI), (R12), X0, Y0)
	LOAD2((SI)(R8*1), (R12)(R8*1), X1, Y1)
	LOAD2((SI)(R8*2), (R12)(R8*2), X2, Y2)
	LOAD2((SI)(R9*1), (R12)(R9*1), X3, Y3)
	LOAD2((R11), (R13), X4, Y4)
	LOAD2((R11)(R8*1), (R13)(R8*1), X5, Y5)
	LOAD2((R11)(R8*2), (R13)(R8*2), X6, Y6)
	LOAD2((R11)(R9*1), (R13)(R9*1), X7, Y7)
	TRANSPOSE16
	CVTSTORE(Y8, X8, 0)
	CVTSTORE(Y9, X9, 64)
	CVTSTORE(Y10, X10, 128)
	CVTSTORE(Y11, X11, 192)
	CVTSTORE(Y12, X12, 256)
	CVTSTORE(Y13, X13, 320)
	CVTSTORE(Y14, X14, 384)
	CVTSTORE(Y15, X15, 448)
	ADDQ $16, SI
	ADDQ $16, R11
	ADDQ $16, R12
	ADDQ $16, R13
	ADDQ $512, DI
	DECQ CX
	JNZ  loop

done:
	VZEROUPPER
	RET

// func widenBF16AVX2(dst *float32, src *byte, n int)
//
// Widens n bfloat16 values (n a multiple of 16) into dst.
TEXT ·widenBF16AVX2(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	SHRQ $4, CX
	JZ   done

loop:
	LOADBF16((SI), Y0)
	LOADBF16(16(SI), Y1)
	VMOVUPS Y0, (DI)
	VMOVUPS Y1, 32(DI)
	ADDQ    $32, SI
	ADDQ    $64, DI
	DECQ    CX
	JNZ     loop

done:
	VZEROUPPER
	RET

// func widenF16AVX2(dst *float32, src *byte, n int)
//
// Widens n float16 (needs F16C) values (n a multiple of 16) into dst.
TEXT ·widenF16AVX2(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	SHRQ $4, CX
	JZ   done

loop:
	LOADF16((SI), Y0)
	LOADF16(16(SI), Y1)
	VMOVUPS Y0, (DI)
	VMOVUPS Y1, 32(DI)
	ADDQ    $32, SI
	ADDQ    $64, DI
	DECQ    CX
	JNZ     loop

done:
	VZEROUPPER
	RET
