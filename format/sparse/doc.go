// Package sparse reads and writes the compressed-tensors sparse layouts
// (compressed-tensors ≤ 0.14.0: "sparse-24-bitmask" and "sparse-bitmask"), the
// sparsity_config block of config.json that announces them, and wanda's mask
// sidecar file sparsity_masks.safetensors; and it holds the one zero and N:M
// scanner (Scan) behind both "wanda inspect" and packing.
//
// # Layouts are registered
//
// Each layout is one file (layout24.go, bitmask.go) that registers a Layout
// (RegisterLayout in init): its format name, the suffixes of its stored parts,
// its rank for automatic choice, the N:M pattern it needs (its eligibility
// test, Layout.Eligible), and its Specs, Pack, Header and Unpack functions.
// Everything else (transform's Pack, Unpack and packed reader, the CLI's format
// flags and help) asks the registry (LayoutOf, Layouts, Formats), so adding a
// third layout is adding one file.
//
// # Zeros and N:M patterns (Scan)
//
// Scan counts the exact zeros (+0.0 and -0.0) of a dense tensor and checks N:M
// patterns: NM{N, M} holds when the column count is a multiple of M and every
// aligned group of M consecutive columns of every row has at least N zeros.
// Stat.Why says, in one fixed wording, why a tensor breaks a pattern (the
// column count, or the row and columns of the first group with too few
// zeros); inspect prints those words and Pack refuses with them.
//
// # Dense input
//
// A weight is a row-major [rows, cols] matrix ([out, in] for a linear layer)
// given as raw little-endian bytes of a float dtype (F32, F16, BF16, F64). An
// element is zero when its magnitude bits are all zero. Negative zero (-0.0) is
// refused everywhere (ErrNegativeZero): wanda writes pruned weights as +0.0, a
// packed format cannot carry the sign of a dropped zero, and vLLM's 2:4 loader
// rejects -0.0. Refusing it is what makes pack → unpack bit-exact.
//
// # sparse-24-bitmask (layout24.go: Pack24, Unpack24)
//
// For a weight "<p>.weight" the packed tensors are
//
//	<p>.compressed  source dtype  [rows, cols/2]        the 2 kept values of every group of 4, in column order
//	<p>.bitmask     U8            [rows, ceil(cols/8)]  bit (j mod 8) of byte ⌊j/8⌋ of row r set iff column j is kept
//	<p>.shape       I64           [2, 1]                rows, cols
//
// Groups are 4 consecutive columns of a row (cols must be a multiple of 4, so
// they coincide with compressed-tensors' groups of the flattened tensor). A
// group with fewer than 2 zeros breaks 2:4 and is refused (ErrNot24). Keep rule:
// every nonzero entry of the group is kept (there are at most 2), and when there
// are fewer than 2, the lowest-indexed zero entries are kept as well, so exactly
// 2 entries per group are kept. This is compressed-tensors' get_24_bytemasks
// (top-2 of |w| per group) with its unspecified order among equal magnitudes
// fixed to "lower column first"; NaN and ±Inf count as nonzero. Consequently the
// bitmask is not (W != 0) in general. Bits past column cols-1 in a row's last
// byte are zero.
//
// # sparse-bitmask (bitmask.go: PackBitmask, UnpackBitmask)
//
//	<p>.compressed   source dtype  [nnz]                 W[W != 0] in row-major order
//	<p>.bitmask      U8            [rows, ceil(cols/8)]  bit set iff W[r, j] != 0 (same bit order as above)
//	<p>.row_offsets  I64           [rows]                exclusive prefix sum of the per-row nonzero counts
//	<p>.shape        I64           [2]                   rows, cols
//
// Unpacking writes +0.0 at every position whose bit is clear and validates the
// input fully (lengths, exactly 2 bits per group for 2:4, popcounts against the
// row offsets, zero padding bits): a malformed input gives ErrCorrupt, never a
// panic.
//
// # sparsity_masks.safetensors (MaskWriter, OpenMasks, ReadMasks)
//
// One U8 tensor per pruned weight, named like the weight
// ("model.layers.0.self_attn.q_proj.weight"), of shape [ceil(rows*cols/8)]:
// the mask flattened row-major (k = i*cols + j) and packed 8 per byte in
// little-endian bit order (bit k mod 8 of byte ⌊k/8⌋). A set bit means
// PRUNED (the weight is +0.0). This is exactly the little-endian byte image of
// Mask.Bits, the same bitset as pipeline.Mask. With numpy:
//
//	np.unpackbits(m, count=rows*cols, bitorder="little").reshape(rows, cols)  # 1 = pruned
//
// The file's __metadata__ maps every tensor name to its original shape
// ("[rows, cols]", like the reference masks in shared/reference) and carries
// "format": "wanda-sparsity-masks", "version": "1", "bit_order": "little",
// "bit_meaning": "1=pruned", "layout": "row-major, flattened".
//
// # config.json
//
// A packed model's config.json carries
//
//	"quantization_config": {"quant_method": "compressed-tensors", "version": "0.14.0",
//	  "sparsity_config": {"format": ..., "global_sparsity": ..., "sparsity_structure": "2:4"|"unstructured",
//	                      "targets": [...], "ignore": [...]}}
//
// (WithSparsityConfig adds it, StripSparsityConfig removes it).
package sparse
