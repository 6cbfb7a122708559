// Package safetensors reads and writes Hugging Face safetensors files and
// sharded models (model.safetensors.index.json).
//
// # On-disk layout of one file
//
//	bytes [0, 8)        N, the header length, unsigned 64-bit little-endian
//	bytes [8, 8+N)      the header: a UTF-8 JSON object, padded at the end with
//	                    spaces (the writer pads so that 8+N is a multiple of 8)
//	bytes [8+N, EOF)    the data section: the tensors' raw bytes
//
// The header maps each tensor name to
//
//	{"dtype": "BF16", "shape": [out, in], "data_offsets": [begin, end]}
//
// where begin and end are byte offsets relative to the start of the data
// section, and an optional "__metadata__" key maps to an object of strings.
// Tensor data is little-endian, densely packed, row-major (C order); linear
// layer weights are [out, in]. A shape of [] is a scalar (one element); a shape
// containing 0 has no data (begin == end).
//
// # Validation (headers are hostile input)
//
// Open checks, before handing out any tensor: the file holds the 8-byte length;
// N <= MaxHeaderSize (ErrHeaderTooLarge); the header fits in the file and is one
// JSON object with no duplicate keys, each entry having a known dtype, a shape
// and two data_offsets (ErrMalformedHeader; duplicate names also wrap
// ErrDuplicateTensor, unknown dtypes dtype.ErrUnknownDType); every span lies
// within the data section (ErrOutOfBounds); end-begin equals
// prod(shape)*sizeof(dtype), computed without overflow, with negative dimensions
// rejected (ErrSizeMismatch); spans do not overlap (ErrOverlap); and the spans
// cover the data section exactly, with no gap and nothing after the last tensor
// (ErrUncoveredData). Every error message names the file and, where relevant,
// the tensor.
//
// # Reading
//
// Open memory-maps the file read-only (github.com/edsrzf/mmap-go). Tensor.Bytes
// is a zero-copy view into the mapping when the data is aligned for its dtype
// (the usual case: writers pad the header and sort tensors by alignment) and a
// private copy otherwise; decoding (Float32, ReadFloat32, Int64s) goes through
// encoding/binary, never through unsafe reinterpretation. Views are valid until
// the File or Set is closed. Release issues madvise(MADV_DONTNEED) for the pages
// of one tensor so that a layer-at-a-time pipeline keeps resident memory bounded;
// the data stays readable (pages fault back in from the file).
//
// # Sharded models
//
// A sharded model directory holds model-00001-of-0000K.safetensors ... and
// model.safetensors.index.json:
//
//	{"metadata": {"total_size": <sum of tensor data bytes>},
//	 "weight_map": {"<tensor name>": "<shard file name>", ...}}
//
// OpenDir uses the index when present (every listed shard must exist,
// ErrMissingShard; every listed tensor must be in its shard, ErrMissingTensor;
// shard names must be plain file names in the same directory), and otherwise
// opens model.safetensors.
//
// # Writing
//
// Create takes every tensor's Spec up front, splits them greedily (in declared
// order) into shards of at most WriterOptions.MaxShardBytes data bytes (a larger
// tensor gets a shard of its own), lays tensors out within a shard by decreasing
// dtype size then name (so every tensor is aligned), writes the headers and
// pre-sizes each file. Tensors are then written once each, in any order and
// from any goroutine, with positional writes. Close fails with ErrIncomplete
// (removing the partial output) if a tensor is missing; otherwise it syncs the
// shards and, when there is more than one, writes the index. A single shard is
// named model.safetensors and has no index, as Hugging Face does.
package safetensors
