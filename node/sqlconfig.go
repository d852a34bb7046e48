package node

import (
	"fmt"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/nii-uk/nii/query"
)

// QueryConfig is config.toml's [query]: the SQL engine's limits. Each SQL
// worker process (one for open data, and one more for the operator when
// the node holds restricted data) runs under them; see docs/query.md.
type QueryConfig struct {
	MemoryLimit string `toml:"memory_limit,omitempty" comment:"memory of each SQL worker's engine, loaded tables and running queries together (e.g. 1GiB, the default; at least 64MiB)"`
	Threads     int    `toml:"threads,omitempty" comment:"DuckDB threads per SQL worker (default 2)"`
	Timeout     string `toml:"timeout,omitempty" comment:"time limit of one query (Go duration, e.g. 30s, the default)"`
	MaxRows     int    `toml:"max_rows,omitempty" comment:"most rows one query returns (default 10000)"`
	// AdminOnly turns the public SQL endpoint off: only requests with the
	// admin token may query.
	AdminOnly bool `toml:"admin_only,omitempty" comment:"true: only the node's operator (admin token) may run SQL; otherwise anyone may query open data"`
}

// minQueryMemory is the least [query] memory_limit a node accepts.
const minQueryMemory = 64 << 20

// worker returns the SQL worker configuration [query] asks for.
func (q QueryConfig) worker() (query.WorkerConfig, error) {
	cfg := query.WorkerConfig{Config: query.DefaultConfig()}
	if q.MemoryLimit != "" {
		n, err := humanize.ParseBytes(q.MemoryLimit)
		if err != nil || n < minQueryMemory || n > 1<<40 {
			return cfg, fmt.Errorf("config: query.memory_limit %q: want a size from 64MiB (e.g. 1GiB)", q.MemoryLimit)
		}
		cfg.MemoryLimit = int64(n)
	}
	if q.Threads != 0 {
		if q.Threads < 1 || q.Threads > 64 {
			return cfg, fmt.Errorf("config: query.threads %d: want 1 to 64", q.Threads)
		}
		cfg.Threads = q.Threads
	}
	if q.Timeout != "" {
		d, err := time.ParseDuration(q.Timeout)
		if err != nil || d < 100*time.Millisecond || d > 24*time.Hour {
			return cfg, fmt.Errorf("config: query.timeout %q: want a duration from 100ms to 24h (e.g. 30s)", q.Timeout)
		}
		cfg.Timeout = d
	}
	if q.MaxRows != 0 {
		if q.MaxRows < 1 || q.MaxRows > 10_000_000 {
			return cfg, fmt.Errorf("config: query.max_rows %d: want 1 to 10000000", q.MaxRows)
		}
		cfg.MaxRows = q.MaxRows
	}
	return cfg, nil
}
