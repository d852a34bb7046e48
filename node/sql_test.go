package node_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/harmony"
	"github.com/nii-uk/nii/node"
	"github.com/nii-uk/nii/node/api"
	"github.com/nii-uk/nii/node/nodetest"
	"github.com/nii-uk/nii/query"
)

// SQL through the real daemon API: tables, types, access, the sandbox's
// refusals and the worker's limits. See docs/query.md.

// sqlNode starts a node whose [query] is q.
func sqlNode(t testing.TB, org string, q node.QueryConfig) *testNode {
	t.Helper()
	cfg := nodetest.Config(t.TempDir(), org, nodetest.Options{Federation: "london"})
	cfg.Query = q
	return startNode(t, nodetest.Init(t, cfg))
}

// anon is a client of tn's API without the admin token.
func (tn *testNode) anon() *api.Client {
	c := *tn.client
	c.Token = ""
	return &c
}

var sharedSpendNames = []string{"cabinet-office", "darlington", "gateshead", "lambeth", "leeds", "manchester", "network-rail", "trafford"}

// mergeShared merges every shared spend file with its mapping in
// harmony/testdata, as the merge wiring will on a node.
func mergeShared(t testing.TB) *harmony.Merged {
	t.Helper()
	dir := sharedSpendDir(t)
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
	for _, name := range sharedSpendNames {
		mb, err := os.ReadFile(filepath.Join("..", "harmony", "testdata", "mappings", name+".map.toml"))
		if err != nil {
			t.Fatal(err)
		}
		m, err := harmony.ParseMapping(mb)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, name+".csv")
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		srcs = append(srcs, harmony.Source{
			Dataset: nii.DatasetID{Org: name, Name: "spend"}, Version: 1, Manifest: nii.HashOf(data), Mapping: m,
			Open: func(context.Context) (io.ReadCloser, error) { return os.Open(path) },
		})
	}
	merged, err := harmony.Merge(context.Background(), std, srcs, harmony.MergeOptions{CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	return merged
}

// staticViews is a MergedViews of fixed views.
type staticViews struct {
	mu    sync.Mutex
	views []node.MergedView
}

func (s *staticViews) MergedViews(context.Context) ([]node.MergedView, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]node.MergedView(nil), s.views...), nil
}

// ratOf parses a JSON number exactly.
func ratOf(t testing.TB, v any) *big.Rat {
	t.Helper()
	var s string
	switch x := v.(type) {
	case json.Number:
		s = x.String()
	case string:
		s = x
	default:
		t.Fatalf("want a number, got %T %v", v, v)
	}
	r, ok := new(big.Rat).SetString(s)
	if !ok {
		t.Fatalf("not a number: %q", s)
	}
	return r
}

