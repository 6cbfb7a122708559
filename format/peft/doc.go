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
// # Parameter targets (target_parameters)
//
// PEFT (0.17 and later) can adapt an nn.Parameter directly: transformers 5 holds a
// mixture-of-experts layer's experts as two 3-D parameters, mlp.experts.gate_up_proj
// [E, 2I, H] (each expert's gate rows, then its up rows) and mlp.experts.down_proj
// [E, H, I], and "target_parameters" names them. PEFT's ParamWrapper (peft/tuners/
// lora/layer.py) keeps one lora_A and one lora_B for all experts of a parameter
// [E, d1, d2]:
//
//	<module>.lora_A.weight  [r·E, in]   expert e's A_e: rows e·r … e·r+r-1
//	<module>.lora_B.weight  [out, r·E]  expert e's B_e: columns k·E+e, k < r
//
// (get_delta_weight reshapes A to [E, r, in] and B to [out, r, E]), and expert e's
// update of the parameter slice [d1, d2] is scale·B_e·A_e with in = d2, out = d1
// (PEFT ≥ 0.20, or transformers' patch of older PEFT, for experts stored
// [experts, out, in]); PEFT 0.17–0.19 unpatched took in = d1, out = d2, and the
// update is then scale·(B_e·A_e)ᵀ. Adapter.Check tells the two apart by the shapes;
// when d1 = d2 it needs peft_version ≥ 0.20. r and alpha come from rank_pattern /
// alpha_pattern matched against the parameter's path ("…mlp.experts.gate_up_proj").
// Two targeted parameters of one module are nested wrappers: the parameter the
// model registers first is wrapped first and ends up innermost, so its keys carry
// one ".base_layer" infix more ("<module>.base_layer.lora_A.weight" for gate_up_proj,
// "<module>.lora_A.weight" for down_proj); LoadWith's ParamOrder gives the order.
// Module.Factors extracts an expert's factors.
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
