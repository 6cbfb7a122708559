package model

import (
	"testing"

	"github.com/wanda-go/wanda/internal/testenv"
)

// sharedPath returns ../shared/rel relative to the module root, skipping the
// test (or failing under CI=true) when it is absent.
func sharedPath(t testing.TB, rel string) string {
	t.Helper()
	return testenv.SharedPath(t, rel)
}
