package main

import (
	"errors"
	"os"
	"os/exec"
	"syscall"
	"testing"
)

// TestMain lets tests run this test binary as the wanda command itself (in a child process,
// so that it can be killed, limited and measured): with WANDA_TEST_AS_CLI=1 it runs main.
func TestMain(m *testing.M) {
	if os.Getenv("WANDA_TEST_AS_CLI") == "1" {
		os.Args = append([]string{"wanda"}, os.Args[1:]...)
		main()
		os.Exit(0)
	}
	code := m.Run()
	for _, d := range prunedCache.roots {
		os.RemoveAll(d)
	}
	if pluginBuild.dir != "" {
		os.RemoveAll(pluginBuild.dir)
	}
	os.Exit(code)
}

// cliCommand returns a command running `wanda args...` in a child process.
func cliCommand(t *testing.T, env []string, args ...string) *exec.Cmd {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = append(append(os.Environ(), "WANDA_TEST_AS_CLI=1"), env...)
	return cmd
}

// requireKilled fails t unless err is the exit of a process killed by SIGKILL, as the crash
// hook (WANDA_CRASH_AT=point) ends it; output is shown on failure.
func requireKilled(t *testing.T, err error, point, output string) {
	t.Helper()
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("run with WANDA_CRASH_AT=%s: want a killed process, got %v\n%s", point, err, output)
	}
	if ws, ok := ee.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("run with WANDA_CRASH_AT=%s ended with %v, want SIGKILL\n%s", point, err, output)
	}
}
