// Package model is the LLaMA-family decoder in float32: one decoder block
// (Block.Forward), the token embedding (Embed) and the output head (Head: final
// RMSNorm and lm_head, giving logits or per-sequence negative log-likelihoods).
// It follows Hugging Face transformers' LlamaDecoderLayer / Qwen2DecoderLayer /
// MistralDecoderLayer: RMSNorm in fp32, q/k/v projections (+ bias for qwen2),
// rotary embeddings in the rotate_half layout (default, linear and llama3
// frequency scaling, computed in float32 the way transformers does), grouped-
// query causal attention with scale 1/sqrt(head_dim) (optionally with a sliding
// window), o_proj, residual, RMSNorm, SwiGLU MLP, residual.
//
// Data layout: every matrix is row-major float32. Weights keep the PyTorch
// nn.Linear layout [out, in]. Activations h are [nseq*seqlen, hidden]: nseq
// independent sequences of seqlen tokens each, one token per row; positions
// restart at 0 in every sequence and attention never crosses sequences. All
// linears are computed over all nseq*seqlen rows at once (tensor.MatMulT);
// attention runs per (sequence, head, query tile) on goroutines, so the T×T
// score matrix is never materialised for all heads at once.
//
// Weights come from a Source (DType, Shape, Bytes, Release by dense tensor
// name): a safetensors set through SetSource, or a dense view of a packed
// directory; the *safetensors.Set functions (LoadBlock, Embed, LoadHead) are
// wrappers of the ...From ones. Weights are widened to float32 once when a block is loaded (bf16, f16, f32
// or f64 on disk), and a Block exposes each linear as a mutable
// pipeline.Matrix view so that a pruning stage can zero weights in place
// between a dense and a pruned forward pass.
package model
