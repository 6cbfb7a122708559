package tokenizer

import "errors"

var (
	// ErrMalformed reports a tokenizer.json that is not valid JSON or lacks a
	// required field, or whose fields have the wrong shape.
	ErrMalformed = errors.New("tokenizer: malformed tokenizer.json")
	// ErrUnsupported reports a component (model, normalizer, pre-tokenizer,
	// post-processor, decoder, regex pattern or option) this package does not
	// implement.
	ErrUnsupported = errors.New("tokenizer: unsupported component")
	// ErrUnknownToken reports a merge, unk_token or template that names a
	// token missing from the vocabulary.
	ErrUnknownToken = errors.New("tokenizer: token not in vocabulary")
)
