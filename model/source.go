package model

import (
	"fmt"
	"slices"

	"github.com/wanda-go/wanda/format/dtype"
	"github.com/wanda-go/wanda/format/safetensors"
	"github.com/wanda-go/wanda/pipeline"
	"github.com/wanda-go/wanda/tensor"
)

// Source is where the model's tensors come from: a plain safetensors directory
// (SetSource) or any dense view of one, such as transform's Reader over a
// compressed-tensors packed directory. Names are the dense tensor names; Bytes is the
// dense little-endian row-major data in the stored dtype, which should be a read-only
// view into a memory map (the model computes from it without copying). Release drops
// a tensor's resident pages once a layer is done with it.
type Source interface {
	DType(name string) (dtype.DType, bool)
	Shape(name string) ([]int64, bool)
	Bytes(name string) ([]byte, error)
	Release(name string)
}

// SetSource presents a safetensors set as a Source.
func SetSource(set *safetensors.Set) Source { return setSource{set} }

type setSource struct{ set *safetensors.Set }

func (s setSource) DType(name string) (dtype.DType, bool) {
	t, ok := s.set.Tensor(name)
	if !ok {
		return dtype.Invalid, false
	}
	return t.DType, true
}

func (s setSource) Shape(name string) ([]int64, bool) {
	t, ok := s.set.Tensor(name)
	if !ok {
		return nil, false
	}
	return slices.Clone(t.Shape), true
}

func (s setSource) Bytes(name string) ([]byte, error) {
	t, err := s.set.Get(name)
	if err != nil {
		return nil, err
	}
	b := t.Bytes()
	if b == nil {
		return nil, fmt.Errorf("%s: tensor %q: file is closed", t.File, name)
	}
	return b, nil
}

func (s setSource) Release(name string) { s.set.Release(name) }

// lookup returns the dtype and shape of name, or the source's error for a missing
// tensor (wrapping safetensors.ErrMissingTensor).
func lookup(src Source, name string) (dtype.DType, []int64, error) {
	dt, ok1 := src.DType(name)
	shape, ok2 := src.Shape(name)
	if !ok1 || !ok2 {
		if _, err := src.Bytes(name); err != nil {
			return dtype.Invalid, nil, err
		}
		return dtype.Invalid, nil, fmt.Errorf("tensor %q: %w", name, safetensors.ErrMissingTensor)
	}
	return dt, shape, nil
}

// sourceWeights serves a Source as pipeline.Weights: each tensor a tensor.Mat view of
// its stored bytes (no copy for a memory-mapped source).
type sourceWeights struct{ src Source }

func (w sourceWeights) Mat(name string) (tensor.Mat, error) {
	dt, shape, err := lookup(w.src, name)
	if err != nil {
		return tensor.Mat{}, err
	}
	if !dt.IsFloat() {
		return tensor.Mat{}, fmt.Errorf("tensor %q: dtype %s is not a float type: %w", name, dt, ErrUnsupported)
	}
	b, err := w.src.Bytes(name)
	if err != nil {
		return tensor.Mat{}, err
	}
	return pipeline.TensorMat(name, dt, shape, b)
}
