// Package modelgen writes random models of every architecture in the table
// (model/arch) in Hugging Face layout, deterministically from a seed, for tests
// and benchmarks: tiny ones (Default, any Arch) or full-size shapes (Preset:
// llama-7b, llama-13b, llama3-8b, llama3-70b, llama3-405b, mistral-7b, qwen2-7b,
// qwen3-8b, phi3-medium, gemma2-27b, gemma3-27b, mixtral-8x7b, mixtral-8x22b,
// qwen3-30b-a3b, qwen2-57b-a14b; in bf16, sharded into 5 GB files with an index
// as save_pretrained does; set Layers for a few-layer model of the real shape):
//
//	config.json             the model_type's keys as released checkpoints write them
//	generation_config.json  bos/eos ids
//	model.safetensors       or model-0000k-of-0000n.safetensors + model.safetensors.index.json
//	tokenizer.json          a real Llama-2-style SentencePiece BPE (see TokenizerJSON)
//	tokenizer_config.json
//
// Tensors follow the names and shapes of the architecture table
// (arch.Arch.Tensors): linear weights are [out, in], row-major, stored in the
// chosen dtype; experts one tensor per expert linear.
//
// Weights. Every value comes from a per-tensor pseudo-random stream derived
// from the seed and the tensor's name (SplitMix64; approximately normal
// numbers via the Irwin–Hall sum of 12 uniforms), so files are bit-identical
// on every platform. Linear weights (routers too), biases and lm_head are
// N(0, 0.02²). Norm weights are 1 + N(0, 0.02²), stored minus one for the
// architectures whose norms compute x·(1+w) (Gemma), so that the effective
// weights are alike. No value is exactly zero: magnitudes below
// 1e-4 are raised to 1e-4, so a fresh model has no zeros in any dtype.
//
// Outlier channels. To make Wanda (|W_ij|·‖X_j‖) and magnitude (|W_ij|)
// choose different weights, a few hidden channels — OutlierChannels(opt):
// max(2, hidden/32) of them, chosen from the seed — carry large activations,
// as real LLMs do: the embedding columns of those channels are drawn with std
// 0.02·EmbedOutlierScale, and the input_layernorm, post_attention_layernorm and
// pre_feedforward_layernorm weights of those channels are NormOutlierScale +
// N(0, 0.02²). The inputs of
// q/k/v and gate/up therefore have a few channels several times larger than
// the rest, which Wanda protects and magnitude ignores. The final norm, q/k
// norms and post_feedforward_layernorm have no outliers.
//
// Write streams: each tensor is generated in chunks of 2 Mi elements by
// Options.Workers goroutines (default GOMAXPROCS) and every chunk is written
// at its place through a safetensors.TensorWriter, so memory holds one chunk
// per worker (about 12 MiB each) whatever the model's size. An element's
// value depends only on the seed, the tensor's name and the element's index
// (SplitMix64's state after d draws is state₀ + d·γ, so a worker jumps
// straight to its chunk): the files are identical to generating every tensor
// sequentially, whatever the number of workers or the chunk size. The
// llama-7b preset (13.5 GB) takes a few minutes, mostly disk writes.
//
// Its own tests, and those of model and cmd/wanda, exercise it. The command
// cmd/gentiny exposes it on the command line (-preset NAME -layers N).
package modelgen
