//go:build cgo

package query_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/query"
)

// open starts an engine for one test and closes it at the end.
func open(t testing.TB, cfg query.Config) *query.Engine {
	t.Helper()
	e, err := query.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Error(err)
		}
	})
	return e
}

var spendCols = []query.Column{
	{Name: "_publisher", Type: query.TypeString},
	{Name: "date", Type: query.TypeDate},
	{Name: "supplier", Type: query.TypeString},
	{Name: "amount", Type: query.TypeDecimal, Scale: 2},
}

func day(s string) time.Time {
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		panic(err)
	}
	return t
}

// loadSpend loads a small spend table as lga/spend-over-500.
func loadSpend(t testing.TB, e *query.Engine) {
	t.Helper()
	rows := [][]any{
		{"lambeth", day("2024-01-05"), "Acme Ltd", query.NewDecimal(123450, 2)},
		{"lambeth", day("2024-01-20"), "Acme Ltd", "-28784.50"},
		{"lambeth", day("2024-02-01"), "Bolt PLC", query.NewDecimal(50000, 2)},
		{"camden", day("2024-01-11"), "Acme Ltd", "999.99"},
		{"camden", day("2024-02-11"), nil, nil},
	}
	n, err := e.Load(context.Background(), "lga/spend-over-500", spendCols, query.RowsSource(rows))
	if err != nil || n != int64(len(rows)) {
		t.Fatalf("load: %d rows, %v", n, err)
	}
}

func mustQuery(t testing.TB, e *query.Engine, sql string) *query.Result {
	t.Helper()
	res, err := e.Query(context.Background(), sql)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return res
}

func TestIssueExampleQuery(t *testing.T) {
	e := open(t, query.Config{})
	loadSpend(t, e)
	res := mustQuery(t, e, `SELECT _publisher, date_trunc('month', date) m, sum(amount) FROM 'lga/spend-over-500' GROUP BY ALL ORDER BY 1,2`)
	var got []string
	for _, r := range res.Rows {
		got = append(got, fmt.Sprintf("%v|%s|%v", r[0], r[1].(time.Time).Format(time.DateOnly), r[2]))
	}
	want := []string{"camden|2024-01-01|999.99", "camden|2024-02-01|<nil>", "lambeth|2024-01-01|-27550.00", "lambeth|2024-02-01|500.00"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if c := res.Columns[2]; c.Type != query.TypeDecimal || c.Scale != 2 || c.SQLType != "DECIMAL(38,2)" {
		t.Errorf("sum column: %+v", c)
	}
	if c := res.Columns[1]; c.Name != "m" || c.Type != query.TypeDatetime { // date_trunc gives a TIMESTAMP
		t.Errorf("month column: %+v", c)
	}
	if res.Truncated {
		t.Error("a 4-row result is marked truncated")
	}
}

func TestLoadRoundTrip(t *testing.T) {
	e := open(t, query.Config{})
	cols := []query.Column{
		{Name: "id", Type: query.TypeInteger},
		{Name: "Name with spaces", Type: query.TypeString},
		{Name: "ratio", Type: query.TypeNumber},
		{Name: "amount", Type: query.TypeDecimal, Scale: 2},
		{Name: "ok", Type: query.TypeBoolean},
		{Name: "day", Type: query.TypeDate},
		{Name: "at", Type: query.TypeDatetime},
	}
	london := time.FixedZone("BST", 3600)
	rows := [][]any{
		{int64(1), "Café £ \"quoted\"", 0.25, query.NewDecimal(-2878450, 2), true, day("1969-12-31"), time.Date(2024, 6, 25, 9, 30, 0, 123456000, time.UTC)},
		{2, "", -1.5e300, "1234.5", false, time.Date(2012, 6, 25, 23, 30, 0, 0, london), time.Date(2024, 6, 25, 10, 30, 0, 0, london)},
		{int64(3), nil, nil, nil, nil, nil, nil},
		{int32(4), "x"}, // short rows are padded with NULLs
	}
	if _, err := e.Load(context.Background(), "t/types", cols, query.RowsSource(rows)); err != nil {
		t.Fatal(err)
	}
	res := mustQuery(t, e, `SELECT * FROM "t/types" ORDER BY id`)
	if len(res.Rows) != 4 {
		t.Fatalf("%d rows", len(res.Rows))
	}
	for i, c := range cols {
		if res.Columns[i].Name != c.Name || res.Columns[i].Type != c.Type || res.Columns[i].Scale != c.Scale {
			t.Errorf("column %d: got %+v, loaded %+v", i, res.Columns[i], c)
		}
	}
	r := res.Rows
	check := func(what string, got, want any) {
		t.Helper()
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: got %v (%T), want %v", what, got, got, want)
		}
	}
	check("integer", r[0][0], int64(1))
	check("string", r[0][1], "Café £ \"quoted\"")
	check("number", r[0][2], 0.25)
	check("decimal", r[0][3], "-28784.50")
	check("decimal from text", r[1][3], "1234.50")
	check("boolean", r[0][4], true)
	check("pre-1970 date", r[0][5].(time.Time).Format(time.DateOnly), "1969-12-31")
	check("date keeps its own calendar day", r[1][5].(time.Time).Format(time.DateOnly), "2012-06-25")
	check("datetime", r[0][6].(time.Time).Format(time.RFC3339Nano), "2024-06-25T09:30:00.123456Z")
	check("datetime in UTC", r[1][6].(time.Time).UTC().Format(time.RFC3339), "2024-06-25T09:30:00Z")
	check("empty string is not NULL", r[1][1], "")
	check("number", r[1][2], -1.5e300)
	for i := 1; i < len(cols); i++ {
		if r[2][i] != nil {
			t.Errorf("column %s: NULL came back as %v", cols[i].Name, r[2][i])
		}
		if i > 1 && r[3][i] != nil {
			t.Errorf("short row: column %s is %v, want NULL", cols[i].Name, r[3][i])
		}
	}
	if _, ok := r[0][3].(query.Decimal); !ok {
		t.Errorf("decimal value is a %T, want query.Decimal", r[0][3])
	}
	ts := e.Tables()
	if len(ts) != 1 || ts[0].Name != "t/types" || ts[0].Rows != 4 || ts[0].Columns[3].SQLType != "DECIMAL(18,2)" {
		t.Errorf("Tables: %+v", ts)
	}
}

