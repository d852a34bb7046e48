//go:build race

package query

// raceBuild: the race detector maps terabytes of shadow address space, so
// a race-enabled worker cannot run under RLIMIT_AS; NewWorker sets none.
const raceBuild = true
