package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"

	"github.com/wanda-go/wanda/format/dtype"
)

// entry is one validated tensor of a header. begin and end are absolute byte
// offsets in the file.
type entry struct {
	name       string
	dt         dtype.DType
	shape      []int64
	begin, end int64
}

// header is a parsed, fully validated safetensors header.
type header struct {
	meta    map[string]string
	entries []entry // sorted by begin (then end, then name)
	dataOff int64   // absolute offset of the data section (8 + header length)
}

// rawInfo is a tensor entry as it appears in the JSON header.
type rawInfo struct {
	DType       *string  `json:"dtype"`
	Shape       *[]int64 `json:"shape"`
	DataOffsets *[]int64 `json:"data_offsets"`
}

// parseHeader validates b, the complete content of the file named path, and
// returns its header. It never panics on any input.
func parseHeader(path string, b []byte) (*header, error) {
	size := int64(len(b))
	if size < 8 {
		return nil, fmt.Errorf("%s: file is %d bytes, shorter than the 8-byte header length: %w", path, size, ErrMalformedHeader)
	}
	n := binary.LittleEndian.Uint64(b[:8])
	if n > MaxHeaderSize {
		return nil, fmt.Errorf("%s: header length %d exceeds the %d-byte limit: %w", path, n, MaxHeaderSize, ErrHeaderTooLarge)
	}
	if int64(n) > size-8 {
		return nil, fmt.Errorf("%s: header length %d runs past the end of the %d-byte file: %w", path, n, size, ErrMalformedHeader)
	}
	if n < 2 {
		return nil, fmt.Errorf("%s: header length %d is too short for a JSON object: %w", path, n, ErrMalformedHeader)
	}
	hb := b[8 : 8+n]
	if hb[0] != '{' {
		return nil, fmt.Errorf("%s: header does not start with '{': %w", path, ErrMalformedHeader)
	}
	h := &header{dataOff: 8 + int64(n)}
	dataLen := size - h.dataOff

	dec := json.NewDecoder(bytes.NewReader(hb))
	seen := map[string]bool{}
	err := decodeObject(dec, func(key string) error {
		if seen[key] {
			if key == metadataKey {
				return fmt.Errorf("%s: %s appears twice: %w", path, metadataKey, ErrMalformedHeader)
			}
			return fmt.Errorf("%s: tensor %q appears twice: %w (%w)", path, key, ErrMalformedHeader, ErrDuplicateTensor)
		}
		seen[key] = true
		if key == metadataKey {
			var m map[string]string
			if err := dec.Decode(&m); err != nil {
				return fmt.Errorf("%s: %s must be an object of strings: %w: %w", path, metadataKey, err, ErrMalformedHeader)
			}
			h.meta = m
			return nil
		}
		var ri rawInfo
		if err := dec.Decode(&ri); err != nil {
			return fmt.Errorf("%s: tensor %q: bad entry: %w: %w", path, key, err, ErrMalformedHeader)
		}
		e, err := checkInfo(path, key, ri, dataLen)
		if err != nil {
			return err
		}
		e.begin += h.dataOff
		e.end += h.dataOff
		h.entries = append(h.entries, e)
		return nil
	})
	if err != nil {
		if errors.Is(err, errJSON) {
			return nil, fmt.Errorf("%s: header is not valid JSON: %w: %w", path, err, ErrMalformedHeader)
		}
		return nil, err
	}
	// Only whitespace may follow the object (the writer pads with spaces).
	if off := dec.InputOffset(); off < 0 || off > int64(len(hb)) ||
		len(bytes.TrimLeft(hb[off:], " \t\r\n")) != 0 {
		return nil, fmt.Errorf("%s: trailing bytes after the header JSON object: %w", path, ErrMalformedHeader)
	}

	sort.Slice(h.entries, func(i, j int) bool {
		a, c := h.entries[i], h.entries[j]
		if a.begin != c.begin {
			return a.begin < c.begin
		}
		if a.end != c.end {
			return a.end < c.end
		}
		return a.name < c.name
	})
	pos := h.dataOff
	for i, e := range h.entries {
		if e.begin < pos {
			return nil, fmt.Errorf("%s: tensor %q: data [%d,%d) overlaps tensor %q ending at %d: %w",
				path, e.name, e.begin-h.dataOff, e.end-h.dataOff, h.entries[i-1].name, pos-h.dataOff, ErrOverlap)
		}
		if e.begin > pos {
			return nil, fmt.Errorf("%s: tensor %q: gap of %d bytes before its data at %d: %w",
				path, e.name, e.begin-pos, e.begin-h.dataOff, ErrUncoveredData)
		}
		pos = e.end
	}
	if pos != size {
		return nil, fmt.Errorf("%s: %d bytes at the end of the data section (from %d) belong to no tensor: %w",
			path, size-pos, pos-h.dataOff, ErrUncoveredData)
	}
	return h, nil
}

