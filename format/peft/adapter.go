package peft

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/wanda-go/wanda/format/safetensors"
	"github.com/wanda-go/wanda/internal/regfile"
)

// Module is the LoRA pair of one linear module.
type Module struct {
	Name   string // module path, e.g. "model.layers.0.self_attn.q_proj"; the base weight is Name+".weight"
	A, B   *safetensors.Tensor
	Rank   int     // r of this module (rank_pattern honoured)
	Alpha  float64 // alpha of this module (alpha_pattern honoured)
	Scale  float64 // Alpha/Rank, or Alpha/sqrt(Rank) with use_rslora
	In     int     // A is [Rank, In]
	Out    int     // B is [Out, Rank]
	Weight string  // Name + ".weight"
}

// Adapter is an opened LoRA adapter.
type Adapter struct {
	Dir     string
	Config  *Config
	Modules []*Module // sorted by Name
	byW     map[string]*Module
	file    *safetensors.File
}

// Load opens the adapter in dir and validates it (see the package documentation).
func Load(dir string) (*Adapter, error) {
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
	a, err := build(dir, cfg, f)
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

func build(dir string, cfg *Config, f *safetensors.File) (*Adapter, error) {
	path := f.Path
	mods := map[string]*Module{}
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
		m := mods[name]
		if m == nil {
			m = &Module{Name: name, Weight: name + weightSuffix}
			mods[name] = m
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
	a := &Adapter{Dir: dir, Config: cfg, file: f, byW: map[string]*Module{}}
	for _, m := range mods {
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
		m.Rank, m.Alpha = cfg.RankAlpha(m.Name)
		if int64(m.Rank) != rA {
			return nil, fmt.Errorf("%s: module %q: %w: tensors have rank %d but %s gives r = %d", path, m.Name, ErrInvalid, rA, ConfigName, m.Rank)
		}
		if !cfg.Targets(m.Name) {
			return nil, fmt.Errorf("%s: module %q: %w: not selected by target_modules %s", path, m.Name, ErrInvalid, cfg.targetString())
		}
		m.Scale = cfg.Scale(m.Name)
		m.In, m.Out = int(m.A.Shape[1]), int(m.B.Shape[0])
		a.Modules = append(a.Modules, m)
		a.byW[m.Weight] = m
	}
	sort.Slice(a.Modules, func(i, j int) bool { return a.Modules[i].Name < a.Modules[j].Name })
	return a, nil
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
// model tensor (ok false when absent), names lists the model's tensors. Every
// adapted module must have a 2-D weight [Out, In]; every entry of a list
// target_modules must name at least one module of the model that has a 2-D
// weight. Errors wrap ErrMismatch and name the module.
func (a *Adapter) Check(names []string, shape func(name string) ([]int64, bool)) error {
	for _, m := range a.Modules {
		s, ok := shape(m.Weight)
		if !ok {
			return fmt.Errorf("%s: module %q: %w: the model has no tensor %q", a.Dir, m.Name, ErrMismatch, m.Weight)
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
	return nil
}
