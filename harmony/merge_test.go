package harmony

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/parquet-go/parquet-go"

	"github.com/nii-uk/nii"
)

// knownFile is what the independent reader knows about one shared file,
// written without the engine: where the data starts and ends, and which
// cells hold the amount and the supplier.
type knownFile struct {
	skip     int    // records above the first data row (preamble + header)
	footer   string // first cell value that ends the data
	amount   func(rec []string) string
	supplier func(rec []string) string
}

func col(i int) func([]string) string { return func(r []string) string { return r[i] } }

var lambethDate = regexp.MustCompile(`\d\d/\d\d/\d{4}`)

var knownFiles = map[string]knownFile{
	"cabinet-office": {skip: 1, amount: col(8), supplier: col(6)},
	"darlington":     {skip: 1, amount: col(7), supplier: col(4)},
	"gateshead":      {skip: 1, amount: col(7), supplier: col(6)},
	"leeds":          {skip: 1, amount: col(9), supplier: col(11)},
	"manchester":     {skip: 1, amount: col(5), supplier: col(6)},
	"network-rail":   {skip: 1, footer: "Grand Total", amount: col(3), supplier: col(0)},
	"trafford":       {skip: 1, amount: col(5), supplier: col(6)},
	// Lambeth: 6 cells, or 5 where the date swallowed the amount
	// ("25/06/2012900") or the supplier swallowed the date ("Catch2212/06/2012"),
	// or 4 where both happened.
	"lambeth": {skip: 10,
		amount: func(r []string) string {
			switch len(r) {
			case 6:
				return r[4]
			case 5:
				if len(r[3]) > 10 && lambethDate.MatchString(r[3][:10]) {
					return r[3][10:]
				}
				return r[3]
			}
			loc := lambethDate.FindAllStringIndex(r[2], -1)
			return r[2][loc[len(loc)-1][1]:]
		},
		supplier: func(r []string) string {
			if len(r) == 6 || (len(r) == 5 && len(r[3]) > 10) {
				return r[2]
			}
			loc := lambethDate.FindAllStringIndex(r[2], -1)
			return r[2][:loc[len(loc)-1][0]]
		}},
}

// independentRecords reads a shared file with encoding/csv alone and returns
// its data records by line.
func independentRecords(t testing.TB, path string, k knownFile) (lines []int, recs map[int][]string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b = bytes.TrimPrefix(b, []byte("\xef\xbb\xbf"))
	r := csv.NewReader(bytes.NewReader(b))
	r.FieldsPerRecord = -1
	recs = map[int][]string{}
	for n := 0; ; n++ {
		rec, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if n < k.skip {
			continue
		}
		if k.footer != "" && rec[0] == k.footer {
			break
		}
		line, _ := r.FieldPos(0)
		lines = append(lines, line)
		recs[line] = append([]string(nil), rec...)
	}
	return lines, recs
}

// independentPence sums a file's amounts in pence with strconv.
func independentPence(t testing.TB, recs map[int][]string, k knownFile) int64 {
	t.Helper()
	var sum int64
	for line, rec := range recs {
		s := strings.ReplaceAll(strings.TrimSpace(k.amount(rec)), ",", "")
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			t.Fatalf("line %d: amount %q: %v", line, s, err)
		}
		sum += int64(math.Round(f * 100))
	}
	return sum
}

func fileSource(t testing.TB, dir, name string, version uint64, m *Mapping) Source {
	path := filepath.Join(dir, name+".csv")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return Source{
		Dataset:  nii.DatasetID{Org: name, Name: "spend"},
		Version:  version,
		Manifest: nii.HashOf(b), // stands in for the version's manifest hash
		Open:     func(context.Context) (io.ReadCloser, error) { return os.Open(path) },
		Mapping:  m,
	}
}

func sharedSources(t testing.TB) []Source {
	dir := sharedDir(t)
	var srcs []Source
	for _, name := range sharedFiles {
		srcs = append(srcs, fileSource(t, dir, name, 1, loadMapping(t, name)))
	}
	return srcs
}

