package pipeline

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// The registry of built-in stages. A stage package registers its stages in an init
// function (as image/png registers its format), so adding a built-in method is one file and
// one registration; the CLI's flag help and "(want …)" lists come from here.

// Params are a method's own settings by name (e.g. "a" for RIA), as given on the command
// line; each stage parses the ones it knows and rejects the others.
type Params map[string]string

// Float returns the parameter key as a float64, def when absent.
func (p Params) Float(key string, def float64) (float64, error) {
	s, ok := p[key]
	if !ok {
		return def, nil
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: %s=%q: not a number", ErrParam, key, s)
	}
	return v, nil
}

// Int returns the parameter key as an int, def when absent.
func (p Params) Int(key string, def int) (int, error) {
	s, ok := p[key]
	if !ok {
		return def, nil
	}
	v, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("%w: %s=%q: not an integer", ErrParam, key, s)
	}
	return v, nil
}

// Only fails when p holds a key outside known.
func (p Params) Only(known ...string) error {
	for k := range p {
		if !slices.Contains(known, k) {
			if len(known) == 0 {
				return fmt.Errorf("%w: %q: this stage takes no parameters", ErrParam, k)
			}
			return fmt.Errorf("%w: %q (want %s)", ErrParam, k, strings.Join(known, ", "))
		}
	}
	return nil
}

// Registry errors.
var (
	ErrUnknownMethod = errors.New("pipeline: unknown method")
	ErrParam         = errors.New("pipeline: invalid stage parameter")
)

// MetricEntry registers a built-in metric. The method of the same name is the metric with
// the built-in pattern of the target (unstructured or N:M).
type MetricEntry struct {
	Name, Help string
	// Group is the comparison group the method uses by default for unstructured targets
	// (the reference's magnitude compares a whole matrix; Wanda each row).
	Group Group
	New   func(Params) (Metric, error)
}

// SolverEntry registers a built-in solver (a method that chooses its own mask).
type SolverEntry struct {
	Name, Help string
	New        func(Params) (Solver, error)
}

// PatternEntry registers a built-in pattern. For is true for the targets it serves (the
// built-in method of a metric uses the first registered pattern whose For accepts the target).
type PatternEntry struct {
	Name, Help string
	For        func(Target) bool
	New        func() Pattern
}

// AllocatorEntry registers a built-in allocation (--allocation NAME).
type AllocatorEntry struct {
	Name, Help string
	New        func(Params) (Allocator, error)
}

// RefinerEntry registers a built-in refinement (--refine NAME).
type RefinerEntry struct {
	Name, Help string
	// Group is the comparison group a method refined by it uses unless told otherwise (the
	// refinement keeps each row's count, so per-row masks are the natural start).
	Group Group
	New   func(Params) (Refiner, error)
}

// table is one kind of registered stage, in registration order.
type table[E any] struct {
	mu      sync.Mutex
	kind    string
	name    func(E) string
	entries []E
}

func (t *table[E]) add(e E, taken func(string) bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := t.name(e)
	if n == "" || strings.ContainsAny(n, ":/ ") {
		panic(fmt.Sprintf("pipeline: Register%s: invalid name %q", t.kind, n))
	}
	if t.has(n) || taken != nil && taken(n) {
		panic(fmt.Sprintf("pipeline: Register%s: %q registered twice", t.kind, n))
	}
	t.entries = append(t.entries, e)
}

// has reports whether n is registered (t.mu held).
func (t *table[E]) has(n string) bool {
	return slices.ContainsFunc(t.entries, func(e E) bool { return t.name(e) == n })
}

func (t *table[E]) lookup(n string) (E, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, e := range t.entries {
		if t.name(e) == n {
			return e, true
		}
	}
	var zero E
	return zero, false
}

func (t *table[E]) all() []E {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.entries)
}

func (t *table[E]) names() []string {
	var n []string
	for _, e := range t.all() {
		n = append(n, t.name(e))
	}
	slices.Sort(n)
	return n
}

var (
	metrics    = &table[MetricEntry]{kind: "Metric", name: func(e MetricEntry) string { return e.Name }}
	solvers    = &table[SolverEntry]{kind: "Solver", name: func(e SolverEntry) string { return e.Name }}
	patterns   = &table[PatternEntry]{kind: "Pattern", name: func(e PatternEntry) string { return e.Name }}
	allocators = &table[AllocatorEntry]{kind: "Allocator", name: func(e AllocatorEntry) string { return e.Name }}
	refiners   = &table[RefinerEntry]{kind: "Refiner", name: func(e RefinerEntry) string { return e.Name }}
)

// RegisterMetric adds a built-in metric (and the method of the same name).
func RegisterMetric(e MetricEntry) {
	metrics.add(e, func(n string) bool { _, ok := solvers.lookup(n); return ok })
}

// RegisterSolver adds a built-in solver method.
func RegisterSolver(e SolverEntry) {
	solvers.add(e, func(n string) bool { _, ok := metrics.lookup(n); return ok })
}

