package forward

import (
	"os"
	"path/filepath"
	"testing"
)

// sharedPath returns ../shared/rel relative to the module root, skipping the
// test (or failing under CI=true) when it is absent.
func sharedPath(t testing.TB, rel string) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the test directory")
		}
		dir = parent
	}
	p := filepath.Join(dir, "..", "shared", rel)
	if _, err := os.Stat(p); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("../shared not present (CI=true): %v", err)
		}
		t.Skipf("../shared not present: %v", err)
	}
	return p
}