// TestMergeSharedFiles checks each merged total against an independent
// reader of the raw file (encoding/csv and strconv, below). The second
// independent check, DuckDB SQL with explicit casts over the raw files, is
// query's TestMergedTotalsMatchDuckDBOverRawFiles: harmony does not link
// DuckDB.
func TestMergeSharedFiles(t *testing.T) {
	dir := sharedDir(t)
	std := lgaStandard(t)
	merged, err := Merge(context.Background(), std, sharedSources(t), MergeOptions{CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if merged.Remapped != len(sharedFiles) || len(merged.Missing) != 0 {
		t.Fatalf("remapped %d, missing %v", merged.Remapped, merged.Missing)
	}
	var rejects bytes.Buffer
	if err := merged.WriteRejectsCSV(&rejects, CSVOptions{}); err != nil {
		t.Fatal(err)
	}
	rejRows, err := csv.NewReader(&rejects).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rejRows[1:] {
		if r[4] == "" || r[8] == "" {
			t.Errorf("reject without a line or a reason: %q", r)
		}
	}
	for _, s := range merged.Sources {
		name := s.Dataset.Org
		k := knownFiles[name]
		lines, recs := independentRecords(t, filepath.Join(dir, name+".csv"), k)
		rep := s.Report
		if rep.Accepted+rep.Rejected != int64(len(lines)) {
			t.Errorf("%s: accepted %d + rejected %d, the file has %d data rows", name, rep.Accepted, rep.Rejected, len(lines))
		}
		if rep.Rejected != 0 {
			t.Errorf("%s: %d rows rejected: %v", name, rep.Rejected, rep.Failures)
		}
		want := independentPence(t, recs, k)
		if got := int64(s.Amount) / 100; got != want || int64(s.Amount)%100 != 0 {
			t.Errorf("%s: merged total %s, independent total %d.%02d", name, s.Amount, want/100, want%100)
		}
	}
	fit := merged.Fitness()
	if len(fit.Sources) != len(sharedFiles) || len(fit.Coverage) == 0 {
		t.Fatalf("fitness: %+v", fit)
	}
	for _, c := range fit.Coverage {
		if c.Month == "" {
			t.Errorf("coverage: %s has rows with no month", c.Publisher)
		}
	}
	lin := merged.Lineage()
	if len(lin.Inputs) != len(sharedFiles) || lin.Standard.Hash != std.Hash || lin.Standard.Ref != "lga/spend-over-500@1" {
		t.Fatalf("lineage: %+v", lin)
	}
}

// TestMergeProvenance reads the cited line of the cited source for sampled
// merged rows and checks it holds the raw values the row was mapped from.
func TestMergeProvenance(t *testing.T) {
	dir := sharedDir(t)
	std := lgaStandard(t)
	srcs := sharedSources(t)
	byManifest := map[string]string{}
	for _, s := range srcs {
		byManifest[s.Manifest.String()] = s.Dataset.Org
	}
	merged, err := Merge(context.Background(), std, srcs, MergeOptions{CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := merged.WriteCSV(&out, CSVOptions{BOM: true}); err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(out.Bytes(), []byte("\ufeff")) {
		t.Fatal("no byte-order mark")
	}
	rows, err := csv.NewReader(bytes.NewReader(out.Bytes()[3:])).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	idx := map[string]int{}
	for i, c := range rows[0] {
		idx[c] = i
	}
	files := map[string]map[int][]string{}
	checked := 0
	for i := 1; i < len(rows); i += 37 {
		row := rows[i]
		name := byManifest[row[idx[ColManifest]]]
		if name == "" || row[idx[ColPublisher]] != name || row[idx[ColDataset]] != name+"/spend" {
			t.Fatalf("row %d cites %q / %q / %q", i, row[idx[ColPublisher]], row[idx[ColDataset]], row[idx[ColManifest]])
		}
		k := knownFiles[name]
		if files[name] == nil {
			_, files[name] = independentRecords(t, filepath.Join(dir, name+".csv"), k)
		}
		line, _ := strconv.Atoi(row[idx[ColLine]])
		rec, ok := files[name][line]
		if !ok {
			t.Fatalf("%s: merged row cites line %d, which is not a data row", name, line)
		}
		if got, want := row[idx["supplier_name"]], strings.TrimSpace(k.supplier(rec)); got != want {
			t.Errorf("%s line %d: supplier %q, the source says %q", name, line, got, want)
		}
		amt, _ := strconv.ParseFloat(strings.ReplaceAll(strings.TrimSpace(k.amount(rec)), ",", ""), 64)
		if got, _ := strconv.ParseFloat(row[idx["amount"]], 64); math.Abs(got-amt) > 0.001 {
			t.Errorf("%s line %d: amount %v, the source says %v", name, line, got, amt)
		}
		if row[idx[ColMapping]] != loadMapping(t, name).Hash.String() {
			t.Errorf("%s: row cites mapping %s", name, row[idx[ColMapping]])
		}
		checked++
	}
	if checked < 100 {
		t.Fatalf("only %d rows sampled", checked)
	}
}

// TestMergeIncremental changes one source and checks the re-merge maps only
// it, and the other partitions' bytes in the merged CSV are unchanged.
func TestMergeIncremental(t *testing.T) {
	dir := sharedDir(t)
	std := lgaStandard(t)
	cache := t.TempDir()
	srcs := sharedSources(t)
	first, err := Merge(context.Background(), std, srcs, MergeOptions{CacheDir: cache})
	if err != nil {
		t.Fatal(err)
	}
	var a bytes.Buffer
	if err := first.WriteCSV(&a, CSVOptions{}); err != nil {
		t.Fatal(err)
	}

	// Leeds publishes version 2: its first 1,500 rows.
	b, err := os.ReadFile(filepath.Join(dir, "leeds.csv"))
	if err != nil {
		t.Fatal(err)
	}
	lines := bytes.SplitAfter(b, []byte("\n"))
	v2 := bytes.Join(lines[:1501], nil)
	for i := range srcs {
		if srcs[i].Dataset.Org == "leeds" {
			srcs[i].Version = 2
			srcs[i].Manifest = nii.HashOf(v2)
			srcs[i].Open = func(context.Context) (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(v2)), nil }
		}
	}
	second, err := Merge(context.Background(), std, srcs, MergeOptions{CacheDir: cache})
	if err != nil {
		t.Fatal(err)
	}
	if second.Remapped != 1 {
		t.Fatalf("re-merge mapped %d sources, want 1", second.Remapped)
	}
	var bb bytes.Buffer
	if err := second.WriteCSV(&bb, CSVOptions{}); err != nil {
		t.Fatal(err)
	}
	headerLen := int64(bytes.IndexByte(a.Bytes(), '\n') + 1)
	offsets := func(m *Merged) map[string][2]int64 {
		out := map[string][2]int64{}
		off := headerLen
		for _, s := range m.Sources {
			out[s.Dataset.Org] = [2]int64{off, off + s.PartitionBytes}
			off += s.PartitionBytes
		}
		return out
	}
	oa, ob := offsets(first), offsets(second)
	for _, s := range second.Sources {
		name := s.Dataset.Org
		if name == "leeds" {
			if !s.FromCache && s.Report.DataRows != 1500 {
				t.Errorf("leeds v2: %d rows", s.Report.DataRows)
			}
			continue
		}
		if !s.FromCache {
			t.Errorf("%s was re-mapped", name)
		}
		ra, rb := oa[name], ob[name]
		if !bytes.Equal(a.Bytes()[ra[0]:ra[1]], bb.Bytes()[rb[0]:rb[1]]) {
			t.Errorf("%s: partition bytes differ between the merges", name)
		}
	}
	// a damaged cache entry is mapped again, not served
	if err := os.Truncate(filepath.Join(second.Sources[0].dir, "part.csv"), 10); err != nil {
		t.Fatal(err)
	}
	third, err := Merge(context.Background(), std, srcs, MergeOptions{CacheDir: cache})
	if err != nil {
		t.Fatal(err)
	}
	if third.Remapped != 1 || third.Sources[0].FromCache {
		t.Errorf("after damaging a partition, remapped %d", third.Remapped)
	}
	if int64(bb.Len()) != ob["trafford"][1] {
		t.Errorf("merged CSV is %d bytes, partitions end at %d", bb.Len(), ob["trafford"][1])
	}
}

func TestMergeMissingSources(t *testing.T) {
	std := lgaStandard(t)
	srcs := sharedSources(t)
	srcs[2].Open = func(context.Context) (io.ReadCloser, error) { return nil, errors.New("no provider online") }
	srcs[5].Mapping = loadMapping(t, "leeds") // applies to leeds/spend* only
	_, err := Merge(context.Background(), std, srcs, MergeOptions{CacheDir: t.TempDir()})
	var me *MissingError
	if !errors.As(err, &me) || len(me.Missing) != 2 {
		t.Fatalf("err = %v, want a MissingError naming two sources", err)
	}
	if !strings.Contains(err.Error(), "no provider online") || !strings.Contains(err.Error(), "applies to leeds/spend*") {
		t.Errorf("error does not give the reasons: %v", err)
	}
	merged, err := Merge(context.Background(), std, srcs, MergeOptions{CacheDir: t.TempDir(), AllowPartial: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(merged.Sources) != len(srcs)-2 || len(merged.Lineage().Missing) != 2 || len(merged.Fitness().Missing) != 2 {
		t.Fatalf("partial merge: %d sources, lineage missing %v", len(merged.Sources), merged.Lineage().Missing)
	}
}

func TestMergeWriters(t *testing.T) {
	std := lgaStandard(t)
	merged, err := Merge(context.Background(), std, sharedSources(t), MergeOptions{CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, s := range merged.Sources {
		total += s.Report.Accepted
	}
	var nd bytes.Buffer
	if err := merged.WriteNDJSON(&nd); err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(&nd)
	dec.UseNumber()
	var n int64
	for dec.More() {
		var obj map[string]any
		if err := dec.Decode(&obj); err != nil {
			t.Fatal(err)
		}
		if _, ok := obj["amount"].(json.Number); !ok {
			t.Fatalf("amount is %T, want a number: %v", obj["amount"], obj)
		}
		if _, ok := obj[ColLine].(json.Number); !ok {
			t.Fatalf("_source_line is %T", obj[ColLine])
		}
		n++
	}
	if n != total {
		t.Errorf("NDJSON has %d rows, want %d", n, total)
	}

	path := filepath.Join(t.TempDir(), "m.parquet")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := merged.WriteParquet(f); err != nil {
		t.Fatal(err)
	}
	f.Close()
	pf, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer pf.Close()
	st, _ := pf.Stat()
	pq, err := parquet.OpenFile(pf, st.Size())
	if err != nil {
		t.Fatal(err)
	}
	if pq.NumRows() != total {
		t.Errorf("parquet has %d rows, want %d", pq.NumRows(), total)
	}
	if len(pq.Schema().Fields()) != len(merged.Columns) {
		t.Errorf("parquet has %d columns, want %d", len(pq.Schema().Fields()), len(merged.Columns))
	}
	// the first row's typed values are the CSV's
	var csvOut bytes.Buffer
	if err := merged.WriteCSV(&csvOut, CSVOptions{}); err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(&csvOut).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	rows := pq.RowGroups()[0].Rows()
	defer rows.Close()
	buf := make([]parquet.Row, 1)
	if n, err := rows.ReadRows(buf); n != 1 {
		t.Fatalf("reading parquet: %v", err)
	}
	leaf := map[string]int{}
	for i, f := range pq.Schema().Fields() {
		leaf[f.Name()] = i
	}
	byCol := map[int]parquet.Value{}
	for _, v := range buf[0] {
		byCol[v.Column()] = v
	}
	for i, c := range merged.Columns {
		v, want := byCol[leaf[c.Name]], recs[1][i]
		var got string
		switch {
		case v.IsNull():
		case c.Type == "number":
			got = formatDecimal(v.Int64())
		case c.Type == "integer":
			got = strconv.FormatInt(v.Int64(), 10)
		case c.Type == "date":
			got = value{n: int64(v.Int32())}.format(kDate)
		default:
			got = string(v.ByteArray())
		}
		if got != want {
			t.Errorf("parquet %s = %q, CSV %q", c.Name, got, want)
		}
	}
}
