//go:build !unix

package staging

import "os"

// haveFlock: without flock(2) there is no owner lock; nothing is ever judged
// stale and no lock excludes a concurrent run.
const haveFlock = false

func lock(*os.File) error { return nil }

func tryLock(*os.File) (bool, error) { return false, nil }
