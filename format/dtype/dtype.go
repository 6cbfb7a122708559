package dtype

import (
	"errors"
	"fmt"
)

// DType is the element type of a tensor.
type DType uint8

// The supported element types.
const (
	Invalid DType = iota
	F32
	F16
	BF16
	F64
	I8
	U8
	I16
	I32
	I64
	Bool
)

// ErrUnknownDType is returned by Parse for a name it does not know.
var ErrUnknownDType = errors.New("dtype: unknown dtype")

var names = [...]string{
	Invalid: "INVALID",
	F32:     "F32",
	F16:     "F16",
	BF16:    "BF16",
	F64:     "F64",
	I8:      "I8",
	U8:      "U8",
	I16:     "I16",
	I32:     "I32",
	I64:     "I64",
	Bool:    "BOOL",
}

var sizes = [...]int{
	Invalid: 0,
	F32:     4,
	F16:     2,
	BF16:    2,
	F64:     8,
	I8:      1,
	U8:      1,
	I16:     2,
	I32:     4,
	I64:     8,
	Bool:    1,
}

// Parse returns the DType with safetensors spelling s ("F32", "BF16", "BOOL", ...).
// Unknown names give an error wrapping ErrUnknownDType that quotes s.
func Parse(s string) (DType, error) {
	for d := F32; d <= Bool; d++ {
		if names[d] == s {
			return d, nil
		}
	}
	return Invalid, fmt.Errorf("%w %q", ErrUnknownDType, s)
}

// Valid reports whether d is one of the supported element types (not Invalid).
func (d DType) Valid() bool { return d >= F32 && d <= Bool }

// String returns the safetensors spelling of d.
func (d DType) String() string {
	if int(d) < len(names) {
		return names[d]
	}
	return fmt.Sprintf("DType(%d)", uint8(d))
}

// Size returns the number of bytes per element (0 for Invalid or unknown values).
func (d DType) Size() int {
	if int(d) < len(sizes) {
		return sizes[d]
	}
	return 0
}

// IsFloat reports whether d is a floating-point type (F32, F16, BF16, F64).
func (d DType) IsFloat() bool {
	return d == F32 || d == F16 || d == BF16 || d == F64
}

// IsInt reports whether d is an integer or boolean type.
func (d DType) IsInt() bool {
	return d >= I8 && d <= Bool
}
