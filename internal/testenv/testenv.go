// Package testenv locates the project's read-only reference material for
// tests. The material lives in ../shared beside the module root (the
// directory holding go.mod). When it is absent a test is skipped with a
// message, unless the environment variable CI is "true", in which case the
// test fails: CI runs must not silently skip the reference checks.
//
// The default test run checks the reference cheaply (masks, logits, windowed
// perplexities). The full WikiText-2 perplexity comparisons, each a complete
// evaluation of 903 windows (about 1.5 minutes on 2 cores), run only when the
// environment variable WANDA_TEST_FULL is set (see [Full]): "1" runs every one
// of them (fifteen evaluations), "ci" the representative part .ci/run runs
// (see [FullRun]: the dense model, SparseGPT unstructured, magnitude 2:4,
// Wanda 4:8 and OWL at 70%), so that CI stays under half an hour.
//
// Only _test.go files import this package, so the format/... packages keep
// their rule of importing nothing of ours outside format/ in non-test code.
package testenv

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// FullEnv is the environment variable that turns on the full reference
// checks: WANDA_TEST_FULL=1 go test ./... (all of them) or WANDA_TEST_FULL=ci
// (the representative part).
const FullEnv = "WANDA_TEST_FULL"

// Full reports whether the full reference checks are on (WANDA_TEST_FULL=1 or
// WANDA_TEST_FULL=ci).
func Full() bool {
	v := os.Getenv(FullEnv)
	return v == "1" || v == "ci"
}

// FullAll reports whether every full reference check runs (WANDA_TEST_FULL=1),
// not only the representative ones.
func FullAll() bool { return os.Getenv(FullEnv) == "1" }

// FullRun skips tb unless the full reference checks are on and, when
// representative is false, unless all of them are (WANDA_TEST_FULL=1); what
// says what the run costs.
func FullRun(tb testing.TB, what string, representative bool) {
	tb.Helper()
	RequireFull(tb, what)
	if !representative && !FullAll() {
		tb.Skipf("%s: runs with %s=1 (%s=ci runs the representative ones)", what, FullEnv, FullEnv)
	}
}

// RequireFull skips tb unless the full reference checks are on; what says
// what the test costs (e.g. "nine full WikiText-2 evaluations").
func RequireFull(tb testing.TB, what string) {
	tb.Helper()
	if !Full() {
		tb.Skipf("%s: runs with %s=1 or %s=ci (as .ci/run does)", what, FullEnv, FullEnv)
	}
}

// errNoModule reports that no go.mod lies above the working directory.
var errNoModule = errors.New("testenv: go.mod not found above the test directory")

// moduleRoot walks up from the working directory to the directory holding
// go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errNoModule
		}
		dir = parent
	}
}

// ModuleRoot returns the directory holding go.mod above the working directory.
func ModuleRoot(tb testing.TB) string {
	tb.Helper()
	dir, err := moduleRoot()
	if err != nil {
		tb.Fatal(err)
	}
	return dir
}

// SharedDir returns ../shared beside the module root: it skips tb (with a
// message) when it is absent, and fails it when CI=true.
func SharedDir(tb testing.TB) string {
	tb.Helper()
	shared := filepath.Join(ModuleRoot(tb), "..", "shared")
	require(tb, "../shared", shared)
	return shared
}

// SharedPath returns filepath.Join(SharedDir(tb), rel), skipping/failing the
// same way when that path is absent.
func SharedPath(tb testing.TB, rel string) string {
	tb.Helper()
	p := filepath.Join(SharedDir(tb), rel)
	require(tb, filepath.ToSlash(filepath.Join("../shared", rel)), p)
	return p
}

// LookupShared returns filepath.Join(<module root>/../shared, rel) and
// whether it exists, never skipping or failing: for benchmarks that fall
// back to generated inputs when the reference material is absent.
func LookupShared(rel string) (string, bool) {
	root, err := moduleRoot()
	if err != nil {
		return "", false
	}
	p := filepath.Join(root, "..", "shared", rel)
	_, err = os.Stat(p)
	return p, err == nil
}

// require skips tb when path is absent, or fails it when CI=true; name is
// how the message calls the path.
func require(tb testing.TB, name, path string) {
	tb.Helper()
	_, err := os.Stat(path)
	if err == nil {
		return
	}
	msg := fmt.Sprintf("%s not present: %v", name, err)
	if os.Getenv("CI") == "true" {
		tb.Fatal(msg + " (required when CI=true)")
	}
	tb.Skip(msg)
}

// SkipIfRace skips tb when the binary was built with -race: tb bounds the
// process's anonymous memory, which the race detector's shadow memory inflates.
func SkipIfRace(tb testing.TB) {
	tb.Helper()
	if Race {
		tb.Skip("bounds the process's anonymous memory, which the race detector's shadow memory inflates")
	}
}
