package pipeline_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/wanda-go/wanda/pipeline"
	_ "github.com/wanda-go/wanda/stages/metric"
	_ "github.com/wanda-go/wanda/stages/pattern"
	_ "github.com/wanda-go/wanda/stages/solver"
)

func TestRegistry(t *testing.T) {
	names := pipeline.MethodNames()
	for _, want := range []string{"magnitude", "sparsegpt", "wanda"} {
		if !slices.Contains(names, want) {
			t.Errorf("%s not registered: %v", want, names)
		}
	}
	m, err := pipeline.BuiltinMethod("wanda", pipeline.Target{Sparsity: 0.5}, nil)
	if err != nil || m.Metric == nil || m.Metric.Name() != "wanda" || m.Pattern.Name() != "unstructured" || m.Solver != nil {
		t.Errorf("wanda: %+v %v", m, err)
	}
	m, err = pipeline.BuiltinMethod("magnitude", pipeline.Target{N: 2, M: 4}, nil)
	if err != nil || m.Pattern == nil || m.Pattern.Name() != "nm" {
		t.Errorf("magnitude 2:4: %+v %v", m, err)
	}
	if g := pipeline.DefaultGroup("magnitude"); g != pipeline.GroupMatrix {
		t.Errorf("magnitude's group %v", g)
	}
	m, err = pipeline.BuiltinMethod("sparsegpt", pipeline.Target{Sparsity: 0.5}, pipeline.Params{"blocksize": "64"})
	if err != nil || m.Solver == nil || m.Metric != nil || m.Validate() != nil {
		t.Errorf("sparsegpt: %+v %v", m, err)
	}
	_, err = pipeline.BuiltinMethod("bogus", pipeline.Target{}, nil)
	if !errors.Is(err, pipeline.ErrUnknownMethod) || !strings.Contains(err.Error(), "(want magnitude, ria, sparsegpt, wanda)") {
		t.Errorf("bogus: %v", err)
	}
	for _, p := range []pipeline.Params{{"a": "1"}, {"blocksize": "x"}, {"percdamp": "2"}} {
		name := "wanda"
		if _, ok := p["a"]; !ok {
			name = "sparsegpt"
		}
		if _, err := pipeline.BuiltinMethod(name, pipeline.Target{Sparsity: 0.5}, p); !errors.Is(err, pipeline.ErrParam) {
			t.Errorf("%s %v: %v", name, p, err)
		}
	}
	if !strings.Contains(pipeline.MethodHelp(), "sparsegpt: ") {
		t.Errorf("help: %q", pipeline.MethodHelp())
	}
}

func TestParseTarget(t *testing.T) {
	for _, c := range []struct {
		in   string
		s    float64
		want pipeline.Target
		ok   bool
	}{
		{"unstructured", 0.5, pipeline.Target{Sparsity: 0.5}, true},
		{"2:4", 0, pipeline.Target{N: 2, M: 4, Sparsity: 0.5}, true},
		{"4:8", 0, pipeline.Target{N: 4, M: 8, Sparsity: 0.5}, true},
		{"unstructured", 1, pipeline.Target{}, false},
		{"4:4", 0, pipeline.Target{}, false},
		{"0:4", 0, pipeline.Target{}, false},
		{"2:x", 0, pipeline.Target{}, false},
		{"-1:4", 0, pipeline.Target{}, false},
		{"", 0, pipeline.Target{}, false},
	} {
		got, err := pipeline.ParseTarget(c.in, c.s)
		if (err == nil) != c.ok || (c.ok && got != c.want) {
			t.Errorf("ParseTarget(%q, %g) = %+v, %v", c.in, c.s, got, err)
		}
		if err != nil && !errors.Is(err, pipeline.ErrBadTarget) {
			t.Errorf("%q: error %v is not ErrBadTarget", c.in, err)
		}
	}
}