func TestLoadRefusesBadInput(t *testing.T) {
	e := open(t, query.Config{})
	loadSpend(t, e)
	good := []any{"lambeth", day("2024-01-05"), "Acme", "1.00"}
	cases := []struct {
		name  string
		table string
		cols  []query.Column
		row   []any
		want  string
	}{
		{"upper-case name", "LGA/Spend", spendCols, good, "lowercase"},
		{"quote in name", `a"b`, spendCols, good, "lowercase"},
		{"empty name", "", spendCols, good, "empty"},
		{"no columns", "x/y", nil, good, "at least one"},
		{"duplicate column ignoring case", "x/y", []query.Column{{Name: "Amount", Type: query.TypeNumber}, {Name: "amount", Type: query.TypeNumber}}, []any{1.0, 2.0}, "ignore case"},
		{"unknown type", "x/y", []query.Column{{Name: "a", Type: "money"}}, []any{1}, `type "money"`},
		{"scale too big", "x/y", []query.Column{{Name: "a", Type: query.TypeDecimal, Scale: 30}}, []any{"1"}, "scale 30"},
		{"float for decimal", "lga/spend-over-500", spendCols, []any{"l", day("2024-01-01"), "s", 1.5}, "want a query.Decimal"},
		{"too many decimals", "lga/spend-over-500", spendCols, []any{"l", day("2024-01-01"), "s", "1.005"}, "more than 2 digits after the point"},
		{"money text with a pound sign", "lga/spend-over-500", spendCols, []any{"l", day("2024-01-01"), "s", "£1.00"}, "want digits"},
		{"decimal overflow", "lga/spend-over-500", spendCols, []any{"l", day("2024-01-01"), "s", "12345678901234567890"}, "does not fit in 18 digits"},
		{"string for date", "lga/spend-over-500", spendCols, []any{"l", "2024-01-01", "s", "1"}, "want a time.Time"},
		{"int for string", "lga/spend-over-500", spendCols, []any{1, day("2024-01-01"), "s", "1"}, "want a string"},
		{"invalid utf-8", "lga/spend-over-500", spendCols, []any{"\xff", day("2024-01-01"), "s", "1"}, "UTF-8"},
		{"too many values", "lga/spend-over-500", spendCols, []any{"l", day("2024-01-01"), "s", "1", "extra"}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rows := query.RowsSource([][]any{good, c.row})
			if c.want == "" {
				// More values than columns is the caller's bug: RowsSource
				// copies only as many as the table has; nothing to refuse.
				return
			}
			_, err := e.Load(context.Background(), c.table, c.cols, rows)
			if !errors.Is(err, nii.ErrInvalid) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want ErrInvalid saying %q", err, c.want)
			}
		})
	}
	// Every failed replacement left the first table whole.
	res := mustQuery(t, e, `SELECT count(*), sum(amount) FROM 'lga/spend-over-500'`)
	if fmt.Sprint(res.Rows[0]) != "[5 -26050.01]" {
		t.Fatalf("table changed by failed loads: %v", res.Rows[0])
	}
	if ts := e.Tables(); len(ts) != 1 || ts[0].Rows != 5 {
		t.Fatalf("Tables after failed loads: %+v", ts)
	}
}

