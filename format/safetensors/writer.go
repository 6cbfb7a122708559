package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/wanda-go/wanda/format/dtype"
)

// Spec declares one tensor to be written.
type Spec struct {
	Name  string
	DType dtype.DType
	Shape []int64
}

// WriterOptions configures Create.
type WriterOptions struct {
	// MaxShardBytes is the largest data size of one shard; 0 writes a single
	// file. A tensor larger than the maximum gets a shard of its own.
	MaxShardBytes int64
	// Metadata is written as __metadata__ in every file (e.g. {"format":"pt"}).
	Metadata map[string]string
	// BaseName defaults to "model": model.safetensors, or
	// model-00001-of-00003.safetensors plus model.safetensors.index.json.
	BaseName string
}

type tensorState uint8

const (
	pending tensorState = iota
	writing
	written
)

type wtensor struct {
	spec  Spec
	size  int64
	shard int
	off   int64 // absolute offset in the shard file
	state tensorState
}

type wshard struct {
	path  string // final name
	tmp   string // where it is written until Close renames it
	f     *os.File
	size  int64 // total file size
	specs []*wtensor
}

// Writer streams tensors into pre-sized safetensors files. Headers are computed
// from the declared Specs at Create; tensors are then written in any order
// (concurrently if wanted) with positional writes.
type Writer struct {
	dir      string
	idxPath  string // "" when unsharded
	staleIdx string // index name to remove at Close when unsharded
	mu       sync.Mutex
	shards   []*wshard
	byName   map[string]*wtensor
	order    []string // declared order
	total    int64
	finished bool
}

