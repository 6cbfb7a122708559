// Package shm maps the tensor files shared between the wanda host and its plugins.
//
// A tensor is described by a pluginpb.TensorDesc: a file path, a byte offset, an element type
// and a shape. Its bytes are the elements in row-major order (the last dimension varies
// fastest; a weight [out, in] has element (i, j) at index i*in + j), little-endian, with no
// padding: float32 as IEEE 754 binary32 (4 bytes), u8 as one byte, bfloat16 and IEEE binary16
// as 2 bytes. The host places every tensor at an offset that is a multiple of 4096; readers
// map the enclosing pages.
//
// The host side (File, Pool) owns growable scratch files that stay mapped read-write for the
// life of a plugin connection and are removed on Close. The plugin side (Open) maps one
// descriptor per call, read-only for inputs and read-write for the result, and unmaps it
// when the call ends. Both sides check that the described bytes lie inside the file, so a
// bad descriptor is an error, never a SIGBUS.
package shm
