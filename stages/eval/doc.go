// Package eval measures perplexity the way the reference (locuslab/wanda
// lib/eval.py, eval_ppl_wikitext) does: the evaluation text is tokenized once
// (with BOS) into ids; the first numel/seqlen·seqlen ids are cut into
// non-overlapping windows of seqlen tokens (the remainder is dropped); each
// window's loss is the mean next-token NLL over its seqlen-1 predictions, and
// ppl = exp(mean over windows of the window losses).
//
// The model is streamed one decoder block at a time: windows are processed in
// chunks sized from a memory budget for activations ([windows·seqlen, hidden]
// float32 plus the block's scratch buffers), and each chunk goes through
// blocks 0..L-1, each loaded (widened to float32) just before it is used and
// its mapped pages released afterwards, then through the final norm and
// lm_head. The weights come from a model.Source: a plain safetensors set
// (Perplexity) or any dense view such as a packed directory read through
// transform (PerplexityFrom); the numbers are the same for the same dense
// values.
//
// NaN or ±Inf never become a perplexity: the activations are checked after the
// embedding and after every block, and every window's loss; the first
// non-finite value is an error (ErrNonFinite) naming where it appeared (layer,
// window, position) and the first tensor there holding NaN or ±Inf, or saying
// that the weights are finite and the computation overflowed.
//
// Data layout: ids are a flat []int32; window w is ids[w*seqlen:(w+1)*seqlen];
// activations are row-major [windows*seqlen, hidden] float32.
package eval
