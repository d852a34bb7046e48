//go:build cgo

package query_test

import (
	"context"
	"database/sql"
	"io"
	"math/big"
	"os"
	"path/filepath"
	"testing"

	"github.com/nii-uk/nii/internal/spenddata"

	_ "github.com/duckdb/duckdb-go/v2" // a trusted, unsandboxed DuckDB: this test reads the raw files itself

	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/harmony"
)

// rawTotalSQL is, for each shared spend file, DuckDB SQL with explicit
// casts that totals its amounts straight from the raw file: which records
// to skip, which cell holds the amount, and how the file writes it. It
// knows nothing of harmony's mappings or coercions; ? is the file.
var rawTotalSQL = map[string]string{
	"cabinet-office": `SELECT sum(CAST(column8 AS DECIMAL(18,2))) FROM read_csv(?, header=false, skip=1, all_varchar=true, null_padding=true)`,
	"darlington":     `SELECT sum(CAST(column07 AS DECIMAL(18,2))) FROM read_csv(?, header=false, skip=1, all_varchar=true, null_padding=true)`,
	"gateshead":      `SELECT sum(CAST(column7 AS DECIMAL(18,2))) FROM read_csv(?, header=false, skip=1, all_varchar=true, null_padding=true)`,
	"leeds":          `SELECT sum(CAST(column09 AS DECIMAL(18,2))) FROM read_csv(?, header=false, skip=1, all_varchar=true, null_padding=true)`,
	"manchester":     `SELECT sum(CAST(column5 AS DECIMAL(18,2))) FROM read_csv(?, header=false, skip=1, all_varchar=true, null_padding=true)`,
	"trafford":       `SELECT sum(CAST(replace(column05, ',', '') AS DECIMAL(18,2))) FROM read_csv(?, header=false, skip=1, all_varchar=true, null_padding=true)`,
	// The total row and the copyright line below the data are not spend.
	"network-rail": `SELECT sum(CAST(column3 AS DECIMAL(18,2))) FROM read_csv(?, header=false, skip=1, all_varchar=true, null_padding=true)
		WHERE column0 IS DISTINCT FROM 'Grand Total' AND column3 IS NOT NULL`,
	// Lambeth: 10 report and header lines; the amount follows the last
	// dd/mm/yyyy date on the line, with or without the comma the
	// publisher's export lost (25/06/2012900).
	"lambeth": `SELECT sum(CAST(regexp_extract(line, '^.*\d\d/\d\d/\d{4},?(-?[0-9]+(\.[0-9]+)?),', 1) AS DECIMAL(18,2)))
		FROM read_csv(?, header=false, skip=10, delim='\x01', quote='', columns={'line': 'VARCHAR'})
		WHERE trim(line, ', ') <> ''`,
}

// TestMergedTotalsMatchDuckDBOverRawFiles is the second independent check
// of harmony's merge of every shared spend file (harmony's own test reads
// the files with encoding/csv): each publisher's merged total equals
// DuckDB's total of the raw file.
func TestMergedTotalsMatchDuckDBOverRawFiles(t *testing.T) {
	dir := spenddata.Dir()
	b, err := harmony.SampleStandard(harmony.LGASpend)
	if err != nil {
		t.Fatal(err)
	}
	std, err := harmony.ParseStandard(b)
	if err != nil {
		t.Fatal(err)
	}
	std.Ref = nii.Ref{Dataset: nii.DatasetID{Org: "lga", Name: "spend-over-500"}, Version: 1}
	var srcs []harmony.Source
	for name := range rawTotalSQL {
		mb, err := os.ReadFile(filepath.Join("..", "harmony", "testdata", "mappings", name+".map.toml"))
		if err != nil {
			t.Fatal(err)
		}
		m, err := harmony.ParseMapping(mb)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, name+".csv")
		srcs = append(srcs, harmony.Source{Dataset: nii.DatasetID{Org: name, Name: "spend"}, Version: 1, Mapping: m,
			Open: func(context.Context) (io.ReadCloser, error) { return os.Open(path) }})
	}
	merged, err := harmony.Merge(context.Background(), std, srcs, harmony.MergeOptions{CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("duckdb", "")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if len(merged.Sources) != len(rawTotalSQL) {
		t.Fatalf("merged %d sources", len(merged.Sources))
	}
	for _, s := range merged.Sources {
		name := s.Dataset.Org
		var raw string
		if err := db.QueryRow("SELECT CAST(("+rawTotalSQL[name]+") AS VARCHAR)", filepath.Join(dir, name+".csv")).Scan(&raw); err != nil {
			t.Errorf("%s: DuckDB over the raw file: %v", name, err)
			continue
		}
		t.Logf("%s: merged %s, raw %s", name, s.Amount, raw)
		want, _ := new(big.Rat).SetString(raw)
		got, _ := new(big.Rat).SetString(s.Amount.String())
		if want == nil || got == nil || want.Cmp(got) != 0 {
			t.Errorf("%s: merged total %s, DuckDB's total of the raw file %s", name, s.Amount, raw)
		}
	}
}
