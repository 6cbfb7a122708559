//go:build !unix

package staging

import "os"

// Without flock(2) there is no owner lock: nothing is ever judged stale.
func lock(*os.File) error { return nil }

func tryLock(*os.File) (bool, error) { return false, nil }
