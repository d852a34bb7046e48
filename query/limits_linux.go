package query

import (
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"
)

// limitProcess puts the worker process under its kernel limits before the
// engine opens: RLIMIT_AS (soft and hard, so nothing in the process can
// raise it again) caps every byte of address space DuckDB, its allocators
// and the Go runtime map; RLIMIT_CPU's soft limit, raised by each query's
// budget (raiseCPULimit), ends the process through SIGXCPU if CPU time runs
// past what the queries it was given could use. Either limit ends only
// this process; the daemon sees it die and starts another.
func limitProcess(h workerHello, logw io.Writer) error {
	if h.addressSpace > 0 {
		lim := &syscall.Rlimit{Cur: uint64(h.addressSpace), Max: uint64(h.addressSpace)}
		if err := syscall.Setrlimit(syscall.RLIMIT_AS, lim); err != nil {
			return fmt.Errorf("set RLIMIT_AS to %d MiB: %w", h.addressSpace>>20, err)
		}
	}
	if h.cpuBudget > 0 {
		xcpu := make(chan os.Signal, 1)
		signal.Notify(xcpu, syscall.SIGXCPU)
		go func() {
			<-xcpu
			fmt.Fprintln(logw, "sql worker: CPU time limit reached (RLIMIT_CPU); exiting")
			os.Exit(exitCPU)
		}()
		raiseCPULimit(int64(h.cpuBudget))
	}
	return nil
}

const rlimInfinity = ^uint64(0)

var cpuMu sync.Mutex

// raiseCPULimit moves RLIMIT_CPU's soft limit to the CPU time used so far
// plus budget (never lower than it was): a query may use its budget, and
// an idle worker uses none.
func raiseCPULimit(budget int64) {
	if budget <= 0 {
		return
	}
	cpuMu.Lock()
	defer cpuMu.Unlock()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return
	}
	used := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	want := uint64((used+time.Duration(budget))/time.Second) + 1
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_CPU, &lim); err != nil {
		return
	}
	if lim.Cur != rlimInfinity && lim.Cur >= want {
		return
	}
	if lim.Max != rlimInfinity && want > lim.Max {
		want = lim.Max
	}
	lim.Cur = want
	syscall.Setrlimit(syscall.RLIMIT_CPU, &lim)
}
