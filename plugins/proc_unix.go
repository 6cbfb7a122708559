//go:build unix

package plugins

import (
	"syscall"
)

// killGroup kills the process group pgid (the plugin and whatever it started).
func killGroup(pgid int) {
	if pgid > 0 {
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
	}
}
