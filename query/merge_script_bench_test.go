//go:build cgo

package query_test

import (
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/nii-uk/nii/harmony/spendgen"
)

// BenchmarkMergeScript33 is the baseline of issue 11's merge benchmark:
// the same job as BenchmarkNodeMerge33 in package node — 33 generated
// sources of 100,000 spend rows in six layouts, each cast to the LGA
// standard's fields with a normalised supplier and the provenance columns,
// unioned and written out as one CSV — written as one hand-tuned DuckDB SQL
// script over the raw files, run by DuckDB itself with file access (not
// through nii's sandbox: a benchmark-only trusted path), 2 threads, 1 GiB.
//
// The script does less than nii: invalid values become NULL (TRY_CAST)
// instead of rejected rows with reasons, there is no rejects table or
// per-source report, no coverage statistics, and the line number is the
// row's position in the file (row_number), which is the source line only
// because these files have no quoted line breaks.
//
//	NII_SPENDGEN_DIR=/tmp/spendgen go test ./query -run XXX -bench MergeScript33 -benchtime 1x
func BenchmarkMergeScript33(b *testing.B) {
	rows := 100_000
	if s := os.Getenv("NII_SPENDGEN_ROWS"); s != "" {
		rows, _ = strconv.Atoi(s)
	}
	dir := os.Getenv("NII_SPENDGEN_DIR")
	if dir == "" {
		dir = b.TempDir()
	}
	files, err := spendgen.Write(dir, 33, rows, 1)
	if err != nil {
		b.Fatal(err)
	}
	out := filepath.Join(b.TempDir(), "merged.csv")
	if o := os.Getenv("NII_MERGESCRIPT_OUT"); o != "" {
		out = o // keep the output, to compare
	}
	script := mergeScript(files, out)
	db, err := sql.Open("duckdb", "?threads=2&memory_limit=1GB")
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1) // one session: the SET statements below hold for every run
	// DuckDB may spill to disk here, as a script run by hand would.
	if _, err := db.Exec(fmt.Sprintf("SET temp_directory = '%s'", b.TempDir())); err != nil {
		b.Fatal(err)
	}
	for _, st := range mergeMacros {
		if _, err := db.Exec(st); err != nil {
			b.Fatalf("%s: %v", st, err)
		}
	}
	run := func(b *testing.B, script string) {
		cpu0 := cpuSeconds()
		var n int64
		for b.Loop() {
			res, err := db.Exec(script)
			if err != nil {
				b.Fatal(err)
			}
			if n, err = res.RowsAffected(); err != nil {
				b.Fatal(err)
			}
		}
		if n != int64(rows*len(files)) {
			b.Fatalf("the script wrote %d rows, want %d", n, rows*len(files))
		}
		b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
		b.ReportMetric((cpuSeconds()-cpu0)/float64(b.N), "cpu-s/op")
		var ru syscall.Rusage
		syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		b.ReportMetric(float64(ru.Maxrss)/1024, "MiB-peak-rss")
	}
	// The job as specified: every row with its source line.
	b.Run("lines", func(b *testing.B) { run(b, script) })
	// DuckDB's best case, for scale: no line numbers (no window per
	// source) and no insertion order kept.
	b.Run("nolines", func(b *testing.B) {
		if _, err := db.Exec("SET preserve_insertion_order = false"); err != nil {
			b.Fatal(err)
		}
		defer db.Exec("SET preserve_insertion_order = true")
		run(b, strings.ReplaceAll(script, "row_number() OVER () + ", "NULL::BIGINT + "))
	})
}

func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

// mergeMacros are the script's helpers: money in the forms the layouts
// use, and the supplier normalisation (upper case, punctuation but & gone,
// LIMITED as LTD, single spaces).
var mergeMacros = []string{
	`CREATE MACRO money(s) AS CASE
		WHEN trim(s) IN ('', '-') THEN NULL
		WHEN trim(s) LIKE '(%)' THEN -TRY_CAST(replace(replace(replace(trim(s), '(', ''), ')', ''), ',', '') AS DECIMAL(18,4))
		WHEN trim(s) LIKE '%-' THEN -TRY_CAST(replace(rtrim(trim(s), '-'), ',', '') AS DECIMAL(18,4))
		ELSE TRY_CAST(replace(replace(trim(s), '£', ''), ',', '') AS DECIMAL(18,4)) END`,
	`CREATE MACRO norm(s) AS trim(regexp_replace(regexp_replace(regexp_replace(upper(s), '[^A-Z0-9& ]', '', 'g'),
		'\bLIMITED\b', 'LTD', 'g'), '\s+', ' ', 'g'))`,
}

