package peft

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/wanda-go/wanda/format/safetensors"
	"github.com/wanda-go/wanda/internal/regfile"
)

// Module is the LoRA pair of one linear module, or of one parameter adapted
// directly (target_parameters: PEFT's ParamWrapper, e.g. transformers 5's fused
// expert weights).
type Module struct {
	// Name is the module path ("model.layers.0.self_attn.q_proj"), or for a
	// parameter target the parameter's path ("model.layers.0.mlp.experts.gate_up_proj",
	// the key PEFT matches rank_pattern and alpha_pattern against).
	Name string
	// Param is "" for a module target, the parameter's name ("gate_up_proj") for a
	// parameter target.
	Param string
	A, B  *safetensors.Tensor
	Rank  int     // r of this module (rank_pattern honoured); per expert for a parameter target
	Alpha float64 // alpha of this module (alpha_pattern honoured)
	Scale float64 // Alpha/Rank, or Alpha/sqrt(Rank) with use_rslora
	In    int     // A is [Rank·max(Experts, 1), In]
	Out   int     // B is [Out, Rank·max(Experts, 1)]
	// Weight is the model tensor the update lands in: Name + ".weight" for a module
	// target; Name (the parameter, [Experts, d1, d2]) for a parameter target.
	Weight string
	// Experts is the number of experts of a parameter target (the first dimension
	// of a 3-D parameter; 1 for a 2-D one), 0 for a module target.
	Experts int
	// Transposed is set by Check for a 3-D parameter target saved in the layout of
	// PEFT before 0.20 (in and out features taken as the parameter's dimensions 1
	// and 2): expert e's update is then (B_e·A_e)ᵀ instead of B_e·A_e.
	Transposed bool
}

// Adapter is an opened LoRA adapter.
type Adapter struct {
	Dir     string
	Config  *Config
	Modules []*Module // sorted by Name
	byW     map[string]*Module
	file    *safetensors.File
}

// LoadOptions configures LoadWith.
type LoadOptions struct {
	// ParamOrder lists parameter names in the order the model's modules register
	// them (for transformers 5's experts: "gate_up_proj", "down_proj"). PEFT nests
	// one wrapper per targeted parameter of a module, the first registered
	// innermost, so the saved keys are "<module>.lora_A.weight" for the last and
	// "<module>.base_layer.lora_A.weight", "<module>.base_layer.base_layer...." for
	// the earlier ones; the order tells which is which. Without it an adapter
	// that targets more than one parameter of a module is refused.
	ParamOrder []string
}

// Load opens the adapter in dir and validates it (see the package documentation).
func Load(dir string) (*Adapter, error) { return LoadWith(dir, LoadOptions{}) }

// LoadWith is Load with options.
func LoadWith(dir string, opt LoadOptions) (*Adapter, error) {
	cfgPath := filepath.Join(dir, ConfigName)
	data, err := regfile.ReadFile(cfgPath)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%s: %w (not a PEFT adapter directory)", cfgPath, ErrMissingFile)
		}
		return nil, fmt.Errorf("%s: %w", cfgPath, err)
	}
	cfg, err := ParseConfig(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cfgPath, err)
	}
	wPath := filepath.Join(dir, WeightsName)
	if _, err := os.Stat(wPath); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			if _, e := os.Stat(filepath.Join(dir, LegacyBinName)); e == nil {
				return nil, fmt.Errorf("%s: %w: only %s (a pickle) is present; convert it to safetensors first", wPath, ErrMissingFile, LegacyBinName)
			}
			return nil, fmt.Errorf("%s: %w", wPath, ErrMissingFile)
		}
		return nil, fmt.Errorf("%s: %w", wPath, err)
	}
	f, err := safetensors.Open(wPath)
	if err != nil {
		return nil, err
	}
	a, err := build(dir, cfg, f, opt)
	if err != nil {
		f.Close()
		return nil, err
	}
	return a, nil
}

// splitKey parses "base_model.model.<module>.lora_A[.<adapter>].weight".
func splitKey(key string) (module, which string, ok bool) {
	rest, found := strings.CutPrefix(key, keyPrefix)
	if !found {
		return "", "", false
	}
	rest, found = strings.CutSuffix(rest, weightSuffix)
	if !found {
		return "", "", false
	}
	for _, w := range []string{loraA, loraB} {
		if m, found := strings.CutSuffix(rest, "."+w); found && m != "" {
			return m, w, true
		}
		// adapter name kept in the key: <module>.lora_A.<name>
		if i := strings.LastIndex(rest, "."+w+"."); i > 0 && !strings.Contains(rest[i+len(w)+2:], ".") {
			return rest[:i], w, true
		}
	}
	return "", "", false
}

