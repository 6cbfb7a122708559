package transform

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path/filepath"

	"github.com/wanda-go/wanda/format/dtype"
	"github.com/wanda-go/wanda/format/peft"
	"github.com/wanda-go/wanda/format/safetensors"
	"github.com/wanda-go/wanda/format/sparse"
	"github.com/wanda-go/wanda/internal/regfile"
	"github.com/wanda-go/wanda/tensor"
)

// ErrNonFinite: NaN or ±Inf in an adapter's weights or in a merged weight
// (W + s·B·A overflowing float32 or the model's dtype).
var ErrNonFinite = errors.New("merge-lora: non-finite value")

// MergeOptions configures MergeLoRA.
type MergeOptions struct {
	// Scale multiplies every module's LoRA scaling (0 means 1).
	Scale float64
	// MaxShardBytes and Force as in Options.
	MaxShardBytes int64
	Force         bool
}

// MergeResult describes what MergeLoRA did.
type MergeResult struct {
	Merged []string // weights that received a LoRA update, sorted
	// MaskSource is sparse.MaskFileName when the masks came from the model's
	// mask file, "exact zeros" when they were derived from W == 0.
	MaskSource string
	// Pruned is the number of weights forced back to +0.0 by the masks.
	Pruned int64
	// KeptZeros counts kept (unmasked) weights whose merged value is exactly
	// zero in the output dtype (written as +0.0). A later mask derived from
	// exact zeros would count them as pruned.
	KeptZeros int64
}

