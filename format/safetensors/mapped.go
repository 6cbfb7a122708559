package safetensors

import (
	"fmt"
	"os"

	mmap "github.com/edsrzf/mmap-go"
)

// Mapped is a read-only memory map of one tensor the Writer has written: its
// pages are the file's, so reading them costs page cache, not anonymous memory.
type Mapped struct {
	m    mmap.MMap
	data []byte
}

// Bytes is the tensor's raw data.
func (m *Mapped) Bytes() []byte { return m.data }

// Close unmaps the tensor; Bytes must not be used afterwards.
func (m *Mapped) Close() error {
	if m == nil || m.m == nil {
		return nil
	}
	err := m.m.Unmap()
	m.m, m.data = nil, nil
	return err
}

// Map maps the data of tensor name, which must be completely written (by Write
// or a closed TensorWriter), read-only from the shard being written. The map
// stays valid after Close or Abort (the file's pages outlive its name); close
// it when done.
func (w *Writer) Map(name string) (*Mapped, error) {
	w.mu.Lock()
	t, ok := w.byName[name]
	if !ok {
		w.mu.Unlock()
		return nil, fmt.Errorf("%s: tensor %q was not declared: %w", w.dir, name, ErrMissingTensor)
	}
	sh := w.shards[t.shard]
	state, f := t.state, sh.f
	w.mu.Unlock()
	if state != written || f == nil {
		return nil, fmt.Errorf("%s: tensor %q: not completely written yet", sh.path, name)
	}
	if t.size == 0 {
		return &Mapped{}, nil
	}
	page := int64(os.Getpagesize())
	start := t.off &^ (page - 1)
	m, err := mmap.MapRegion(f, int(t.off-start+t.size), mmap.RDONLY, 0, start)
	if err != nil {
		return nil, fmt.Errorf("%s: tensor %q: map: %w", sh.path, name, err)
	}
	return &Mapped{m: m, data: m[t.off-start : t.off-start+t.size]}, nil
}
