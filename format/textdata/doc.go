// Package textdata reads the evaluation and calibration text the reference
// pipeline uses: WikiText-2 raw files (rows exactly as the Hugging Face
// "wikitext-2-raw-v1" dataset has them), JSON-lines corpora such as the C4
// shard (the "text" field of each line) and plain text.
//
// Data layout: a WikiText row is one line of the raw file; a line holding
// only whitespace is the empty row "", any other line keeps its trailing
// "\n" (the HF dataset script yields exactly that). The evaluation text is
// the rows joined with "\n\n" (locuslab/wanda lib/data.py get_wikitext2).
package textdata