// MergeLoRA writes to out the model in dir (dense or packed; the output is
// dense) with the LoRA adapter in adapterDir merged: W' = W + s·scale·(B·A)
// computed in float32, then the pruning mask re-applied (+0.0 at every pruned
// position) so the sparsity pattern is exactly preserved, then narrowed to W's
// dtype; -0.0 is never written. The mask of a weight comes from the model's
// sparsity_masks.safetensors when present (weights it does not list are
// treated as unpruned), else from W's exact zeros. The adapter is checked
// against the model first (peft.Adapter.Check); nothing is written when it
// does not fit.
func MergeLoRA(dir, adapterDir, out string, opt MergeOptions) (*MergeResult, error) {
	userScale := opt.Scale
	if userScale == 0 {
		userScale = 1
	}
	if math.IsNaN(userScale) || math.IsInf(userScale, 0) {
		return nil, fmt.Errorf("merge-lora: scale %g is not finite", userScale)
	}
	if err := checkOut("merge-lora", out, opt.Force, dir, adapterDir); err != nil {
		return nil, err
	}
	r, err := Open(dir)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	ad, err := peft.Load(adapterDir)
	if err != nil {
		return nil, err
	}
	defer ad.Close()
	if err := ad.Check(r.Names(), r.Shape); err != nil {
		return nil, err
	}
	for _, m := range ad.Modules {
		if dt, _ := r.DType(m.Weight); !dt.IsFloat() {
			return nil, fmt.Errorf("%s: tensor %q: dtype %s is not a float dtype", dir, m.Weight, dt)
		}
		if err := checkFiniteAdapter(m); err != nil {
			return nil, fmt.Errorf("%s: module %q: %w", adapterDir, m.Name, err)
		}
		ad.Release(m)
	}

	res := &MergeResult{MaskSource: "exact zeros"}
	var masks *sparse.MaskFile
	mp := filepath.Join(dir, sparse.MaskFileName)
	if _, err := os.Stat(mp); err == nil {
		if masks, err = sparse.OpenMasks(mp); err != nil {
			return nil, err
		}
		defer masks.Close()
		res.MaskSource = sparse.MaskFileName
		for _, n := range masks.Names() {
			rows, cols, _ := masks.Shape(n)
			s, ok := r.Shape(n)
			if !ok || len(s) != 2 || s[0] != int64(rows) || s[1] != int64(cols) {
				return nil, fmt.Errorf("%s: tensor %q: %w: mask is [%d, %d], the model's tensor is %v", mp, n, sparse.ErrMask, rows, cols, s)
			}
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}

	cfgPath := filepath.Join(dir, ConfigName)
	cfgBytes, err := regfile.ReadFile(cfgPath)
	if err != nil {
		return nil, err
	}
	if r.Format() != sparse.FormatDense {
		if cfgBytes, _, err = sparse.StripSparsityConfig(cfgBytes); err != nil {
			return nil, fmt.Errorf("%s: %w", cfgPath, err)
		}
	}

	err = buildDir(out, opt.Force, func(tmp string) error {
		err := writeDense(r, tmp, opt.MaxShardBytes, func(name string, data []byte) ([]byte, error) {
			m, ok := ad.ForWeight(name)
			if !ok {
				return data, nil
			}
			defer ad.Release(m)
			dt, _ := r.DType(name)
			var mask *sparse.Mask
			var err error
			if masks != nil {
				mask, _, err = masks.Mask(name)
			} else {
				mask, err = sparse.MaskFromZeros(data, dt, m.Out, m.In)
			}
			if err != nil {
				return nil, err
			}
			merged, pruned, keptZeros, err := mergeOne(data, dt, m, float32(m.Scale*userScale), mask)
			if err != nil {
				return nil, fmt.Errorf("%s: module %q: %w", adapterDir, m.Name, err)
			}
			res.Merged = append(res.Merged, name)
			res.Pruned += pruned
			res.KeptZeros += keptZeros
			return merged, nil
		})
		if err != nil {
			return err
		}
		if err := writeFileSync(filepath.Join(tmp, ConfigName), cfgBytes); err != nil {
			return err
		}
		return copyOtherFiles(dir, tmp, skipper(r.Shards()))
	})
	if err != nil {
		return nil, err
	}
	if res.KeptZeros > 0 {
		slog.Warn("merge-lora: some kept weights became exactly zero after the merge", "count", res.KeptZeros)
	}
	slog.Info("merge-lora: done", "out", out, "merged", len(res.Merged), "mask_source", res.MaskSource, "pruned", res.Pruned)
	return res, nil
}

// mergeOne computes mask(W + alpha·B·A) in float32 and narrows it to dt,
// writing +0.0 for every zero. It returns the new bytes, the number of masked
// entries and the number of unmasked entries that are zero in the output.
func mergeOne(data []byte, dt dtype.DType, m *peft.Module, alpha float32, mask *sparse.Mask) ([]byte, int64, int64, error) {
	rows, cols, rank := m.Out, m.In, m.Rank
	w := make([]float32, rows*cols)
	if err := dtype.ToFloat32(w, data, dt); err != nil {
		return nil, 0, 0, err
	}
	a, err := m.A.Float32()
	if err != nil {
		return nil, 0, 0, err
	}
	b, err := m.B.Float32()
	if err != nil {
		return nil, 0, 0, err
	}
	// W[rows, cols] += alpha · B[rows, rank] · A[rank, cols]
	tensor.Sgemm(false, false, rows, cols, rank, alpha, b, rank, a, cols, 1, w, cols)
	var pruned int64
	if mask != nil {
		if mask.Rows != rows || mask.Cols != cols {
			return nil, 0, 0, fmt.Errorf("%w: mask is [%d, %d], weight is [%d, %d]", sparse.ErrMask, mask.Rows, mask.Cols, rows, cols)
		}
		for k := range w {
			if mask.Bits[k>>6]&(1<<(uint(k)&63)) != 0 {
				w[k] = 0
				pruned++
			}
		}
	}
	if k, n := firstNonFinite(w); n > 0 {
		old := make([]float32, 1)
		size := dt.Size()
		dtype.ToFloat32(old, data[k*size:(k+1)*size], dt)
		return nil, 0, 0, fmt.Errorf("%s[%d, %d] = %v after the merge (W = %v; %d non-finite merged values): %w",
			m.Weight, k/cols, k%cols, w[k], old[0], n, ErrNonFinite)
	}
	out := make([]byte, len(data))
	if err := dtype.FromFloat32(out, w, dt); err != nil {
		return nil, 0, 0, err
	}
	if k, n := firstNonFiniteBytes(out, dt); n > 0 {
		return nil, 0, 0, fmt.Errorf("%s[%d, %d] = %v after the merge overflows %s (%d values): %w",
			m.Weight, k/cols, k%cols, w[k], dt, n, ErrNonFinite)
	}
	// +0.0 everywhere a zero lands (a kept weight can round or cancel to ±0).
	size := dt.Size()
	var keptZeros int64
	for k := range w {
		e := out[k*size : (k+1)*size]
		last := len(e) - 1
		zero := e[last]&0x7f == 0
		for _, x := range e[:last] {
			zero = zero && x == 0
		}
		if !zero {
			continue
		}
		e[last] = 0
		if mask == nil || mask.Bits[k>>6]&(1<<(uint(k)&63)) == 0 {
			keptZeros++
		}
	}
	return out, pruned, keptZeros, nil
}

// checkFiniteAdapter refuses NaN and ±Inf in a module's lora_A and lora_B.
func checkFiniteAdapter(m *peft.Module) error {
	for _, p := range []struct {
		what string
		t    *safetensors.Tensor
	}{{"lora_A", m.A}, {"lora_B", m.B}} {
		v, err := p.t.Float32()
		if err != nil {
			return fmt.Errorf("%s: %w", p.t.Name, err)
		}
		if k, n := firstNonFinite(v); n > 0 {
			cols := 1
			if len(p.t.Shape) == 2 {
				cols = int(p.t.Shape[1])
			}
			return fmt.Errorf("%s %s holds %v at [%d, %d] (%d non-finite values): %w", p.what, p.t.Name, v[k], k/cols, k%cols, n, ErrNonFinite)
		}
	}
	return nil
}

// firstNonFinite returns the index of the first NaN or ±Inf of v and how many there are.
func firstNonFinite(v []float32) (first, n int) {
	first = -1
	for k, x := range v {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			if n == 0 {
				first = k
			}
			n++
		}
	}
	return first, n
}

// firstNonFiniteBytes is firstNonFinite on raw little-endian elements of the
// float dtype dt (all exponent bits set: ±Inf or NaN).
func firstNonFiniteBytes(b []byte, dt dtype.DType) (first, n int) {
	first = -1
	size := dt.Size()
	for k := 0; k*size < len(b); k++ {
		e := b[k*size : (k+1)*size]
		var bad bool
		switch dt {
		case dtype.BF16:
			bad = binary.LittleEndian.Uint16(e)&0x7f80 == 0x7f80
		case dtype.F16:
			bad = binary.LittleEndian.Uint16(e)&0x7c00 == 0x7c00
		case dtype.F32:
			bad = binary.LittleEndian.Uint32(e)&0x7f800000 == 0x7f800000
		case dtype.F64:
			bad = binary.LittleEndian.Uint64(e)&0x7ff0000000000000 == 0x7ff0000000000000
		}
		if bad {
			if n == 0 {
				first = k
			}
			n++
		}
	}
	return first, n
}
