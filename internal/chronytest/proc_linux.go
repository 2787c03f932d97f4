package chronytest

import "syscall"

// sysProcAttr puts chronyd in its own process group (killed as a whole) and
// asks the kernel to kill it if the test binary dies without cleaning up.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
