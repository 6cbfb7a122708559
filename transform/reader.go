package transform

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"sort"
	"strings"

	"github.com/wanda-go/wanda/format/dtype"
	"github.com/wanda-go/wanda/format/safetensors"
	"github.com/wanda-go/wanda/format/sparse"
	"github.com/wanda-go/wanda/internal/regfile"
)

// ErrPacked: a packed tensor set is inconsistent (missing or misshapen parts).
var ErrPacked = errors.New("pack: bad packed tensor")

// Reader presents a model directory, dense or packed, as dense tensors.
// Tensor names are the dense ones ("model.layers.0.mlp.up_proj.weight" even
// when the file holds its .compressed/.bitmask/.shape parts).
type Reader interface {
	Dir() string
	Names() []string // sorted
	DType(name string) (dtype.DType, bool)
	Shape(name string) ([]int64, bool)
	// Bytes returns the dense little-endian bytes of name. For a tensor stored
	// dense it is a read-only view into the memory map (valid until Close);
	// for a packed one it is a fresh slice.
	Bytes(name string) ([]byte, error)
	// Float32 returns a widened copy and the shape (a model.Getter).
	Float32(name string) ([]float32, []int64, error)
	// Release drops the resident pages of name's stored tensors.
	Release(name string)
	// Format is sparse.FormatDense for a plain directory.
	Format() sparse.Format
	// SparsityConfig is config.json's sparsity_config, nil for a dense directory.
	SparsityConfig() *sparse.SparsityConfig
	// Packed reports whether name is stored packed.
	Packed(name string) bool
	// Metadata is the safetensors __metadata__ of the stored files.
	Metadata() map[string]string
	Shards() []string
	Close() error
}

type entry struct {
	dt     dtype.DType
	shape  []int64
	plain  *safetensors.Tensor // stored dense
	layout *sparse.Layout      // stored packed
	prefix string
	rows   int
	cols   int
}

type dirReader struct {
	dir     string
	set     *safetensors.Set
	sc      *sparse.SparsityConfig
	format  sparse.Format
	layout  *sparse.Layout // nil for a dense directory
	entries map[string]*entry
	names   []string
}

