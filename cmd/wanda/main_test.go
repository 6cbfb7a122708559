package main

import (
	"os"
	"os/exec"
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
