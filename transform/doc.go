// Package transform works on whole Hugging Face model directories: it packs the
// pruned linears of a dense pruned model into compressed-tensors sparse layouts
// (Pack), restores the dense model from a packed one (Unpack), merges a PEFT
// LoRA adapter into a pruned model while keeping its pruning mask (MergeLoRA),
// and presents a packed directory as dense tensors to readers (Open).
//
// Data layout: weights are row-major, linear weights [out, in]; tensor bytes
// are little-endian in the model's dtype. The packed layouts, the mask file and
// the config.json block are those of package format/sparse.
//
// Every operation streams one tensor at a time from the memory-mapped input
// (releasing its pages afterwards) into a streaming safetensors writer, so
// memory is bounded by the largest tensor (plus its float32 copy for
// MergeLoRA). The output directory is built in a temporary sibling
// ".NAME.tmp-XXXX" and renamed to NAME only when complete; on any error the
// temporary directory is removed, and an existing NAME is never overwritten.
// Files of the model directory other than the weights and config.json
// (tokenizer files, generation_config.json, sparsity_masks.safetensors,
// reports, and subdirectories such as lora-template/) are copied unchanged;
// hidden subdirectories are not.
//
// Which tensors are packed: the prunable linears of every decoder layer, as the
// architecture table (model/arch) lists them: attention and MLP linears, every
// expert linear and shared-expert linear, Phi-3's fused qkv_proj and
// gate_up_proj; routers never. When the model has a sparsity_masks.safetensors,
// only those linears it lists. The layouts are format/sparse's registered ones;
// format "auto" uses the first (by rank) that can store every packed linear:
// sparse-24-bitmask when every one satisfies 2:4, sparse-bitmask otherwise.
//
// Unpack is bit-exact: every tensor of the unpacked model has exactly the bytes
// of the model that was packed (Pack refuses -0.0, the one value a packed
// format could not restore).
package transform