// Open opens the model directory dir for reading as dense tensors. A
// directory whose config.json has a compressed-tensors sparsity_config naming
// a registered layout (sparse.Layouts: "sparse-24-bitmask", "sparse-bitmask")
// is read packed: each group of stored parts <p>.compressed, <p>.bitmask, ...
// appears as the dense tensor <p>.weight, unpacked on demand. Anything else is
// read as plain safetensors.
func Open(dir string) (Reader, error) {
	var sc *sparse.SparsityConfig
	cfgPath := filepath.Join(dir, ConfigName)
	if b, err := regfile.ReadFile(cfgPath); err == nil {
		if sc, err = sparse.ReadSparsityConfig(b); err != nil {
			return nil, fmt.Errorf("%s: %w", cfgPath, err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	set, err := safetensors.OpenDir(dir)
	if err != nil {
		return nil, err
	}
	r := &dirReader{dir: dir, set: set, sc: sc, format: sparse.FormatDense, entries: map[string]*entry{}}
	if sc != nil {
		r.format = sc.Format
		r.layout, _ = sparse.LayoutOf(sc.Format) // nil for "dense"
	}
	if err := r.index(); err != nil {
		set.Close()
		return nil, err
	}
	return r, nil
}

// index builds the dense view.
func (r *dirReader) index() error {
	packedPart := map[string]bool{}
	if l := r.layout; l != nil {
		for _, n := range r.set.Names() {
			p, ok := strings.CutSuffix(n, l.Parts[0])
			if !ok {
				continue
			}
			e, parts, err := r.packedEntry(p)
			if err != nil {
				return err
			}
			w := sparse.WeightName(p)
			if _, dup := r.set.Tensor(w); dup {
				return fmt.Errorf("%s: tensor %q is stored both dense and packed: %w", r.dir, w, ErrPacked)
			}
			r.entries[w] = e
			for _, q := range parts {
				packedPart[q] = true
			}
		}
	}
	for _, n := range r.set.Names() {
		if packedPart[n] {
			continue
		}
		t, _ := r.set.Tensor(n)
		r.entries[n] = &entry{dt: t.DType, shape: t.Shape, plain: t}
	}
	for n := range r.entries {
		r.names = append(r.names, n)
	}
	sort.Strings(r.names)
	return nil
}

// packedEntry validates the headers of the packed parts with prefix p.
func (r *dirReader) packedEntry(p string) (*entry, []string, error) {
	l := r.layout
	var parts []*safetensors.Tensor
	var names []string
	for _, s := range l.Parts {
		t, ok := r.set.Tensor(p + s)
		if !ok {
			return nil, nil, fmt.Errorf("%s: packed tensor %q: %s has no %q: %w", r.dir, p, l.Format, p+s, ErrPacked)
		}
		parts = append(parts, t)
		names = append(names, t.Name)
	}
	dt, rows, cols, err := l.Header(parts)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: packed tensor %q (%s): %w: %w", r.dir, p, l.Format, ErrPacked, err)
	}
	return &entry{dt: dt, shape: []int64{int64(rows), int64(cols)}, layout: l, prefix: p, rows: rows, cols: cols}, names, nil
}

func (r *dirReader) Dir() string                            { return r.dir }
func (r *dirReader) Names() []string                        { return append([]string(nil), r.names...) }
func (r *dirReader) Format() sparse.Format                  { return r.format }
func (r *dirReader) SparsityConfig() *sparse.SparsityConfig { return r.sc }
func (r *dirReader) Metadata() map[string]string            { return r.set.Metadata() }
func (r *dirReader) Shards() []string                       { return r.set.Shards() }
func (r *dirReader) Close() error                           { return r.set.Close() }

func (r *dirReader) DType(name string) (dtype.DType, bool) {
	e, ok := r.entries[name]
	if !ok {
		return dtype.Invalid, false
	}
	return e.dt, true
}

func (r *dirReader) Shape(name string) ([]int64, bool) {
	e, ok := r.entries[name]
	if !ok {
		return nil, false
	}
	return append([]int64(nil), e.shape...), true
}

func (r *dirReader) Packed(name string) bool {
	e, ok := r.entries[name]
	return ok && e.plain == nil
}

func (r *dirReader) get(name string) (*entry, error) {
	e, ok := r.entries[name]
	if !ok {
		return nil, fmt.Errorf("%s: tensor %q: %w", r.dir, name, safetensors.ErrMissingTensor)
	}
	return e, nil
}

func (r *dirReader) Bytes(name string) ([]byte, error) {
	e, err := r.get(name)
	if err != nil {
		return nil, err
	}
	if e.plain != nil {
		b := e.plain.Bytes()
		if b == nil {
			return nil, fmt.Errorf("%s: tensor %q: file is closed", r.dir, name)
		}
		return b, nil
	}
	parts := make([][]byte, len(e.layout.Parts))
	for i, suf := range e.layout.Parts {
		t, _ := r.set.Tensor(e.prefix + suf)
		parts[i] = t.Bytes()
	}
	dense, err := e.layout.Unpack(parts, e.dt, e.rows, e.cols)
	if err != nil {
		return nil, fmt.Errorf("%s: tensor %q: %w", r.dir, name, err)
	}
	return dense, nil
}

func (r *dirReader) Float32(name string) ([]float32, []int64, error) {
	e, err := r.get(name)
	if err != nil {
		return nil, nil, err
	}
	if !e.dt.IsFloat() {
		return nil, nil, fmt.Errorf("%s: tensor %q: Float32 of non-float dtype %s", r.dir, name, e.dt)
	}
	b, err := r.Bytes(name)
	if err != nil {
		return nil, nil, err
	}
	out := make([]float32, len(b)/e.dt.Size())
	if err := dtype.ToFloat32(out, b, e.dt); err != nil {
		return nil, nil, fmt.Errorf("%s: tensor %q: %w", r.dir, name, err)
	}
	return out, append([]int64(nil), e.shape...), nil
}

func (r *dirReader) Release(name string) {
	e, ok := r.entries[name]
	if !ok {
		return
	}
	if e.plain != nil {
		r.set.Release(name)
		return
	}
	for _, s := range e.layout.Parts {
		r.set.Release(e.prefix + s)
	}
}
