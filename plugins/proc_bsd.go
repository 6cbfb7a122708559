//go:build unix && !linux

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

// waitNoReap is not available here.
func waitNoReap(int) bool { return false }
