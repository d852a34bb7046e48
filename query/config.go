package query

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/nii-uk/nii"
)

// Errors a caller may branch on. Each returned error wraps one of them and
// says, in words, what was refused and why.
var (
	// ErrRefused: the sandbox refused the statement (not read-only, more
	// than one statement, file or network access, a setting change).
	ErrRefused = nii.Errorf(nii.ErrRefused, "refused by the SQL sandbox")
	// ErrTimeout: the query ran past Config.Timeout and was stopped.
	ErrTimeout = nii.Errorf(nii.ErrUnavailable, "time limit reached")
	// ErrMemory: the query needed more than Config.MemoryLimit.
	ErrMemory = nii.Errorf(nii.ErrUnavailable, "memory limit reached")
	// ErrNotFound: no table of that name is loaded.
	ErrNotFound = nii.Errorf(nii.ErrNotFound, "no such table")
	// ErrClosed: the engine is closed.
	ErrClosed = nii.Errorf(nii.ErrUnavailable, "sql engine closed")
	// ErrNoSQL: this binary was built without cgo, so without the engine.
	ErrNoSQL = nii.Errorf(nii.ErrUnavailable, "built without SQL: rebuild nii with CGO_ENABLED=1 and gcc installed")
)

// Config sets the sandbox's limits. The zero value of a field means its
// default; DefaultConfig returns the defaults, sized for a 2-core VM.
type Config struct {
	// MemoryLimit caps DuckDB's memory in bytes: loaded tables and every
	// running query's working set together (DuckDB's memory_limit is per
	// database, not per query). Queries do not spill to disk, so a query
	// that needs more is stopped with ErrMemory. Default 1 GiB.
	MemoryLimit int64
	// Threads is DuckDB's worker thread count, shared by all queries and
	// loads. Default 2.
	Threads int
	// Timeout is the time limit of one query, from the call to the last row
	// read. Default 30 s.
	Timeout time.Duration
	// MaxRows caps the rows one query returns; the result says when it was
	// cut. Default 10,000.
	MaxRows int
	// MaxResultBytes caps the (approximate, in-memory) size of one result's
	// values; the result says when it was cut. Default 16 MiB.
	MaxResultBytes int64
	// MaxSQLBytes caps the length of a query's text. Default 64 KiB.
	MaxSQLBytes int
	// MaxConcurrent caps queries running at once; others wait (inside their
	// time limit). Default 2.
	MaxConcurrent int
	// Logger receives one line per refused or failed query and per load.
	// Default: discard.
	Logger *slog.Logger
}

// Default limits.
const (
	DefaultMemoryLimit    = 1 << 30
	DefaultThreads        = 2
	DefaultTimeout        = 30 * time.Second
	DefaultMaxRows        = 10_000
	DefaultMaxResultBytes = 16 << 20
	DefaultMaxSQLBytes    = 64 << 10
	DefaultMaxConcurrent  = 2
)

// minMemoryLimit is the least memory DuckDB is given: below it, even small
// queries fail.
const minMemoryLimit = 32 << 20

// DefaultConfig returns the default limits.
func DefaultConfig() Config {
	return Config{
		MemoryLimit:    DefaultMemoryLimit,
		Threads:        DefaultThreads,
		Timeout:        DefaultTimeout,
		MaxRows:        DefaultMaxRows,
		MaxResultBytes: DefaultMaxResultBytes,
		MaxSQLBytes:    DefaultMaxSQLBytes,
		MaxConcurrent:  DefaultMaxConcurrent,
	}
}

// withDefaults fills zero fields with defaults and checks the rest.
func (c Config) withDefaults() (Config, error) {
	d := DefaultConfig()
	if c.MemoryLimit == 0 {
		c.MemoryLimit = d.MemoryLimit
	}
	if c.Threads == 0 {
		c.Threads = d.Threads
	}
	if c.Timeout == 0 {
		c.Timeout = d.Timeout
	}
	if c.MaxRows == 0 {
		c.MaxRows = d.MaxRows
	}
	if c.MaxResultBytes == 0 {
		c.MaxResultBytes = d.MaxResultBytes
	}
	if c.MaxSQLBytes == 0 {
		c.MaxSQLBytes = d.MaxSQLBytes
	}
	if c.MaxConcurrent == 0 {
		c.MaxConcurrent = d.MaxConcurrent
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	switch {
	case c.MemoryLimit < minMemoryLimit:
		return c, fmt.Errorf("%w sql config: memory limit %d bytes is below the %d MiB the engine needs", nii.ErrInvalid, c.MemoryLimit, minMemoryLimit>>20)
	case c.Threads < 1 || c.Threads > 256:
		return c, fmt.Errorf("%w sql config: threads %d: want 1 to 256", nii.ErrInvalid, c.Threads)
	case c.Timeout < 0:
		return c, fmt.Errorf("%w sql config: negative timeout %s", nii.ErrInvalid, c.Timeout)
	case c.MaxRows < 1:
		return c, fmt.Errorf("%w sql config: row cap %d: want at least 1", nii.ErrInvalid, c.MaxRows)
	case c.MaxResultBytes < 1:
		return c, fmt.Errorf("%w sql config: result byte cap %d: want at least 1", nii.ErrInvalid, c.MaxResultBytes)
	case c.MaxSQLBytes < 1:
		return c, fmt.Errorf("%w sql config: query length cap %d: want at least 1", nii.ErrInvalid, c.MaxSQLBytes)
	case c.MaxConcurrent < 1:
		return c, fmt.Errorf("%w sql config: concurrent queries %d: want at least 1", nii.ErrInvalid, c.MaxConcurrent)
	}
	return c, nil
}
