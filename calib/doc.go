// Package calib draws calibration windows exactly like the reference
// implementation (locuslab/wanda lib/data.py get_c4): Python's random module
// (calib/pyrandom) seeded with the run's seed picks documents until one
// tokenizes (with BOS) to strictly more than seqlen tokens, then picks a
// window start in it.
//
// Data layout: the result is nsamples windows, each a []int32 of seqlen
// token ids (row-major [nsamples, seqlen] when stacked). A window starting
// at offset 0 begins with the tokenizer's BOS; later ones do not.
package calib
