//go:build unix

package testhook

import "syscall"

// stopSelf stops this process until a SIGCONT.
func stopSelf() { syscall.Kill(syscall.Getpid(), syscall.SIGSTOP) }
