//go:build cgo

package query

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	duckdb "github.com/duckdb/duckdb-go/v2"
	"github.com/nii-uk/nii"
)

// errBusy: the query's time ran out while every query slot was taken.
var errBusy = errors.New("no free query slot")

// Engine is one sandboxed DuckDB database held in memory. It is safe for
// concurrent use: queries run side by side (up to Config.MaxConcurrent),
// loads one at a time, and a load replaces its table atomically.
type Engine struct {
	cfg Config
	log *slog.Logger
	db  *sql.DB
	sem chan struct{} // one token per running query

	// base is cancelled by Close, which interrupts running queries and
	// loads; ops counts them so Close can wait for them.
	base   context.Context
	cancel context.CancelFunc
	ops    sync.WaitGroup

	loadMu sync.Mutex // one load or drop at a time

	mu     sync.RWMutex
	closed bool
	tables map[string]TableInfo
}

// Open starts an engine with cfg's limits (zero fields take defaults). The
// sandbox is set and locked before Open returns; Open fails rather than
// return an engine whose sandbox it could not confirm.
func Open(cfg Config) (*Engine, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	// Options DuckDB reads when the database starts.
	opts := url.Values{}
	opts.Set("threads", strconv.Itoa(cfg.Threads))
	opts.Set("memory_limit", strconv.FormatInt(cfg.MemoryLimit>>10, 10)+"KiB")
	opts.Set("autoinstall_known_extensions", "false")
	opts.Set("autoload_known_extensions", "false")
	opts.Set("allow_community_extensions", "false")
	opts.Set("allow_unsigned_extensions", "false")
	connector, err := duckdb.NewConnector(":memory:?"+opts.Encode(), nil)
	if err != nil {
		return nil, fmt.Errorf("sql engine: start duckdb: %w", err)
	}
	if err := lockSandbox(connector); err != nil {
		connector.Close()
		return nil, err
	}
	db := sql.OpenDB(connector)               // db.Close closes the connector
	db.SetMaxOpenConns(cfg.MaxConcurrent + 1) // + one for loads
	db.SetMaxIdleConns(cfg.MaxConcurrent + 1)
	base, cancel := context.WithCancel(context.Background())
	e := &Engine{
		cfg:    cfg,
		log:    cfg.Logger,
		db:     db,
		sem:    make(chan struct{}, cfg.MaxConcurrent),
		base:   base,
		cancel: cancel,
		tables: make(map[string]TableInfo),
	}
	if err := e.checkSandbox(); err != nil {
		e.Close()
		return nil, err
	}
	return e, nil
}

// sandboxSQL are the settings Open makes, in order, on the first
// connection. The last locks every setting for the database's life, so no
// query (and no later code in nii) can change them back.
var sandboxSQL = []string{
	// No spilling: a query over the memory limit fails instead of filling
	// the disk, and DuckDB's allowed_directories stays empty.
	"SET temp_directory = ''",
	// Hide the process's home directory from duckdb_settings().
	"SET secret_directory = ''",
	// No file or network access from SQL: read_csv, read_text, glob, COPY,
	// EXPORT, ATTACH, INSTALL and LOAD all fail with a permission error.
	"SET enable_external_access = false",
	"SET lock_configuration = true",
}

func lockSandbox(connector *duckdb.Connector) error {
	c, err := connector.Connect(context.Background())
	if err != nil {
		return fmt.Errorf("sql engine: connect: %w", err)
	}
	defer c.Close()
	ex := c.(driver.ExecerContext)
	for _, q := range sandboxSQL {
		if _, err := ex.ExecContext(context.Background(), q, nil); err != nil {
			return fmt.Errorf("sql engine: sandbox setting %q failed: %w", q, err)
		}
	}
	return nil
}

