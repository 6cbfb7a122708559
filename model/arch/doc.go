// Package arch is the architecture table: one registered entry per Hugging Face
// model_type, saying everything the rest of wanda needs to know about that
// architecture instead of switching on its name.
//
// An entry (Arch) owns:
//   - the type's config defaults and validation (Defaults, Configure): after
//     config.Parse, Complete fills the fields the file omitted and resolves the
//     per-layer attention pattern into typed fields (Config.LayerTypes,
//     Config.SlidingWindow), so that the forward pass never reads raw JSON;
//   - the tensor names of a decoder layer (Names) and so of the whole model
//     (Tensors), which linears exist, which are prunable (routers are not) and
//     which activation feeds each of them (Linear.In);
//   - the kernels' switches: norm kind ((1+w) or w), activation (Config.HiddenAct),
//     embedding scale, q/k norms, Gemma's sandwich norms, soft-capping, the rope
//     variant of sliding layers, mixture-of-experts routing.
//
// Layer(cfg, l) resolves all of it for decoder layer l. Adding an architecture is one
// file here with its entry (Register in init), plus whatever kernel it genuinely adds
// in package model, a generator preset and a golden test.
//
// Names: every tensor is "<module>.weight" or "<module>.bias"; a layer's modules live
// under "model.layers.<l>."; the embeddings are "model.embed_tokens.weight", the final
// norm "model.norm.weight" and the output head "lm_head.weight" (absent when the
// embeddings are tied). Experts are stored one tensor per expert linear, as released
// checkpoints store them ("...experts.<e>.w1.weight"); transformers 5 fuses them in
// memory, which does not change the math.
package arch
