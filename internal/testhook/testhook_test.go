//go:build unix

package testhook

import (
	"errors"
	"os"
	"os/exec"
	"syscall"
	"testing"
)

// helperEnv makes the test binary, run again as a child, call CrashAt and PauseAt for the
// point it names, at layer 3.
const helperEnv = "TESTHOOK_HELPER_POINT"

// pointCases are the hooks' variable values the child (at export:3) must act on, or not.
var pointCases = []struct {
	env string
	hit bool
}{
	{"export:3", true},
	{"", false},
	{"export:4", false},
	{"forward:3", false},
	{"export:3 ", false},
}

func TestMain(m *testing.M) {
	if point := os.Getenv(helperEnv); point != "" {
		CrashAt(point, 3)
		PauseAt(point, 3)
		os.Exit(0) // not killed
	}
	os.Exit(m.Run())
}

// TestCrashAt runs the test binary as a child that calls CrashAt("export", 3): it must die
// of SIGKILL exactly when WANDA_CRASH_AT names that point and layer.
func TestCrashAt(t *testing.T) {
	for _, c := range pointCases {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), helperEnv+"=export", CrashAtEnv+"="+c.env)
		err := cmd.Run()
		var ee *exec.ExitError
		killed := errors.As(err, &ee) && ee.Sys().(syscall.WaitStatus).Signaled() &&
			ee.Sys().(syscall.WaitStatus).Signal() == syscall.SIGKILL
		if killed != c.hit || (!killed && err != nil) {
			t.Errorf("%s=%q: child ended with %v, want killed=%v", CrashAtEnv, c.env, err, c.hit)
		}
	}
}

// TestPauseAt runs the test binary as a child that calls PauseAt("export", 3): it must stop
// (SIGSTOP) exactly when WANDA_PAUSE_AT names that point and layer, and exit 0 once continued.
func TestPauseAt(t *testing.T) {
	for _, c := range pointCases {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), helperEnv+"=export", PauseAtEnv+"="+c.env)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// The first change of state: stopped, or exited (then reaped here, not by cmd.Wait).
		var ws syscall.WaitStatus
		if _, err := syscall.Wait4(cmd.Process.Pid, &ws, syscall.WUNTRACED, nil); err != nil {
			t.Fatal(err)
		}
		if ws.Stopped() != c.hit {
			t.Errorf("%s=%q: child stopped=%v (status %#x), want %v", PauseAtEnv, c.env, ws.Stopped(), ws, c.hit)
		}
		if !ws.Stopped() {
			if !ws.Exited() || ws.ExitStatus() != 0 {
				t.Errorf("%s=%q: child ended with status %#x, want exit 0", PauseAtEnv, c.env, ws)
			}
			continue
		}
		if ws.StopSignal() != syscall.SIGSTOP {
			t.Errorf("%s=%q: child stopped by %v, want SIGSTOP", PauseAtEnv, c.env, ws.StopSignal())
		}
		if err := cmd.Process.Signal(syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
		if err := cmd.Wait(); err != nil {
			t.Errorf("%s=%q: continued child ended with %v, want exit 0", PauseAtEnv, c.env, err)
		}
	}
}

func TestSkipSpaceCheck(t *testing.T) {
	for env, want := range map[string]bool{"": false, "0": false, "true": false, "1": true} {
		t.Setenv(SkipSpaceCheckEnv, env)
		if got := SkipSpaceCheck(); got != want {
			t.Errorf("%s=%q: SkipSpaceCheck() = %v, want %v", SkipSpaceCheckEnv, env, got, want)
		}
	}
}
