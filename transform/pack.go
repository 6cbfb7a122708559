package transform

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"

	"github.com/wanda-go/wanda/format/config"
	"github.com/wanda-go/wanda/format/safetensors"
	"github.com/wanda-go/wanda/format/sparse"
	"github.com/wanda-go/wanda/internal/regfile"
	"github.com/wanda-go/wanda/model/arch"
)

// FormatAuto lets Pack choose: the registered layout of lowest rank that can
// store every packed linear (sparse-24-bitmask when every one is 2:4, else
// sparse-bitmask).
const FormatAuto sparse.Format = "auto"

// Options configures Pack, Unpack and MergeLoRA.
type Options struct {
	// Format for Pack: FormatAuto (or "") or a registered layout's format
	// (sparse.Formats: sparse.Format24, sparse.FormatBitmask).
	Format sparse.Format
	// MaxShardBytes is the largest data size of an output shard; 0 writes one
	// model.safetensors.
	MaxShardBytes int64
	// Force replaces an existing output directory that is a model directory or
	// a previous wanda output (see staging.CheckTarget); the old one is removed
	// only once the new one is in place.
	Force bool
}

// Result describes what Pack did.
type Result struct {
	Format    sparse.Format
	Structure string   // "2:4" when every packed linear is 2:4, else "unstructured"
	Packed    []string // dense names of the packed tensors, sorted
	// DenseBytes and PackedBytes are the sizes of the packed tensors before and
	// after packing (all parts, .shape and .row_offsets included).
	DenseBytes, PackedBytes int64
	// GlobalSparsity is the fraction of exact zeros over all float tensors (the
	// figure written to sparsity_config.global_sparsity).
	GlobalSparsity float64
	// LinearSparsity is the fraction of exact zeros over the packed linears.
	LinearSparsity float64
}

// ParseFormat accepts "auto" (FormatAuto) and the registered layouts' formats
// (sparse.Formats).
func ParseFormat(s string) (sparse.Format, error) {
	f := sparse.Format(s)
	if f == FormatAuto {
		return f, nil
	}
	if _, ok := sparse.LayoutOf(f); ok {
		return f, nil
	}
	return "", fmt.Errorf("pack: format %q (want auto, %s)", s, sparse.FormatList())
}

// layerLinears returns the prunable linears of every decoder layer of cfg
// (every linear but the routers, by the architecture table) and the number of
// all the layers' linears, routers included.
func layerLinears(cfg *config.Config, a *arch.Arch) (prunable map[string]bool, all int) {
	prunable = map[string]bool{}
	for l := range cfg.NumLayers {
		for _, lin := range a.Layer(cfg, l).Linears {
			all++
			if !lin.Router {
				prunable[lin.Name] = true
			}
		}
	}
	return prunable, all
}

// targetsOf lists the tensors to pack: the prunable linears of every layer
// (the architecture table's: attention, dense MLPs, every expert linear and
// shared expert, Phi-3's fused qkv_proj and gate_up_proj; never a router),
// restricted to those in the model's mask file when there is one.
func targetsOf(dir string, prunable map[string]bool, names []string) ([]string, error) {
	var masked map[string]bool
	mp := filepath.Join(dir, sparse.MaskFileName)
	if _, err := os.Stat(mp); err == nil {
		mf, err := sparse.OpenMasks(mp)
		if err != nil {
			return nil, err
		}
		masked = map[string]bool{}
		for _, n := range mf.Names() {
			masked[n] = true
		}
		mf.Close()
	}
	var out []string
	for _, n := range names {
		if prunable[n] && (masked == nil || masked[n]) {
			out = append(out, n)
		}
	}
	return out, nil
}

// Pack writes a packed copy of the dense pruned model in dir to out (see the
// package documentation). A linear that the chosen layout cannot store (one
// that breaks 2:4 with opt.Format sparse.Format24), or that holds -0.0, is
// refused with an error naming it (wrapping sparse.ErrNot24 /
// sparse.ErrNegativeZero, in the words of sparse.Stat.Why) before anything is
// written.
func Pack(dir, out string, opt Options) (*Result, error) {
	if err := validFormat(opt.Format); err != nil {
		return nil, err
	}
	if err := checkOut("pack", out, opt.Force, dir); err != nil {
		return nil, err
	}
	res, err := pack(dir, opt, func(fill func(string) error) error { return buildDir(out, opt.Force, fill) })
	if err != nil {
		return nil, err
	}
	slog.Info("pack: done", "out", out, "format", res.Format, "tensors", len(res.Packed),
		"dense_bytes", res.DenseBytes, "packed_bytes", res.PackedBytes)
	return res, nil
}