// checkSandbox reads the settings back on a fresh connection.
func (e *Engine) checkSandbox() error {
	want := map[string]string{
		"enable_external_access":       "false",
		"lock_configuration":           "true",
		"autoload_known_extensions":    "false",
		"autoinstall_known_extensions": "false",
		"temp_directory":               "",
		"threads":                      strconv.Itoa(e.cfg.Threads),
	}
	rows, err := e.db.Query(`SELECT name, coalesce(value, '') FROM duckdb_settings()`)
	if err != nil {
		return fmt.Errorf("sql engine: read settings: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var name, value string
		if err := rows.Scan(&name, &value); err != nil {
			return fmt.Errorf("sql engine: read settings: %w", err)
		}
		if w, ok := want[name]; ok {
			if value != w {
				return fmt.Errorf("sql engine: sandbox not in force: %s is %q, want %q", name, value, w)
			}
			delete(want, name)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("sql engine: read settings: %w", err)
	}
	for name := range want {
		return fmt.Errorf("sql engine: sandbox not confirmed: duckdb reports no setting %s", name)
	}
	return nil
}

// Close interrupts running queries and loads, waits for them to return and
// frees the database. It is idempotent.
func (e *Engine) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	e.mu.Unlock()
	e.cancel()
	e.ops.Wait()
	if err := e.db.Close(); err != nil {
		return fmt.Errorf("sql engine: close: %w", err)
	}
	return nil
}

// begin registers an operation, or fails once the engine is closed.
func (e *Engine) begin() error {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.closed {
		return ErrClosed
	}
	e.ops.Add(1)
	return nil
}

// Tables lists the loaded tables, by name.
func (e *Engine) Tables() []TableInfo {
	e.mu.RLock()
	out := make([]TableInfo, 0, len(e.tables))
	for _, t := range e.tables {
		out = append(out, t)
	}
	e.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Memory returns the bytes of memory DuckDB holds now: the loaded tables
// and the working sets of running queries (what Config.MemoryLimit caps).
func (e *Engine) Memory(ctx context.Context) (int64, error) {
	if err := e.begin(); err != nil {
		return 0, err
	}
	defer e.ops.Done()
	var n int64
	err := e.db.QueryRowContext(ctx, `SELECT coalesce(sum(memory_usage_bytes), 0)::BIGINT FROM duckdb_memory()`).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("sql engine: memory: %w", err)
	}
	return n, nil
}

// Load creates the table name with cols and fills it from rows, or replaces
// the table of that name. The replacement is atomic: queries running
// meanwhile see the old table whole, later ones the new one whole; if Load
// fails (a bad value, rows's error, ctx ended) the old table stays. Rows
// are streamed into DuckDB's appender a chunk at a time, so Go holds no
// more than a chunk; the table itself lives in the engine's memory (see
// Config.MemoryLimit; old and new both, until the replacement commits).
// Load returns the number of rows loaded.
func (e *Engine) Load(ctx context.Context, name string, cols []Column, rows RowSource) (int64, error) {
	if err := CheckName(name); err != nil {
		return 0, err
	}
	if err := checkColumns(cols); err != nil {
		return 0, fmt.Errorf("sql load %s: %w", name, err)
	}
	if err := e.begin(); err != nil {
		return 0, err
	}
	defer e.ops.Done()
	ctx, stop := e.withBase(ctx)
	defer stop()
	e.loadMu.Lock()
	defer e.loadMu.Unlock()

	conn, err := e.db.Conn(ctx)
	if err != nil {
		return 0, fmt.Errorf("sql load %s: %w", name, err)
	}
	defer conn.Close()
	var n int64
	err = conn.Raw(func(dc any) error {
		c := dc.(*duckdb.Conn)
		var err error
		n, err = load(ctx, c, name, cols, rows)
		if err != nil {
			if rbErr := exec(context.Background(), c, "ROLLBACK"); rbErr != nil {
				e.log.Warn("sql load: rollback failed; dropping the connection", "table", name, "err", rbErr)
				return errors.Join(err, driver.ErrBadConn)
			}
		}
		return err
	})
	if err != nil {
		err = errors.Join(withoutBadConn(err)...)
		if isOutOfMemory(err) {
			err = fmt.Errorf("%w: loading %s needs more than the engine's %d MiB of memory (loaded tables included) (%s)", ErrMemory, name, e.cfg.MemoryLimit>>20, firstLine(err.Error()))
		}
		e.log.Info("sql load failed", "table", name, "rows", n, "err", err)
		return 0, err
	}
	info := TableInfo{Name: name, Columns: make([]Column, len(cols)), Rows: n}
	for i, c := range cols {
		c.SQLType = c.sqlType()
		info.Columns[i] = c
	}
	e.mu.Lock()
	e.tables[name] = info
	e.mu.Unlock()
	e.log.Info("sql table loaded", "table", name, "rows", n)
	return n, nil
}

// load runs one load's transaction on c; the caller rolls back on error.
func load(ctx context.Context, c *duckdb.Conn, name string, cols []Column, rows RowSource) (int64, error) {
	defs := make([]string, len(cols))
	conv := make([]func(any) (driver.Value, error), len(cols))
	for i, col := range cols {
		defs[i] = quoteIdent(col.Name) + " " + col.sqlType()
		conv[i] = converter(col)
	}
	for _, q := range []string{
		"BEGIN TRANSACTION",
		"DROP TABLE IF EXISTS " + quoteIdent(name),
		"CREATE TABLE " + quoteIdent(name) + " (" + strings.Join(defs, ", ") + ")",
	} {
		if err := exec(ctx, c, q); err != nil {
			return 0, fmt.Errorf("sql load %s: %w", name, err)
		}
	}
	app, err := duckdb.NewAppender(c, "", "main", name)
	if err != nil {
		return 0, fmt.Errorf("sql load %s: %w", name, err)
	}
	row := make([]any, len(cols))
	vals := make([]driver.Value, len(cols))
	var n int64
	fail := func(err error) (int64, error) {
		app.Clear()
		app.Close()
		return n, err
	}
	for {
		if n%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return fail(fmt.Errorf("sql load %s: stopped after %d rows: %w", name, n, err))
			}
		}
		clear(row)
		err := rows.Next(row)
		if err == io.EOF {
			break
		}
		if err != nil {
			return fail(fmt.Errorf("sql load %s: reading row %d: %w", name, n+1, err))
		}
		for i, v := range row {
			if vals[i], err = conv[i](v); err != nil {
				return fail(fmt.Errorf("%w sql load %s: row %d, column %q: %v", nii.ErrInvalid, name, n+1, cols[i].Name, err))
			}
		}
		if err := app.AppendRow(vals...); err != nil {
			return fail(fmt.Errorf("sql load %s: row %d: %w", name, n+1, err))
		}
		n++
	}
	if err := app.CloseWithCancel(ctx); err != nil {
		return n, fmt.Errorf("sql load %s: %w", name, err)
	}
	if err := exec(ctx, c, "COMMIT"); err != nil {
		return n, fmt.Errorf("sql load %s: commit: %w", name, err)
	}
	return n, nil
}

