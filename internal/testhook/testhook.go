// Package testhook is the one place where wanda's production code reads test hooks: the
// environment variables with which a test that runs the real binary (cmd/wanda's
// subprocess tests) makes a run die, stop or skip a check at a known place. Nothing but such
// tests should set them; with none set (the normal case) every hook does nothing.
//
//	WANDA_CRASH_AT=POINT:N       CrashAt(POINT, N) kills the process with SIGKILL. The
//	                             pipeline's points are forward:L, export:L, between:L and
//	                             prepass:L for layer L (the resume tests need a real,
//	                             unclean death).
//	WANDA_PAUSE_AT=POINT:N       PauseAt(POINT, N) stops the process with SIGSTOP (unix; a
//	                             no-op elsewhere) until the test sends SIGCONT: a run held
//	                             at a known place, e.g. while it holds its work directory.
//	WANDA_SKIP_SPACE_CHECK=1     SkipSpaceCheck reports true, so the free-space check
//	                             before a run is skipped (the disk-full tests must run out
//	                             of space in the middle of writing).
//
// The variables are read at every call, so a test in the same process can set them with
// testing.T.Setenv. (The plugin SDK's test hooks are plugins/internal/testhook: fields set
// in code by the test-only faulty plugin, not variables.)
package testhook

import (
	"os"
	"strconv"
)

// The hooks' environment variables.
const (
	CrashAtEnv        = "WANDA_CRASH_AT"
	PauseAtEnv        = "WANDA_PAUSE_AT"
	SkipSpaceCheckEnv = "WANDA_SKIP_SPACE_CHECK"
)

// CrashAt kills the process with SIGKILL, without running deferred functions or any other
// cleanup, when WANDA_CRASH_AT is point:n. Otherwise it returns at once.
func CrashAt(point string, n int) {
	if !names(CrashAtEnv, point, n) {
		return
	}
	p, _ := os.FindProcess(os.Getpid())
	p.Signal(os.Kill)
	select {} // the signal is delivered asynchronously; never return
}

// PauseAt stops the process with SIGSTOP when WANDA_PAUSE_AT is point:n, and returns once
// it is continued (SIGCONT). Otherwise, or where there is no SIGSTOP, it returns at once.
func PauseAt(point string, n int) {
	if names(PauseAtEnv, point, n) {
		stopSelf()
	}
}

// names reports whether the variable env is exactly point:n.
func names(env, point string, n int) bool {
	v := os.Getenv(env)
	return v != "" && v == point+":"+strconv.Itoa(n)
}

// SkipSpaceCheck reports whether WANDA_SKIP_SPACE_CHECK is 1.
func SkipSpaceCheck() bool { return os.Getenv(SkipSpaceCheckEnv) == "1" }