// mergeScript is the hand-written SQL: one SELECT per source over
// read_csv, with that layout's casts, UNION ALL, COPY TO out. It returns
// the rows written.
func mergeScript(files []spendgen.File, out string) string {
	var parts []string
	for _, f := range files {
		parts = append(parts, sourceSelect(f))
	}
	return fmt.Sprintf("COPY (\n%s\n) TO '%s' (HEADER, DELIMITER ',')", strings.Join(parts, "\nUNION ALL\n"), out)
}

func sourceSelect(f spendgen.File) string {
	ncols := map[string]int{"dclg": 13, "leeds": 12, "manchester": 7, "report": 6, "cp1252": 10, "excel": 4}[f.Layout]
	skip := 1
	if f.Layout == "report" {
		skip = 6
	}
	var cols []string
	for i := 1; i <= ncols; i++ {
		cols = append(cols, fmt.Sprintf("'c%d': 'VARCHAR'", i))
	}
	enc := ""
	if f.Layout == "cp1252" {
		enc = ", encoding = 'latin-1'"
	}
	from := fmt.Sprintf("(SELECT *, row_number() OVER () + %d AS line FROM read_csv('%s', header = false, skip = %d, delim = ',', quote = '\"', columns = {%s}, null_padding = true, buffer_size = 4194304%s))",
		skip, f.CSV, skip, strings.Join(cols, ", "), enc)
	// body, body_name, date, transaction_number, amount, supplier_name,
	// supplier_id, vat_registration, expense_area, expense_type,
	// expense_code, description, procurement_category, capital_revenue
	var e [14]string
	for i := range e {
		e[i] = "NULL"
	}
	where := ""
	switch f.Layout {
	case "dclg":
		e = [14]string{"c1", "c2", "try_strptime(c3, '%d/%m/%Y')::DATE", "c4", "money(c6)", "c7", "c8", "c9", "c10", "c11", "c12", "c13", "NULL", "NULL"}
	case "leeds":
		e = [14]string{"c1", "c2", "try_strptime(c8, '%d-%b-%Y')::DATE", "c9", "TRY_CAST(c10 AS DECIMAL(18,4))", "c12", "NULL", "NULL",
			"concat_ws(' / ', nullif(c3, ''), nullif(c4, ''))", "c6", "c7", "NULL", "NULL",
			"CASE upper(c11) WHEN 'R' THEN 'Revenue' WHEN 'C' THEN 'Capital' ELSE c11 END"}
	case "manchester":
		e = [14]string{"NULL", "c1", "TRY_CAST(c4 AS DATE)", "c5", "TRY_CAST(c6 AS DECIMAL(18,4))", "c7", "NULL", "NULL", "c2", "c3", "NULL", "NULL", "NULL", "NULL"}
	case "report":
		e = [14]string{"NULL", "c1", "try_strptime(c4, '%d/%m/%Y')::DATE", "NULL", "TRY_CAST(c5 AS DECIMAL(18,4))", "c3", "NULL", "NULL", "c2", "c6", "NULL", "NULL", "NULL", "NULL"}
	case "cp1252":
		e = [14]string{"NULL", "'" + f.Org + "'", "try_strptime(c2, '%d/%m/%y')::DATE", "nullif(c6, 'N/A')", "money(c3)", "trim(c1)", "NULL", "NULL", "c4", "trim(c5)", "NULL", "NULL", "NULL", "NULL"}
	case "excel":
		e = [14]string{"NULL", "'" + f.Org + "'", "DATE '1899-12-30' + TRY_CAST(c3 AS INTEGER)", "NULL", "money(c4)", "c1", "NULL", "NULL", "NULL", "NULL", "NULL", "NULL", "c2", "NULL"}
		where = " WHERE c1 <> 'Grand Total' AND coalesce(c3, '') <> ''"
	}
	manifest := strings.Repeat("ab", 32) // stands in for the version's manifest hash
	mapping := strings.Repeat("cd", 32)
	return fmt.Sprintf(`SELECT %s AS body, %s AS body_name, %s AS date, %s AS transaction_number, %s AS amount,
	%s AS supplier_name, norm(%s) AS supplier_name_normalised, %s AS supplier_id, %s AS vat_registration,
	%s AS expense_area, %s AS expense_type, %s AS expense_code, %s AS description, NULL::DECIMAL(18,4) AS irrecoverable_vat,
	%s AS procurement_category, %s AS capital_revenue,
	'%s' AS _publisher, '%s/spend' AS _dataset, 1 AS _version, '%s' AS _source_manifest, line AS _source_line, '%s' AS _mapping
	FROM %s%s`,
		e[0], e[1], e[2], e[3], e[4], e[5], e[5], e[6], e[7], e[8], e[9], e[10], e[11], e[12], e[13],
		f.Org, f.Org, manifest, mapping, from, where)
}