// Create plans the shards for specs in dir (which must exist), creates the shard
// files at their final size and writes their headers. Shards are filled greedily
// in declared order; within a shard tensors are laid out by decreasing dtype
// size, then name, so every tensor is aligned for its dtype.
func Create(dir string, specs []Spec, opt WriterOptions) (*Writer, error) {
	if fi, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("%s: not a directory", dir)
	}
	if opt.MaxShardBytes < 0 {
		return nil, fmt.Errorf("%s: negative MaxShardBytes %d", dir, opt.MaxShardBytes)
	}
	base := opt.BaseName
	if base == "" {
		base = "model"
	}
	if base != filepath.Base(base) || strings.ContainsAny(base, `/\`) {
		return nil, fmt.Errorf("%s: BaseName %q is not a plain file name", dir, base)
	}
	ws, err := planTensors(dir, specs)
	if err != nil {
		return nil, err
	}
	// Group into shards.
	var groups [][]*wtensor
	var cur int64
	for _, t := range ws {
		if len(groups) == 0 || (opt.MaxShardBytes > 0 && len(groups[len(groups)-1]) > 0 && cur+t.size > opt.MaxShardBytes) {
			groups = append(groups, nil)
			cur = 0
		}
		groups[len(groups)-1] = append(groups[len(groups)-1], t)
		cur += t.size
	}
	if len(groups) == 0 {
		groups = [][]*wtensor{nil}
	}
	paths := make([]string, len(groups))
	if len(groups) == 1 {
		paths[0] = filepath.Join(dir, base+".safetensors")
	} else {
		for i := range groups {
			paths[i] = filepath.Join(dir, fmt.Sprintf("%s-%05d-of-%05d.safetensors", base, i+1, len(groups)))
		}
	}
	w, err := newWriter(dir, paths, groups, opt.Metadata)
	if err != nil {
		return nil, err
	}
	w.idxPath = filepath.Join(dir, base+".safetensors.index.json")
	if len(groups) == 1 {
		w.staleIdx, w.idxPath = w.idxPath, ""
	}
	return w, nil
}

// WriteFile writes one safetensors file at path holding tensors with the given
// raw little-endian data (data[i] belongs to tensors[i]).
func WriteFile(path string, tensors []Spec, data [][]byte, meta map[string]string) error {
	if len(data) != len(tensors) {
		return fmt.Errorf("%s: %d specs but %d data slices", path, len(tensors), len(data))
	}
	ws, err := planTensors(path, tensors)
	if err != nil {
		return err
	}
	w, err := newWriter(filepath.Dir(path), []string{path}, [][]*wtensor{ws}, meta)
	if err != nil {
		return err
	}
	for i, s := range tensors {
		if err := w.Write(s.Name, data[i]); err != nil {
			w.Abort()
			return err
		}
	}
	return w.Close()
}

// planTensors validates specs and computes their byte sizes.
func planTensors(where string, specs []Spec) ([]*wtensor, error) {
	ws := make([]*wtensor, 0, len(specs))
	seen := make(map[string]bool, len(specs))
	var total int64
	for _, s := range specs {
		if s.Name == "" || s.Name == metadataKey {
			return nil, fmt.Errorf("%s: invalid tensor name %q", where, s.Name)
		}
		if seen[s.Name] {
			return nil, fmt.Errorf("%s: tensor %q declared twice: %w", where, s.Name, ErrDuplicateTensor)
		}
		seen[s.Name] = true
		if !s.DType.Valid() {
			return nil, fmt.Errorf("%s: tensor %q: invalid dtype %s", where, s.Name, s.DType)
		}
		size, err := byteSize(s.DType, s.Shape)
		if err != nil {
			return nil, fmt.Errorf("%s: tensor %q: %w: %w", where, s.Name, err, ErrSizeMismatch)
		}
		if total > math.MaxInt64-size {
			return nil, fmt.Errorf("%s: tensor %q: total size overflows int64: %w", where, s.Name, ErrSizeMismatch)
		}
		total += size
		shape := append([]int64{}, s.Shape...)
		ws = append(ws, &wtensor{spec: Spec{Name: s.Name, DType: s.DType, Shape: shape}, size: size})
	}
	return ws, nil
}

// encodeHeader returns the padded JSON header for the tensors of one shard,
// laid out in the given order, and fills in their absolute offsets.
func encodeHeader(ts []*wtensor, meta map[string]string) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	str := func(s string) {
		enc.Encode(s) // cannot fail for a string
		buf.Truncate(buf.Len() - 1)
	}
	buf.WriteByte('{')
	first := true
	if len(meta) > 0 {
		keys := make([]string, 0, len(meta))
		for k := range meta {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		str(metadataKey)
		buf.WriteString(":{")
		for i, k := range keys {
			if i > 0 {
				buf.WriteByte(',')
			}
			str(k)
			buf.WriteByte(':')
			str(meta[k])
		}
		buf.WriteByte('}')
		first = false
	}
	var off int64
	for _, t := range ts {
		if !first {
			buf.WriteByte(',')
		}
		first = false
		str(t.spec.Name)
		fmt.Fprintf(&buf, `:{"dtype":"%s","shape":[`, t.spec.DType)
		for i, d := range t.spec.Shape {
			if i > 0 {
				buf.WriteByte(',')
			}
			fmt.Fprintf(&buf, "%d", d)
		}
		fmt.Fprintf(&buf, `],"data_offsets":[%d,%d]}`, off, off+t.size)
		t.off = off
		off += t.size
	}
	buf.WriteByte('}')
	for buf.Len()%8 != 0 {
		buf.WriteByte(' ')
	}
	if buf.Len() > MaxHeaderSize {
		return nil, fmt.Errorf("header of %d bytes exceeds the %d-byte limit: %w", buf.Len(), MaxHeaderSize, ErrHeaderTooLarge)
	}
	out := make([]byte, 8, 8+buf.Len())
	binary.LittleEndian.PutUint64(out, uint64(buf.Len()))
	return append(out, buf.Bytes()...), nil
}

func newWriter(dir string, paths []string, groups [][]*wtensor, meta map[string]string) (_ *Writer, err error) {
	w := &Writer{dir: dir, byName: map[string]*wtensor{}}
	defer func() {
		if err != nil {
			w.Abort()
		}
	}()
	for i, g := range groups {
		for _, t := range g {
			w.order = append(w.order, t.spec.Name)
			w.byName[t.spec.Name] = t
			t.shard = i
			w.total += t.size
		}
		laid := append([]*wtensor(nil), g...)
		sort.SliceStable(laid, func(a, b int) bool {
			sa, sb := laid[a].spec.DType.Size(), laid[b].spec.DType.Size()
			if sa != sb {
				return sa > sb
			}
			return laid[a].spec.Name < laid[b].spec.Name
		})
		hdr, err := encodeHeader(laid, meta)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", paths[i], err)
		}
		var data int64
		for _, t := range laid {
			t.off += int64(len(hdr))
			data += t.size
		}
		sh := &wshard{path: paths[i], specs: laid, size: int64(len(hdr)) + data}
		w.shards = append(w.shards, sh)
		// Write under a temporary name: the final name may be a file that is
		// memory-mapped right now (output directory == input directory), and
		// truncating it would pull the pages from under its reader.
		f, err := os.CreateTemp(filepath.Dir(sh.path), "."+filepath.Base(sh.path)+".tmp-*")
		if err != nil {
			return nil, fmt.Errorf("%s: %w", sh.path, err)
		}
		sh.f, sh.tmp = f, f.Name()
		if err := f.Chmod(0o644); err != nil {
			return nil, fmt.Errorf("%s: %w", sh.path, err)
		}
		if err := preallocate(f, sh.size); err != nil {
			return nil, fmt.Errorf("%s: reserving %d bytes: %w", sh.path, sh.size, err)
		}
		if _, err := f.WriteAt(hdr, 0); err != nil {
			return nil, fmt.Errorf("%s: writing header: %w", sh.path, err)
		}
	}
	return w, nil
}

// Write writes the whole raw little-endian data of tensor name. It fails with
// ErrWrongSize unless len(data) is exactly the declared size, with
// ErrMissingTensor for an undeclared name and ErrDuplicateTensor for a second
// write. Safe for concurrent use with distinct names.
func (w *Writer) Write(name string, data []byte) error {
	w.mu.Lock()
	t, ok := w.byName[name]
	switch {
	case w.finished:
		w.mu.Unlock()
		return fmt.Errorf("%s: tensor %q: writer already closed", w.dir, name)
	case !ok:
		w.mu.Unlock()
		return fmt.Errorf("%s: tensor %q was not declared: %w", w.dir, name, ErrMissingTensor)
	}
	sh := w.shards[t.shard]
	switch {
	case t.state != pending:
		w.mu.Unlock()
		return fmt.Errorf("%s: tensor %q written twice: %w", sh.path, name, ErrDuplicateTensor)
	case int64(len(data)) != t.size:
		w.mu.Unlock()
		return fmt.Errorf("%s: tensor %q: got %d bytes, %s%v needs %d: %w", sh.path, name, len(data), t.spec.DType, t.spec.Shape, t.size, ErrWrongSize)
	}
	t.state = writing
	w.mu.Unlock()

	var err error
	if len(data) > 0 {
		_, err = sh.f.WriteAt(data, t.off)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if err != nil {
		t.state = pending
		return fmt.Errorf("%s: tensor %q: %w", sh.path, name, err)
	}
	t.state = written
	return nil
}

// WriteFloat32 narrows data to the declared float dtype of name and writes it.
func (w *Writer) WriteFloat32(name string, data []float32) error {
	w.mu.Lock()
	t, ok := w.byName[name]
	w.mu.Unlock()
	if !ok {
		return fmt.Errorf("%s: tensor %q was not declared: %w", w.dir, name, ErrMissingTensor)
	}
	d := t.spec.DType
	if !d.IsFloat() {
		return fmt.Errorf("%s: tensor %q: WriteFloat32 to non-float dtype %s", w.shards[t.shard].path, name, d)
	}
	if int64(len(data))*int64(d.Size()) != t.size {
		return fmt.Errorf("%s: tensor %q: got %d floats, %v needs %d: %w", w.shards[t.shard].path, name, len(data), t.spec.Shape, t.size/int64(d.Size()), ErrWrongSize)
	}
	buf := make([]byte, t.size)
	if err := dtype.FromFloat32(buf, data, d); err != nil {
		return fmt.Errorf("%s: tensor %q: %w", w.shards[t.shard].path, name, err)
	}
	return w.Write(name, buf)
}

// Close checks that every tensor was written, syncs and closes the shards and,
// when sharded, writes the index (metadata.total_size and weight_map). If a
// tensor was never written, Close removes the partial files and returns an
// error wrapping ErrIncomplete that names the missing tensors.
func (w *Writer) Close() error {
	w.mu.Lock()
	if w.finished {
		w.mu.Unlock()
		return nil
	}
	var missing []string
	for _, n := range w.order {
		if w.byName[n].state != written {
			missing = append(missing, n)
		}
	}
	w.mu.Unlock()
	if len(missing) > 0 {
		w.Abort()
		list := missing
		if len(list) > 5 {
			list = list[:5]
		}
		return fmt.Errorf("%s: %d tensor(s) never written (%s): %w", w.dir, len(missing), strings.Join(list, ", "), ErrIncomplete)
	}
	w.mu.Lock()
	w.finished = true
	w.mu.Unlock()
	var errs []error
	for _, sh := range w.shards {
		if err := sh.f.Sync(); err != nil {
			errs = append(errs, fmt.Errorf("%s: sync: %w", sh.path, err))
		}
		if err := sh.f.Close(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", sh.path, err))
		}
		sh.f = nil
	}
	idxTmp := ""
	if len(errs) == 0 && w.idxPath != "" {
		var err error
		if idxTmp, err = w.writeIndex(); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		w.removeTemps(idxTmp)
		return errors.Join(errs...)
	}
	// Publish: shards first, the index last.
	for _, sh := range w.shards {
		if err := os.Rename(sh.tmp, sh.path); err != nil {
			w.removeTemps(idxTmp)
			return fmt.Errorf("%s: %w", sh.path, err)
		}
		sh.tmp = ""
	}
	if idxTmp != "" {
		if err := os.Rename(idxTmp, w.idxPath); err != nil {
			os.Remove(idxTmp)
			return fmt.Errorf("%s: %w", w.idxPath, err)
		}
	}
	if w.staleIdx != "" {
		// An index left by an earlier sharded write would shadow the new
		// single file in OpenDir.
		if err := os.Remove(w.staleIdx); err == nil {
			slog.Info("safetensors: removed stale index", "file", w.staleIdx)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%s: removing stale index: %w", w.staleIdx, err)
		}
	}
	syncDir(w.dir)
	return nil
}

// writeIndex writes the index to a temporary file and returns its name.
func (w *Writer) writeIndex() (string, error) {
	wm := make(map[string]string, len(w.byName))
	for n, t := range w.byName {
		wm[n] = filepath.Base(w.shards[t.shard].path)
	}
	idx := struct {
		Metadata  map[string]int64  `json:"metadata"`
		WeightMap map[string]string `json:"weight_map"`
	}{map[string]int64{"total_size": w.total}, wm}
	b, err := json.MarshalIndent(idx, "", "  ")
	if err != nil {
		return "", fmt.Errorf("%s: %w", w.idxPath, err)
	}
	b = append(b, '\n')
	f, err := os.CreateTemp(w.dir, "."+filepath.Base(w.idxPath)+".tmp-*")
	if err != nil {
		return "", fmt.Errorf("%s: %w", w.idxPath, err)
	}
	fail := func(err error) (string, error) {
		f.Close()
		os.Remove(f.Name())
		return "", fmt.Errorf("%s: %w", w.idxPath, err)
	}
	if err := f.Chmod(0o644); err != nil {
		return fail(err)
	}
	if _, err := f.Write(b); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		os.Remove(f.Name())
		return "", fmt.Errorf("%s: %w", w.idxPath, err)
	}
	return f.Name(), nil
}

// Abort closes and removes every file the writer created; files that existed
// before Create are left untouched. After a successful Close it does nothing.
func (w *Writer) Abort() error {
	w.mu.Lock()
	w.finished = true
	w.mu.Unlock()
	for _, sh := range w.shards {
		if sh.f != nil {
			sh.f.Close()
			sh.f = nil
		}
	}
	return w.removeTemps("")
}

// removeTemps removes the temporary files not yet renamed into place.
func (w *Writer) removeTemps(idxTmp string) error {
	var errs []error
	for _, sh := range w.shards {
		if sh.tmp == "" {
			continue
		}
		if err := os.Remove(sh.tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
		sh.tmp = ""
	}
	if idxTmp != "" {
		if err := os.Remove(idxTmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		slog.Warn("safetensors: could not remove partial output", "dir", w.dir, "err", errors.Join(errs...))
	}
	return errors.Join(errs...)
}

// syncDir flushes directory entries after renames (best effort).
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}
