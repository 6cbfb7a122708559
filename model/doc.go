// Package model computes decoder-only language models of every architecture in the
// table (package model/arch) in float32, from weights kept in their stored dtype:
// New (or NewFrom) gives a Model, the pipeline.Model of the pruning runner and the
// network of the evaluator, with the token embedding (Embed), one decoder block at a
// time (LoadBlock: Forward, ForwardStats) and the output head (Head: final norm and
// lm_head, giving logits or per-sequence negative log-likelihoods).
//
// Each block follows Hugging Face transformers' decoder layer of its type: RMSNorm in
// fp32 (x·w, or x·(1+w) for Gemma), q/k/v projections (separate or fused, + bias for
// Qwen2), q/k RMSNorm per head (Qwen3, Gemma 3), rotary embeddings in the rotate_half
// layout (default, linear and llama3 frequency scaling computed in float32 the way
// transformers does, optionally on the leading part of each head only), grouped-query
// causal attention with the type's scale, optional soft-cap and sliding window, o_proj,
// (sandwich norm,) residual; then a gated MLP (SiLU or tanh-GELU; separate or fused
// gate/up) or a mixture of experts (router softmax in float32, top-k, experts one at a
// time, summed in expert order, optional shared expert), (sandwich norm,) residual.
//
// Data layout: activations h are [nseq*seqlen, hidden] float32, row-major: nseq
// independent sequences of seqlen tokens each, one token per row; positions restart at
// 0 in every sequence and attention never crosses sequences. Weights keep the PyTorch
// nn.Linear layout [out, in] and their stored dtype (bf16, f16 or f32): a block holds
// tensor.Mat views of them (memory-mapped, no anonymous copy) and computes every
// linear over all rows at once with tensor.MatMulTMat, several weights sharing an input
// side by side (q|k|v, gate|up); only norm weights and biases are widened. Attention
// runs per (sequence, head, query tile), so the T×T score matrix is never materialised
// for all heads at once. The embeddings widen only the rows they look up; lm_head
// multiplies a chunk of rows at a time.
//
// Threads: the GEMMs and every row-parallel pass (attention tiles, norms, activations,
// routing) run on tensor's worker pool (tensor.ParallelFor), so tensor.SetThreads bounds
// them all; results do not depend on the number of threads.
//
// The statistics a pruning run needs come through a pipeline.Tap: the tap ids of a
// layer are listed by Model.Layer (see there for the mixture-of-experts modes).
package model