// TestSQLIssueQueryOverMergedSpend runs the issue's query over the merged
// view of every shared spend file, through the daemon's API without the
// admin token, and checks each publisher's monthly totals against the
// merged rows summed here, in Go, and each publisher's total against the
// merge's own per-source total.
func TestSQLIssueQueryOverMergedSpend(t *testing.T) {
	merged := mergeShared(t)
	tn := sqlNode(t, "gla", node.QueryConfig{})
	tn.SetMergedViewsForTest(&staticViews{views: []node.MergedView{node.MergedViewForTest(merged, true)}})

	// The independent computation: every merged row's amount, by
	// publisher and month, summed exactly.
	idx := map[string]int{}
	for i, c := range merged.Columns {
		idx[c.Name] = i
	}
	want := map[string]*big.Rat{}
	if err := merged.EachRow(func(rec []string) error {
		amount := rec[idx["amount"]]
		if amount == "" {
			return nil
		}
		k := rec[idx[harmony.ColPublisher]] + " " + rec[idx["date"]][:7]
		if want[k] == nil {
			want[k] = new(big.Rat)
		}
		want[k].Add(want[k], ratOf(t, amount))
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	const issueSQL = `SELECT _publisher, date_trunc('month', date) m, sum(amount) FROM 'lga/spend-over-500' GROUP BY ALL ORDER BY 1,2`
	res, err := tn.anon().QueryJSON(context.Background(), issueSQL, 0, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Columns) != 3 || res.Columns[2].Type != "decimal" || res.Columns[1].Type != "datetime" || res.Truncated {
		t.Fatalf("columns %+v, truncated %v", res.Columns, res.Truncated)
	}
	got := map[string]*big.Rat{}
	perPublisher := map[string]*big.Rat{}
	for _, row := range res.Rows {
		pub, month := row[0].(string), row[1].(string)[:7]
		if row[2] == nil {
			continue
		}
		got[pub+" "+month] = ratOf(t, row[2])
		if perPublisher[pub] == nil {
			perPublisher[pub] = new(big.Rat)
		}
		perPublisher[pub].Add(perPublisher[pub], ratOf(t, row[2]))
	}
	if len(got) != len(want) {
		t.Errorf("SQL gave %d publisher-months, the rows have %d", len(got), len(want))
	}
	for k, w := range want {
		if g := got[k]; g == nil || g.Cmp(w) != 0 {
			t.Errorf("%s: SQL total %v, rows' total %s", k, g, w.FloatString(4))
		}
	}
	for _, s := range merged.Sources {
		w := ratOf(t, s.Amount.String())
		if g := perPublisher[s.Dataset.Org]; g == nil || g.Cmp(w) != 0 {
			t.Errorf("%s: SQL total %v, the merge's total %s", s.Dataset.Org, g, s.Amount)
		}
	}
	if len(perPublisher) != len(sharedSpendNames) {
		t.Errorf("publishers in SQL: %d, want %d", len(perPublisher), len(sharedSpendNames))
	}

	// The table is listed, loaded, typed from the standard.
	ts, err := tn.anon().QueryTables(context.Background(), false)
	if err != nil {
		t.Fatal(err)
	}
	var mt *api.QueryTable
	for i := range ts {
		if ts[i].Name == "lga/spend-over-500" {
			mt = &ts[i]
		}
	}
	if mt == nil || mt.Kind != "merged" || !mt.Loaded || mt.Rows == nil || *mt.Rows == 0 {
		t.Fatalf("tables: %+v", ts)
	}
	types := map[string]string{}
	for _, c := range mt.Columns {
		types[c.Name] = c.SQLType
	}
	if types["amount"] != "DECIMAL(18,4)" || types["date"] != "DATE" || types["_source_line"] != "BIGINT" || types["supplier_name"] != "VARCHAR" {
		t.Errorf("merged column types: %v", types)
	}
}

// TestSQLRefusedThroughAPI: what the sandbox refuses or cuts off comes
// back through the API with its kind and a reason a person can act on.
func TestSQLRefusedThroughAPI(t *testing.T) {
	tn := sqlNode(t, "greenwich", node.QueryConfig{Timeout: "1s"})
	tn.publish(t, "spend", spendCSV(50, nil), node.PublishRequest{Filename: "spend.csv"})
	ctx := context.Background()
	for _, c := range []struct {
		sql  string
		kind error
		says []string
	}{
		{`SELECT * FROM read_csv('/etc/passwd')`, nii.ErrRefused, []string{"cannot read or write files"}},
		{`COPY (SELECT 1) TO '/tmp/nii-sql-test.csv'`, nii.ErrRefused, []string{"COPY", "nothing can be written to or read from files"}},
		{`INSTALL httpfs`, nii.ErrRefused, []string{"INSTALL/LOAD", "extensions cannot be installed"}},
		{`ATTACH '/tmp/x.db' AS x`, nii.ErrRefused, []string{"ATTACH", "no other database"}},
		{`SELECT count(*) FROM range(1000000000000) a, range(1000) b`, query.ErrTimeout, []string{"1s time limit"}},
		{`SELECT * FROM 'nobody/nothing'`, nii.ErrInvalid, []string{"tables you can query", "'greenwich/spend'"}},
	} {
		for _, admin := range []bool{false, true} {
			cl := tn.anon()
			if admin {
				cl = tn.client
			}
			_, err := cl.QueryJSON(ctx, c.sql, 0, admin)
			var re *api.RemoteError
			if !errors.As(err, &re) || !errors.Is(err, kindOf(c.kind)) {
				t.Errorf("%s (admin %v): %v, want a remote error of kind %v", c.sql, admin, err, c.kind)
				continue
			}
			for _, s := range c.says {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("%s: %q does not say %q", c.sql, err, s)
				}
			}
		}
	}
	if _, err := os.Stat("/tmp/nii-sql-test.csv"); err == nil {
		t.Error("COPY wrote its file")
	}
	// The worker survived all of it.
	res, err := tn.anon().QueryJSON(ctx, `SELECT count(*) n FROM 'greenwich/spend'`, 0, false)
	if err != nil || fmt.Sprint(res.Rows[0][0]) != "50" {
		t.Fatalf("after the refusals: %v %v", res, err)
	}
}

// kindOf is the API error kind a query sentinel travels as.
func kindOf(err error) error {
	for _, k := range []error{nii.ErrRefused, nii.ErrInvalid, nii.ErrUnavailable, nii.ErrNotFound, nii.ErrUnauthorized} {
		if errors.Is(err, k) {
			return k
		}
	}
	return err
}

// TestSQLMemoryAndTimeBombsThroughAPI: the expressions the engine alone
// could not bound come back as errors that say which limit, and the next
// query runs.
func TestSQLMemoryAndTimeBombsThroughAPI(t *testing.T) {
	tn := sqlNode(t, "greenwich", node.QueryConfig{Timeout: "1s", MemoryLimit: "256MiB"})
	tn.publish(t, "spend", spendCSV(20, nil), node.PublishRequest{Filename: "spend.csv"})
	ctx := context.Background()
	bombs := []struct {
		sql  string
		says string
	}{
		{`SELECT length(repeat('x', 1000000000))`, "memory"},
		{`SELECT max(length(repeat('x', 2000000 + range))) FROM range(2000)`, "limit"}, // memory or time, whichever comes first
		{`SELECT levenshtein(repeat('a', 100000), repeat('b', 100000))`, "1s time limit"},
	}
	if raceEnabled {
		t.Log("race detector: the worker has no RLIMIT_AS, so only the time bomb is tried")
		bombs = bombs[2:]
	}
	for _, c := range bombs {
		start := time.Now()
		_, err := tn.anon().QueryJSON(ctx, c.sql, 0, false)
		if !errors.Is(err, nii.ErrUnavailable) || !strings.Contains(err.Error(), c.says) || !strings.Contains(err.Error(), "[query]") && !strings.Contains(err.Error(), "raise the limit") {
			t.Errorf("%s: %v, want an unavailable error about %s that says how to change the limit", c.sql, err, c.says)
		}
		t.Logf("%s: stopped after %s: %v", c.sql, time.Since(start).Round(time.Millisecond), err)
		res, err := tn.anon().QueryJSON(ctx, `SELECT count(*) FROM 'greenwich/spend'`, 0, false)
		if err != nil || fmt.Sprint(res.Rows[0][0]) != "20" {
			t.Fatalf("after %s: %v %v", c.sql, res, err)
		}
	}
	st := tn.SQLWorkerForTest("open").Stats()
	// The levenshtein query is always killed; the per-row bomb may be
	// too, when a busy machine lets the time limit come before memory.
	if st.Restarts < 1 || st.Generation != st.Restarts+1 || !strings.Contains(st.LastExit.Reason, "time limit") {
		t.Errorf("worker stats %+v: want a restart for each kill, the last after the time-limit kill", st)
	}
	if lim := tn.SQLWorkerForTest("open").Limits(); !raceEnabled && st.LastExit.PeakRSS > lim.AddressSpace {
		t.Errorf("killed worker's peak RSS %d MiB, above its %d MiB address-space limit", st.LastExit.PeakRSS>>20, lim.AddressSpace>>20)
	}
}

// TestSQLWorkerCrashRestarts: a worker that dies is replaced on the next
// query, which reloads the tables it names.
func TestSQLWorkerCrashRestarts(t *testing.T) {
	tn := sqlNode(t, "greenwich", node.QueryConfig{})
	tn.publish(t, "spend", spendCSV(30, nil), node.PublishRequest{Filename: "spend.csv"})
	ctx := context.Background()
	count := func() string {
		t.Helper()
		res, err := tn.anon().QueryJSON(ctx, `SELECT count(*) FROM "greenwich/spend"`, 0, false)
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprint(res.Rows[0][0])
	}
	if n := count(); n != "30" {
		t.Fatalf("count %s", n)
	}
	w := tn.SQLWorkerForTest("open")
	pid := w.Stats().PID
	p, err := os.FindProcess(pid)
	if err != nil {
		t.Fatal(err)
	}
	p.Kill() // as a crash would
	for deadline := time.Now().Add(10 * time.Second); w.Stats().PID == pid; {
		if time.Now().After(deadline) {
			t.Fatal("the daemon did not notice its worker die")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := count(); n != "30" {
		t.Fatalf("after the crash: count %s", n)
	}
	st := w.Stats()
	if st.PID == pid || st.Generation != 2 || st.Restarts != 1 {
		t.Fatalf("stats %+v after killing pid %d", st, pid)
	}
	t.Logf("first worker ended: %+v", st.LastExit)
}

// TestSQLRestrictedInvisible: a restricted dataset is neither listed to
// nor queryable by a request without the admin token; the operator sees
// and queries both.
func TestSQLRestrictedInvisible(t *testing.T) {
	tn := sqlNode(t, "greenwich", node.QueryConfig{})
	tn.publish(t, "spend", spendCSV(10, nil), node.PublishRequest{Filename: "spend.csv"})
	tn.publish(t, "salaries", spendCSV(7, nil), node.PublishRequest{Filename: "salaries.csv", Meta: nii.Metadata{Access: nii.AccessRestricted}})
	ctx := context.Background()
	names := func(admin bool) []string {
		cl := tn.anon()
		if admin {
			cl = tn.client
		}
		ts, err := cl.QueryTables(ctx, admin)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, x := range ts {
			out = append(out, x.Name)
		}
		sort.Strings(out)
		return out
	}
	if got := strings.Join(names(false), " "); got != "greenwich/spend greenwich/spend@1" {
		t.Errorf("public tables: %s", got)
	}
	if got := strings.Join(names(true), " "); got != "greenwich/salaries greenwich/salaries@1 greenwich/spend greenwich/spend@1" {
		t.Errorf("admin tables: %s", got)
	}
	for _, q := range []string{
		`SELECT count(*) FROM 'greenwich/salaries'`,
		`SELECT count(*) FROM "greenwich/salaries@1"`,
		`SELECT * FROM query('SELECT count(*) FROM ''greenwich/salaries''')`,
	} {
		_, err := tn.anon().QueryJSON(ctx, q, 0, false)
		if !errors.Is(err, nii.ErrRefused) || !strings.Contains(err.Error(), "restricted") {
			t.Errorf("public %s: %v", q, err)
		}
	}
	// Even when the name does not appear as a quoted token the open
	// worker holds no restricted rows to find.
	_, err := tn.anon().QueryJSON(ctx, `SELECT count(*) FROM query_table('greenwich/' || 'salaries')`, 0, false)
	if err == nil {
		t.Error("a public query reached the restricted table by a built name")
	}
	res, err := tn.client.QueryJSON(ctx, `SELECT (SELECT count(*) FROM 'greenwich/salaries') s, (SELECT count(*) FROM 'greenwich/spend') p`, 0, true)
	if err != nil || fmt.Sprint(res.Rows[0]) != "[7 10]" {
		t.Fatalf("admin: %v %v", res, err)
	}
}

// TestSQLDatasetTypesAndVersions: a dataset's columns keep the profiled
// type only where every cell parses; a newer version replaces 'org/name'
// and 'org/name@N' stays as it was.
func TestSQLDatasetTypesAndVersions(t *testing.T) {
	tn := sqlNode(t, "greenwich", node.QueryConfig{})
	var b strings.Builder
	b.WriteString("Date,Supplier,Amount,Ref\n")
	for i := range 200 {
		ref := fmt.Sprint(1000 + i)
		if i == 150 {
			ref = "n/a" // one cell in 200: the whole-file profiler says string
		}
		fmt.Fprintf(&b, "%02d/06/2012,Supplier %d,\"£1,%03d.50\",%s\n", i%28+1, i%7, i, ref)
	}
	v := tn.publish(t, "spend", []byte(b.String()), node.PublishRequest{Filename: "spend.csv"})
	// Since issue 12 the profiler types every row, so the one "n/a" makes
	// Ref a string column up front and SQL needs no fallback to text (the
	// fallback, sqlload.go's note, remains for profiles made otherwise).
	refType := ""
	for _, c := range v.Meta.Table.Columns {
		if c.Name == "Ref" {
			refType = c.Type
		}
	}
	if refType != "string" {
		t.Fatalf("the profiler typed Ref as %q with one \"n/a\" in 200 cells, want string", refType)
	}
	ctx := context.Background()
	res, err := tn.anon().QueryJSON(ctx, `SELECT sum(Amount) total, min(Date) earliest, count(Ref) refs, any_value(typeof(Amount)) ta, any_value(typeof(Date)) td, any_value(typeof(Ref)) tr, max(Ref) FILTER (WHERE Ref = 'n/a') bad FROM 'greenwich/spend'`, 0, false)
	if err != nil {
		t.Fatal(err)
	}
	// sum of 1000.50 + i for i < 200
	if got := fmt.Sprint(res.Rows[0]); got != "[220000.00 2012-06-01 200 DECIMAL(18,2) DATE VARCHAR n/a]" {
		t.Errorf("typed dataset: %s", got)
	}
	ts, err := tn.anon().QueryTables(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range ts {
		if x.Name == "greenwich/spend" && (strings.Contains(strings.Join(x.Notes, "\n"), "loaded as text") || !strings.Contains(strings.Join(x.Notes, "\n"), "checked against every cell")) {
			t.Errorf("notes: %q", x.Notes)
		}
	}
	tn.publish(t, "spend", spendCSV(5, nil), node.PublishRequest{Filename: "spend.csv"})
	res, err = tn.anon().QueryJSON(ctx, `SELECT (SELECT count(*) FROM 'greenwich/spend') latest, (SELECT count(*) FROM 'greenwich/spend@1') v1, (SELECT count(*) FROM 'greenwich/spend@2') v2`, 0, false)
	if err != nil || fmt.Sprint(res.Rows[0]) != "[5 200 5]" {
		t.Fatalf("versions: %v %v", res, err)
	}
}

// TestSQLFormatsAndCaps: CSV and table output, max_rows, and a row cap
// beyond the node's refused with the key that sets it.
func TestSQLFormatsAndCaps(t *testing.T) {
	tn := sqlNode(t, "greenwich", node.QueryConfig{MaxRows: 100})
	ctx := context.Background()
	var out strings.Builder
	notice, err := tn.anon().Query(ctx, `SELECT range AS n, 'a,b' AS s FROM range(3)`, api.FormatCSV, 2, false, &out)
	if err != nil || out.String() != "n,s\n0,\"a,b\"\n1,\"a,b\"\n" || !strings.Contains(notice, "first 2 rows") {
		t.Errorf("csv: %q, notice %q, %v", out.String(), notice, err)
	}
	out.Reset()
	if _, err := tn.anon().Query(ctx, `SELECT 42 AS answer`, api.FormatTable, 0, false, &out); err != nil || out.String() != "answer\n------\n    42\n(1 row)\n" {
		t.Errorf("table: %q %v", out.String(), err)
	}
	res, err := tn.anon().QueryJSON(ctx, `SELECT range FROM range(1000)`, 0, false)
	if err != nil || len(res.Rows) != 100 || !res.Truncated || !strings.Contains(res.Notice, "row cap") {
		t.Errorf("row cap: %d rows, %v, %q, %v", len(res.Rows), res.Truncated, res.Notice, err)
	}
	_, err = tn.anon().QueryJSON(ctx, `SELECT 1`, 500, false)
	if !errors.Is(err, nii.ErrInvalid) || !strings.Contains(err.Error(), "[query] max_rows") {
		t.Errorf("max_rows past the cap: %v", err)
	}
}

// TestSQLAdminOnly: with [query] admin_only, a request without the token
// is refused and says why.
func TestSQLAdminOnly(t *testing.T) {
	tn := sqlNode(t, "greenwich", node.QueryConfig{AdminOnly: true})
	ctx := context.Background()
	if _, err := tn.anon().QueryJSON(ctx, `SELECT 1`, 0, false); !errors.Is(err, nii.ErrUnauthorized) || !strings.Contains(err.Error(), "admin_only") {
		t.Errorf("public query: %v", err)
	}
	if _, err := tn.client.QueryJSON(ctx, `SELECT 1`, 0, true); err != nil {
		t.Errorf("admin query: %v", err)
	}
}

// TestSQLWorkerCrashUnderAQueryRetries: a worker that dies under a query,
// for a reason that is not the query's own limits (here a SIGKILL, as a
// crash would be), costs the query nothing: it runs again, once, on the
// next worker, and its answer is the right one.
func TestSQLWorkerCrashUnderAQueryRetries(t *testing.T) {
	tn := sqlNode(t, "greenwich", node.QueryConfig{Timeout: "60s"})
	tn.publish(t, "spend", spendCSV(30, nil), node.PublishRequest{Filename: "spend.csv"})
	ctx := context.Background()
	// Long enough to be killed in the middle of on any machine; its sum
	// is known in closed form.
	const rows = 200_000_000
	// It names a table, so the retry must load it into the next worker.
	q := fmt.Sprintf(`SELECT count(*) AS n, sum(range %% 7) + (SELECT count(*) FROM "greenwich/spend") AS s FROM range(%d)`, int64(rows))
	if _, err := tn.anon().QueryJSON(ctx, `SELECT count(*) FROM "greenwich/spend"`, 0, false); err != nil {
		t.Fatal(err)
	}
	w := tn.SQLWorkerForTest("open")
	pid := w.Stats().PID
	cpu := func() int64 {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return -1
		}
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
		var u, s int64
		fmt.Sscan(f[11], &u)
		fmt.Sscan(f[12], &s)
		return u + s
	}
	base := cpu()
	type answer struct {
		res *api.QueryResult
		err error
	}
	done := make(chan answer, 1)
	start := time.Now()
	go func() {
		res, err := tn.anon().QueryJSON(ctx, q, 0, false)
		done <- answer{res, err}
	}()
	// Kill once the worker is busy with the query (a tenth of a second of
	// its CPU), not at a guessed instant.
	for deadline := time.Now().Add(30 * time.Second); cpu() < base+10; {
		if time.Now().After(deadline) {
			t.Fatal("the worker never got busy with the query")
		}
		time.Sleep(5 * time.Millisecond)
	}
	p, err := os.FindProcess(pid)
	if err != nil {
		t.Fatal(err)
	}
	p.Kill()
	a := <-done
	if a.err != nil {
		t.Fatalf("the query failed when its worker was killed under it: %v", a.err)
	}
	got := fmt.Sprint(a.res.Rows[0])
	wantS := 30 + int64(rows/7)*21 + func() int64 {
		var r int64
		for i := int64(0); i < rows%7; i++ {
			r += i
		}
		return r
	}()
	if got != fmt.Sprintf("[%d %d]", int64(rows), wantS) {
		t.Fatalf("answer %s, want [%d %d]", got, int64(rows), wantS)
	}
	st := w.Stats()
	if st.PID == pid || st.PID == 0 || st.Restarts != 1 {
		t.Fatalf("stats %+v: want the killed worker (pid %d) replaced once, by one now running", st, pid)
	}
	t.Logf("answered in %s, on the worker after pid %d (%s)", time.Since(start).Round(time.Millisecond), pid, st.LastExit.Reason)
}
