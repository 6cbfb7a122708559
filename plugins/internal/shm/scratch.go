package shm

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"

	mmap "github.com/edsrzf/mmap-go"
)

// File is a host-side scratch file, mapped read-write, that only grows.
type File struct {
	f *os.File
	m mmap.MMap
}

// Create makes an empty scratch file in dir (os.TempDir() if empty).
func Create(dir string) (*File, error) {
	f, err := os.CreateTemp(dir, "wanda-plugin-scratch-*")
	if err != nil {
		return nil, err
	}
	return &File{f: f}, nil
}

// Path returns the file's absolute path.
func (s *File) Path() string { return s.f.Name() }

// Bytes returns the mapping (len = the file's size).
func (s *File) Bytes() []byte { return s.m }

// Reserve makes the file at least size bytes long (rounded up to Align) and mapped.
func (s *File) Reserve(size int) error {
	if size <= len(s.m) {
		return nil
	}
	size = AlignUp(size)
	if s.m != nil {
		if err := s.m.Unmap(); err != nil {
			return fmt.Errorf("%s: munmap: %w", s.Path(), err)
		}
		s.m = nil
	}
	if err := s.f.Truncate(int64(size)); err != nil {
		return err
	}
	m, err := mmap.MapRegion(s.f, size, mmap.RDWR, 0, 0)
	if err != nil {
		return fmt.Errorf("%s: mmap: %w", s.Path(), err)
	}
	s.m = m
	return nil
}

// Close unmaps, closes and removes the file.
func (s *File) Close() error {
	var errs []error
	if s.m != nil {
		errs = append(errs, s.m.Unmap())
		s.m = nil
	}
	errs = append(errs, s.f.Close(), os.Remove(s.f.Name()))
	return errors.Join(errs...)
}

// Pool hands out scratch files for concurrent calls and reuses them.
type Pool struct {
	dir    string
	mu     sync.Mutex
	free   []*File
	all    []*File
	closed bool
}

// NewPool returns a pool creating its files in dir (os.TempDir() if empty).
func NewPool(dir string) *Pool { return &Pool{dir: dir} }

// Get returns a scratch file of at least size bytes, not in use by anyone else.
func (p *Pool) Get(size int) (*File, error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, errors.New("scratch pool closed")
	}
	var s *File
	if k := len(p.free); k > 0 {
		// Prefer the largest free file, to avoid growing several.
		best := 0
		for i, f := range p.free {
			if len(f.m) > len(p.free[best].m) {
				best = i
			}
		}
		s = p.free[best]
		p.free[best] = p.free[k-1]
		p.free = p.free[:k-1]
	}
	p.mu.Unlock()
	if s == nil {
		var err error
		if s, err = Create(p.dir); err != nil {
			return nil, err
		}
		p.mu.Lock()
		p.all = append(p.all, s)
		p.mu.Unlock()
	}
	if err := s.Reserve(size); err != nil {
		p.Put(s)
		return nil, err
	}
	return s, nil
}

// Put returns a file obtained from Get.
func (p *Pool) Put(s *File) {
	p.mu.Lock()
	p.free = append(p.free, s)
	p.mu.Unlock()
}

// Trim removes the files not in use (their space is returned at once; later Gets create new
// ones).
func (p *Pool) Trim() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var errs []error
	for _, s := range p.free {
		errs = append(errs, s.Close())
		p.all = slices.DeleteFunc(p.all, func(x *File) bool { return x == s })
	}
	p.free = nil
	return errors.Join(errs...)
}

// Close removes every file of the pool; files still out must not be used afterwards.
func (p *Pool) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	var errs []error
	for _, s := range p.all {
		errs = append(errs, s.Close())
	}
	p.all, p.free = nil, nil
	return errors.Join(errs...)
}
