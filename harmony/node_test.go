package harmony

import (
	"context"
	"encoding/csv"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/nii-uk/nii"
)

// What the node relies on: a cited mapping ID on every row and in the
// lineage, typed rows for the SQL engine, and the identity mapping of a
// dataset that conforms to the standard directly.

func TestMergeCitesMappingID(t *testing.T) {
	std := lgaStandard(t)
	src := fileSource(t, sharedDir(t), "trafford", 1, loadMapping(t, "trafford"))
	src.MappingID = nii.HashOf([]byte("the mapping's manifest"))
	cache := t.TempDir()
	m, err := Merge(context.Background(), std, []Source{src}, MergeOptions{CacheDir: cache})
	if err != nil {
		t.Fatal(err)
	}
	in := m.Lineage().Inputs[0]
	if in.Mapping != src.MappingID || in.MappingHash != src.Mapping.Hash {
		t.Fatalf("lineage cites mapping %s (canonical %s), want %s (%s)", in.Mapping, in.MappingHash, src.MappingID, src.Mapping.Hash)
	}
	rows := m.Rows()
	defer rows.Close()
	row := make([]any, len(m.Columns))
	idx := map[string]int{}
	for i, c := range m.Columns {
		idx[c.Name] = i
	}
	n := 0
	for {
		err := rows.Next(row)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		n++
		if row[idx[ColMapping]] != src.MappingID.String() {
			t.Fatalf("row %d cites mapping %v", n, row[idx[ColMapping]])
		}
		if _, ok := row[idx["date"]].(time.Time); !ok {
			t.Fatalf("row %d: date is %T", n, row[idx["date"]])
		}
		if a, ok := row[idx["amount"]].(string); !ok || !strings.Contains(a, ".") {
			t.Fatalf("row %d: amount is %T %v", n, row[idx["amount"]], row[idx["amount"]])
		}
		if _, ok := row[idx[ColLine]].(int64); !ok {
			t.Fatalf("row %d: line is %T", n, row[idx[ColLine]])
		}
	}
	if int64(n) != m.Sources[0].Report.Accepted {
		t.Fatalf("read %d rows, merged %d", n, m.Sources[0].Report.Accepted)
	}
	// Citing another ID is another partition: the cached one is not reused.
	src.MappingID = nii.HashOf([]byte("a newer version of the mapping"))
	again, err := Merge(context.Background(), std, []Source{src}, MergeOptions{CacheDir: cache})
	if err != nil {
		t.Fatal(err)
	}
	if again.Remapped != 1 {
		t.Fatalf("a new mapping ID remapped %d sources, want 1", again.Remapped)
	}
}

func TestIdentityMapping(t *testing.T) {
	std := lgaStandard(t)
	d := nii.DatasetID{Org: "hackney", Name: "spend"}
	m, err := IdentityMapping(std, d)
	if err != nil {
		t.Fatal(err)
	}
	if !m.AppliesToDataset(d) {
		t.Fatal("the identity mapping does not apply to its dataset")
	}
	csv := "body_name,date,amount,supplier_name,capital_revenue\n" +
		"London Borough of Hackney,2024-04-02,1234.50,Acme Ltd,Revenue\n" +
		"London Borough of Hackney,02/04/2024,12.00,Acme Ltd,Revenue\n"
	rep, err := Check(context.Background(), strings.NewReader(csv), std, m)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Accepted != 1 || rep.Rejected != 1 {
		t.Fatalf("accepted %d rejected %d, want 1 and 1 (a dd/mm/yyyy date is not Table Schema's form)", rep.Accepted, rep.Rejected)
	}
}

// TestCompactPartitions: the cache stores rows without their constant
// provenance; the merged CSV has it back on every row — cells with line
// breaks, commas and quotes included — and the partition's hash and
// length are of the rows as the merged CSV has them.
func TestCompactPartitions(t *testing.T) {
	std := lgaStandard(t)
	m, err := IdentityMapping(std, nii.DatasetID{Org: "hackney", Name: "spend"})
	if err != nil {
		t.Fatal(err)
	}
	data := "body_name,date,amount,supplier_name,description\n" +
		"Hackney,2024-04-02,1.50,\"Smith,\n12,Jones\",\"said \"\"hi\"\"\n,3\"\n" +
		"Hackney,2024-04-03,2.00,Acme Ltd,\n" +
		"Hackney,2024-04-04,3.00,\"Line\r\nbreak\",\"\"\n"
	src := Source{Dataset: nii.DatasetID{Org: "hackney", Name: "spend"}, Version: 7, Manifest: nii.HashOf([]byte(data)), Mapping: m,
		Open: func(context.Context) (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(data)), nil }}
	merged, err := Merge(context.Background(), std, []Source{src}, MergeOptions{CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := merged.WriteCSV(&b, CSVOptions{}); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	rows := out[strings.IndexByte(out, '\n')+1:]
	s := merged.Sources[0]
	if int64(len(rows)) != s.PartitionBytes || nii.HashOf([]byte(rows)) != s.Partition {
		t.Fatalf("partition: %d bytes, hash %s; the merged CSV's rows: %d bytes, hash %s", s.PartitionBytes, s.Partition, len(rows), nii.HashOf([]byte(rows)))
	}
	recs, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 4 {
		t.Fatalf("%d records: %q", len(recs), out)
	}
	col := map[string]int{}
	for i, c := range recs[0] {
		col[c] = i
	}
	wantSup := []string{"Smith,\n12,Jones", "Acme Ltd", "Line\nbreak"} // encoding/csv reads a quoted \r\n as \n
	wantLine := []string{"2", "5", "6"}                                // the first row spans lines 2-4
	for i, r := range recs[1:] {
		if r[col["supplier_name"]] != wantSup[i] || r[col[ColLine]] != wantLine[i] || r[col[ColVersion]] != "7" ||
			r[col[ColManifest]] != src.Manifest.String() || r[col[ColMapping]] != m.Hash.String() || r[col[ColDataset]] != "hackney/spend" {
			t.Errorf("row %d: %q", i+1, r)
		}
	}
	// the row reader and NDJSON see the same rows
	var nd strings.Builder
	if err := merged.WriteNDJSON(&nd); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(nd.String(), `"_source_line":6`) || !strings.Contains(nd.String(), `"said \"hi\"\n,3"`) {
		t.Errorf("ndjson: %s", nd.String())
	}
}
