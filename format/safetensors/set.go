package safetensors

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/wanda-go/wanda/internal/regfile"
)

// IndexName is the file name of a sharded model's index.
const IndexName = "model.safetensors.index.json"

// SingleName is the file name of an unsharded model.
const SingleName = "model.safetensors"

// Set is a model's weights: a single model.safetensors, or the shards listed by
// model.safetensors.index.json.
type Set struct {
	Dir string

	files  []*File // in shard order
	byName map[string]*Tensor
	names  []string
	meta   map[string]string
}

// OpenDir opens the model in dir. If dir holds model.safetensors.index.json it is
// used (every shard it lists must exist, else ErrMissingShard naming the shard;
// every tensor it lists must be in its shard, else ErrMissingTensor); otherwise
// dir/model.safetensors is opened.
func OpenDir(dir string) (*Set, error) {
	idxPath := filepath.Join(dir, IndexName)
	idx, err := regfile.ReadFile(idxPath)
	switch {
	case err == nil:
		return openIndexed(dir, idxPath, idx)
	case errors.Is(err, regfile.ErrNotRegular):
		return nil, err // names the path and what it is
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("%s: %w", idxPath, err)
	}
	single := filepath.Join(dir, SingleName)
	if _, err := os.Stat(single); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%s: neither %s nor %s present: %w: %w", dir, IndexName, SingleName, ErrMissingShard, err)
		}
		return nil, fmt.Errorf("%s: %w", single, err)
	}
	f, err := Open(single)
	if err != nil {
		return nil, err
	}
	s := &Set{Dir: dir, files: []*File{f}, byName: make(map[string]*Tensor, len(f.tensors))}
	for _, t := range f.tensors {
		s.byName[t.Name] = t
	}
	s.finish()
	return s, nil
}

// parseIndex parses an index file, rejecting duplicate tensor names and shard
// names that are not plain file names in the same directory.
func parseIndex(idxPath string, b []byte) (map[string]string, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%s: %s: %w", idxPath, fmt.Sprintf(format, args...), ErrMalformedHeader)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	var wm map[string]string
	err := decodeObject(dec, func(key string) error {
		if key != "weight_map" {
			var skip json.RawMessage
			return dec.Decode(&skip)
		}
		if wm != nil {
			return bad("weight_map appears twice")
		}
		wm = map[string]string{}
		return decodeObject(dec, func(name string) error {
			if _, dup := wm[name]; dup {
				return fmt.Errorf("%s: tensor %q listed twice in weight_map: %w (%w)", idxPath, name, ErrMalformedHeader, ErrDuplicateTensor)
			}
			var shard string
			if err := dec.Decode(&shard); err != nil {
				return bad("tensor %q: shard must be a string: %v", name, err)
			}
			if shard == "" || shard != filepath.Base(shard) || strings.ContainsAny(shard, `/\`) || shard == "." || shard == ".." {
				return bad("tensor %q: shard %q is not a plain file name", name, shard)
			}
			wm[name] = shard
			return nil
		})
	})
	if err != nil {
		if errors.Is(err, ErrMalformedHeader) {
			return nil, err
		}
		return nil, bad("invalid JSON: %v", err)
	}
	if _, err := dec.Token(); err == nil {
		return nil, bad("trailing data after the JSON object")
	}
	if wm == nil {
		return nil, bad("no weight_map")
	}
	return wm, nil
}

func openIndexed(dir, idxPath string, idx []byte) (_ *Set, err error) {
	wm, err := parseIndex(idxPath, idx)
	if err != nil {
		return nil, err
	}
	var shards []string
	seen := map[string]bool{}
	for _, sh := range wm {
		if !seen[sh] {
			seen[sh] = true
			shards = append(shards, sh)
		}
	}
	sort.Strings(shards)
	for _, sh := range shards {
		p := filepath.Join(dir, sh)
		if _, err := os.Stat(p); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("%s: shard %s listed in the index: %w: %w", idxPath, p, ErrMissingShard, err)
			}
			return nil, fmt.Errorf("%s: %w", p, err)
		}
	}
	s := &Set{Dir: dir, byName: make(map[string]*Tensor, len(wm))}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	byShard := map[string]*File{}
	for _, sh := range shards {
		f, err := Open(filepath.Join(dir, sh))
		if err != nil {
			return nil, err
		}
		s.files = append(s.files, f)
		byShard[sh] = f
	}
	for name, sh := range wm {
		f := byShard[sh]
		t, ok := f.Tensor(name)
		if !ok {
			return nil, fmt.Errorf("%s: tensor %q listed in %s is not in the shard: %w", f.Path, name, idxPath, ErrMissingTensor)
		}
		s.byName[name] = t
	}
	for _, f := range s.files {
		for _, t := range f.tensors {
			if _, ok := s.byName[t.Name]; !ok {
				slog.Warn("safetensors: tensor in shard but not in index; ignored", "file", f.Path, "tensor", t.Name)
			}
		}
	}
	s.finish()
	return s, nil
}

// finish computes the sorted name list and the merged metadata.
func (s *Set) finish() {
	s.names = make([]string, 0, len(s.byName))
	for n := range s.byName {
		s.names = append(s.names, n)
	}
	sort.Strings(s.names)
	for _, f := range s.files {
		for k, v := range f.Metadata {
			if s.meta == nil {
				s.meta = map[string]string{}
			}
			if _, ok := s.meta[k]; !ok {
				s.meta[k] = v
			}
		}
	}
}

// Names returns all tensor names, sorted.
func (s *Set) Names() []string {
	return append([]string(nil), s.names...)
}

// Tensor returns the tensor called name.
func (s *Set) Tensor(name string) (*Tensor, bool) {
	t, ok := s.byName[name]
	return t, ok
}

// Get returns the tensor called name, or an error wrapping ErrMissingTensor.
func (s *Set) Get(name string) (*Tensor, error) {
	t, ok := s.byName[name]
	if !ok {
		return nil, fmt.Errorf("%s: tensor %q: %w", s.Dir, name, ErrMissingTensor)
	}
	return t, nil
}

// Release drops the resident pages of tensor name (see File.Release).
func (s *Set) Release(name string) {
	if t, ok := s.byName[name]; ok {
		t.f.Release(t)
	}
}

// Shards returns the paths of the files backing the set, in shard order.
func (s *Set) Shards() []string {
	out := make([]string, len(s.files))
	for i, f := range s.files {
		out[i] = f.Path
	}
	return out
}

// Metadata returns a copy of the union of the shards' __metadata__ (the first
// shard wins on conflicting keys); nil when no shard has any.
func (s *Set) Metadata() map[string]string {
	if s.meta == nil {
		return nil
	}
	m := make(map[string]string, len(s.meta))
	for k, v := range s.meta {
		m[k] = v
	}
	return m
}

// Close closes every shard.
func (s *Set) Close() error {
	var errs []error
	for _, f := range s.files {
		if err := f.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
