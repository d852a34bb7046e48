package web_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/parquet-go/parquet-go"

	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/harmony"
	"github.com/nii-uk/nii/internal/spenddata"
	"github.com/nii-uk/nii/node"
	"github.com/nii-uk/nii/node/api"
	"github.com/nii-uk/nii/node/nodetest"
)

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// harmonyFed is lga (the spend standard), lambeth and trafford (their real
// spend files and their own mappings); the pages are lambeth's.
func harmonyFed(t *testing.T) (lambeth *node.Node) {
	t.Helper()
	orgs := []string{"lga", "lambeth", "trafford"}
	nodes := nodetest.Federation(t, len(orgs), nodetest.Options{Configure: func(i int, cfg *node.Config) { cfg.Org = orgs[i] }})
	ctx := context.Background()
	std, err := harmony.SampleStandard(harmony.LGASpend)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := nodes[0].Publish(ctx, bytes.NewReader(std), node.PublishRequest{Name: "spend-over-500", Filename: "lga-spend.schema.json",
		Meta: nii.Metadata{Title: "Spend over £500 (LGA/LGTC 2015)", Kind: nii.KindStandard}}); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes[1:] {
		org := n.Config().Org
		if _, err := n.Publish(ctx, bytes.NewReader(readFile(t, spenddata.Path(org))), node.PublishRequest{Name: "spend", Filename: org + "-spend.csv",
			Meta: nii.Metadata{Title: org + " spend", Licence: "OGL-UK-3.0", Access: nii.AccessOpen}}); err != nil {
			t.Fatal(err)
		}
	}
	nodetest.WaitFor(t, 30*time.Second, "every node lists the standard and both files", func() bool {
		for _, n := range nodes[1:] {
			for _, id := range []string{"lga/spend-over-500", "lambeth/spend", "trafford/spend"} {
				if _, err := n.LookupDataset(nii.DatasetID{Org: strings.Split(id, "/")[0], Name: strings.Split(id, "/")[1]}); err != nil {
					return false
				}
			}
		}
		return true
	})
	for _, n := range nodes[1:] {
		org := n.Config().Org
		m := string(readFile(t, filepath.Join("..", "harmony", "testdata", "mappings", org+".map.toml")))
		if _, err := n.PublishMapping(ctx, api.MappingPublishRequest{Dataset: org + "/spend", Mapping: m}); err != nil {
			t.Fatalf("%s mapping: %v", org, err)
		}
	}
	lambeth = nodes[1]
	nodetest.WaitFor(t, 30*time.Second, "lambeth sees both mappings", func() bool {
		stds, err := lambeth.Standards()
		if err != nil || len(stds) != 1 || len(stds[0].Sources) != 2 {
			return false
		}
		for _, s := range stds[0].Sources {
			if s.Mapping == nil {
				return false
			}
		}
		return true
	})
	return lambeth
}