// errSource fails after some rows.
type errSource struct{ n int }

func (s *errSource) Next(row []any) error {
	if s.n == 0 {
		return errors.New("disk on fire")
	}
	s.n--
	row[0] = "x"
	return nil
}

func TestLoadSourceErrorKeepsOldTable(t *testing.T) {
	e := open(t, query.Config{})
	loadSpend(t, e)
	_, err := e.Load(context.Background(), "lga/spend-over-500", spendCols, &errSource{n: 10_000})
	if err == nil || !strings.Contains(err.Error(), "disk on fire") || !strings.Contains(err.Error(), "row 10001") {
		t.Fatalf("got %v", err)
	}
	if got := mustQuery(t, e, `SELECT count(*) FROM 'lga/spend-over-500'`).Rows[0][0]; got != int64(5) {
		t.Fatalf("after a failed replace: %v rows", got)
	}
}

// versionSource yields n rows whose every value is version v.
type versionSource struct{ v, n int }

func (s *versionSource) Next(row []any) error {
	if s.n == 0 {
		return io.EOF
	}
	s.n--
	row[0] = int64(s.v)
	return nil
}

// TestReplaceIsAtomic replaces a table while readers query it: every
// reader sees one version whole (count = rows, min = max), never a mix,
// an empty table or a missing one.
func TestReplaceIsAtomic(t *testing.T) {
	e := open(t, query.Config{MaxConcurrent: 3})
	const rows = 50_000
	cols := []query.Column{{Name: "v", Type: query.TypeInteger}}
	if _, err := e.Load(context.Background(), "gla/merged", cols, &versionSource{v: 1, n: rows}); err != nil {
		t.Fatal(err)
	}
	const versions = 6
	done := make(chan struct{})
	var wg sync.WaitGroup
	seen := make([]map[int64]bool, 3)
	for r := range seen {
		seen[r] = map[int64]bool{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				res, err := e.Query(context.Background(), `SELECT count(*), min(v), max(v) FROM 'gla/merged'`)
				if err != nil {
					t.Error(err)
					return
				}
				row := res.Rows[0]
				if row[0] != int64(rows) || row[1] != row[2] {
					t.Errorf("reader saw a torn table: count %v, min %v, max %v", row[0], row[1], row[2])
					return
				}
				seen[r][row[1].(int64)] = true
			}
		}()
	}
	for v := 2; v <= versions; v++ {
		if _, err := e.Load(context.Background(), "gla/merged", cols, &versionSource{v: v, n: rows}); err != nil {
			t.Fatal(err)
		}
	}
	close(done)
	wg.Wait()
	if got := mustQuery(t, e, `SELECT min(v), max(v) FROM 'gla/merged'`).Rows[0]; got[0] != int64(versions) || got[1] != int64(versions) {
		t.Fatalf("after the last replace: %v", got)
	}
	t.Logf("versions seen by readers: %v", seen)
}