// RegisterPattern adds a built-in pattern.
func RegisterPattern(e PatternEntry) { patterns.add(e, nil) }

// RegisterAllocator adds a built-in allocation.
func RegisterAllocator(e AllocatorEntry) { allocators.add(e, nil) }

// RegisterRefiner adds a built-in refinement.
func RegisterRefiner(e RefinerEntry) { refiners.add(e, nil) }

// MethodNames lists the built-in methods (metrics and solvers), sorted.
func MethodNames() []string {
	return slices.Sorted(slices.Values(append(metrics.names(), solvers.names()...)))
}

// AllocatorNames lists the built-in allocations, sorted.
func AllocatorNames() []string { return allocators.names() }

// RefinerNames lists the built-in refinements, sorted.
func RefinerNames() []string { return refiners.names() }

// MethodHelp is one line per built-in method: "name: help".
func MethodHelp() string {
	var lines []string
	for _, m := range metrics.all() {
		lines = append(lines, m.Name+": "+m.Help)
	}
	for _, s := range solvers.all() {
		lines = append(lines, s.Name+": "+s.Help)
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

// DefaultGroup is the comparison group built-in method name uses by default (GroupRow
// for solvers and unknown names).
func DefaultGroup(name string) Group {
	if m, ok := metrics.lookup(name); ok {
		return m.Group
	}
	return GroupRow
}

// BuiltinMetric returns the registered metric name with its parameters.
func BuiltinMetric(name string, p Params) (Metric, error) {
	e, ok := metrics.lookup(name)
	if !ok {
		return nil, fmt.Errorf("%w %q (want %s)", ErrUnknownMethod, name, strings.Join(MethodNames(), ", "))
	}
	return e.New(p)
}

// BuiltinPattern returns the registered pattern for target t.
func BuiltinPattern(t Target) (Pattern, error) {
	for _, p := range patterns.all() {
		if p.For(t) {
			return p.New(), nil
		}
	}
	return nil, fmt.Errorf("%w: no built-in pattern for %v", ErrBadTarget, t)
}

// BuiltinMethod returns the built-in method name for target t: a registered metric with the
// built-in pattern of t, or a registered solver.
func BuiltinMethod(name string, t Target, p Params) (Method, error) {
	if e, ok := solvers.lookup(name); ok {
		s, err := e.New(p)
		if err != nil {
			return Method{}, fmt.Errorf("method %s: %w", name, err)
		}
		return Method{Name: name, Solver: s}, nil
	}
	m, err := BuiltinMetric(name, p)
	if err != nil {
		return Method{}, err
	}
	pat, err := BuiltinPattern(t)
	if err != nil {
		return Method{}, err
	}
	return Method{Name: name, Metric: m, Pattern: pat}, nil
}

// BuiltinAllocator returns the registered allocation name with its parameters.
func BuiltinAllocator(name string, p Params) (Allocator, error) {
	e, ok := allocators.lookup(name)
	if !ok {
		return nil, fmt.Errorf("%w: allocation %q (want %s)", ErrUnknownMethod, name, strings.Join(AllocatorNames(), ", "))
	}
	a, err := e.New(p)
	if err != nil {
		return nil, fmt.Errorf("allocation %s: %w", name, err)
	}
	return a, nil
}

// BuiltinRefiner returns the registered refinement name with its parameters, and the
// comparison group it starts from.
func BuiltinRefiner(name string, p Params) (Refiner, Group, error) {
	e, ok := refiners.lookup(name)
	if !ok {
		return nil, 0, fmt.Errorf("%w: refinement %q (want %s)", ErrUnknownMethod, name, strings.Join(RefinerNames(), ", "))
	}
	r, err := e.New(p)
	if err != nil {
		return nil, 0, fmt.Errorf("refinement %s: %w", name, err)
	}
	return r, e.Group, nil
}

// ParseTarget parses a pattern ("unstructured", or "N:M": N pruned of every M consecutive
// input columns, e.g. "2:4") with the sparsity of unstructured targets.
func ParseTarget(pattern string, sparsity float64) (Target, error) {
	if pattern == "unstructured" {
		t := Target{Sparsity: sparsity}
		return t, t.Validate(0)
	}
	a, b, ok := strings.Cut(pattern, ":")
	n, err1 := strconv.Atoi(a)
	m, err2 := strconv.Atoi(b)
	if !ok || err1 != nil || err2 != nil {
		return Target{}, fmt.Errorf("%w: pattern %q (want unstructured or N:M such as 2:4)", ErrBadTarget, pattern)
	}
	t := Target{N: n, M: m}
	if n <= 0 || m <= 0 || n >= m {
		return t, fmt.Errorf("%w: pattern %s needs 0 < N < M", ErrBadTarget, pattern)
	}
	t.Sparsity = float64(n) / float64(m)
	return t, nil
}
