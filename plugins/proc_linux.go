//go:build linux

package plugins

import (
	"errors"
	"os/exec"
	"syscall"

	"golang.org/x/sys/unix"
)

// setProcessGroup puts the plugin in a process group of its own, so that killGroup also
// ends whatever it started (a wrapper script's interpreter, say), and has the kernel kill
// it when wanda dies (even by SIGKILL).
func setProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// waitNoReap waits for the process pid to end without reaping it (waitid
// WNOWAIT) and reports whether it could.
func waitNoReap(pid int) bool {
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if !errors.Is(err, unix.EINTR) {
			return err == nil
		}
	}
}