func TestDrop(t *testing.T) {
	e := open(t, query.Config{})
	loadSpend(t, e)
	if err := e.Drop(context.Background(), "lga/spend-over-500"); err != nil {
		t.Fatal(err)
	}
	if err := e.Drop(context.Background(), "lga/spend-over-500"); !errors.Is(err, query.ErrNotFound) {
		t.Fatalf("second drop: %v", err)
	}
	_, err := e.Query(context.Background(), `SELECT * FROM 'lga/spend-over-500'`)
	if !errors.Is(err, nii.ErrInvalid) || !strings.Contains(err.Error(), "does not exist") || !strings.Contains(err.Error(), "loaded tables: none") {
		t.Fatalf("query of a dropped table: %v", err)
	}
}

// TestAllowed runs every read-only form the sandbox accepts.
func TestAllowed(t *testing.T) {
	e := open(t, query.Config{})
	loadSpend(t, e)
	cases := []struct{ sql, want string }{
		{`SELECT count(*) FROM 'lga/spend-over-500'`, "5"},
		{`SELECT count(*) FROM "lga/spend-over-500"`, "5"},
		{`FROM 'lga/spend-over-500' SELECT count(*)`, "5"},
		{`WITH s AS (SELECT * FROM 'lga/spend-over-500') SELECT count(DISTINCT _publisher) FROM s`, "2"},
		{`VALUES (42)`, "42"},
		{`(SELECT 1) UNION ALL (SELECT 2) ORDER BY 1 DESC LIMIT 1`, "2"},
		{`select 1; -- a trailing comment`, "1"},
		{`SHOW TABLES`, "lga/spend-over-500"},
		{`DESCRIBE 'lga/spend-over-500'`, "_publisher"},
		{`SUMMARIZE 'lga/spend-over-500'`, "_publisher"},
		{`PRAGMA show_tables`, "lga/spend-over-500"},
		{`SELECT column_name FROM (DESCRIBE 'lga/spend-over-500') WHERE column_type LIKE 'DECIMAL%'`, "amount"},
		{`EXPLAIN SELECT * FROM 'lga/spend-over-500'`, "physical_plan"},
		{"explain\n analyze  SELECT sum(amount) FROM 'lga/spend-over-500'", "analyzed_plan"},
		{`SELECT 'it''s'`, "it's"},
	}
	for _, c := range cases {
		res, err := e.Query(context.Background(), c.sql)
		if err != nil {
			t.Errorf("%s: %v", c.sql, err)
			continue
		}
		if len(res.Rows) == 0 || !strings.Contains(fmt.Sprint(res.Rows[0]), c.want) {
			t.Errorf("%s: first row %v, want it to contain %q", c.sql, res.Rows, c.want)
		}
	}
}

