//go:build unix

package plugins

import (
	"os/exec"
	"syscall"
)

// setProcessGroup puts the plugin in a process group of its own, so that killGroup also
// ends whatever it started (a wrapper script's interpreter, say).
func setProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}

func killGroup(cmd *exec.Cmd) {
	if cmd.Process != nil && cmd.Process.Pid > 0 {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
}