// Drop removes a loaded table. Queries running meanwhile finish with it.
func (e *Engine) Drop(ctx context.Context, name string) error {
	if err := CheckName(name); err != nil {
		return err
	}
	if err := e.begin(); err != nil {
		return err
	}
	defer e.ops.Done()
	ctx, stop := e.withBase(ctx)
	defer stop()
	e.loadMu.Lock()
	defer e.loadMu.Unlock()
	e.mu.RLock()
	_, ok := e.tables[name]
	e.mu.RUnlock()
	if !ok {
		return fmt.Errorf("sql drop %s: %w: no table of that name is loaded", name, ErrNotFound)
	}
	if _, err := e.db.ExecContext(ctx, "DROP TABLE IF EXISTS "+quoteIdent(name)); err != nil {
		return fmt.Errorf("sql drop %s: %w", name, err)
	}
	e.mu.Lock()
	delete(e.tables, name)
	e.mu.Unlock()
	return nil
}

// withBase returns ctx, also cancelled when the engine closes.
func (e *Engine) withBase(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(e.base, cancel)
	return ctx, func() { stop(); cancel() }
}

// Query runs one read-only statement under the sandbox's limits and returns
// its rows. A statement that is not read-only, or more than one, is refused
// (ErrRefused) before it runs; one that runs past the time limit is stopped
// (ErrTimeout); one that needs more memory than the limit fails (ErrMemory).
// Rows past the row cap or the byte cap are dropped and the result says so.
func (e *Engine) Query(ctx context.Context, text string) (*Result, error) {
	if err := e.checkText(text); err != nil {
		e.log.Info("sql query refused", "err", err)
		return nil, err
	}
	if err := e.begin(); err != nil {
		return nil, err
	}
	defer e.ops.Done()
	parent := ctx
	ctx, stop := e.withBase(ctx)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, e.cfg.Timeout)
	defer cancel()

	res, err := e.query(ctx, text)
	if err != nil {
		err = e.explain(parent, ctx, err, text)
		e.log.Info("sql query failed", "err", err)
		return nil, err
	}
	return res, nil
}