// TestRefused is the sandbox's table of bad input: each statement is
// refused with an error that says what and why, and nothing changes.
func TestRefused(t *testing.T) {
	e := open(t, query.Config{})
	loadSpend(t, e)
	secret := t.TempDir() + "/secret.csv"
	if err := os.WriteFile(secret, []byte("NII-SECRET\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	cases := []struct {
		name, sql string
		kind      error
		says      string
	}{
		{"read_csv /etc/passwd", `SELECT * FROM read_csv('/etc/passwd')`, query.ErrRefused, "cannot read or write files"},
		{"read_csv_auto", `SELECT * FROM read_csv_auto('` + secret + `')`, query.ErrRefused, "cannot read or write files"},
		{"file as table", `SELECT * FROM '` + secret + `'`, query.ErrRefused, "cannot read or write files"},
		{"unknown table", `SELECT * FROM 'lga/nope'`, nii.ErrInvalid, "loaded tables: 'lga/spend-over-500'"},
		{"file with a csv suffix as table", `SELECT * FROM '/nonexistent/x.csv'`, query.ErrRefused, "cannot read"},
		{"read_text", `SELECT content FROM read_text('/etc/hostname')`, query.ErrRefused, "cannot read or write files"},
		{"read_blob", `SELECT * FROM read_blob('` + secret + `')`, query.ErrRefused, "cannot read or write files"},
		{"read_parquet", `SELECT * FROM read_parquet('/tmp/x.parquet')`, query.ErrRefused, "cannot read or write files"},
		{"read_json", `SELECT * FROM read_json('/tmp/x.json')`, query.ErrRefused, "cannot read or write files"},
		{"glob", `SELECT * FROM glob('/*')`, query.ErrRefused, "cannot read or write files"},
		{"query() of a file", `SELECT * FROM query('SELECT * FROM read_text(''/etc/passwd'')')`, query.ErrRefused, "cannot read or write files"},
		{"http", `SELECT * FROM read_csv('https://example.com/x.csv')`, query.ErrRefused, ""},
		{"COPY TO", `COPY (SELECT 1) TO '` + out + `/x.csv'`, query.ErrRefused, ""},
		{"COPY table TO", `COPY "lga/spend-over-500" TO '` + out + `/y.csv'`, query.ErrRefused, ""},
		{"COPY FROM", `COPY "lga/spend-over-500" FROM '/etc/passwd'`, query.ErrRefused, ""},
		{"EXPORT DATABASE", `EXPORT DATABASE '` + out + `/db'`, query.ErrRefused, ""},
		{"ATTACH file", `ATTACH '` + out + `/x.db' AS x`, query.ErrRefused, "ATTACH"},
		{"ATTACH memory", `ATTACH ':memory:' AS x`, query.ErrRefused, "ATTACH"},
		{"DETACH", `DETACH memory`, query.ErrRefused, "DETACH"},
		{"INSTALL", `INSTALL httpfs`, query.ErrRefused, "extensions cannot be installed"},
		{"LOAD", `LOAD httpfs`, query.ErrRefused, "extensions cannot be installed"},
		{"FORCE INSTALL", `FORCE INSTALL httpfs FROM community`, query.ErrRefused, "extensions"},
		{"extension function", `SELECT * FROM dbgen(sf=0.01)`, query.ErrRefused, "extension"},
		{"SET unlock", `SET lock_configuration = false`, query.ErrRefused, "fixed by the node's operator"},
		{"SET external access", `SET enable_external_access = true`, query.ErrRefused, "fixed by the node's operator"},
		{"SET memory", `SET memory_limit = '100GB'`, query.ErrRefused, "fixed by the node's operator"},
		{"SET threads", `SET threads = 64`, query.ErrRefused, "fixed by the node's operator"},
		{"SET temp", `SET temp_directory = '/tmp'`, query.ErrRefused, "fixed by the node's operator"},
		{"RESET", `RESET memory_limit`, query.ErrRefused, "fixed by the node's operator"},
		{"PRAGMA set", `PRAGMA memory_limit = '100GB'`, query.ErrRefused, "fixed by the node's operator"},
		{"PRAGMA threads", `PRAGMA threads = 64`, query.ErrRefused, "fixed by the node's operator"},
		{"SET VARIABLE", `SET VARIABLE x = 1`, query.ErrRefused, "SET"},
		{"USE", `USE system`, query.ErrRefused, "SET"},
		{"CREATE TABLE", `CREATE TABLE x (a INT)`, query.ErrRefused, "CREATE statement: tables are loaded by nii"},
		{"CREATE TABLE AS", `CREATE TABLE x AS SELECT * FROM 'lga/spend-over-500'`, query.ErrRefused, "CREATE"},
		{"CREATE VIEW", `CREATE VIEW v AS SELECT 1`, query.ErrRefused, "CREATE"},
		{"CREATE MACRO", `CREATE MACRO f(a) AS a`, query.ErrRefused, "CREATE"},
		{"CREATE SECRET", `CREATE SECRET (TYPE s3, KEY_ID 'x', SECRET 'y')`, query.ErrRefused, ""},
		{"INSERT", `INSERT INTO "lga/spend-over-500" VALUES ('x', DATE '2024-01-01', 'y', 1)`, query.ErrRefused, "INSERT statement"},
		{"UPDATE", `UPDATE "lga/spend-over-500" SET amount = 0`, query.ErrRefused, "UPDATE statement"},
		{"DELETE", `DELETE FROM "lga/spend-over-500"`, query.ErrRefused, "DELETE statement"},
		{"DROP", `DROP TABLE "lga/spend-over-500"`, query.ErrRefused, "DROP statement"},
		{"ALTER", `ALTER TABLE "lga/spend-over-500" RENAME TO x`, query.ErrRefused, "ALTER statement"},
		{"TRUNCATE", `TRUNCATE "lga/spend-over-500"`, query.ErrRefused, "DELETE"},
		{"two statements", `SELECT 1; SELECT 2`, query.ErrRefused, "more than one statement"},
		{"select then drop", `SELECT 1; DROP TABLE "lga/spend-over-500"`, query.ErrRefused, "more than one statement"},
		{"drop then select", `DROP TABLE "lga/spend-over-500"; SELECT 1`, query.ErrRefused, "more than one statement"},
		{"CALL", `CALL pragma_version()`, query.ErrRefused, "CALL"},
		{"CHECKPOINT", `CHECKPOINT`, query.ErrRefused, "CALL"},
		{"BEGIN", `BEGIN TRANSACTION`, query.ErrRefused, "transaction"},
		{"COMMIT", `COMMIT`, query.ErrRefused, "transaction"},
		{"PREPARE", `PREPARE p AS SELECT 1`, query.ErrRefused, "PREPARE"},
		{"VACUUM", `VACUUM`, query.ErrRefused, "VACUUM"},
		{"EXPLAIN ANALYZE CREATE", `EXPLAIN ANALYZE CREATE TABLE y AS SELECT 1`, query.ErrRefused, "EXPLAIN of CREATE"},
		{"EXPLAIN INSERT", `EXPLAIN INSERT INTO "lga/spend-over-500" SELECT * FROM "lga/spend-over-500"`, query.ErrRefused, "EXPLAIN of INSERT"},
		{"EXPLAIN with a comment", `EXPLAIN /* x */ ANALYZE CREATE TABLE y AS SELECT 1`, query.ErrRefused, "nothing between"},
		{"EXPLAIN COPY", `EXPLAIN ANALYZE COPY (SELECT 1) TO '` + out + `/z.csv'`, query.ErrRefused, ""},
		{"getenv", `SELECT getenv('HOME')`, nii.ErrInvalid, "does not exist"},
		{"empty", "  \n\t", nii.ErrInvalid, "empty query"},
		{"only a comment", "-- nothing", nil, ""},
		{"NUL byte", "SELECT 1\x00; DROP TABLE x", nii.ErrInvalid, "NUL"},
		{"bad UTF-8", "SELECT '\xff'", nii.ErrInvalid, "UTF-8"},
		{"too long", "SELECT " + strings.Repeat("1+", 40_000) + "1", query.ErrRefused, "the limit is 65536"},
		{"syntax error", `SELEC 1`, nii.ErrInvalid, "syntax error"},
		{"deep expression", "SELECT " + strings.Repeat("1+", 5_000) + "1", nii.ErrInvalid, "expression depth"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res, err := e.Query(context.Background(), c.sql)
			if err == nil {
				t.Fatalf("ran: %v", res.Rows)
			}
			if c.kind != nil && !errors.Is(err, c.kind) {
				t.Errorf("error %q does not wrap %v", err, c.kind)
			}
			if !strings.Contains(err.Error(), c.says) {
				t.Errorf("error %q does not say %q", err, c.says)
			}
			if strings.Contains(err.Error(), "NII-SECRET") {
				t.Errorf("error leaks the file: %v", err)
			}
		})
	}
	// Nothing was written, and the table and the sandbox are as they were.
	if entries, _ := os.ReadDir(out); len(entries) != 0 {
		t.Errorf("a refused statement wrote %d files", len(entries))
	}
	if got := mustQuery(t, e, `SELECT count(*), sum(amount) FROM 'lga/spend-over-500'`).Rows[0]; fmt.Sprint(got) != "[5 -26050.01]" {
		t.Errorf("table changed: %v", got)
	}
	if got := mustQuery(t, e, `SHOW TABLES`).Rows; len(got) != 1 {
		t.Errorf("tables now: %v", got)
	}
	checkLocked(t, e)
}

