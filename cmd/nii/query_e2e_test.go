package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestQueryCLI runs nii query against a real daemon: a table, CSV, JSON,
// the table list, and every kind of refusal and cut-off with its message
// and a non-zero exit.
func TestQueryCLI(t *testing.T) {
	home := initHome(t, "greenwich")
	cfg := filepath.Join(home, "config.toml")
	b, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// A short time limit, so the cut-offs below are quick.
	if !strings.Contains(string(b), "\n[query]\n") {
		t.Fatalf("no [query] in the config nii init wrote:\n%s", b)
	}
	b = []byte(strings.Replace(string(b), "\n[query]\n", "\n[query]\ntimeout = \"1s\"\nmemory_limit = \"256MiB\"\n", 1))
	if err := os.WriteFile(cfg, b, 0o600); err != nil {
		t.Fatal(err)
	}
	startDaemon(t, home)
	mustNii(t, home, "publish", realFile(t, "trafford.csv"), "--name", "spend", "--title", "Spend")

	out := mustNii(t, home, "query", `SELECT count(*) AS n FROM 'greenwich/spend'`)
	if !strings.Contains(out, "n\n") || !strings.Contains(out, "(1 row)") {
		t.Errorf("table output:\n%s", out)
	}
	out = mustNii(t, home, "query", "--csv", `SELECT 1 AS a, 'x,y' AS b`)
	if out != "a,b\n1,\"x,y\"\n" {
		t.Errorf("csv output: %q", out)
	}
	out = mustNii(t, home, "query", "--json", `SELECT 1.50::DECIMAL(9,2) AS d`)
	var doc struct {
		Columns []struct{ Name, Type string }
		Rows    [][]json.Number
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil || len(doc.Rows) != 1 || doc.Rows[0][0] != "1.50" || doc.Columns[0].Type != "decimal" {
		t.Errorf("json output %q: %v", out, err)
	}
	r := run(t, home, "query", "--max-rows", "2", "--csv", `SELECT * FROM range(5)`)
	if r.code != 0 || strings.Count(r.stdout, "\n") != 3 || !strings.Contains(r.stderr, "first 2 rows") {
		t.Errorf("--max-rows: %+v", r)
	}
	out = mustNii(t, home, "query", "--tables")
	if !strings.Contains(out, "'greenwich/spend'") || !strings.Contains(out, "'greenwich/spend@1'") {
		t.Errorf("tables:\n%s", out)
	}
	for _, c := range []struct{ sql, says string }{
		{`SELECT * FROM read_csv('/etc/passwd')`, "cannot read or write files"},
		{`COPY (SELECT 1) TO 'out.csv'`, "COPY statement: nothing can be written"},
		{`INSTALL httpfs`, "extensions cannot be installed"},
		{`ATTACH 'x.db' AS x`, "ATTACH"},
		{`DROP TABLE "greenwich/spend"`, "tables are loaded by nii and cannot be changed"},
		{`SELECT count(*) FROM range(1000000000000) a, range(1000) b`, "1s time limit"},
		{`SELECT levenshtein(repeat('a', 100000), repeat('b', 100000))`, "raise [query] timeout"},
		{`SELECT length(repeat('x', 1000000000))`, "memory"},
		{`SELECT * FROM 'nobody/here'`, "tables you can query"},
	} {
		r := run(t, home, "query", c.sql)
		if r.code == 0 || !strings.Contains(r.stderr, c.says) {
			t.Errorf("%s: exit %d, stderr %q; want it to say %q", c.sql, r.code, r.stderr, c.says)
		}
	}
	// Still answering, and the file was not written.
	mustNii(t, home, "query", `SELECT count(*) FROM 'greenwich/spend'`)
	if _, err := os.Stat(filepath.Join(home, "out.csv")); err == nil {
		t.Error("COPY wrote out.csv")
	}
}
