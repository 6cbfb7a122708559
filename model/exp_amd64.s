//go:build amd64 && !purego

#include "textflag.h"

DATA expc<>+0(SB)/4, $0x3fb8aa3b
DATA expc<>+4(SB)/4, $0x3fb8aa3b
DATA expc<>+8(SB)/4, $0x3fb8aa3b
DATA expc<>+12(SB)/4, $0x3fb8aa3b
DATA expc<>+16(SB)/4, $0x3fb8aa3b
DATA expc<>+20(SB)/4, $0x3fb8aa3b
DATA expc<>+24(SB)/4, $0x3fb8aa3b
DATA expc<>+28(SB)/4, $0x3fb8aa3b
DATA expc<>+32(SB)/4, $0x3f318000
DATA expc<>+36(SB)/4, $0x3f318000
DATA expc<>+40(SB)/4, $0x3f318000
DATA expc<>+44(SB)/4, $0x3f318000
DATA expc<>+48(SB)/4, $0x3f318000
DATA expc<>+52(SB)/4, $0x3f318000
DATA expc<>+56(SB)/4, $0x3f318000
DATA expc<>+60(SB)/4, $0x3f318000
DATA expc<>+64(SB)/4, $0xb95e8083
DATA expc<>+68(SB)/4, $0xb95e8083
DATA expc<>+72(SB)/4, $0xb95e8083
DATA expc<>+76(SB)/4, $0xb95e8083
DATA expc<>+80(SB)/4, $0xb95e8083
DATA expc<>+84(SB)/4, $0xb95e8083
DATA expc<>+88(SB)/4, $0xb95e8083
DATA expc<>+92(SB)/4, $0xb95e8083
DATA expc<>+96(SB)/4, $0x39506967
DATA expc<>+100(SB)/4, $0x39506967
DATA expc<>+104(SB)/4, $0x39506967
DATA expc<>+108(SB)/4, $0x39506967
DATA expc<>+112(SB)/4, $0x39506967
DATA expc<>+116(SB)/4, $0x39506967
DATA expc<>+120(SB)/4, $0x39506967
DATA expc<>+124(SB)/4, $0x39506967
DATA expc<>+128(SB)/4, $0x3ab743ce
DATA expc<>+132(SB)/4, $0x3ab743ce
DATA expc<>+136(SB)/4, $0x3ab743ce
DATA expc<>+140(SB)/4, $0x3ab743ce
DATA expc<>+144(SB)/4, $0x3ab743ce
DATA expc<>+148(SB)/4, $0x3ab743ce
DATA expc<>+152(SB)/4, $0x3ab743ce
DATA expc<>+156(SB)/4, $0x3ab743ce
DATA expc<>+160(SB)/4, $0x3c088908
DATA expc<>+164(SB)/4, $0x3c088908
DATA expc<>+168(SB)/4, $0x3c088908
DATA expc<>+172(SB)/4, $0x3c088908
DATA expc<>+176(SB)/4, $0x3c088908
DATA expc<>+180(SB)/4, $0x3c088908
DATA expc<>+184(SB)/4, $0x3c088908
DATA expc<>+188(SB)/4, $0x3c088908
DATA expc<>+192(SB)/4, $0x3d2aa9c1
DATA expc<>+196(SB)/4, $0x3d2aa9c1
DATA expc<>+200(SB)/4, $0x3d2aa9c1
DATA expc<>+204(SB)/4, $0x3d2aa9c1
DATA expc<>+208(SB)/4, $0x3d2aa9c1
DATA expc<>+212(SB)/4, $0x3d2aa9c1
DATA expc<>+216(SB)/4, $0x3d2aa9c1
DATA expc<>+220(SB)/4, $0x3d2aa9c1
DATA expc<>+224(SB)/4, $0x3e2aaaaa
DATA expc<>+228(SB)/4, $0x3e2aaaaa
DATA expc<>+232(SB)/4, $0x3e2aaaaa
DATA expc<>+236(SB)/4, $0x3e2aaaaa
DATA expc<>+240(SB)/4, $0x3e2aaaaa
DATA expc<>+244(SB)/4, $0x3e2aaaaa
DATA expc<>+248(SB)/4, $0x3e2aaaaa
DATA expc<>+252(SB)/4, $0x3e2aaaaa
DATA expc<>+256(SB)/4, $0x3f000000
DATA expc<>+260(SB)/4, $0x3f000000
DATA expc<>+264(SB)/4, $0x3f000000
DATA expc<>+268(SB)/4, $0x3f000000
DATA expc<>+272(SB)/4, $0x3f000000
DATA expc<>+276(SB)/4, $0x3f000000
DATA expc<>+280(SB)/4, $0x3f000000
DATA expc<>+284(SB)/4, $0x3f000000
DATA expc<>+288(SB)/4, $0x3f800000
DATA expc<>+292(SB)/4, $0x3f800000
DATA expc<>+296(SB)/4, $0x3f800000
DATA expc<>+300(SB)/4, $0x3f800000
DATA expc<>+304(SB)/4, $0x3f800000
DATA expc<>+308(SB)/4, $0x3f800000
DATA expc<>+312(SB)/4, $0x3f800000
DATA expc<>+316(SB)/4, $0x3f800000
DATA expc<>+320(SB)/4, $0xc2aea8f6
DATA expc<>+324(SB)/4, $0xc2aea8f6
DATA expc<>+328(SB)/4, $0xc2aea8f6
DATA expc<>+332(SB)/4, $0xc2aea8f6
DATA expc<>+336(SB)/4, $0xc2aea8f6
DATA expc<>+340(SB)/4, $0xc2aea8f6
DATA expc<>+344(SB)/4, $0xc2aea8f6
DATA expc<>+348(SB)/4, $0xc2aea8f6
DATA expc<>+352(SB)/4, $0x42b0999a
DATA expc<>+356(SB)/4, $0x42b0999a
DATA expc<>+360(SB)/4, $0x42b0999a
DATA expc<>+364(SB)/4, $0x42b0999a
DATA expc<>+368(SB)/4, $0x42b0999a
DATA expc<>+372(SB)/4, $0x42b0999a
DATA expc<>+376(SB)/4, $0x42b0999a
DATA expc<>+380(SB)/4, $0x42b0999a
DATA expc<>+384(SB)/4, $0x0000007f
DATA expc<>+388(SB)/4, $0x0000007f
DATA expc<>+392(SB)/4, $0x0000007f
DATA expc<>+396(SB)/4, $0x0000007f
DATA expc<>+400(SB)/4, $0x0000007f
DATA expc<>+404(SB)/4, $0x0000007f
DATA expc<>+408(SB)/4, $0x0000007f
DATA expc<>+412(SB)/4, $0x0000007f
GLOBL expc<>(SB), RODATA|NOPTR, $416