// checkLocked asserts the sandbox's settings are still in force.
func checkLocked(t testing.TB, e *query.Engine) {
	t.Helper()
	res := mustQuery(t, e, `SELECT current_setting('enable_external_access'), current_setting('lock_configuration'), current_setting('autoload_known_extensions'), current_setting('temp_directory')`)
	if got := fmt.Sprint(res.Rows[0]); got != "[false true false ]" {
		t.Fatalf("sandbox settings now %s", got)
	}
}

// TestNoPathLeaks: settings a query can read name no path of this machine.
func TestNoPathLeaks(t *testing.T) {
	e := open(t, query.Config{})
	wd, _ := os.Getwd()
	home, _ := os.UserHomeDir()
	res := mustQuery(t, e, `SELECT name, value FROM duckdb_settings()`)
	for _, r := range res.Rows {
		v, _ := r[1].(string)
		for _, p := range []string{wd, home, os.TempDir()} {
			if p != "" && p != "/" && strings.Contains(v, p) {
				t.Errorf("setting %v = %q shows the path %s", r[0], v, p)
			}
		}
	}
	if got := mustQuery(t, e, `SELECT current_setting('allowed_directories'), current_setting('allowed_paths')`).Rows[0]; fmt.Sprint(got) != "[[] []]" {
		t.Errorf("allowed paths: %v", got)
	}
}