func (e *Engine) query(ctx context.Context, text string) (*Result, error) {
	select {
	case e.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, errBusy
	}
	defer func() { <-e.sem }()
	conn, err := e.db.Conn(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	var res *Result
	err = conn.Raw(func(dc any) error {
		c := dc.(*duckdb.Conn)
		var err error
		res, err = e.run(ctx, c, text)
		// The transaction only ever reads, but roll it back regardless:
		// whatever a statement might have changed is undone.
		if rbErr := exec(context.Background(), c, "ROLLBACK"); rbErr != nil && !isNoTransaction(rbErr) {
			e.log.Warn("sql query: rollback failed; dropping the connection", "err", rbErr)
			return errors.Join(err, driver.ErrBadConn)
		}
		return err
	})
	if err != nil {
		return nil, errors.Join(withoutBadConn(err)...)
	}
	return res, nil
}

// run checks and runs text inside a transaction on c; the caller rolls back.
func (e *Engine) run(ctx context.Context, c *duckdb.Conn, text string) (*Result, error) {
	if err := exec(ctx, c, "BEGIN TRANSACTION"); err != nil {
		return nil, err
	}
	typ, err := statementType(c, text)
	if err != nil {
		return nil, err
	}
	switch typ {
	case duckdb.STATEMENT_TYPE_SELECT:
		// Run it through DuckDB's query() table function with a LIMIT one
		// past the row cap: DuckDB stops producing rows there instead of
		// materialising the whole result, and the extra row tells us the
		// cap cut it. The text is passed as a string literal, and query()
		// itself accepts only a single SELECT.
		wrapped := "SELECT * FROM query(" + quoteString(text) + ") LIMIT " + strconv.Itoa(e.cfg.MaxRows+1)
		res, err := e.fetch(ctx, c, wrapped)
		var de *duckdb.Error
		if err == nil || !errors.As(err, &de) || de.Type != duckdb.ErrorTypeParser {
			return res, err
		}
		// query() refuses the few SELECT-kind statements that DuckDB
		// rewrites from other syntax (PRAGMA show_tables and the like);
		// run those as they are, bounded by the memory and time limits.
		if err := exec(ctx, c, "ROLLBACK"); err != nil {
			return nil, err
		}
		if err := exec(ctx, c, "BEGIN TRANSACTION"); err != nil {
			return nil, err
		}
		return e.fetch(ctx, c, text)
	case duckdb.STATEMENT_TYPE_EXPLAIN:
		inner, ok := explainTarget(text)
		if !ok {
			return nil, fmt.Errorf("%w: write EXPLAIN or EXPLAIN ANALYZE followed by a SELECT, with nothing between", ErrRefused)
		}
		it, err := statementType(c, inner)
		if err != nil {
			// The whole text parsed as EXPLAIN, so what follows the
			// keywords failing alone means something sat between them.
			return nil, fmt.Errorf("%w: write EXPLAIN or EXPLAIN ANALYZE followed by a SELECT, with nothing between (%v)", ErrRefused, firstLine(err.Error()))
		}
		if it != duckdb.STATEMENT_TYPE_SELECT {
			return nil, fmt.Errorf("%w: EXPLAIN of %s: %s", ErrRefused, typeName(it), refusal(it))
		}
		return e.fetch(ctx, c, text)
	}
	return nil, fmt.Errorf("%w: %s statement: %s", ErrRefused, typeName(typ), refusal(typ))
}

// statementType prepares text (which binds it, without running it) and
// returns DuckDB's own classification of it.
func statementType(c *duckdb.Conn, text string) (duckdb.StmtType, error) {
	// Conn.Prepare refuses more than one statement; PrepareContext and
	// QueryContext would run all but the last.
	st, err := c.Prepare(text)
	if err != nil {
		return 0, err
	}
	defer st.Close()
	return st.(*duckdb.Stmt).StatementType()
}

// fetch runs one checked statement and reads its rows up to the caps.
func (e *Engine) fetch(ctx context.Context, c *duckdb.Conn, text string) (*Result, error) {
	st, err := c.Prepare(text)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	rows, err := st.(driver.StmtQueryContext).QueryContext(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	names := rows.Columns()
	res := &Result{Columns: make([]Column, len(names)), Rows: [][]any{}}
	typed, _ := rows.(driver.RowsColumnTypeDatabaseTypeName)
	for i, name := range names {
		res.Columns[i] = Column{Name: name, Type: TypeAny}
		if typed != nil {
			res.Columns[i] = resultColumn(name, typed.ColumnTypeDatabaseTypeName(i))
		}
	}
	dst := make([]driver.Value, len(names))
	var size int64
	for {
		err := rows.Next(dst)
		if err == io.EOF {
			return res, nil
		}
		if err != nil {
			return nil, err
		}
		if len(res.Rows) == e.cfg.MaxRows {
			res.Truncated = true
			res.Notice = fmt.Sprintf("truncated: only the first %d rows; the row cap cut the rest (add a LIMIT or aggregate)", e.cfg.MaxRows)
			return res, nil
		}
		row := make([]any, len(dst))
		for i, v := range dst {
			row[i] = convertOut(v)
			if b, ok := row[i].([]byte); ok && len(b) == 16 && res.Columns[i].SQLType == "UUID" {
				row[i] = formatUUID(b)
			}
			size += valueSize(row[i])
		}
		if size > e.cfg.MaxResultBytes {
			res.Truncated = true
			res.Notice = fmt.Sprintf("truncated: only the first %d rows; the %d MiB result size cap cut the rest (select fewer or narrower columns)", len(res.Rows), e.cfg.MaxResultBytes>>20)
			return res, nil
		}
		res.Rows = append(res.Rows, row)
	}
}

func exec(ctx context.Context, c *duckdb.Conn, q string) error {
	_, err := c.ExecContext(ctx, q, nil)
	return err
}

func isNoTransaction(err error) bool {
	return strings.Contains(err.Error(), "no transaction is active")
}

// withoutBadConn returns err's parts, less driver.ErrBadConn (which only
// tells database/sql to drop the connection).
func withoutBadConn(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			if e != driver.ErrBadConn {
				out = append(out, e)
			}
		}
		return out
	}
	return []error{err}
}

