package safetensors

import "errors"

// Sentinel errors. Every returned error wraps one of these (test with errors.Is)
// and its message names the file and, where relevant, the tensor.
var (
	ErrHeaderTooLarge  = errors.New("safetensors: header too large")
	ErrMalformedHeader = errors.New("safetensors: malformed header")
	ErrOutOfBounds     = errors.New("safetensors: data offsets out of bounds")
	ErrOverlap         = errors.New("safetensors: overlapping tensor data")
	ErrSizeMismatch    = errors.New("safetensors: data size does not match shape and dtype")
	ErrUncoveredData   = errors.New("safetensors: data section not fully covered by tensors")
	ErrMissingTensor   = errors.New("safetensors: missing tensor")
	ErrMissingShard    = errors.New("safetensors: missing shard")
	ErrIncomplete      = errors.New("safetensors: not all tensors were written")
	ErrWrongSize       = errors.New("safetensors: wrong number of bytes for tensor")
	// ErrDuplicateTensor: a tensor name appears twice (in a header, an index, a
	// Spec list, or a second Write of the same tensor). In a header it is wrapped
	// together with ErrMalformedHeader.
	ErrDuplicateTensor = errors.New("safetensors: duplicate tensor")
)

// MaxHeaderSize is the largest JSON header Open accepts (100 MiB).
const MaxHeaderSize = 100 << 20

// metadataKey is the reserved header key holding the free-form string metadata.
const metadataKey = "__metadata__"
