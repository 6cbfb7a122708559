package tokenizer

import (
	"testing"

	"github.com/wanda-go/wanda/internal/testenv"
)

// sharedFile returns ../shared/<rel> (relative to the module root), skipping
// the test when it is absent, or failing under CI=true.
func sharedFile(t testing.TB, rel string) string {
	t.Helper()
	return testenv.SharedPath(t, rel)
}
