// Package query is nii's SQL engine: read-only, sandboxed SQL over tables
// that nii itself loads (merged views, tabular datasets).
//
// It embeds DuckDB (github.com/duckdb/duckdb-go/v2) and is the only package
// in nii that uses cgo or imports DuckDB; callers see only this package's
// types. The engine's life is:
//
//	e, err := query.Open(query.DefaultConfig())      // sandbox locked before Open returns
//	n, err := e.Load(ctx, "lga/spend-over-500", cols, rows) // atomic create-or-replace
//	res, err := e.Query(ctx, `SELECT count(*) FROM 'lga/spend-over-500'`)
//	res.WriteTable(os.Stdout)                         // or WriteJSON, WriteCSV
//	e.Close()
//
// SQL never touches the file system or the network: nii hands the engine its
// rows through Load (DuckDB's appender), and Open disables external access,
// extension installing and loading, spilling to disk, and then locks
// DuckDB's configuration so no statement can undo any of it. Every query is
// untrusted input: one statement, of DuckDB's SELECT kind (SELECT, WITH,
// VALUES, FROM-first, SHOW, DESCRIBE, SUMMARIZE) or EXPLAIN of one, run
// inside a transaction that is rolled back, under a time limit, a memory
// limit, a thread limit, a row cap and a result-byte cap. See docs/query.md.
//
// A table's name is the dataset ref users type; SQL reaches it as a string
// (FROM 'lga/spend-over-500') or as a quoted identifier
// (FROM "lga/spend-over-500").
//
// Built with CGO_ENABLED=0 the package still compiles, but Open returns
// ErrNoSQL: the binary was built without SQL.
package query
