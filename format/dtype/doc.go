// Package dtype names the element types that appear in safetensors files and
// converts between their raw on-disk bytes and float32.
//
// On-disk layout: every element is stored little-endian, densely packed, with no
// padding between elements, in row-major (C) order of the tensor's shape
// (weights of a linear layer are [out, in]). Sizes in bytes:
//
//	F64 8, F32 4, F16 2 (IEEE 754 binary16), BF16 2 (the upper 16 bits of an
//	IEEE 754 binary32), I64 8, I32 4, I16 2, I8 1, U8 1, BOOL 1 (0 or 1).
//
// The names returned by String and accepted by Parse are the safetensors
// spellings ("F32", "BF16", "BOOL", ...).
//
// Conversions: BF16ToF32 and F16ToF32 are exact. F32ToBF16 and F32ToF16 round to
// nearest, ties to even; a NaN stays a (quiet) NaN, infinities and signed zeros
// are kept, and finite values too large for the target overflow to ±Inf as IEEE
// rounding prescribes. Decoding never reinterprets memory through unsafe: it goes
// through encoding/binary, so input slices may have any alignment.
package dtype