// TestHarmonyPages opens a standard's coverage picture, filters the merged
// view, follows a row to its signed source line, downloads every row,
// runs a SQL query and gets its chart, and shows the federation, in
// chromium.
func TestHarmonyPages(t *testing.T) {
	tb := newTab(t)
	lambeth := harmonyFed(t)
	base := lambeth.APIAddr()

	tb.open(base + "/standards")
	tb.click(`#standards a[href="/standards/lga/spend-over-500"]`)
	if n := tb.count("#coverage .nii-cell"); n < 2 {
		t.Fatalf("coverage heat map has %d cells", n)
	}
	cov := value(tb, chromedp.TextContent(chromedp.CSS("#coverage-table")))
	for _, want := range []string{"lambeth", "trafford", "2012-06"} {
		if !strings.Contains(cov, want) {
			t.Errorf("coverage lacks %q", want)
		}
	}
	if got := tb.text("#sources"); !strings.Contains(got, "lambeth/spend") || !strings.Contains(got, "trafford/spend") {
		t.Errorf("who conforms: %q", got)
	}
	tb.check("standard")

	// The merged view: all rows, then lambeth's only, then one month.
	tb.click("#explore")
	all := countIn(t, tb.text("#merged-count"), "of ", " matching")
	tb.run(setSelect("#mpub", "lambeth"))
	tb.click("#apply")
	lam := countIn(t, tb.text("#merged-count"), "of ", " matching")
	if lam <= 0 || lam >= all {
		t.Fatalf("lambeth's rows %d of %d", lam, all)
	}
	pubs := column(tb, "#merged", "_publisher")
	if len(pubs) == 0 {
		t.Fatal("the merged table shows no _publisher column")
	}
	for _, p := range pubs {
		if p != "lambeth" {
			t.Fatalf("filtered by lambeth, a row of %q", p)
		}
	}
	if got := tb.attr("#download-all", "href"); !strings.Contains(got, "publisher=lambeth") || !strings.Contains(tb.text("#download-all"), "Download all "+strconv.Itoa(lam)+" rows") {
		t.Errorf("download all: %s %q", got, tb.text("#download-all"))
	}
	resp, body := get(t, base+tb.attr("#download-all", "href"), "")
	recs, err := csv.NewReader(bytes.NewReader(body)).ReadAll()
	if err != nil || resp.StatusCode != 200 || len(recs) != lam+1 {
		t.Errorf("download all: %d, %d records (%v), want %d and a header", resp.StatusCode, len(recs), err, lam)
	}
	tb.check("merged")

	// Sort by amount, descending, and follow the top row to its source.
	u := tb.location()
	pu, _ := url.Parse(u)
	q := pu.Query()
	q.Set("sort", "amount")
	q.Set("order", "desc")
	tb.open(base + pu.Path + "?" + q.Encode())
	amounts := column(tb, "#merged", "amount")
	if len(amounts) < 2 {
		t.Fatalf("the sorted table shows %d amounts", len(amounts))
	}
	for i := 1; i < len(amounts); i++ {
		a, _ := strconv.ParseFloat(amounts[i-1], 64)
		b, _ := strconv.ParseFloat(amounts[i], 64)
		if a < b {
			t.Fatalf("sorted descending, %v before %v", a, b)
		}
	}
	label := tb.text("#merged tbody tr:first-child a.nii-source")
	tb.click("#merged tbody tr:first-child a.nii-source")
	if got := tb.text("#source-title"); !strings.HasPrefix(label, "lambeth/spend@1 line ") || !strings.Contains(got, strings.TrimPrefix(label, "lambeth/spend@1 ")) {
		t.Errorf("source page %q for %q", got, label)
	}
	cd, err := lambeth.LookupDataset(nii.DatasetID{Org: "lambeth", Name: "spend"})
	if err != nil {
		t.Fatal(err)
	}
	if got := tb.text("#source-manifest"); got != cd.Manifest.String() {
		t.Errorf("source manifest %s, want %s", got, cd.Manifest)
	}
	if got := tb.text("#source-signer"); got != string(cd.Publisher) {
		t.Errorf("signer %s, want %s", got, cd.Publisher)
	}
	// The raw line holds the top amount (Lambeth writes 1,234.56 style
	// amounts; compare digits).
	line, _ := strconv.Atoi(label[strings.LastIndex(label, " ")+1:])
	raw := strings.Split(string(readFile(t, spenddata.Path("lambeth"))), "\n")[line-1]
	if top := strings.TrimSuffix(strings.TrimSuffix(amounts[0], "0"), "."); !strings.Contains(strings.ReplaceAll(raw, ",", ""), strings.Split(top, ".")[0]) {
		t.Errorf("source line %d %q does not hold the row's amount %s", line, raw, amounts[0])
	}
	if got := tb.text("#source-cells"); !strings.Contains(got, strings.Split(raw, ",")[0]) {
		t.Errorf("source cells %q lack the line's first cell %q", got, strings.Split(raw, ",")[0])
	}
	tb.check("source-line")

	// SQL with a chart.
	tb.open(base + "/query")
	tb.run(setValue("#sql", `SELECT _publisher AS publisher, count(*) AS rows FROM 'lga/spend-over-500' GROUP BY 1 ORDER BY 1`))
	tb.click("#run")
	if n := tb.count("#chart .nii-bar"); n != 2 {
		t.Errorf("chart has %d bars, want 2", n)
	}
	if got := tb.text("#result"); !strings.Contains(got, "lambeth") || !strings.Contains(got, strconv.Itoa(lam)) {
		t.Errorf("result %q lacks lambeth's %d rows", got, lam)
	}
	tb.check("query")
	// A write is refused by the sandbox, in words.
	resp, body = get(t, base+"/query?sql="+url.QueryEscape("DROP TABLE x"), browserAccept)
	if resp.StatusCode < 400 || !strings.Contains(string(body), "query-error") {
		t.Errorf("DROP TABLE: %d", resp.StatusCode)
	}

	checkStandardisedDownloads(t, tb, lambeth, base)

	tb.open(base + "/federation")
	if got := tb.text("#members"); !strings.Contains(got, "lga") || !strings.Contains(got, "trafford") || !strings.Contains(got, "alive") {
		t.Errorf("members: %q", got)
	}
	tb.check("federation")
}

// column returns a table's cells under the header named name.
func column(tb *tab, table, name string) []string {
	tb.t.Helper()
	return eval[[]string](tb, fmt.Sprintf(`(() => { const i = [...document.querySelectorAll("%[1]s thead th")].findIndex(th => th.textContent === %[2]q);
		return i < 0 ? [] : [...document.querySelectorAll("%[1]s tbody tr")].map(tr => tr.children[i].textContent) })()`, table, name))
}

// countIn reads the number between before and after in s.
func countIn(t *testing.T, s, before, after string) int {
	t.Helper()
	_, rest, ok := strings.Cut(s, before)
	num, _, ok2 := strings.Cut(rest, after)
	n, err := strconv.Atoi(strings.TrimSpace(num))
	if !ok || !ok2 || err != nil {
		t.Fatalf("no count in %q", s)
	}
	return n
}