// baseLayer is the infix of a nested PEFT wrapper's key.
const baseLayer = ".base_layer"

// wrapperKey identifies one LoRA pair in the file: the module path and, for
// nested parameter wrappers, the number of ".base_layer" infixes (0 outermost).
type wrapperKey struct {
	module string
	depth  int
}

func build(dir string, cfg *Config, f *safetensors.File, opt LoadOptions) (*Adapter, error) {
	path := f.Path
	mods := map[wrapperKey]*Module{}
	var keys []wrapperKey
	for _, t := range f.Tensors() {
		name, which, ok := splitKey(t.Name)
		if !ok {
			what := "it is not a lora_A/lora_B weight"
			switch {
			case strings.Contains(t.Name, "modules_to_save"):
				what = "modules_to_save copies are not supported"
			case strings.Contains(t.Name, "lora_embedding"):
				what = "LoRA on embeddings is not supported"
			case strings.Contains(t.Name, "lora_magnitude_vector"):
				what = "DoRA is not supported"
			case !strings.HasPrefix(t.Name, keyPrefix):
				what = "keys must start with " + keyPrefix
			}
			return nil, fmt.Errorf("%s: tensor %q: %w: %s", path, t.Name, ErrUnsupported, what)
		}
		if !t.DType.IsFloat() || len(t.Shape) != 2 {
			return nil, fmt.Errorf("%s: tensor %q: %w: want a 2-D float tensor, got %s%v", path, t.Name, ErrInvalid, t.DType, t.Shape)
		}
		k := wrapperKey{module: name}
		for {
			m, ok := strings.CutSuffix(k.module, baseLayer)
			if !ok {
				break
			}
			k.module, k.depth = m, k.depth+1
		}
		m := mods[k]
		if m == nil {
			m = &Module{Name: name}
			mods[k] = m
			keys = append(keys, k)
		}
		dst := &m.A
		if which == loraB {
			dst = &m.B
		}
		if *dst != nil {
			return nil, fmt.Errorf("%s: module %q: %w: two %s tensors (%q and %q)", path, name, ErrInvalid, which, (*dst).Name, t.Name)
		}
		*dst = t
	}
	if len(mods) == 0 {
		return nil, fmt.Errorf("%s: %w: no lora_A/lora_B tensors", path, ErrInvalid)
	}
	// Parameter wrappers: which parameter each nesting depth adapts.
	params, err := resolveParams(cfg, keys, opt.ParamOrder)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	a := &Adapter{Dir: dir, Config: cfg, file: f, byW: map[string]*Module{}}
	for _, k := range keys {
		m := mods[k]
		switch {
		case m.A == nil:
			return nil, fmt.Errorf("%s: module %q: %w: lora_B without lora_A", path, m.Name, ErrInvalid)
		case m.B == nil:
			return nil, fmt.Errorf("%s: module %q: %w: lora_A without lora_B", path, m.Name, ErrInvalid)
		}
		rA, rB := m.A.Shape[0], m.B.Shape[1]
		if rA != rB {
			return nil, fmt.Errorf("%s: module %q: %w: lora_A is %v and lora_B is %v: ranks %d and %d differ", path, m.Name, ErrInvalid, m.A.Shape, m.B.Shape, rA, rB)
		}
		experts := int64(1)
		if p, ok := params[k]; ok {
			m.Param, m.Name = p, k.module+"."+p
			m.Weight = m.Name
			m.Rank, m.Alpha = cfg.RankAlpha(m.Name)
			if rA%int64(m.Rank) != 0 {
				return nil, fmt.Errorf("%s: parameter %q: %w: lora_A has %d rows, not a multiple of r = %d (PEFT saves r rows per expert)", path, m.Name, ErrInvalid, rA, m.Rank)
			}
			experts = rA / int64(m.Rank)
			m.Experts = int(experts)
		} else {
			m.Weight = m.Name + weightSuffix
			m.Rank, m.Alpha = cfg.RankAlpha(m.Name)
			if !cfg.Targets(m.Name) {
				return nil, fmt.Errorf("%s: module %q: %w: not selected by target_modules %s", path, m.Name, ErrInvalid, cfg.targetString())
			}
		}
		if int64(m.Rank)*experts != rA {
			return nil, fmt.Errorf("%s: module %q: %w: tensors have rank %d but %s gives r = %d", path, m.Name, ErrInvalid, rA, ConfigName, m.Rank)
		}
		m.Scale = cfg.Scale(m.Name)
		m.In, m.Out = int(m.A.Shape[1]), int(m.B.Shape[0])
		a.Modules = append(a.Modules, m)
		if m.Param == "" {
			a.byW[m.Weight] = m
		}
	}
	sort.Slice(a.Modules, func(i, j int) bool { return a.Modules[i].Name < a.Modules[j].Name })
	return a, nil
}