// EXP replaces the 8 floats of Y0 by exp(Y0) (Cephes expf: Cody-Waite
// reduction by ln 2, degree-6 polynomial, scaling by 2^n through the exponent
// bits). Inputs are clamped to [-87.33, 88.3]; NaN propagates. Clobbers Y1-Y3.
#define EXP \
	VMOVUPS      expc<>+320(SB), Y1; \
	VMAXPS       Y0, Y1, Y0; \
	VMOVUPS      expc<>+352(SB), Y1; \
	VMINPS       Y0, Y1, Y0; \
	VMULPS       expc<>+0(SB), Y0, Y1; \
	VROUNDPS     $0, Y1, Y1; \
	VFNMADD231PS expc<>+32(SB), Y1, Y0; \
	VFNMADD231PS expc<>+64(SB), Y1, Y0; \
	VMOVUPS      expc<>+96(SB), Y2; \
	VFMADD213PS  expc<>+128(SB), Y0, Y2; \
	VFMADD213PS  expc<>+160(SB), Y0, Y2; \
	VFMADD213PS  expc<>+192(SB), Y0, Y2; \
	VFMADD213PS  expc<>+224(SB), Y0, Y2; \
	VFMADD213PS  expc<>+256(SB), Y0, Y2; \
	VMULPS       Y0, Y0, Y3; \
	VFMADD213PS  Y0, Y3, Y2; \
	VADDPS       expc<>+288(SB), Y2, Y2; \
	VCVTPS2DQ    Y1, Y1; \
	VPADDD       expc<>+384(SB), Y1, Y1; \
	VPSLLD       $23, Y1, Y1; \
	VMULPS       Y1, Y2, Y0