// checkStandardisedDownloads opens lambeth's spend page and downloads its
// standardised rows in each format: the file names the page gives, and
// the bytes against 'nii merge's table of the standard, cut to lambeth's
// rows (CSV compared record by record; Parquet read back with
// parquet-go, NDJSON decoded, both compared with those records).
func checkStandardisedDownloads(t *testing.T, tb *tab, lambeth *node.Node, base string) {
	t.Helper()
	tb.open(base + "/datasets/lambeth/spend")
	if n := tb.count(".nii-std-download"); n != 3 {
		t.Fatalf("the dataset page offers %d standardised downloads, want CSV, Parquet and NDJSON", n)
	}
	if got := tb.text(".nii-standardised"); !strings.Contains(got, "lambeth-spend-v1.lga-spend-over-500.csv") {
		t.Errorf("standardised downloads: %q", got)
	}
	tb.check("dataset-standardised")
	out, err := lambeth.Merge(context.Background(), nii.Ref{Dataset: nii.DatasetID{Org: "lga", Name: "spend-over-500"}}, node.MergeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var whole bytes.Buffer
	if err := out.Merged.WriteCSV(&whole, harmony.CSVOptions{}); err != nil {
		t.Fatal(err)
	}
	all, err := csv.NewReader(&whole).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	header := all[0]
	iPub := slices.Index(header, "_publisher")
	want := [][]string{header}
	for _, rec := range all[1:] {
		if rec[iPub] == "lambeth" {
			want = append(want, rec)
		}
	}
	if len(want) < 2 {
		t.Fatal("the merge has no lambeth rows")
	}
	fetch := func(format string) ([]byte, string) {
		t.Helper()
		sel := `.nii-std-download[data-format="` + format + `"]`
		resp, body := get(t, base+tb.attr(sel, "href"), "")
		if resp.StatusCode != 200 || resp.Trailer.Get("Nii-Error") != "" {
			t.Fatalf("%s download: %d %s", format, resp.StatusCode, resp.Trailer.Get("Nii-Error"))
		}
		checkDisposition(t, resp, tb.attr(sel, "download"))
		return body, tb.attr(sel, "download")
	}
	body, name := fetch("csv")
	if name != "lambeth-spend-v1.lga-spend-over-500.csv" {
		t.Errorf("CSV file name %q", name)
	}
	got, err := csv.NewReader(bytes.NewReader(body)).ReadAll()
	if err != nil || !slices.EqualFunc(got, want, slices.Equal) {
		t.Errorf("standardised CSV: %d records (%v), nii merge's lambeth rows: %d", len(got), err, len(want))
	}
	// Parquet, read back by an independent reader.
	body, name = fetch("parquet")
	if !strings.HasSuffix(name, ".parquet") {
		t.Errorf("Parquet file name %q", name)
	}
	pf, err := parquet.OpenFile(bytes.NewReader(body), int64(len(body)))
	if err != nil {
		t.Fatalf("the Parquet download does not open: %v", err)
	}
	if pf.NumRows() != int64(len(want)-1) {
		t.Errorf("Parquet has %d rows, want %d", pf.NumRows(), len(want)-1)
	}
	leaf := map[string]int{}
	for i, f := range pf.Schema().Fields() {
		leaf[f.Name()] = i
	}
	iLine, iSup := slices.Index(header, "_source_line"), slices.Index(header, "supplier_name")
	k := 0
	for _, rg := range pf.RowGroups() {
		rr := rg.Rows()
		buf := make([]parquet.Row, 256)
		for {
			n, err := rr.ReadRows(buf)
			for _, row := range buf[:n] {
				k++
				if k >= len(want) {
					t.Fatalf("Parquet has more rows than the %d lambeth rows", len(want)-1)
				}
				cell := map[int]parquet.Value{}
				for _, v := range row {
					cell[v.Column()] = v
				}
				w := want[k]
				if cell[leaf["_source_line"]].String() != w[iLine] || cell[leaf["supplier_name"]].String() != w[iSup] || cell[leaf["_publisher"]].String() != "lambeth" {
					t.Fatalf("Parquet row %d: line %s supplier %s; the CSV's: %v", k, cell[leaf["_source_line"]], cell[leaf["supplier_name"]], w)
				}
			}
			if err != nil {
				break
			}
		}
		rr.Close()
	}
	if k != len(want)-1 {
		t.Errorf("read %d Parquet rows, want %d", k, len(want)-1)
	}
	// NDJSON: one object a row, the CSV's values.
	body, _ = fetch("ndjson")
	lines := strings.Split(strings.TrimSuffix(string(body), "\n"), "\n")
	if len(lines) != len(want)-1 {
		t.Fatalf("NDJSON has %d lines, want %d", len(lines), len(want)-1)
	}
	for i, l := range lines {
		var obj map[string]any
		if err := json.Unmarshal([]byte(l), &obj); err != nil {
			t.Fatalf("NDJSON line %d: %v", i+1, err)
		}
		if fmt.Sprint(obj["_source_line"]) != want[i+1][iLine] || obj["_dataset"] != "lambeth/spend" {
			t.Fatalf("NDJSON line %d %v; the CSV's %v", i+1, obj, want[i+1])
		}
	}
}
