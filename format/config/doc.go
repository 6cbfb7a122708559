// Package config reads the config.json of a decoder-only model in Hugging Face
// layout into one typed Config, and keeps the LLaMA layout's table of tensor
// names (names.go).
//
// Parse knows every field of the architectures wanda computes (LLaMA, Mistral,
// Qwen2/3, Mixtral, Qwen2-MoE, Qwen3-MoE, Phi-3, Gemma 2/3) and checks each
// for type and range; a field the file omits stays zero (see each field), and
// Config.Has tells an absent key from a false or zero one. It accepts any
// model_type: which types are supported, their defaults (max_position_embeddings,
// rms_norm_eps, head_dim, tie_word_embeddings, ...) and the per-layer attention
// pattern are the architecture table's (package model/arch), which completes a
// Config after Parse.
//
// Shapes follow the PyTorch nn.Linear layout: a linear layer's weight is
// [out, in] (row-major), so q_proj is [num_heads*head_dim, hidden_size] and
// down_proj is [hidden_size, intermediate_size]. Norm weights and biases are
// 1-D. LayerTensor, EmbedTokens, FinalNorm and LMHead name the tensors of the
// LLaMA layout (llama, mistral, qwen2); model/arch names every supported
// architecture's.
//
// Errors wrap ErrInvalid (a malformed or inconsistent field) or ErrUnsupported
// (a feature wanda does not implement, e.g. a rope_scaling type other than
// linear/llama3). Messages name the field, and Load prefixes them with the
// file's path.
package config
