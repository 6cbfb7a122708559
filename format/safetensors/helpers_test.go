package safetensors

import (
	"os"
	"path/filepath"
	"testing"
)

// sharedDir returns ../shared relative to the module root, skipping the test
// (or failing under CI=true) when it is absent.
func sharedDir(t testing.TB) string {
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
	shared := filepath.Join(dir, "..", "shared")
	if _, err := os.Stat(shared); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("../shared not present (CI=true): %v", err)
		}
		t.Skipf("../shared not present: %v", err)
	}
	return shared
}

// sharedFile returns a file under ../shared, skipping when it is absent.
func sharedFile(t testing.TB, rel string) string {
	t.Helper()
	p := filepath.Join(sharedDir(t), rel)
	if _, err := os.Stat(p); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s not present (CI=true): %v", p, err)
		}
		t.Skipf("%s not present: %v", p, err)
	}
	return p
}
