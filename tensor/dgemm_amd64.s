//go:build amd64 && !purego

#include "textflag.h"

// One k step of the 6×8 float64 AVX2 microkernel: the packed A micro-panel
// holds 6 values per k, the packed B micro-panel 8. Y0,Y1: B; Y2,Y3:
// broadcast A; Y4..Y15: C tile, row r in Y(4+2r) (cols 0-3), Y(5+2r) (4-7).
#define DSTEP(ao, bo) \
	VMOVUPD      bo(DI), Y0; \
	VMOVUPD      bo+32(DI), Y1; \
	VBROADCASTSD ao(SI), Y2; \
	VFMADD231PD  Y0, Y2, Y4; \
	VFMADD231PD  Y1, Y2, Y5; \
	VBROADCASTSD ao+8(SI), Y3; \
	VFMADD231PD  Y0, Y3, Y6; \
	VFMADD231PD  Y1, Y3, Y7; \
	VBROADCASTSD ao+16(SI), Y2; \
	VFMADD231PD  Y0, Y2, Y8; \
	VFMADD231PD  Y1, Y2, Y9; \
	VBROADCASTSD ao+24(SI), Y3; \
	VFMADD231PD  Y0, Y3, Y10; \
	VFMADD231PD  Y1, Y3, Y11; \
	VBROADCASTSD ao+32(SI), Y2; \
	VFMADD231PD  Y0, Y2, Y12; \
	VFMADD231PD  Y1, Y2, Y13; \
	VBROADCASTSD ao+40(SI), Y3; \
	VFMADD231PD  Y0, Y3, Y14; \
	VFMADD231PD  Y1, Y3, Y15

#define DSTORE0(lo, hi) \
	VMULPD  Y0, lo, lo; \
	VMULPD  Y0, hi, hi; \
	VMOVUPD lo, (DX); \
	VMOVUPD hi, 32(DX); \
	ADDQ    R8, DX

#define DSTOREB(lo, hi) \
	VMULPD      Y0, lo, lo; \
	VMULPD      Y0, hi, hi; \
	VFMADD231PD (DX), Y1, lo; \
	VFMADD231PD 32(DX), Y1, hi; \
	VMOVUPD     lo, (DX); \
	VMOVUPD     hi, 32(DX); \
	ADDQ        R8, DX

// func dgemmKernel6x8AVX2(k int, a, b, c *float64, ldc int, alpha, beta float64)
//
// C[0:6, 0:8] (row stride ldc elements) = alpha * Apanel·Bpanel + beta*C.
// When beta is ±0, C is not read.
TEXT ·dgemmKernel6x8AVX2(SB), NOSPLIT, $0-56
	MOVQ k+0(FP), CX
	MOVQ a+8(FP), SI
	MOVQ b+16(FP), DI
	MOVQ c+24(FP), DX
	MOVQ ldc+32(FP), R8
	SHLQ $3, R8

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

	VXORPD Y4, Y4, Y4
	VXORPD Y5, Y5, Y5
	VXORPD Y6, Y6, Y6
	VXORPD Y7, Y7, Y7
	VXORPD Y8, Y8, Y8
	VXORPD Y9, Y9, Y9
	VXORPD Y10, Y10, Y10
	VXORPD Y11, Y11, Y11
	VXORPD Y12, Y12, Y12
	VXORPD Y13, Y13, Y13
	VXORPD Y14, Y14, Y14
	VXORPD Y15, Y15, Y15

	MOVQ  CX, BX
	SHRQ  $2, BX
	ANDQ  $3, CX
	TESTQ BX, BX
	JZ    tail

loop4:
	PREFETCHT0 384(DI)
	DSTEP(0, 0)
	DSTEP(48, 64)
	PREFETCHT0 448(DI)
	DSTEP(96, 128)
	DSTEP(144, 192)
	ADDQ $192, SI
	ADDQ $256, DI
	DECQ BX
	JNZ  loop4

tail:
	TESTQ CX, CX
	JZ    store

loop1:
	DSTEP(0, 0)
	ADDQ $48, SI
	ADDQ $64, DI
	DECQ CX
	JNZ  loop1

store:
	VBROADCASTSD alpha+40(FP), Y0
	MOVQ         beta+48(FP), AX
	SHLQ         $1, AX
	JZ           store0
	VBROADCASTSD beta+48(FP), Y1
	DSTOREB(Y4, Y5)
	DSTOREB(Y6, Y7)
	DSTOREB(Y8, Y9)
	DSTOREB(Y10, Y11)
	DSTOREB(Y12, Y13)
	DSTOREB(Y14, Y15)
	VZEROUPPER
	RET

store0:
	DSTORE0(Y4, Y5)
	DSTORE0(Y6, Y7)
	DSTORE0(Y8, Y9)
	DSTORE0(Y10, Y11)
	DSTORE0(Y12, Y13)
	DSTORE0(Y14, Y15)
	VZEROUPPER
	RET
