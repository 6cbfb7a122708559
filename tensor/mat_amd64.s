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

// func packBT16BF16AVX2(dst *float32, src *byte, ldb, kc8 int)
//
// Transposes 16 rows of bfloat16 values (row stride ldb elements) into a packed
// nr=16 micro-panel: dst[p*16+j] = float32(src[j*ldb+p]) for j < 16 and
// p < 8*kc8, one 8×8 block at a time.
TEXT ·packBT16BF16AVX2(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ ldb+16(FP), R8
	MOVQ kc8+24(FP), CX
	SHLQ $1, R8
	LEAQ (R8)(R8*2), R9 // 3 rows
	TESTQ CX, CX
	JZ   done

loop:
	MOVQ SI, R10         // rows 0-3
	LEAQ (SI)(R8*4), R11 // rows 4-7
	MOVQ DI, DX
	MOVQ $2, BX

half:
	LOADBF16((R10), Y0)
	LOADBF16((R10)(R8*1), Y1)
	LOADBF16((R10)(R8*2), Y2)
	LOADBF16((R10)(R9*1), Y3)
	LOADBF16((R11), Y4)
	LOADBF16((R11)(R8*1), Y5)
	LOADBF16((R11)(R8*2), Y6)
	LOADBF16((R11)(R9*1), Y7)
	TRANSPOSE_STORE
	LEAQ (R11)(R8*4), R10 // rows 8-11
	LEAQ (R10)(R8*4), R11 // rows 12-15
	ADDQ $32, DX
	DECQ BX
	JNZ  half

	ADDQ $16, SI
	ADDQ $512, DI
	DECQ CX
	JNZ  loop

done:
	VZEROUPPER
	RET

// func packBT16F16AVX2(dst *float32, src *byte, ldb, kc8 int)
//
// Transposes 16 rows of float16 values (needs F16C) (row stride ldb elements) into a packed
// nr=16 micro-panel: dst[p*16+j] = float32(src[j*ldb+p]) for j < 16 and
// p < 8*kc8, one 8×8 block at a time.
TEXT ·packBT16F16AVX2(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ ldb+16(FP), R8
	MOVQ kc8+24(FP), CX
	SHLQ $1, R8
	LEAQ (R8)(R8*2), R9 // 3 rows
	TESTQ CX, CX
	JZ   done

loop:
	MOVQ SI, R10         // rows 0-3
	LEAQ (SI)(R8*4), R11 // rows 4-7
	MOVQ DI, DX
	MOVQ $2, BX

half:
	LOADF16((R10), Y0)
	LOADF16((R10)(R8*1), Y1)
	LOADF16((R10)(R8*2), Y2)
	LOADF16((R10)(R9*1), Y3)
	LOADF16((R11), Y4)
	LOADF16((R11)(R8*1), Y5)
	LOADF16((R11)(R8*2), Y6)
	LOADF16((R11)(R9*1), Y7)
	TRANSPOSE_STORE
	LEAQ (R11)(R8*4), R10 // rows 8-11
	LEAQ (R10)(R8*4), R11 // rows 12-15
	ADDQ $32, DX
	DECQ BX
	JNZ  half

	ADDQ $16, SI
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
