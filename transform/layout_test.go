package transform

import (
	"bytes"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wanda-go/wanda/format/dtype"
	"github.com/wanda-go/wanda/format/safetensors"
	"github.com/wanda-go/wanda/format/sparse"
)

// formatRowCopy is a third packed layout that exists only in this file, to show
// that a layout is one registration: Pack, Open, Unpack and format parsing find
// it through format/sparse's registry with no edit elsewhere. It stores the
// dense rows as they are (".compressed") plus the ".shape" part, and, like
// sparse-24-bitmask, it takes only 2:4 tensors.
const formatRowCopy sparse.Format = "test-row-copy"

func init() {
	sparse.RegisterLayout(&sparse.Layout{
		Format:  formatRowCopy,
		Parts:   []string{sparse.SuffixCompressed, sparse.SuffixShape},
		Rank:    100, // after the real layouts: auto never picks it
		Pattern: sparse.Pattern24,
		Specs: func(p string, dt dtype.DType, rows, cols int, _ sparse.Stat) ([]safetensors.Spec, error) {
			return []safetensors.Spec{
				{Name: p + sparse.SuffixCompressed, DType: dt, Shape: []int64{int64(rows), int64(cols)}},
				{Name: p + sparse.SuffixShape, DType: dtype.I64, Shape: []int64{2}},
			}, nil
		},
		Pack: func(values []byte, dt dtype.DType, rows, cols int) ([][]byte, error) {
			return [][]byte{append([]byte(nil), values...), sparse.ShapeBytes(rows, cols)}, nil
		},
		Header: func(parts []*safetensors.Tensor) (dtype.DType, int, int, error) {
			v, err := parts[1].Int64s()
			if err != nil {
				return 0, 0, 0, err
			}
			rows, cols, err := sparse.ParseShape(v)
			if err != nil {
				return 0, 0, 0, err
			}
			if len(parts[0].Shape) != 2 || parts[0].Shape[0] != int64(rows) || parts[0].Shape[1] != int64(cols) {
				return 0, 0, 0, fmt.Errorf("%w: %q is %v", sparse.ErrCorrupt, parts[0].Name, parts[0].Shape)
			}
			return parts[0].DType, rows, cols, nil
		},
		Unpack: func(parts [][]byte, dt dtype.DType, rows, cols int) ([]byte, error) {
			if len(parts[0]) != rows*cols*dt.Size() {
				return nil, sparse.ErrCorrupt
			}
			return append([]byte(nil), parts[0]...), nil
		},
	})
}

func TestThirdLayoutIsOneRegistration(t *testing.T) {
	if f, err := ParseFormat(string(formatRowCopy)); err != nil || f != formatRowCopy {
		t.Fatalf("ParseFormat: %q %v", f, err)
	}
	f := makePruned(t, fixtureOpts{dtype: "bf16", pattern: "2:4", seed: 81})
	work := t.TempDir()
	p := filepath.Join(work, "p")
	res, err := Pack(f.dir, p, Options{Format: formatRowCopy})
	if err != nil {
		t.Fatal(err)
	}
	if res.Format != formatRowCopy || len(res.Packed) != 14 || res.Structure != sparse.Structure24 {
		t.Fatalf("result %+v", res)
	}
	if sc := readSparsityConfig(t, p); sc.Format != formatRowCopy {
		t.Errorf("sparsity_config format %q", sc.Format)
	}
	r, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range res.Packed {
		if b, err := r.Bytes(n); err != nil || !r.Packed(n) || !bytes.Equal(b, f.tensors[n]) {
			t.Errorf("%s: packed %v, bytes equal %v (%v)", n, r.Packed(n), bytes.Equal(b, f.tensors[n]), err)
		}
	}
	r.Close()
	if err := Unpack(p, filepath.Join(work, "u"), Options{}); err != nil {
		t.Fatal(err)
	}
	checkDenseEqual(t, filepath.Join(work, "u"), f)
	// Its eligibility test is the registry's: an unstructured model is refused.
	g := makePruned(t, fixtureOpts{dtype: "bf16", pattern: "unstructured", seed: 82})
	if _, err := Pack(g.dir, filepath.Join(work, "q"), Options{Format: formatRowCopy}); err == nil || !strings.Contains(err.Error(), "2:4 needs") {
		t.Errorf("unstructured into a 2:4 layout: %v", err)
	}
	// auto still picks the real layouts.
	if res, err := Pack(f.dir, filepath.Join(work, "a"), Options{}); err != nil || res.Format != sparse.Format24 {
		t.Errorf("auto: %v %v", res, err)
	}
}
