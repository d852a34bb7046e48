//go:build cgo

package query_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nii-uk/nii/query"
)

// FuzzQuery runs arbitrary SQL text against a sandboxed engine and checks
// that the engine never panics, never returns the contents of a file, and
// leaves the loaded table, the table list and the sandbox as they were.
func FuzzQuery(f *testing.F) {
	dir := f.TempDir()
	const marker = "NII-FUZZ-SECRET-7f3a"
	secret := filepath.Join(dir, "secret.csv")
	if err := os.WriteFile(secret, []byte("a,b\n"+marker+",1\n"), 0o600); err != nil {
		f.Fatal(err)
	}
	seeds := []string{
		`SELECT * FROM 't/fuzz'`,
		`SELECT s, sum(n) FROM "t/fuzz" GROUP BY ALL ORDER BY 1`,
		`SELECT * FROM read_csv('` + secret + `')`,
		`SELECT * FROM '` + secret + `'`,
		`SELECT content FROM read_text('` + secret + `')`,
		`SELECT * FROM read_blob('` + dir + `/*')`,
		`SELECT * FROM glob('` + dir + `/*')`,
		`SELECT * FROM query('SELECT * FROM read_csv(''` + secret + `'')')`,
		`SELECT * FROM query_table('t/fuzz')`,
		`COPY "t/fuzz" TO '` + dir + `/out.csv'`,
		`EXPORT DATABASE '` + dir + `/exp'`,
		`ATTACH '` + dir + `/x.db'`,
		`INSTALL httpfs`, `LOAD parquet`,
		`SET enable_external_access = true`, `SET lock_configuration = false`, `RESET ALL`, `PRAGMA threads = 8`,
		`CREATE TABLE x AS SELECT 1`, `INSERT INTO "t/fuzz" VALUES (9, 'z')`, `DELETE FROM "t/fuzz"`, `UPDATE "t/fuzz" SET n = 0`,
		`DROP TABLE "t/fuzz"`, `ALTER TABLE "t/fuzz" RENAME TO y`, `SELECT 1; DROP TABLE "t/fuzz"`,
		`EXPLAIN ANALYZE DELETE FROM "t/fuzz"`, `EXPLAIN ANALYZE SELECT * FROM 't/fuzz'`, `CALL pragma_version()`,
		`WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r) SELECT count(*) FROM r`,
		`SELECT current_setting('enable_external_access')`, `SELECT * FROM duckdb_settings()`,
		`SUMMARIZE 't/fuzz'`, `DESCRIBE "t/fuzz"`, `SHOW TABLES`, `PRAGMA show_tables`, `VALUES (1, 'a')`,
		`BEGIN; DROP TABLE "t/fuzz"; COMMIT`, `COMMIT`, `ROLLBACK`, `CHECKPOINT`, `USE system`,
	}
	for _, s := range seeds {
		f.Add(s)
	}
	e, err := query.Open(query.Config{Timeout: 2 * time.Second, MemoryLimit: 256 << 20, MaxRows: 100})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { e.Close() })
	cols := []query.Column{{Name: "n", Type: query.TypeInteger}, {Name: "s", Type: query.TypeString}}
	rows := [][]any{{int64(1), "a"}, {int64(2), "b"}, {int64(3), nil}}
	if _, err := e.Load(context.Background(), "t/fuzz", cols, query.RowsSource(rows)); err != nil {
		f.Fatal(err)
	}
	fingerprint := func() string {
		res, err := e.Query(context.Background(), `SELECT count(*), sum(n), string_agg(coalesce(s, '-'), ',' ORDER BY n), (SELECT count(*) FROM duckdb_tables()), (SELECT count(*) FROM duckdb_views() WHERE NOT internal), current_setting('enable_external_access'), current_setting('lock_configuration') FROM "t/fuzz"`)
		if err != nil {
			return "error: " + err.Error()
		}
		return fmt.Sprint(res.Rows[0])
	}
	want := fingerprint()
	if want != "[3 6 a,b,- 1 0 false true]" {
		f.Fatalf("fingerprint before fuzzing: %s", want)
	}
	f.Fuzz(func(t *testing.T, sql string) {
		res, err := e.Query(context.Background(), sql)
		if err != nil {
			if strings.Contains(err.Error(), marker) {
				t.Fatalf("error shows the secret file: %v", err)
			}
		} else {
			for _, row := range res.Rows {
				if strings.Contains(fmt.Sprint(row), marker) {
					t.Fatalf("%q returned the secret file: %v", sql, row)
				}
			}
		}
		if got := fingerprint(); got != want {
			t.Fatalf("%q changed the engine: %s, want %s", sql, got, want)
		}
		if ts := e.Tables(); len(ts) != 1 || ts[0].Rows != 3 {
			t.Fatalf("%q changed the table list: %+v", sql, ts)
		}
		for _, name := range []string{"out.csv", "exp", "x.db"} {
			if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
				t.Fatalf("%q wrote %s", sql, name)
			}
		}
	})
}
