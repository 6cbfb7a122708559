//go:build !unix

package testhook

// stopSelf does nothing where there is no SIGSTOP.
func stopSelf() {}
