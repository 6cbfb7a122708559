//go:build !linux && !darwin

package staging

// Without an atomic exchange or no-replace rename, the callers fall back to
// plain renames (see Dir.Replace and Dir.Commit).
func exchange(a, b string) error { return errUnsupported }

func renameNoReplace(from, to string) error { return errUnsupported }