// checkText refuses text before DuckDB sees it.
func (e *Engine) checkText(text string) error {
	switch {
	case len(text) > e.cfg.MaxSQLBytes:
		return fmt.Errorf("%w: the query is %d bytes; the limit is %d", ErrRefused, len(text), e.cfg.MaxSQLBytes)
	case strings.TrimSpace(text) == "":
		return fmt.Errorf("%w sql: empty query: write one SELECT statement", nii.ErrInvalid)
	case !utf8.ValidString(text):
		return fmt.Errorf("%w sql: the query is not valid UTF-8", nii.ErrInvalid)
	case strings.ContainsRune(text, 0):
		// DuckDB's C interface would cut the text at the NUL.
		return fmt.Errorf("%w sql: the query contains a NUL byte", nii.ErrInvalid)
	}
	return nil
}

// explain turns an error from running a query into one that says what was
// refused or went wrong, and why.
func (e *Engine) explain(parent, ctx context.Context, err error, text string) error {
	if errors.Is(err, ErrRefused) || errors.Is(err, nii.ErrInvalid) && !isDuck(err) {
		return err
	}
	if e.base.Err() != nil {
		return fmt.Errorf("sql query stopped: %w", ErrClosed)
	}
	if parent.Err() != nil {
		return fmt.Errorf("sql query cancelled: %w", parent.Err())
	}
	if errors.Is(err, errBusy) {
		return fmt.Errorf("%w: the query waited its whole %s time limit for one of the %d query slots, all busy; try again", ErrTimeout, e.cfg.Timeout, e.cfg.MaxConcurrent)
	}
	if ctx.Err() == context.DeadlineExceeded {
		return fmt.Errorf("%w: the query ran longer than the %s time limit and was stopped; narrow it (WHERE, LIMIT, fewer joins) or ask the node's operator to raise the limit", ErrTimeout, e.cfg.Timeout)
	}
	var de *duckdb.Error
	if !errors.As(err, &de) {
		if strings.Contains(err.Error(), "multi-statement") {
			return fmt.Errorf("%w: more than one statement; send one statement per query", ErrRefused)
		}
		return fmt.Errorf("sql query: %w", err)
	}
	msg := strings.TrimSpace(de.Msg)
	first, _, _ := strings.Cut(msg, "\n")
	switch de.Type {
	case duckdb.ErrorTypeOutOfMemory:
		return fmt.Errorf("%w: the query needs more than the engine's %d MiB of memory (loaded tables included) and was stopped; aggregate or filter more, or ask the node's operator to raise the limit (%s)", ErrMemory, e.cfg.MemoryLimit>>20, first)
	case duckdb.ErrorTypePermission:
		// Name the statement when its first word says what it is: a
		// COPY to a file fails on the file before its type is checked.
		word, _ := leadingWord(strings.TrimLeft(text, " \t\r\n("))
		switch strings.ToUpper(word) {
		case "COPY", "EXPORT", "IMPORT":
			return fmt.Errorf("%w: %s statement: nothing can be written to or read from files; use the result's CSV or JSON output instead (%s)", ErrRefused, strings.ToUpper(word), first)
		case "ATTACH":
			return fmt.Errorf("%w: ATTACH statement: no other database can be attached (%s)", ErrRefused, first)
		}
		return fmt.Errorf("%w: SQL in nii cannot read or write files or reach the network; query the tables nii loaded (SHOW TABLES) (%s)", ErrRefused, first)
	case duckdb.ErrorTypeMissingExtension, duckdb.ErrorTypeAutoLoad:
		return fmt.Errorf("%w: that needs a DuckDB extension, and SQL in nii cannot install or load extensions (%s)", ErrRefused, first)
	case duckdb.ErrorTypeInterrupt:
		return fmt.Errorf("%w: the query was interrupted (%s)", ErrTimeout, first)
	case duckdb.ErrorTypeCatalog:
		if strings.Contains(first, "but it exists in the") {
			return fmt.Errorf("%w: that needs a DuckDB extension, and SQL in nii cannot install or load extensions (%s)", ErrRefused, first)
		}
		if strings.Contains(first, "Table with name") {
			return fmt.Errorf("%w sql: %s\nloaded tables: %s", nii.ErrInvalid, msg, e.tableList())
		}
	case duckdb.ErrorTypeFatal, duckdb.ErrorTypeInternal:
		e.log.Error("sql engine: duckdb reported an internal error", "err", msg)
		return fmt.Errorf("sql query: the engine failed: %s", msg)
	}
	if strings.Contains(first, "configuration has been locked") {
		return fmt.Errorf("%w: settings are fixed by the node's operator (%s)", ErrRefused, first)
	}
	return fmt.Errorf("%w sql: %s", nii.ErrInvalid, msg)
}

