package safetensors

import (
	"fmt"
	"sort"
	"sync"

	"github.com/wanda-go/wanda/format/dtype"
)

// TensorWriter writes the data of one declared tensor in pieces, for tensors
// too large to hold in memory at once (a 128256×4096 bf16 embedding is 1 GiB).
// Get one from Writer.OpenTensor, write every byte of the tensor exactly once
// with WriteAt (in any order, from any goroutine, with disjoint ranges), then
// Close it. The Writer counts the tensor as written only after a Close that
// found every byte written; writing a byte twice fails with
// ErrDuplicateTensor, so the whole-tensor "exactly once" rule of Write holds
// byte by byte.
type TensorWriter struct {
	w    *Writer
	t    *wtensor
	sh   *wshard
	mu   sync.Mutex
	done []span // written byte ranges, sorted, disjoint and merged
	n    int64  // bytes written
	shut bool
}

// span is a half-open byte range [lo, hi) relative to the tensor's data.
type span struct{ lo, hi int64 }

// OpenTensor claims the declared tensor name for chunked writing. It fails
// with ErrMissingTensor for an undeclared name and with ErrDuplicateTensor if
// the tensor was already written or is being written (by Write or another
// TensorWriter).
func (w *Writer) OpenTensor(name string) (*TensorWriter, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	t, ok := w.byName[name]
	switch {
	case w.finished:
		return nil, fmt.Errorf("%s: tensor %q: writer already closed", w.dir, name)
	case !ok:
		return nil, fmt.Errorf("%s: tensor %q was not declared: %w", w.dir, name, ErrMissingTensor)
	}
	sh := w.shards[t.shard]
	if t.state != pending {
		return nil, fmt.Errorf("%s: tensor %q written twice: %w", sh.path, name, ErrDuplicateTensor)
	}
	t.state = writing
	return &TensorWriter{w: w, t: t, sh: sh}, nil
}

// Size is the tensor's data size in bytes.
func (tw *TensorWriter) Size() int64 { return tw.t.size }

// DType is the tensor's declared dtype.
func (tw *TensorWriter) DType() dtype.DType { return tw.t.spec.DType }

// WriteAt writes p at byte offset off of the tensor's data (0 is the tensor's
// first byte), implementing io.WriterAt. A range outside [0, Size()) fails
// with ErrOutOfBounds, and one that overlaps bytes already written with
// ErrDuplicateTensor; nothing is written then. Safe for concurrent use.
func (tw *TensorWriter) WriteAt(p []byte, off int64) (int, error) {
	name := tw.t.spec.Name
	end := off + int64(len(p))
	if off < 0 || end < off || end > tw.t.size {
		return 0, fmt.Errorf("%s: tensor %q: bytes [%d, %d) outside its %d bytes: %w", tw.sh.path, name, off, end, tw.t.size, ErrOutOfBounds)
	}
	if len(p) == 0 {
		return 0, nil
	}
	if err := tw.claim(off, end); err != nil {
		return 0, err
	}
	n, err := tw.sh.f.WriteAt(p, tw.t.off+off)
	if err != nil {
		tw.unclaim(off, end)
		return n, fmt.Errorf("%s: tensor %q: %w", tw.sh.path, name, err)
	}
	return n, nil
}

// WriteFloat32At narrows src to the tensor's float dtype and writes it at
// element offset elem (byte offset elem·DType().Size()).
func (tw *TensorWriter) WriteFloat32At(src []float32, elem int64) error {
	d := tw.t.spec.DType
	if !d.IsFloat() {
		return fmt.Errorf("%s: tensor %q: WriteFloat32At to non-float dtype %s", tw.sh.path, tw.t.spec.Name, d)
	}
	buf := make([]byte, len(src)*d.Size())
	if err := dtype.FromFloat32(buf, src, d); err != nil {
		return fmt.Errorf("%s: tensor %q: %w", tw.sh.path, tw.t.spec.Name, err)
	}
	_, err := tw.WriteAt(buf, elem*int64(d.Size()))
	return err
}

// claim records [lo, hi) as written, failing if any byte of it already is.
func (tw *TensorWriter) claim(lo, hi int64) error {
	tw.mu.Lock()
	defer tw.mu.Unlock()
	if tw.shut {
		return fmt.Errorf("%s: tensor %q: TensorWriter already closed", tw.sh.path, tw.t.spec.Name)
	}
	tw.w.mu.Lock()
	finished := tw.w.finished
	tw.w.mu.Unlock()
	if finished {
		return fmt.Errorf("%s: tensor %q: writer already closed", tw.w.dir, tw.t.spec.Name)
	}
	// i is the first span ending after lo; it must start at or after hi.
	i := sort.Search(len(tw.done), func(k int) bool { return tw.done[k].hi > lo })
	if i < len(tw.done) && tw.done[i].lo < hi {
		s := tw.done[i]
		return fmt.Errorf("%s: tensor %q: bytes [%d, %d) written twice (already wrote [%d, %d)): %w",
			tw.sh.path, tw.t.spec.Name, max(lo, s.lo), min(hi, s.hi), s.lo, s.hi, ErrDuplicateTensor)
	}
	// Insert, merging with touching neighbours so sequential chunks stay one span.
	ns := span{lo, hi}
	j := i
	if i > 0 && tw.done[i-1].hi == lo {
		i--
		ns.lo = tw.done[i].lo
	}
	if j < len(tw.done) && tw.done[j].lo == hi {
		ns.hi = tw.done[j].hi
		j++
	}
	tw.done = append(tw.done[:i], append([]span{ns}, tw.done[j:]...)...)
	tw.n += hi - lo
	return nil
}

// unclaim forgets [lo, hi) after a failed write, so it may be retried.
func (tw *TensorWriter) unclaim(lo, hi int64) {
	tw.mu.Lock()
	defer tw.mu.Unlock()
	var out []span
	for _, s := range tw.done {
		if s.hi <= lo || s.lo >= hi {
			out = append(out, s)
			continue
		}
		if s.lo < lo {
			out = append(out, span{s.lo, lo})
		}
		if s.hi > hi {
			out = append(out, span{hi, s.hi})
		}
	}
	tw.done = out
	tw.n -= hi - lo
}

// Written is the number of bytes written so far.
func (tw *TensorWriter) Written() int64 {
	tw.mu.Lock()
	defer tw.mu.Unlock()
	return tw.n
}

// Close finishes the tensor. If every byte was written the Writer counts the
// tensor as written; otherwise Close returns an error wrapping ErrIncomplete
// and the tensor is left unwritten (Writer.Close will then fail, naming it;
// it may also be written again from scratch with Write or OpenTensor).
// A second Close returns nil.
func (tw *TensorWriter) Close() error {
	tw.mu.Lock()
	if tw.shut {
		tw.mu.Unlock()
		return nil
	}
	tw.shut = true
	n := tw.n
	tw.mu.Unlock()
	tw.w.mu.Lock()
	defer tw.w.mu.Unlock()
	if n != tw.t.size {
		tw.t.state = pending
		return fmt.Errorf("%s: tensor %q: %d of %d bytes written: %w", tw.sh.path, tw.t.spec.Name, n, tw.t.size, ErrIncomplete)
	}
	tw.t.state = written
	return nil
}