// paramsOf lists the names of the parameters of module that target_parameters
// selects (PEFT matches "<module>.<parameter>"), in the model's registration
// order (order), each once.
func (c *Config) paramsOf(module string, order []string) ([]string, error) {
	var ps []string
	for _, t := range c.TargetParameters {
		p := t[strings.LastIndexByte(t, '.')+1:]
		if c.TargetsParam(module+"."+p) && !slices.Contains(ps, p) {
			ps = append(ps, p)
		}
	}
	if len(ps) < 2 {
		return ps, nil
	}
	for _, p := range ps {
		if !slices.Contains(order, p) {
			return nil, fmt.Errorf("%w: module %q: target_parameters selects %q of it, and the order in which the model registers its parameters (which tells PEFT's nested wrappers apart) is not known", ErrUnsupported, module, ps)
		}
	}
	slices.SortFunc(ps, func(x, y string) int { return slices.Index(order, x) - slices.Index(order, y) })
	return ps, nil
}

// resolveParams maps the parameter wrappers among keys to their parameter names:
// a module whose path target_parameters selects parameters of (or that carries
// ".base_layer" infixes) holds one wrapper per selected parameter, the first in
// registration order innermost (largest depth).
func resolveParams(cfg *Config, keys []wrapperKey, order []string) (map[wrapperKey]string, error) {
	depths := map[string][]int{}
	for _, k := range keys {
		depths[k.module] = append(depths[k.module], k.depth)
	}
	out := map[wrapperKey]string{}
	for mod, ds := range depths {
		ps, err := cfg.paramsOf(mod, order)
		if err != nil {
			return nil, err
		}
		if len(ps) == 0 {
			if slices.Max(ds) > 0 {
				return nil, fmt.Errorf("%w: module %q has nested (%s) LoRA weights but target_parameters selects none of its parameters", ErrInvalid, mod, baseLayer)
			}
			continue // a module target
		}
		slices.Sort(ds)
		if len(ds) != len(ps) || ds[len(ds)-1] != len(ps)-1 {
			return nil, fmt.Errorf("%w: module %q: target_parameters selects %d parameters of it (%v) but the file holds %d LoRA pairs", ErrInvalid, mod, len(ps), ps, len(ds))
		}
		for _, d := range ds {
			out[wrapperKey{mod, d}] = ps[len(ps)-1-d]
		}
	}
	return out, nil
}

func (c *Config) targetString() string {
	if c.TargetRegex != "" {
		return fmt.Sprintf("%q", c.TargetRegex)
	}
	return fmt.Sprintf("%q", c.TargetModules)
}

// ForWeight returns the module whose base weight is the tensor weightName.
func (a *Adapter) ForWeight(weightName string) (*Module, bool) {
	m, ok := a.byW[weightName]
	return m, ok
}

// Release drops the resident pages of m's tensors.
func (a *Adapter) Release(m *Module) {
	a.file.Release(m.A)
	a.file.Release(m.B)
}

// Close closes the adapter's weight file.
func (a *Adapter) Close() error { return a.file.Close() }

// Check verifies the adapter against a model: shape returns the shape of a
// model tensor or parameter (ok false when absent), names lists them. Every
// adapted module must have a 2-D weight [Out, In]; every parameter target a
// parameter [Experts, d1, d2] (or [d1, d2]) that its A and B fit, either as
// PEFT ≥ 0.20 saves them for transformers 5's [experts, out, in] parameters
// (A [r·E, d2], B [d1, r·E]) or as earlier PEFT did (A [r·E, d1], B [d2, r·E];
// Check then sets Module.Transposed). When both fit (d1 = d2) only an adapter
// whose peft_version is at least 0.20 is accepted. Every entry of a list
// target_modules must name at least one module of the model that has a 2-D
// weight, every entry of target_parameters at least one parameter. Errors wrap
// ErrMismatch and name the module.
func (a *Adapter) Check(names []string, shape func(name string) ([]int64, bool)) error {
	for _, m := range a.Modules {
		s, ok := shape(m.Weight)
		if !ok {
			return fmt.Errorf("%s: module %q: %w: the model has no tensor %q", a.Dir, m.Name, ErrMismatch, m.Weight)
		}
		if m.Param != "" {
			if err := a.checkParam(m, s); err != nil {
				return err
			}
			continue
		}
		if len(s) != 2 || s[0] != int64(m.Out) || s[1] != int64(m.In) {
			return fmt.Errorf("%s: module %q: %w: lora_B·lora_A is [%d, %d] but %q is %v", a.Dir, m.Name, ErrMismatch, m.Out, m.In, m.Weight, s)
		}
	}
	var linears []string
	for _, n := range names {
		if mod, ok := strings.CutSuffix(n, weightSuffix); ok {
			if s, _ := shape(n); len(s) == 2 {
				linears = append(linears, mod)
			}
		}
	}
	for _, t := range a.Config.TargetModules {
		found := false
		for _, mod := range linears {
			if mod == t || strings.HasSuffix(mod, "."+t) {
				found = true
				break
			}
		}
		if !found {
			return fmt.Errorf("%s: %s: target module %q: %w: no such linear module in the model", a.Dir, ConfigName, t, ErrMismatch)
		}
	}
	for _, t := range a.Config.TargetParameters {
		if !slices.ContainsFunc(names, func(n string) bool { return matchList([]string{t}, n) }) {
			return fmt.Errorf("%s: %s: target parameter %q: %w: no such parameter in the model", a.Dir, ConfigName, t, ErrMismatch)
		}
	}
	return nil
}

