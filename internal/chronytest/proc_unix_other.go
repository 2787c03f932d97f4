//go:build unix && !linux

package chronytest

import "syscall"

// sysProcAttr puts chronyd in its own process group, killed as a whole.
func sysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }
