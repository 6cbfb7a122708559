// Package tokenizer reads a Hugging Face tokenizer.json and encodes/decodes
// text exactly like the Hugging Face `tokenizers` library for the two BPE
// families used by LLaMA-style models:
//
//   - SentencePiece-style BPE (Llama-2, Mistral): a Prepend("▁") + Replace(" ",
//     "▁") normalizer or a Metaspace pre-tokenizer, byte_fallback <0xNN>
//     tokens, fuse_unk, and a Replace/ByteFallback/Fuse/Strip (or Metaspace)
//     decoder;
//   - byte-level BPE (GPT-2, Llama-3, Qwen2): the GPT-2 byte<->unicode map, a
//     ByteLevel and/or Split pre-tokenizer and a ByteLevel decoder.
//
// # Pipeline (per Encode call)
//
//  1. Added tokens with normalized=false are split out of the raw text
//     (leftmost-longest match, honouring lstrip/rstrip/single_word).
//  2. Every remaining piece is normalized; added tokens with normalized=true
//     are then split out of the normalized text.
//  3. The pre-tokenizer splits each piece into words.
//  4. The BPE model turns each word into ids (a heap-driven merge per word,
//     identical in order to HF's Word::merge_all, with a bounded word cache).
//  5. With addSpecial the post-processor's template ids (BOS, ...) are added.
//
// Regex-based Split pre-tokenizers are not run through a regex engine: the
// GPT-2, Llama-3 and Qwen2 patterns (which need look-ahead and Oniguruma's
// backtracking alternation) are recognised by their exact pattern string and
// matched by hand-written code; any other pattern is rejected at Parse time
// with ErrUnsupported.
//
// Ids are int32. Token ids index the model vocabulary (tokenizer.json
// "model.vocab") or the "added_tokens" list; VocabSize is one more than the
// largest id. The truncation and padding sections of tokenizer.json are
// ignored. A Tokenizer is safe for concurrent use.
package tokenizer
