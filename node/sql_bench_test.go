package node_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/harmony"
	"github.com/nii-uk/nii/node"
)

// benchMergedView is a merged view of the LGA standard's shape: 33
// publishers × perSource generated rows, as a merge of 33 borough files
// leaves them (the merged CSV's text cells).
func benchMergedView(perSource int) node.MergedView {
	cols := []harmony.Column{
		{Name: "body", Type: "string"}, {Name: "body_name", Type: "string"}, {Name: "date", Type: "date"},
		{Name: "transaction_number", Type: "string"}, {Name: "amount", Type: "number"},
		{Name: "supplier_name", Type: "string"}, {Name: "supplier_name" + harmony.NormalisedSuffix, Type: "string"},
		{Name: "expense_area", Type: "string"}, {Name: "expense_type", Type: "string"},
		{Name: harmony.ColPublisher, Type: "string"}, {Name: harmony.ColDataset, Type: "string"}, {Name: harmony.ColVersion, Type: "integer"},
		{Name: harmony.ColManifest, Type: "string"}, {Name: harmony.ColLine, Type: "integer"}, {Name: harmony.ColMapping, Type: "string"},
	}
	areas := []string{"Adults", "Children", "Environment", "Housing", "Resources", "Regeneration"}
	types := []string{"Agency Staff", "Building Repairs", "Consultancy", "IT Software", "Legal Fees", "Printing", "Rents", "Vehicle Hire"}
	manifest := nii.HashOf([]byte("m")).String()
	return node.MergedView{
		Standard: nii.Ref{Dataset: nii.DatasetID{Org: "lga", Name: "spend-over-500"}, Version: 1},
		Key:      fmt.Sprint("bench-", perSource),
		Open:     true,
		Columns:  cols,
		Sources:  33,
		Rows: func(ctx context.Context, fn func([]string) error) error {
			r := rand.New(rand.NewPCG(1, 2))
			start := time.Date(2019, 1, 1, 0, 0, 0, 0, time.UTC)
			rec := make([]string, len(cols))
			for p := range 33 {
				pub := fmt.Sprintf("borough-%02d", p)
				for i := range perSource {
					supplier := fmt.Sprintf("Supplier %04d Ltd", r.IntN(5000))
					rec[0], rec[1] = "E090000"+strconv.Itoa(p), "Borough "+strconv.Itoa(p)
					rec[2] = start.AddDate(0, 0, r.IntN(6*365)).Format(time.DateOnly)
					rec[3] = strconv.Itoa(1_000_000 + i)
					rec[4] = strconv.FormatInt(500+r.Int64N(500_000), 10) + "." + fmt.Sprintf("%02d", r.IntN(100))
					rec[5], rec[6] = supplier, supplier
					rec[7], rec[8] = areas[r.IntN(len(areas))], types[r.IntN(len(types))]
					rec[9], rec[10], rec[11] = pub, pub+"/spend", "1"
					rec[12], rec[13], rec[14] = manifest, strconv.Itoa(i+2), manifest
					if err := fn(rec); err != nil {
						return err
					}
				}
			}
			return nil
		},
	}
}

// BenchmarkSQLGroupByThroughDaemon is nii query's path for the issue's
// query over 3.3 M merged rows: the local API, the node's table manager,
// the SQL worker process and back, as JSON. The first query's load of the
// view is reported as load-s. $NII_SQL_BENCH_MEMORY sets [query]
// memory_limit: the 15-column merged rows need 1.1 GiB of DuckDB's memory,
// past the 1 GiB default (docs/benchmarks.md).
func BenchmarkSQLGroupByThroughDaemon(b *testing.B) {
	const sql = `SELECT _publisher, date_trunc('month', date) m, sum(amount) FROM 'lga/spend-over-500' GROUP BY ALL ORDER BY 1,2`
	tn := sqlNode(b, "gla", node.QueryConfig{MemoryLimit: os.Getenv("NII_SQL_BENCH_MEMORY")})
	tn.SetMergedViewsForTest(&staticViews{views: []node.MergedView{benchMergedView(100_000)}})
	ctx := context.Background()
	start := time.Now()
	if _, err := tn.anon().QueryJSON(ctx, `SELECT count(*) FROM 'lga/spend-over-500'`, 0, false); err != nil {
		b.Fatal(err)
	}
	load := time.Since(start)
	w := tn.SQLWorkerForTest("open")
	mem, err := tn.anon().QueryJSON(ctx, `SELECT sum(memory_usage_bytes)::BIGINT FROM duckdb_memory()`, 0, false)
	if err != nil {
		b.Fatal(err)
	}
	var took []time.Duration
	for b.Loop() {
		start := time.Now()
		res, err := tn.anon().QueryJSON(ctx, sql, 0, false)
		if err != nil {
			b.Fatal(err)
		}
		took = append(took, time.Since(start))
		if len(res.Rows) != 33*72 {
			b.Fatalf("%d rows", len(res.Rows))
		}
	}
	sort.Slice(took, func(i, j int) bool { return took[i] < took[j] })
	b.ReportMetric(float64(took[len(took)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(took[len(took)*9/10].Microseconds())/1000, "p90-ms")
	b.ReportMetric(load.Seconds(), "load-s")
	n, _ := strconv.ParseInt(fmt.Sprint(mem.Rows[0][0]), 10, 64)
	b.ReportMetric(float64(n)/(1<<20), "engine-MiB")
	if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", w.Stats().PID)); err == nil {
		for _, line := range strings.Split(string(st), "\n") {
			if strings.HasPrefix(line, "VmHWM:") {
				kb, _ := strconv.Atoi(strings.Fields(line)[1])
				b.ReportMetric(float64(kb)/1024, "worker-peak-RSS-MiB")
			}
		}
	}
}