// func expSubSumAVX2(x *float32, n int, shift float32) float64
// x[i] = exp(x[i] - shift) for i < n (n a multiple of 8); returns Σ x[i] in float64.
TEXT ·expSubSumAVX2(SB), NOSPLIT, $0-32
	MOVQ         x+0(FP), DI
	MOVQ         n+8(FP), CX
	VBROADCASTSS shift+16(FP), Y15
	VXORPD       Y13, Y13, Y13
	VXORPD       Y14, Y14, Y14
	SHRQ         $3, CX
	JZ           esdone

esloop:
	VMOVUPS      (DI), Y0
	VSUBPS       Y15, Y0, Y0
	EXP
	VMOVUPS      Y0, (DI)
	VCVTPS2PD    X0, Y1
	VADDPD       Y1, Y13, Y13
	VEXTRACTF128 $1, Y0, X2
	VCVTPS2PD    X2, Y2
	VADDPD       Y2, Y14, Y14
	ADDQ         $32, DI
	DECQ         CX
	JNZ          esloop

esdone:
	VADDPD       Y14, Y13, Y13
	VEXTRACTF128 $1, Y13, X1
	VADDPD       X1, X13, X13
	VHADDPD      X13, X13, X13
	VZEROUPPER
	MOVSD        X13, ret+24(FP)
	RET

// func siluMulAVX2(dst, gate, up *float32, n int)
// dst[i] = gate[i] / (1 + exp(-gate[i])) * up[i] for i < n (n a multiple of 8).
TEXT ·siluMulAVX2(SB), NOSPLIT, $0-32
	MOVQ    dst+0(FP), DI
	MOVQ    gate+8(FP), SI
	MOVQ    up+16(FP), DX
	MOVQ    n+24(FP), CX
	SHRQ    $3, CX
	JZ      sdone

sloop:
	VMOVUPS (SI), Y5
	VXORPS  Y0, Y0, Y0
	VSUBPS  Y5, Y0, Y0
	EXP
	VADDPS  expc<>+288(SB), Y0, Y0
	VDIVPS  Y0, Y5, Y5
	VMULPS  (DX), Y5, Y5
	VMOVUPS Y5, (DI)
	ADDQ    $32, SI
	ADDQ    $32, DX
	ADDQ    $32, DI
	DECQ    CX
	JNZ     sloop

sdone:
	VZEROUPPER
	RET

// func maxAVX2(x *float32, n int) float32
// max of x[0:n] (n a positive multiple of 8).
TEXT ·maxAVX2(SB), NOSPLIT, $0-20
	MOVQ         x+0(FP), DI
	MOVQ         n+8(FP), CX
	SHRQ         $3, CX
	VMOVUPS      (DI), Y0
	ADDQ         $32, DI
	DECQ         CX
	JZ           mdone

mloop:
	VMAXPS       (DI), Y0, Y0
	ADDQ         $32, DI
	DECQ         CX
	JNZ          mloop

mdone:
	VEXTRACTF128 $1, Y0, X1
	VMAXPS       X1, X0, X0
	VPERMILPS    $0x4e, X0, X1
	VMAXPS       X1, X0, X0
	VPERMILPS    $0xb1, X0, X1
	VMAXPS       X1, X0, X0
	VZEROUPPER
	MOVSS        X0, ret+16(FP)
	RET
