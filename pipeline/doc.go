// Package pipeline is wanda's engine: the contracts between the runner, the network and the
// pruning stages, and Run, which streams a model through them one decoder layer at a time.
//
// # Contracts
//
// The network (model.go) is a Model: the layout of each decoder layer (LayerSpec: its linears,
// [out, in] each, and which tap sees each linear's input — q, k and v share one; gate and up
// share one), the embeddings, and Blocks loaded one at a time. A Block computes with the
// tensors a Weights gives it: tensor.Mat views in the stored dtype, usually memory-mapped, so
// a block holds no copy of its weights. Block.ForwardStats is the dense pass, which only
// feeds the taps; Block.Forward also produces the next layer's input.
//
// The stages (stage.go) work on one linear at a time: a Metric scores W [out, in] (float32,
// row-major), a Pattern turns scores into a Mask (a bitset, 1 = pruned), a Solver
// (SparseGPT) does both and updates the kept weights. A Method is a Metric with a Pattern, or
// a Solver alone (Method.Validate). Stats are the per-input-channel statistics of a linear's
// input: SumSq[j] = Σ x_j² / N over the N calibration sequences (the reference's scaler_row),
// and for a solver the Hessian 2/N · Σ x xᵀ (float64).
//
// # Data flow of Run
//
//	plan             validate the method, the target against every prunable linear's shape,
//	                 the calibration windows; fix the export plan (every source tensor, same
//	                 name, dtype and shape); check every tensor of the source model against
//	                 config.json and each layer's memory need (SparseGPT's Hessians) against
//	                 the limit (check.go), so nothing fails after hours of work
//	openOutput       a staging directory beside the output (internal/staging), the work
//	                 directory's checkpoint (resumed or new), the free-space check, the writer
//	copyUntouched    every tensor that is not pruned, copied byte for byte
//	openActivations  two activation stores [N, T, hidden] float32 (RAM or a scratch file):
//	                 the embedded calibration windows, or the checkpointed activations
//	allocate         with an Allocator (OWL): a dense streaming pre-pass over every layer,
//	                 checkpointed, whose statistics give each layer's or tensor's sparsity
//	restoreFinished  a resumed run copies the layers the checkpoint holds
//	layer l          dense pass: ForwardStats over the windows, a chunk at a time, into the
//	                 accumulator → for each prunable linear: stats → method → round to the
//	                 stored dtype, -0 → +0 → output writer (+ checkpoint file) → pruned pass:
//	                 Forward of the layer with the written tensors (mapped back from the
//	                 output) gives the next layer's input → checkpoint
//	finish           close the shards and index, copy config and tokenizer files, the
//	                 caller's Finish (masks, LoRA template, packing), wanda_report.json, then
//	                 rename the staging directory into place and clear the work directory
//
// Anything that fails removes the staging directory: the output appears only when complete.
//
// # Resume invariants
//
// With a work directory, after layer l is finished it holds layer-l.safetensors (layer l's
// pruned tensors), acts-(l+1).f32 (the activations entering layer l+1) and state.json, which
// is replaced last and atomically: the fingerprint of the run (source tensors, method,
// target, RunKey, calibration windows), the next layer, the report so far and the SHA-256 of
// every file it relies on. A crash at any point leaves a state naming complete files; resume
// refuses a state of another run or another layout version, and any file whose checksum
// differs. A resumed run's output is byte-identical to an uninterrupted one's: every layer's
// input is either recomputed or read back bit for bit.
package pipeline
