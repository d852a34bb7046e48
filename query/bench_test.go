//go:build cgo

package query_test

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	_ "github.com/duckdb/duckdb-go/v2" // the reference: DuckDB reading a CSV itself
	"github.com/nii-uk/nii/query"
)

// Spend-like rows, as a merged view of the LGA standard holds them.
var benchCols = []query.Column{
	{Name: "_publisher", Type: query.TypeString},
	{Name: "_line", Type: query.TypeInteger},
	{Name: "date", Type: query.TypeDate},
	{Name: "transaction_number", Type: query.TypeString},
	{Name: "supplier", Type: query.TypeString},
	{Name: "expense_type", Type: query.TypeString},
	{Name: "amount", Type: query.TypeDecimal, Scale: 2},
	{Name: "capital", Type: query.TypeBoolean},
}

// spendSource generates n rows, the same ones for the same n.
type spendSource struct {
	n, i      int
	rng       *rand.Rand
	suppliers []string
	start     time.Time
}

var boroughs = []string{"barking", "barnet", "bexley", "brent", "bromley", "camden", "city", "croydon", "ealing", "enfield",
	"greenwich", "hackney", "hammersmith", "haringey", "harrow", "havering", "hillingdon", "hounslow", "islington", "kensington",
	"kingston", "lambeth", "lewisham", "merton", "newham", "redbridge", "richmond", "southwark", "sutton", "tower-hamlets",
	"waltham-forest", "wandsworth", "westminster"}

var expenseTypes = []string{"Agency Staff", "Building Repairs", "Consultancy", "IT Software", "Legal Fees", "Printing", "Rents", "Vehicle Hire"}

func newSpendSource(n int) *spendSource {
	s := &spendSource{n: n, rng: rand.New(rand.NewPCG(1, 2)), start: time.Date(2019, 1, 1, 0, 0, 0, 0, time.UTC)}
	for i := range 5000 {
		s.suppliers = append(s.suppliers, fmt.Sprintf("Supplier %04d Ltd", i))
	}
	return s
}

func (s *spendSource) Next(row []any) error {
	if s.i == s.n {
		return io.EOF
	}
	s.i++
	row[0] = boroughs[s.i%len(boroughs)]
	row[1] = int64(s.i/len(boroughs) + 2)
	row[2] = s.start.AddDate(0, 0, s.rng.IntN(6*365))
	row[3] = "T" + strconv.Itoa(s.i)
	row[4] = s.suppliers[s.rng.IntN(len(s.suppliers))]
	row[5] = expenseTypes[s.rng.IntN(len(expenseTypes))]
	row[6] = query.NewDecimal(50000+s.rng.Int64N(5_000_000_00), 2)
	row[7] = s.rng.IntN(10) == 0
	return nil
}

var benchSizes = []int{1_000_000, 3_300_000}

// peakRSS reports the process's peak resident set (VmHWM) in MiB.
func peakRSS(b *testing.B) {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			kb, _ := strconv.Atoi(strings.Fields(line)[1])
			b.ReportMetric(float64(kb)/1024, "peak-RSS-MiB")
		}
	}
}

func benchEngine(b *testing.B) *query.Engine {
	e, err := query.Open(query.DefaultConfig()) // the defaults: 1 GiB, 2 threads
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { e.Close() })
	return e
}

// BenchmarkLoad streams generated spend rows into the engine through
// Load (DuckDB's appender), replacing the table each iteration.
func BenchmarkLoad(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("rows=%d", n), func(b *testing.B) {
			e := benchEngine(b)
			for b.Loop() {
				got, err := e.Load(context.Background(), "lga/spend-over-500", benchCols, newSpendSource(n))
				if err != nil || got != int64(n) {
					b.Fatal(got, err)
				}
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
			peakRSS(b)
		})
	}
}

// BenchmarkLoadReadCSV is the reference for the choice of loader: DuckDB
// reading the same rows from a CSV file itself (read_csv with the types
// given), in a database without the sandbox — the "trusted file path"
// alternative to the appender. Writing the CSV is not timed.
func BenchmarkLoadReadCSV(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("rows=%d", n), func(b *testing.B) {
			path := filepath.Join(b.TempDir(), "spend.csv")
			f, err := os.Create(path)
			if err != nil {
				b.Fatal(err)
			}
			w := bufio.NewWriter(f)
			src := newSpendSource(n)
			row := make([]any, len(benchCols))
			fmt.Fprintln(w, "_publisher,_line,date,transaction_number,supplier,expense_type,amount,capital")
			for src.Next(row) == nil {
				fmt.Fprintf(w, "%s,%d,%s,%s,%s,%s,%s,%t\n", row[0], row[1], row[2].(time.Time).Format(time.DateOnly), row[3], row[4], row[5], row[6], row[7])
			}
			w.Flush()
			f.Close()
			db, err := sql.Open("duckdb", "?threads=2&memory_limit=2GB")
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			q := `CREATE OR REPLACE TABLE spend AS SELECT * FROM read_csv('` + path + `', header = true, columns = {
				'_publisher': 'VARCHAR', '_line': 'BIGINT', 'date': 'DATE', 'transaction_number': 'VARCHAR',
				'supplier': 'VARCHAR', 'expense_type': 'VARCHAR', 'amount': 'DECIMAL(18,2)', 'capital': 'BOOLEAN'})`
			for b.Loop() {
				if _, err := db.Exec(q); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
			peakRSS(b)
		})
	}
}