// checkParam fits a parameter target to the parameter's shape s and decides its layout.
func (a *Adapter) checkParam(m *Module, s []int64) error {
	var e, d1, d2 int64
	switch len(s) {
	case 2:
		e, d1, d2 = 1, s[0], s[1]
	case 3:
		e, d1, d2 = s[0], s[1], s[2]
	default:
		return fmt.Errorf("%s: parameter %q: %w: it is %v, PEFT adapts 2-D and 3-D parameters", a.Dir, m.Name, ErrMismatch, s)
	}
	if int64(m.Experts) != e {
		return fmt.Errorf("%s: parameter %q: %w: lora_A has %d rows = r %d × %d experts, the parameter is %v", a.Dir, m.Name, ErrMismatch, m.Rank*m.Experts, m.Rank, m.Experts, s)
	}
	in, out := int64(m.In), int64(m.Out)
	current := out == d1 && in == d2
	legacy := len(s) == 3 && in == d1 && out == d2
	switch {
	case current && legacy && !a.Config.VersionAtLeast(0, 20, 0):
		v := a.Config.PeftVersion
		if v == "" {
			v = "absent"
		}
		return fmt.Errorf("%s: parameter %q: %w: its dimensions 1 and 2 are both %d, and PEFT before 0.20 (this adapter's peft_version: %s) saved such adapters transposed or not depending on transformers' patching; refusing to guess",
			a.Dir, m.Name, ErrMismatch, d1, v)
	case current:
		m.Transposed = false
	case legacy:
		m.Transposed = true
	default:
		return fmt.Errorf("%s: parameter %q: %w: lora_A is %v and lora_B %v, which fit neither [%d, %d] nor its transpose per expert of %v",
			a.Dir, m.Name, ErrMismatch, m.A.Shape, m.B.Shape, d1, d2, s)
	}
	return nil
}

// Factors returns float32 factors left [n, Rank] and right [Rank, cols] whose
// product is rows [row0, row0+n) of the module's update before scaling: B·A
// ([Out, In]) for a module target; for a parameter target, expert e's slice of
// the parameter ([d1, d2]): B_e·A_e, or (B_e·A_e)ᵀ when Transposed, where A_e
// is rows e·r … e·r+r-1 of A and B_e column k·E+e of B for k < r (PEFT's
// ParamWrapper.get_delta_weight: A reshaped [E, r, in], B [out, r, E]). a and b
// are m.A and m.B widened to float32 (A.Float32(), B.Float32()).
func (m *Module) Factors(a, b []float32, e, row0, n int) (left, right []float32, cols int) {
	r := m.Rank
	if m.Param == "" {
		return b[row0*r : (row0+n)*r], a, m.In
	}
	E := m.Experts
	re := r * E
	ae := a[e*r*m.In : (e+1)*r*m.In] // A_e [r, In]
	if !m.Transposed {
		left = make([]float32, n*r) // B_e rows row0.. [n, r]
		for o := range n {
			for k := range r {
				left[o*r+k] = b[(row0+o)*re+k*E+e]
			}
		}
		return left, ae, m.In
	}
	// (B_e·A_e)ᵀ = A_eᵀ·B_eᵀ: rows row0.. of A_eᵀ [In, r], and B_eᵀ [r, Out].
	left = make([]float32, n*r)
	for o := range n {
		for k := range r {
			left[o*r+k] = ae[k*m.In+row0+o]
		}
	}
	right = make([]float32, r*m.Out)
	for k := range r {
		for i := range m.Out {
			right[k*m.Out+i] = b[i*re+k*E+e]
		}
	}
	return left, right, m.Out
}
