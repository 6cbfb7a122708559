package pipeline

import (
	"errors"
	"fmt"
	"os"
	"unsafe"

	mmap "github.com/edsrzf/mmap-go"
)

// ErrStore reports a failure of the activation store (scratch file creation, mapping).
var ErrStore = errors.New("pipeline: activation store")

// Store holds the hidden states of the calibration samples between decoder blocks:
// N samples of T tokens of H float32 each, laid out [N, T, H] row-major. It lives in RAM
// when it fits the budget it was given and in a memory-mapped scratch file otherwise; the
// scratch file is removed by Close.
type Store struct {
	N, T, H int
	data    []float32
	mm      mmap.MMap
	file    *os.File
	path    string
}

// NewStore makes a store for n×t×h floats. When the size exceeds budget bytes (budget <= 0
// means "always RAM") it is backed by a scratch file in dir (os.TempDir() when empty).
func NewStore(n, t, h int, budget int64, dir string) (*Store, error) {
	if n <= 0 || t <= 0 || h <= 0 {
		panic(fmt.Sprintf("pipeline: NewStore(%d, %d, %d)", n, t, h))
	}
	s := &Store{N: n, T: t, H: h}
	size := int64(n) * int64(t) * int64(h) * 4
	if budget <= 0 || size <= budget {
		s.data = make([]float32, n*t*h)
		return s, nil
	}
	f, err := os.CreateTemp(dir, "wanda-activations-*.f32")
	if err != nil {
		return nil, fmt.Errorf("%w: create scratch file: %w", ErrStore, err)
	}
	s.file, s.path = f, f.Name()
	if err := f.Truncate(size); err != nil {
		s.Close()
		return nil, fmt.Errorf("%w: size scratch file %s to %d bytes: %w", ErrStore, s.path, size, err)
	}
	m, err := mmap.Map(f, mmap.RDWR, 0)
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("%w: map scratch file %s: %w", ErrStore, s.path, err)
	}
	s.mm = m
	s.data = unsafe.Slice((*float32)(unsafe.Pointer(&m[0])), n*t*h)
	// The mapping keeps the file's pages; without a name, nothing is left behind if the
	// process is killed.
	if err := os.Remove(s.path); err != nil {
		s.Close()
		return nil, fmt.Errorf("%w: unlink scratch file %s: %w", ErrStore, s.path, err)
	}
	return s, nil
}

// OnDisk reports whether the store is backed by a scratch file.
func (s *Store) OnDisk() bool { return s.mm != nil }

// Path is the scratch file's path ("" in RAM).
func (s *Store) Path() string { return s.path }

// Samples returns samples [i, j) as one [ (j-i)·T, H ] slice aliasing the store.
func (s *Store) Samples(i, j int) []float32 {
	return s.data[i*s.T*s.H : j*s.T*s.H]
}

// Flush writes a file-backed store's dirty pages to its file (for checkpoints).
func (s *Store) Flush() error {
	if s.mm == nil {
		return nil
	}
	return s.mm.Flush()
}

// Close releases the memory and removes the scratch file.
func (s *Store) Close() error {
	var err error
	if s.mm != nil {
		err = s.mm.Unmap()
		s.mm = nil
	}
	s.data = nil
	if s.file != nil {
		if e := s.file.Close(); err == nil {
			err = e
		}
		if e := os.Remove(s.path); err == nil && !errors.Is(e, os.ErrNotExist) {
			err = e
		}
		s.file = nil
	}
	return err
}