// BenchmarkQueryGroupBy runs the query over the loaded rows
// through the sandbox (transaction, statement check, caps included) and
// reports its median and 90th percentile.
func BenchmarkQueryGroupBy(b *testing.B) {
	const sql = `SELECT _publisher, date_trunc('month', date) m, sum(amount) FROM 'lga/spend-over-500' GROUP BY ALL ORDER BY 1,2`
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("rows=%d", n), func(b *testing.B) {
			e := benchEngine(b)
			if _, err := e.Load(context.Background(), "lga/spend-over-500", benchCols, newSpendSource(n)); err != nil {
				b.Fatal(err)
			}
			mem, err := e.Query(context.Background(), `SELECT sum(memory_usage_bytes)::BIGINT FROM duckdb_memory()`)
			if err != nil {
				b.Fatal(err)
			}
			var took []time.Duration
			for b.Loop() {
				start := time.Now()
				res, err := e.Query(context.Background(), sql)
				if err != nil {
					b.Fatal(err)
				}
				took = append(took, time.Since(start))
				if len(res.Rows) != len(boroughs)*72 || res.Truncated {
					b.Fatalf("%d rows, truncated %v", len(res.Rows), res.Truncated)
				}
			}
			sort.Slice(took, func(i, j int) bool { return took[i] < took[j] })
			b.ReportMetric(float64(took[len(took)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(took[len(took)*9/10].Microseconds())/1000, "p90-ms")
			// (after the loop: b.Loop's first call deletes earlier metrics)
			b.ReportMetric(float64(mem.Rows[0][0].(int64))/(1<<20), "engine-MiB")
			peakRSS(b)
		})
	}
}

func benchWorker(b *testing.B) *query.Worker {
	w, err := query.NewWorker(query.WorkerConfig{Config: query.DefaultConfig()}) // the defaults, in a child process
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { w.Close() })
	return w
}

// BenchmarkWorkerLoad is BenchmarkLoad through the SQL worker: the same
// rows encoded, piped to the child process and appended there.
func BenchmarkWorkerLoad(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("rows=%d", n), func(b *testing.B) {
			w := benchWorker(b)
			for b.Loop() {
				got, _, err := w.Load(context.Background(), "lga/spend-over-500", benchCols, newSpendSource(n))
				if err != nil || got != int64(n) {
					b.Fatal(got, err)
				}
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}

// BenchmarkWorkerQueryGroupBy is BenchmarkQueryGroupBy through the SQL
// worker: the query framed to the child, the result encoded back.
func BenchmarkWorkerQueryGroupBy(b *testing.B) {
	const sql = `SELECT _publisher, date_trunc('month', date) m, sum(amount) FROM 'lga/spend-over-500' GROUP BY ALL ORDER BY 1,2`
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("rows=%d", n), func(b *testing.B) {
			w := benchWorker(b)
			if _, _, err := w.Load(context.Background(), "lga/spend-over-500", benchCols, newSpendSource(n)); err != nil {
				b.Fatal(err)
			}
			var took []time.Duration
			for b.Loop() {
				start := time.Now()
				res, err := w.Query(context.Background(), sql)
				if err != nil {
					b.Fatal(err)
				}
				took = append(took, time.Since(start))
				if len(res.Rows) != len(boroughs)*72 || res.Truncated {
					b.Fatalf("%d rows, truncated %v", len(res.Rows), res.Truncated)
				}
			}
			sort.Slice(took, func(i, j int) bool { return took[i] < took[j] })
			b.ReportMetric(float64(took[len(took)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(took[len(took)*9/10].Microseconds())/1000, "p90-ms")
			st := w.Stats()
			if st.PID > 0 {
				if data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", st.PID)); err == nil {
					for _, line := range strings.Split(string(data), "\n") {
						if strings.HasPrefix(line, "VmHWM:") {
							kb, _ := strconv.Atoi(strings.Fields(line)[1])
							b.ReportMetric(float64(kb)/1024, "worker-peak-RSS-MiB")
						}
					}
				}
			}
		})
	}
}

// BenchmarkWorkerSmallQuery is the fixed cost of the process boundary:
// SELECT 1 in the engine and through the worker.
func BenchmarkWorkerSmallQuery(b *testing.B) {
	b.Run("in-process", func(b *testing.B) {
		e := benchEngine(b)
		for b.Loop() {
			if _, err := e.Query(context.Background(), "SELECT 1"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("worker", func(b *testing.B) {
		w := benchWorker(b)
		for b.Loop() {
			if _, err := w.Query(context.Background(), "SELECT 1"); err != nil {
				b.Fatal(err)
			}
		}
	})
}