// PackInto is Pack writing into dst, which must not exist, without a staging
// directory or output checks: for a caller that builds its output in its own
// staging directory (the prune --pack finisher writes dst beside its staging
// directory as STAGING.packed, which staging.Sweep removes with it after a
// kill). dst is removed when PackInto fails.
func PackInto(dir, dst string, opt Options) (*Result, error) {
	if err := validFormat(opt.Format); err != nil {
		return nil, err
	}
	return pack(dir, opt, func(fill func(string) error) error {
		if err := os.Mkdir(dst, 0o755); err != nil {
			return err
		}
		if err := fill(dst); err != nil {
			os.RemoveAll(dst)
			return err
		}
		return nil
	})
}

func validFormat(f sparse.Format) error {
	if f == "" {
		return nil
	}
	_, err := ParseFormat(string(f))
	return err
}

// pack checks and plans the packed copy of dir, then calls write with the
// function that fills an output directory.
func pack(dir string, opt Options, write func(fill func(tmp string) error) error) (*Result, error) {
	cfgPath := filepath.Join(dir, ConfigName)
	cfgBytes, err := regfile.ReadFile(cfgPath)
	if err != nil {
		return nil, fmt.Errorf("pack: %w", err)
	}
	cfg, a, err := arch.Parse(cfgBytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cfgPath, err)
	}
	if sc, err := sparse.ReadSparsityConfig(cfgBytes); err != nil {
		return nil, fmt.Errorf("%s: %w", cfgPath, err)
	} else if sc != nil {
		return nil, fmt.Errorf("%s: already packed (%s); unpack it first", dir, sc.Format)
	}
	// The candidate layouts: the one asked for, or (auto) every registered one
	// by rank; the patterns the scan must check are theirs and 2:4 (for
	// sparsity_structure).
	candidates := sparse.Layouts()
	if opt.Format != "" && opt.Format != FormatAuto {
		l, _ := sparse.LayoutOf(opt.Format)
		candidates = []*sparse.Layout{l}
	}
	patterns := []sparse.NM{sparse.Pattern24}
	for _, l := range candidates {
		if l.Pattern != (sparse.NM{}) && !slices.Contains(patterns, l.Pattern) {
			patterns = append(patterns, l.Pattern)
		}
	}

	set, err := safetensors.OpenDir(dir)
	if err != nil {
		return nil, err
	}
	defer set.Close()
	names := set.Names()
	prunable, allLinears := layerLinears(cfg, a)
	targets, err := targetsOf(dir, prunable, names)
	if err != nil {
		return nil, err
	}

	// Pass 1: scan the linears (zeros, -0.0, N:M), releasing each.
	type plan struct {
		rows, cols int
		stat       sparse.Stat
	}
	plans := map[string]*plan{}
	all24 := true
	unfit := make([]error, len(candidates)) // the first tensor each candidate cannot store
	var zeros, total int64
	for _, n := range targets {
		t, _ := set.Tensor(n)
		if len(t.Shape) != 2 || !t.DType.IsFloat() {
			slog.Warn("pack: not packing a linear that is not a 2-D float tensor", "tensor", n, "dtype", t.DType, "shape", t.Shape)
			continue
		}
		p := &plan{rows: int(t.Shape[0]), cols: int(t.Shape[1])}
		p.stat, err = sparse.Scan(t.Bytes(), t.DType, p.rows, p.cols, patterns...)
		set.Release(n)
		if err != nil {
			return nil, fmt.Errorf("%s: tensor %q: %w", t.File, n, err)
		}
		if err := p.stat.NegZeroError(); err != nil {
			return nil, fmt.Errorf("%s: tensor %q: %w (re-export the model)", t.File, n, err)
		}
		for i, l := range candidates {
			if err := l.Eligible(p.stat); err != nil && unfit[i] == nil {
				unfit[i] = fmt.Errorf("%s: tensor %q: %w", t.File, n, err)
			}
		}
		if len(candidates) == 1 && unfit[0] != nil {
			return nil, unfit[0]
		}
		all24 = all24 && p.stat.Satisfies(sparse.Pattern24)
		plans[n] = p
		zeros += p.stat.Zeros
		total += int64(p.rows) * int64(p.cols)
	}
	if len(plans) == 0 {
		return nil, fmt.Errorf("%s: no prunable linear tensors to pack", dir)
	}
	var layout *sparse.Layout
	for i, l := range candidates {
		if unfit[i] == nil {
			layout = l
			break
		}
		slog.Info("pack: not using "+string(l.Format), "because", unfit[i])
	}
	if layout == nil {
		return nil, fmt.Errorf("%s: no packed format fits every linear: %w", dir, errors.Join(unfit...))
	}
	res := &Result{Format: layout.Format, Structure: sparse.StructureUnstructured}
	if all24 {
		res.Structure = sparse.Structure24
	}
	res.LinearSparsity = float64(zeros) / float64(max(total, 1))

	// Declare the output.
	var specs []safetensors.Spec
	for _, n := range names {
		t, _ := set.Tensor(n)
		p, ok := plans[n]
		if !ok {
			specs = append(specs, safetensors.Spec{Name: n, DType: t.DType, Shape: t.Shape})
			continue
		}
		prefix, _ := sparse.Prefix(n)
		s, err := layout.Specs(prefix, t.DType, p.rows, p.cols, p.stat)
		if err != nil {
			return nil, fmt.Errorf("%s: tensor %q: %w", t.File, n, err)
		}
		specs = append(specs, s...)
		res.Packed = append(res.Packed, n)
	}
	sort.Strings(res.Packed)

	err = write(func(tmp string) error {
		w, err := safetensors.Create(tmp, specs, safetensors.WriterOptions{MaxShardBytes: opt.MaxShardBytes, Metadata: set.Metadata()})
		if err != nil {
			return err
		}
		if err := func() error {
			for _, n := range names {
				t, _ := set.Tensor(n)
				data := t.Bytes()
				p, ok := plans[n]
				if !ok {
					if t.DType.IsFloat() {
						st, err := sparse.Scan(data, t.DType, 1, int(t.Numel()))
						if err != nil {
							return fmt.Errorf("%s: tensor %q: %w", t.File, n, err)
						}
						zeros += st.Zeros
						total += t.Numel()
					}
					err := w.Write(n, data)
					set.Release(n)
					if err != nil {
						return err
					}
					continue
				}
				parts, err := layout.Pack(data, t.DType, p.rows, p.cols)
				set.Release(n)
				if err != nil {
					return fmt.Errorf("%s: tensor %q: %w", t.File, n, err)
				}
				prefix, _ := sparse.Prefix(n)
				res.DenseBytes += int64(len(data))
				for i, suf := range layout.Parts {
					if err := w.Write(prefix+suf, parts[i]); err != nil {
						return err
					}
					res.PackedBytes += int64(len(parts[i]))
				}
			}
			return nil
		}(); err != nil {
			w.Abort()
			return err
		}
		if err := w.Close(); err != nil {
			return err
		}
		if total > 0 {
			res.GlobalSparsity = float64(zeros) / float64(total)
		}
		sc := sparse.SparsityConfig{
			Format: layout.Format, GlobalSparsity: res.GlobalSparsity, SparsityStructure: res.Structure,
			Targets: targetList(allLinears, res.Packed), Ignore: []string{"lm_head"},
		}
		nc, err := sparse.WithSparsityConfig(cfgBytes, sc)
		if err != nil {
			return fmt.Errorf("%s: %w", cfgPath, err)
		}
		if err := writeFileSync(filepath.Join(tmp, ConfigName), nc); err != nil {
			return err
		}
		return copyOtherFiles(dir, tmp, skipper(set.Shards()))
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

// targetList is sparsity_config.targets: ["Linear"] when every linear of every
// layer is packed (compressed-tensors then compresses all Linear modules but
// the ignored lm_head), else the packed module names. A model with routers
// (which are never packed) always gets the list.
func targetList(allLinears int, packed []string) []string {
	if len(packed) == allLinears {
		return []string{"Linear"}
	}
	mods := make([]string, len(packed))
	for i, n := range packed {
		mods[i], _ = sparse.Prefix(n)
	}
	return mods
}

// IsPacked reports whether the model directory dir is packed (its config.json
// has a compressed-tensors sparsity_config).
func IsPacked(dir string) (bool, error) {
	b, err := regfile.ReadFile(filepath.Join(dir, ConfigName))
	if err != nil {
		return false, err
	}
	sc, err := sparse.ReadSparsityConfig(b)
	if err != nil {
		return false, err
	}
	return sc != nil && sc.Format != sparse.FormatDense, nil
}
