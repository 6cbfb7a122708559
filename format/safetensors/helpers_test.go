package safetensors

import (
	"testing"

	"github.com/wanda-go/wanda/internal/testenv"
)

// sharedDir returns ../shared relative to the module root, skipping the test
// (or failing under CI=true) when it is absent.
func sharedDir(t testing.TB) string {
	t.Helper()
	return testenv.SharedDir(t)
}

// sharedFile returns a file under ../shared, skipping when it is absent.
func sharedFile(t testing.TB, rel string) string {
	t.Helper()
	return testenv.SharedPath(t, rel)
}