// isOutOfMemory reports whether a load failed for memory: DuckDB's own
// limit, or an allocation the process's address-space limit refused.
func isOutOfMemory(err error) bool {
	var de *duckdb.Error
	if errors.As(err, &de) && de.Type == duckdb.ErrorTypeOutOfMemory {
		return true
	}
	msg := err.Error()
	return strings.Contains(msg, "bad allocation") || strings.Contains(msg, "could not allocate block") || strings.Contains(msg, "Out of Memory")
}

func firstLine(s string) string {
	first, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return first
}

func isDuck(err error) bool {
	var de *duckdb.Error
	return errors.As(err, &de)
}

func (e *Engine) tableList() string {
	ts := e.Tables()
	if len(ts) == 0 {
		return "none"
	}
	names := make([]string, len(ts))
	for i, t := range ts {
		names[i] = quoteString(t.Name)
	}
	return strings.Join(names, ", ")
}

// explainTarget returns the statement EXPLAIN [ANALYZE] applies to, if text
// is those keywords, whitespace and the statement.
func explainTarget(text string) (string, bool) {
	word, rest := leadingWord(strings.TrimLeft(text, " \t\r\n"))
	if !strings.EqualFold(word, "EXPLAIN") || rest == "" || !isSpace(rest[0]) {
		return "", false
	}
	rest = strings.TrimLeft(rest, " \t\r\n")
	if word, after := leadingWord(rest); (strings.EqualFold(word, "ANALYZE") || strings.EqualFold(word, "ANALYSE")) && after != "" && isSpace(after[0]) {
		rest = strings.TrimLeft(after, " \t\r\n")
	}
	return rest, rest != ""
}

func leadingWord(s string) (string, string) {
	i := 0
	for i < len(s) && (s[i] >= 'a' && s[i] <= 'z' || s[i] >= 'A' && s[i] <= 'Z') {
		i++
	}
	return s[:i], s[i:]
}

func isSpace(b byte) bool { return b == ' ' || b == '\t' || b == '\r' || b == '\n' }

