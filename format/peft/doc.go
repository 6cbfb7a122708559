// Package peft reads Hugging Face PEFT LoRA adapters (adapter_config.json +
// adapter_model.safetensors) and writes the adapter_config.json template that
// wanda puts next to a pruned model.
//
// # Adapter layout
//
// For a linear module M (e.g. "model.layers.0.self_attn.q_proj", whose base
// weight W is "M.weight", [out, in] row-major) the adapter file holds
//
//	base_model.model.M.lora_A.weight  [r, in]
//	base_model.model.M.lora_B.weight  [out, r]
//
// (a key that still carries the adapter name, "M.lora_A.<adapter>.weight", is
// accepted too). The merged weight is W + scale·(B·A), with
// scale = alpha/r, or alpha/sqrt(r) when use_rslora is true; r and alpha come
// from rank_pattern / alpha_pattern when a pattern matches M (PEFT's rule: the
// first key k for which M matches the regular expression "(.*\.)?(k)$"), else
// from r / lora_alpha.
//
// Load refuses, with ErrUnsupported or ErrInvalid and a message naming the file
// and module: a missing adapter_config.json or adapter_model.safetensors (a
// pickle adapter_model.bin is not read), a peft_type other than LORA,
// fan_in_fan_out true, use_dora true, bias other than "none", any tensor that is
// not a lora_A/lora_B weight (modules_to_save copies, embedding LoRA, DoRA
// magnitudes, biases), a module with only one of A and B, A and B whose ranks
// disagree with each other or with the config, and modules outside
// target_modules. Adapter.Check then verifies the adapter against a model's
// tensor shapes.
//
// # Template
//
// AdapterTemplate is the adapter_config.json for LoRA fine-tuning of a pruned
// model (r 8, alpha 16, the seven linears). WriteTemplate puts it in the
// subdirectory lora-template/ of the model directory, never beside
// config.json: transformers (with PEFT installed) treats a model directory
// holding adapter_config.json as an adapter and would not load the model.
//
// Merging into a pruned model destroys its sparsity unless the pruning mask is
// re-applied afterwards (transform.MergeLoRA does that).
package peft
