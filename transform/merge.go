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
	"slices"
	"strings"

	"github.com/wanda-go/wanda/format/dtype"
	"github.com/wanda-go/wanda/format/peft"
	"github.com/wanda-go/wanda/format/safetensors"
	"github.com/wanda-go/wanda/format/sparse"
	"github.com/wanda-go/wanda/internal/regfile"
	"github.com/wanda-go/wanda/model/arch"
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
	Merged []string // model tensors that received a LoRA update, in file order (sorted)
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
//
// An adapter may target transformers 5's fused expert parameters
// (target_parameters "mlp.experts.gate_up_proj" [E, 2I, H] and
// "mlp.experts.down_proj" [E, H, I], arch.Names.FusedExperts): expert e's
// update is split back into the per-expert tensors the checkpoint stores (rows
// 0..I-1 of gate_up into the expert's gate projection, rows I..2I-1 into its up
// projection, down into its down projection) and merged into each, masked by
// that tensor's own mask.
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
	cfgPath := filepath.Join(dir, ConfigName)
	cfgBytes, err := regfile.ReadFile(cfgPath)
	if err != nil {
		return nil, err
	}
	// The architecture says which fused expert parameters exist and which
	// per-expert tensors they stand for. A model whose type the table lacks is
	// merged by tensor names alone (module targets only).
	fused, order, archErr := fusedParams(cfgBytes)
	ad, err := peft.LoadWith(adapterDir, peft.LoadOptions{ParamOrder: order})
	if err != nil {
		return nil, err
	}
	defer ad.Close()
	names := r.Names()
	for n := range fused {
		names = append(names, n)
	}
	shape := func(n string) ([]int64, bool) {
		if fp, ok := fused[n]; ok {
			return fp.shape, true
		}
		return r.Shape(n)
	}
	if err := ad.Check(names, shape); err != nil {
		if archErr != nil && slices.ContainsFunc(ad.Modules, func(m *peft.Module) bool { return m.Param != "" }) {
			return nil, fmt.Errorf("%w (and %s: %w)", err, cfgPath, archErr)
		}
		return nil, err
	}
	updates := map[string][]update{}
	for _, m := range ad.Modules {
		if err := checkFiniteAdapter(m); err != nil {
			return nil, fmt.Errorf("%s: module %q: %w", adapterDir, m.Name, err)
		}
		ad.Release(m)
		if m.Param == "" {
			updates[m.Weight] = append(updates[m.Weight], update{m: m, expert: -1, rows: m.Out})
			continue
		}
		fp := fused[m.Weight]
		for e, x := range fp.experts {
			if fp.gateUp {
				updates[x.Gate] = append(updates[x.Gate], update{m: m, expert: e, row0: 0, rows: x.Inter})
				updates[x.Up] = append(updates[x.Up], update{m: m, expert: e, row0: x.Inter, rows: x.Inter})
			} else {
				updates[x.Down] = append(updates[x.Down], update{m: m, expert: e, row0: 0, rows: int(fp.shape[1])})
			}
		}
	}
	for name, ups := range updates {
		dt, _ := r.DType(name)
		s, ok := r.Shape(name)
		if !ok {
			return nil, fmt.Errorf("%s: tensor %q: %w (adapter module %q)", dir, name, safetensors.ErrMissingTensor, ups[0].m.Name)
		}
		if !dt.IsFloat() {
			return nil, fmt.Errorf("%s: tensor %q: dtype %s is not a float dtype", dir, name, dt)
		}
		for _, u := range ups {
			if cols := u.cols(); len(s) != 2 || s[0] != int64(u.rows) || s[1] != int64(cols) {
				return nil, fmt.Errorf("%s: tensor %q: %w: it is %v, adapter module %q updates it as [%d, %d]", dir, name, peft.ErrMismatch, s, u.m.Name, u.rows, cols)
			}
		}
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

	if r.Format() != sparse.FormatDense {
		if cfgBytes, _, err = sparse.StripSparsityConfig(cfgBytes); err != nil {
			return nil, fmt.Errorf("%s: %w", cfgPath, err)
		}
	}

	factors := &factorCache{ad: ad}
	err = buildDir(out, opt.Force, func(tmp string) error {
		err := writeDense(r, tmp, opt.MaxShardBytes, func(name string, data []byte) ([]byte, error) {
			ups, ok := updates[name]
			if !ok {
				return data, nil
			}
			dt, _ := r.DType(name)
			rows, cols := ups[0].rows, ups[0].cols()
			var mask *sparse.Mask
			var err error
			if masks != nil {
				mask, _, err = masks.Mask(name)
			} else {
				mask, err = sparse.MaskFromZeros(data, dt, rows, cols)
			}
			if err != nil {
				return nil, err
			}
			merged, pruned, keptZeros, err := mergeOne(name, data, dt, rows, cols, ups, userScale, mask, factors)
			if err != nil {
				return nil, fmt.Errorf("%s: module %q: %w", adapterDir, ups[0].m.Name, err)
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

// fusedParam is one of transformers 5's fused expert parameters of a sparse
// layer, as a PEFT target_parameters adapter names it, and the per-expert
// tensors it stands for.
type fusedParam struct {
	shape   []int64 // [E, 2I, H] for gate|up, [E, H, I] for down
	gateUp  bool
	experts []arch.MLP
}

// fusedParams lists the fused expert parameters of the model whose config.json
// is cfgBytes ("model.layers.<l>." + arch.Names.FusedExperts; the first is gate|up,
// the second down) and their short names in registration order. The error is
// the architecture table's when it does not know the model (the map is then
// empty).
func fusedParams(cfgBytes []byte) (map[string]fusedParam, []string, error) {
	out := map[string]fusedParam{}
	cfg, a, err := arch.Parse(cfgBytes)
	if err != nil {
		return out, nil, err
	}
	fe := a.Names.FusedExperts
	var order []string
	for _, p := range fe {
		order = append(order, p[strings.LastIndexByte(p, '.')+1:])
	}
	if len(fe) != 2 {
		return out, order, nil
	}
	for l := range cfg.NumLayers {
		L := a.Layer(cfg, l)
		if L.MoE == nil || len(L.MoE.Experts) == 0 {
			continue
		}
		E, I, H := int64(len(L.MoE.Experts)), int64(L.MoE.Experts[0].Inter), int64(cfg.HiddenSize)
		pre := fmt.Sprintf("model.layers.%d.", l)
		out[pre+fe[0]] = fusedParam{shape: []int64{E, 2 * I, H}, gateUp: true, experts: L.MoE.Experts}
		out[pre+fe[1]] = fusedParam{shape: []int64{E, H, I}, experts: L.MoE.Experts}
	}
	return out, order, nil
}

// update is one LoRA contribution to a model tensor: rows [row0, row0+rows) of
// module m's update (of its expert, for a parameter target).
type update struct {
	m          *peft.Module
	expert     int // -1 for a module target
	row0, rows int
}

// cols is the width of the update: In, or for a parameter target the
// parameter's last dimension.
func (u update) cols() int {
	if u.m.Param != "" && u.m.Transposed {
		return u.m.Out
	}
	return u.m.In
}

// factorCache holds the float32 lora_A and lora_B of the modules in use (a
// fused parameter's update lands in 2E or E tensors of its layer).
type factorCache struct {
	ad      *peft.Adapter
	entries map[*peft.Module][2][]float32
}

func (c *factorCache) get(m *peft.Module) (a, b []float32, err error) {
	if e, ok := c.entries[m]; ok {
		return e[0], e[1], nil
	}
	if len(c.entries) >= 4 {
		c.entries = nil
	}
	if c.entries == nil {
		c.entries = map[*peft.Module][2][]float32{}
	}
	defer c.ad.Release(m)
	if a, err = m.A.Float32(); err != nil {
		return nil, nil, err
	}
	if b, err = m.B.Float32(); err != nil {
		return nil, nil, err
	}
	c.entries[m] = [2][]float32{a, b}
	return a, b, nil
}

// mergeOne computes mask(W + Σ alpha·ΔW) in float32 for the updates ups of the
// [rows, cols] tensor name and narrows it to dt, writing +0.0 for every zero.
// It returns the new bytes, the number of masked entries and the number of
// unmasked entries that are zero in the output.
func mergeOne(name string, data []byte, dt dtype.DType, rows, cols int, ups []update, userScale float64, mask *sparse.Mask, fc *factorCache) ([]byte, int64, int64, error) {
	w := make([]float32, rows*cols)
	if err := dtype.ToFloat32(w, data, dt); err != nil {
		return nil, 0, 0, err
	}
	for _, u := range ups {
		a, b, err := fc.get(u.m)
		if err != nil {
			return nil, 0, 0, err
		}
		left, right, c := u.m.Factors(a, b, u.expert, u.row0, u.rows)
		if c != cols || u.rows != rows {
			panic(fmt.Sprintf("transform: update of %s is [%d, %d], the tensor [%d, %d]", name, u.rows, c, rows, cols)) // checked before writing
		}
		// W[rows, cols] += alpha · left[rows, rank] · right[rank, cols]
		rank := u.m.Rank
		tensor.Sgemm(false, false, rows, cols, rank, float32(u.m.Scale*userScale), left, rank, right, cols, 1, w, cols)
	}
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
			name, k/cols, k%cols, w[k], old[0], n, ErrNonFinite)
	}
	out := make([]byte, len(data))
	if err := dtype.FromFloat32(out, w, dt); err != nil {
		return nil, 0, 0, err
	}
	if k, n := firstNonFiniteBytes(out, dt); n > 0 {
		return nil, 0, 0, fmt.Errorf("%s[%d, %d] = %v after the merge overflows %s (%d values): %w",
			name, k/cols, k%cols, w[k], dt, n, ErrNonFinite)
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
