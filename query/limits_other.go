//go:build !linux

package query

import (
	"errors"
	"io"
)

// limitProcess: only Linux workers are limited; elsewhere a worker with
// limits asked for refuses to start rather than run without them.
func limitProcess(h workerHello, _ io.Writer) error {
	if h.addressSpace > 0 || h.cpuBudget > 0 {
		return errors.New("process limits (RLIMIT_AS, RLIMIT_CPU) are implemented on Linux only")
	}
	return nil
}

func raiseCPULimit(int64) {}
