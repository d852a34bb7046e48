//go:build !cgo

package query

import "context"

// Engine is the SQL engine. In a binary built without cgo it cannot be
// opened: every method returns ErrNoSQL.
type Engine struct{}

// Open returns ErrNoSQL: this binary was built with CGO_ENABLED=0, which
// leaves DuckDB out.
func Open(Config) (*Engine, error) { return nil, ErrNoSQL }

// Close does nothing.
func (*Engine) Close() error { return nil }

// Tables returns nothing.
func (*Engine) Tables() []TableInfo { return nil }

// Load returns ErrNoSQL.
func (*Engine) Load(context.Context, string, []Column, RowSource) (int64, error) {
	return 0, ErrNoSQL
}

// Drop returns ErrNoSQL.
func (*Engine) Drop(context.Context, string) error { return ErrNoSQL }

// Query returns ErrNoSQL.
func (*Engine) Query(context.Context, string) (*Result, error) { return nil, ErrNoSQL }

// Memory returns ErrNoSQL.
func (*Engine) Memory(context.Context) (int64, error) { return 0, ErrNoSQL }
