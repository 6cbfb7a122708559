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
// memory is bounded by the largest tensor (plus, for MergeLoRA, its float32
// copy and the float32 lora_A/lora_B of at most four adapter modules).
//
// MergeLoRA takes PEFT adapters of module targets (the linears by name: q_proj,
// Phi-3's qkv_proj and gate_up_proj, a shared expert's projections, per-expert
// linears of a transformers 4 adapter) and of target_parameters, transformers
// 5's fused expert parameters "model.layers.<l>.mlp.experts.gate_up_proj"
// [E, 2I, H] and "...down_proj" [E, H, I] (see package format/peft for how PEFT
// stores them): expert e's update of gate_up is split at row I into the
// checkpoint's per-expert gate and up tensors (Mixtral's w1 and w3, Qwen's
// gate_proj and up_proj), down's goes to w2 / down_proj, and each tensor is
// merged and masked on its own. The output directory is built in a temporary sibling
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