// typeName names a statement type as users write it.
func typeName(t duckdb.StmtType) string {
	switch t {
	case duckdb.STATEMENT_TYPE_SELECT:
		return "SELECT"
	case duckdb.STATEMENT_TYPE_INSERT:
		return "INSERT"
	case duckdb.STATEMENT_TYPE_UPDATE:
		return "UPDATE"
	case duckdb.STATEMENT_TYPE_EXPLAIN:
		return "EXPLAIN"
	case duckdb.STATEMENT_TYPE_DELETE:
		return "DELETE"
	case duckdb.STATEMENT_TYPE_PREPARE:
		return "PREPARE"
	case duckdb.STATEMENT_TYPE_CREATE:
		return "CREATE"
	case duckdb.STATEMENT_TYPE_EXECUTE:
		return "EXECUTE"
	case duckdb.STATEMENT_TYPE_ALTER:
		return "ALTER"
	case duckdb.STATEMENT_TYPE_TRANSACTION:
		return "transaction (BEGIN, COMMIT, ROLLBACK)"
	case duckdb.STATEMENT_TYPE_COPY:
		return "COPY"
	case duckdb.STATEMENT_TYPE_ANALYZE:
		return "ANALYZE"
	case duckdb.STATEMENT_TYPE_VARIABLE_SET, duckdb.STATEMENT_TYPE_SET:
		return "SET/RESET/PRAGMA/USE"
	case duckdb.STATEMENT_TYPE_CREATE_FUNC:
		return "CREATE FUNCTION/MACRO"
	case duckdb.STATEMENT_TYPE_DROP:
		return "DROP"
	case duckdb.STATEMENT_TYPE_EXPORT:
		return "EXPORT"
	case duckdb.STATEMENT_TYPE_PRAGMA:
		return "PRAGMA"
	case duckdb.STATEMENT_TYPE_VACUUM:
		return "VACUUM"
	case duckdb.STATEMENT_TYPE_CALL:
		return "CALL"
	case duckdb.STATEMENT_TYPE_LOAD:
		return "INSTALL/LOAD"
	case duckdb.STATEMENT_TYPE_EXTENSION:
		return "extension"
	case duckdb.STATEMENT_TYPE_ATTACH:
		return "ATTACH"
	case duckdb.STATEMENT_TYPE_DETACH:
		return "DETACH"
	case duckdb.STATEMENT_TYPE_MULTI:
		return "multi-statement"
	}
	return fmt.Sprintf("type-%d", int(t))
}

// refusal says why a statement type is refused.
func refusal(t duckdb.StmtType) string {
	const ro = "SQL in nii is read-only: one SELECT, WITH, VALUES, FROM, SHOW, DESCRIBE, SUMMARIZE or EXPLAIN per query"
	switch t {
	case duckdb.STATEMENT_TYPE_INSERT, duckdb.STATEMENT_TYPE_UPDATE, duckdb.STATEMENT_TYPE_DELETE,
		duckdb.STATEMENT_TYPE_CREATE, duckdb.STATEMENT_TYPE_ALTER, duckdb.STATEMENT_TYPE_DROP,
		duckdb.STATEMENT_TYPE_CREATE_FUNC:
		return "tables are loaded by nii and cannot be changed by a query; " + ro
	case duckdb.STATEMENT_TYPE_VARIABLE_SET, duckdb.STATEMENT_TYPE_SET, duckdb.STATEMENT_TYPE_PRAGMA:
		return "settings and limits are fixed by the node's operator; " + ro
	case duckdb.STATEMENT_TYPE_LOAD, duckdb.STATEMENT_TYPE_EXTENSION:
		return "extensions cannot be installed or loaded; " + ro
	case duckdb.STATEMENT_TYPE_COPY, duckdb.STATEMENT_TYPE_EXPORT:
		return "nothing can be written to files; use the result's CSV or JSON output instead; " + ro
	case duckdb.STATEMENT_TYPE_ATTACH, duckdb.STATEMENT_TYPE_DETACH:
		return "no other database can be attached; " + ro
	case duckdb.STATEMENT_TYPE_TRANSACTION:
		return "each query runs in a transaction of its own; " + ro
	case duckdb.STATEMENT_TYPE_CALL:
		return "CALL runs procedures; for a table function write SELECT * FROM f(...); " + ro
	}
	return ro
}
