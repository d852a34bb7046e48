package query

import "syscall"

// workerSysProcAttr: the worker gets its own process group (a terminal's
// Ctrl-C goes to the daemon, which stops the worker itself) and is killed
// if the daemon dies first.
func workerSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
