// Package config reads the config.json of a LLaMA-family model in Hugging Face
// layout (model_type "llama", "mistral" or "qwen2") into one typed, validated
// Config, and owns the table of tensor names of such a model.
//
// Shapes follow the PyTorch nn.Linear layout: a linear layer's weight is
// [out, in] (row-major), so q_proj is [num_heads*head_dim, hidden_size] and
// down_proj is [hidden_size, intermediate_size]. Norm weights and biases are
// 1-D. Every tensor name used by the rest of wanda comes from LayerTensor,
// EmbedTokens, FinalNorm and LMHead; no other package builds names by string
// concatenation.
//
// Errors wrap ErrInvalid (a malformed or inconsistent field),
// ErrUnsupportedArch (a model_type other than the three above) or
// ErrUnsupported (a feature wanda does not implement, e.g. mlp_bias or a
// rope_scaling type other than linear/llama3). Messages name the field, and
// Load prefixes them with the file's path.
package config