func TestTimeLimitStopsTheQuery(t *testing.T) {
	e := open(t, query.Config{Timeout: 300 * time.Millisecond, MaxConcurrent: 1})
	forever := []string{
		`WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r) SELECT count(*) FROM r`,
		`SELECT count(*) FROM range(1000000000) a, range(1000000000) b WHERE a.range + b.range = -1`,
	}
	for _, q := range forever {
		_, err := e.Query(context.Background(), q)
		if !errors.Is(err, query.ErrTimeout) || !strings.Contains(err.Error(), "300ms time limit") {
			t.Fatalf("%s: got %v, want ErrTimeout", q, err)
		}
		// The work stopped: with one query slot and one connection, the
		// next query runs on the same connection, and DuckDB's memory is
		// back to what the loaded tables hold.
		if got := mustQuery(t, e, `SELECT 42`).Rows[0][0]; got != int64(42) {
			t.Fatalf("after a timeout: %v", got)
		}
		mem := mustQuery(t, e, `SELECT sum(memory_usage_bytes)::BIGINT FROM duckdb_memory()`).Rows[0][0].(int64)
		if mem > 64<<20 {
			t.Errorf("%d MiB still held after the query was stopped", mem>>20)
		}
	}
	// The caller's own deadline is reported as the caller's.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := e.Query(ctx, forever[0])
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, query.ErrTimeout) {
		t.Fatalf("caller's deadline: %v", err)
	}
}

func TestMemoryLimit(t *testing.T) {
	e := open(t, query.Config{MemoryLimit: 64 << 20})
	for _, q := range []string{
		`SELECT list(range) FROM range(100000000)`,
		`SELECT string_agg(repeat('x', 1000), '') FROM range(1000000)`,
		`SELECT count(DISTINCT range) FROM range(100000000)`,
	} {
		_, err := e.Query(context.Background(), q)
		if !errors.Is(err, query.ErrMemory) || !strings.Contains(err.Error(), "64 MiB") {
			t.Fatalf("%s: got %v, want ErrMemory", q, err)
		}
		if strings.Contains(err.Error(), "temp_directory") {
			t.Errorf("error advises a setting users cannot change: %v", err)
		}
	}
	if got := mustQuery(t, e, `SELECT 1`).Rows[0][0]; got != int64(1) {
		t.Fatal(got)
	}
}

func TestRowCap(t *testing.T) {
	e := open(t, query.Config{MaxRows: 10})
	res := mustQuery(t, e, `SELECT * FROM range(100)`)
	if len(res.Rows) != 10 || !res.Truncated || !strings.Contains(res.Notice, "first 10 rows") {
		t.Fatalf("%d rows, truncated %v, %q", len(res.Rows), res.Truncated, res.Notice)
	}
	res = mustQuery(t, e, `SELECT * FROM range(10)`)
	if len(res.Rows) != 10 || res.Truncated {
		t.Fatalf("exactly the cap: %d rows, truncated %v", len(res.Rows), res.Truncated)
	}
	// The cap is applied inside DuckDB: a trillion-row scan stops at 11.
	res = mustQuery(t, e, `SELECT * FROM range(1000000000000)`)
	if len(res.Rows) != 10 || !res.Truncated {
		t.Fatalf("huge scan: %d rows", len(res.Rows))
	}
	// Order survives the cap.
	res = mustQuery(t, e, `SELECT * FROM range(100) ORDER BY range DESC`)
	if res.Rows[0][0] != int64(99) || res.Rows[9][0] != int64(90) {
		t.Fatalf("ordered: %v", res.Rows)
	}
}