// checkInfo validates one tensor entry against the data section length.
// Offsets in the returned entry are relative to the data section.
func checkInfo(path, name string, ri rawInfo, dataLen int64) (entry, error) {
	e := entry{name: name}
	if ri.DType == nil || ri.Shape == nil || ri.DataOffsets == nil {
		return e, fmt.Errorf("%s: tensor %q: entry needs dtype, shape and data_offsets: %w", path, name, ErrMalformedHeader)
	}
	dt, err := dtype.Parse(*ri.DType)
	if err != nil {
		return e, fmt.Errorf("%s: tensor %q: %w (%w)", path, name, err, ErrMalformedHeader)
	}
	e.dt = dt
	e.shape = *ri.Shape
	if e.shape == nil {
		e.shape = []int64{}
	}
	offs := *ri.DataOffsets
	if len(offs) != 2 {
		return e, fmt.Errorf("%s: tensor %q: data_offsets has %d values, want 2: %w", path, name, len(offs), ErrMalformedHeader)
	}
	e.begin, e.end = offs[0], offs[1]
	if e.begin < 0 || e.end < e.begin || e.end > dataLen {
		return e, fmt.Errorf("%s: tensor %q: data_offsets [%d,%d) outside the %d-byte data section: %w",
			path, name, e.begin, e.end, dataLen, ErrOutOfBounds)
	}
	want, err := byteSize(dt, e.shape)
	if err != nil {
		return e, fmt.Errorf("%s: tensor %q: %w: %w", path, name, err, ErrSizeMismatch)
	}
	if want != e.end-e.begin {
		return e, fmt.Errorf("%s: tensor %q: %s%v needs %d bytes but data_offsets span %d: %w",
			path, name, dt, e.shape, want, e.end-e.begin, ErrSizeMismatch)
	}
	return e, nil
}

// numel returns the product of shape, rejecting negative dims and overflow.
func numel(shape []int64) (int64, error) {
	for _, d := range shape {
		if d < 0 {
			return 0, fmt.Errorf("negative dimension in shape %v", shape)
		}
		if d == 0 {
			return 0, nil
		}
	}
	n := int64(1)
	for _, d := range shape {
		if n > math.MaxInt64/d {
			return 0, fmt.Errorf("shape %v overflows int64", shape)
		}
		n *= d
	}
	return n, nil
}

// byteSize returns numel(shape)*dt.Size(), rejecting negative dims and overflow.
func byteSize(dt dtype.DType, shape []int64) (int64, error) {
	n, err := numel(shape)
	if err != nil {
		return 0, err
	}
	sz := int64(dt.Size())
	if sz == 0 {
		return 0, fmt.Errorf("invalid dtype %s", dt)
	}
	if n > math.MaxInt64/sz {
		return 0, fmt.Errorf("shape %v of %s overflows int64 bytes", shape, dt)
	}
	return n * sz, nil
}

// errJSON marks syntax errors found by decodeObject.
var errJSON = errors.New("invalid JSON")

// decodeObject reads one JSON object from dec, calling field for each key with
// dec positioned at the key's value; field must consume the value. Unlike
// json.Unmarshal it lets the caller see duplicate keys.
func decodeObject(dec *json.Decoder, field func(key string) error) error {
	tok, err := dec.Token()
	if err != nil {
		return fmt.Errorf("%w: %w", errJSON, err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return fmt.Errorf("%w: expected an object, found %v", errJSON, tok)
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return fmt.Errorf("%w: %w", errJSON, err)
		}
		key, ok := tok.(string)
		if !ok {
			return fmt.Errorf("%w: expected a key, found %v", errJSON, tok)
		}
		if err := field(key); err != nil {
			return err
		}
	}
	tok, err = dec.Token()
	if err != nil {
		return fmt.Errorf("%w: %w", errJSON, err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '}' {
		return fmt.Errorf("%w: expected '}', found %v", errJSON, tok)
	}
	return nil
}