func TestByteCap(t *testing.T) {
	e := open(t, query.Config{MaxResultBytes: 10_000})
	res := mustQuery(t, e, `SELECT repeat('x', 1000) FROM range(100)`)
	if !res.Truncated || len(res.Rows) == 0 || len(res.Rows) >= 10 || !strings.Contains(res.Notice, "size cap") {
		t.Fatalf("%d rows, truncated %v, %q", len(res.Rows), res.Truncated, res.Notice)
	}
}

func TestResultTypes(t *testing.T) {
	e := open(t, query.Config{})
	res := mustQuery(t, e, `SELECT 1::TINYINT a, 2::HUGEINT b, 170141183460469231731687303715884105727::HUGEINT c, 1.5::FLOAT d,
		[1, 2] e, {'k': 'v'} f, MAP {'x': 1} g, INTERVAL 1 MONTH + INTERVAL 3 DAY + INTERVAL 90 MINUTE h,
		'6ba7b810-9dad-11d1-80b4-00c04fd430c8'::UUID i, '\xAA'::BLOB j, TIME '12:30:00' k, TIMESTAMPTZ '2024-01-01 00:00:00+00' l, 18446744073709551615::UBIGINT m`)
	r := res.Rows[0]
	want := []string{"1", "2", "170141183460469231731687303715884105727", "1.5", "[1 2]", "map[k:v]", "map[x:1]",
		"1 month 3 days 01:30:00", "6ba7b810-9dad-11d1-80b4-00c04fd430c8", "[170]", "", "", "18446744073709551615"}
	for i, w := range want {
		if w == "" {
			continue
		}
		if got := fmt.Sprint(r[i]); got != w {
			t.Errorf("column %s (%s): got %s (%T), want %s", res.Columns[i].Name, res.Columns[i].SQLType, got, r[i], w)
		}
		if strings.Contains(fmt.Sprintf("%T", r[i]), "duckdb") {
			t.Errorf("column %s is a driver type %T", res.Columns[i].Name, r[i])
		}
	}
	types := []query.Type{query.TypeInteger, query.TypeInteger, query.TypeInteger, query.TypeNumber, query.TypeArray, query.TypeObject,
		query.TypeObject, query.TypeDuration, query.TypeString, query.TypeString, query.TypeTime, query.TypeDatetime, query.TypeInteger}
	for i, ty := range types {
		if res.Columns[i].Type != ty {
			t.Errorf("column %s (%s): type %s, want %s", res.Columns[i].Name, res.Columns[i].SQLType, res.Columns[i].Type, ty)
		}
	}
	var b strings.Builder
	if err := res.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), `"c":170141183460469231731687303715884105727`) || !strings.Contains(b.String(), `"k":"12:30:00"`) {
		t.Errorf("JSON: %s", b.String())
	}
}

func TestCloseIsIdempotentAndStopsQueries(t *testing.T) {
	e, err := query.Open(query.Config{Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		close(started)
		_, err := e.Query(context.Background(), `WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r) SELECT count(*) FROM r`)
		errc <- err
	}()
	<-started
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	// Close waited for the query, so its result is ready.
	select {
	case err := <-errc:
		// It may not have begun before Close, or Close interrupted it.
		if !errors.Is(err, query.ErrClosed) {
			t.Fatalf("query during close: %v", err)
		}
	default:
		// Query had not registered yet when Close ran; it will fail fast.
		if err := <-errc; !errors.Is(err, query.ErrClosed) {
			t.Fatalf("query after close: %v", err)
		}
	}
	if err := e.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	if _, err := e.Query(context.Background(), `SELECT 1`); !errors.Is(err, query.ErrClosed) {
		t.Fatalf("query after close: %v", err)
	}
	if _, err := e.Load(context.Background(), "a/b", spendCols, query.RowsSource(nil)); !errors.Is(err, query.ErrClosed) {
		t.Fatalf("load after close: %v", err)
	}
}

func TestConfigRefusesNonsense(t *testing.T) {
	for _, cfg := range []query.Config{{MemoryLimit: 1 << 20}, {Threads: -1}, {MaxRows: -5}, {Timeout: -time.Second}} {
		if e, err := query.Open(cfg); !errors.Is(err, nii.ErrInvalid) {
			if e != nil {
				e.Close()
			}
			t.Errorf("%+v: got %v", cfg, err)
		}
	}
}
