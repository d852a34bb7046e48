package opendata

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/registry/table"
)

func TestNewDataPackage(t *testing.T) {
	e := Entry{Advert: testAdvert("lambeth", "spend", 3), Verified: true, Download: "http://h/api/v1/datasets/lambeth/spend/versions/3/content"}
	dp := NewDataPackage(testSite(), e)
	b, err := json.Marshal(dp)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	json.Unmarshal(b, &got)
	if got["$schema"] != ProfilePackage || got["profile"] != nil || got["name"] != "lambeth-spend" || got["version"] != "3" ||
		got["title"] != "Spend over £500" || got["nii:dataset"] != "lambeth/spend" {
		t.Errorf("package %s", b)
	}
	lic := got["licenses"].([]any)[0].(map[string]any)
	if lic["name"] != "OGL-UK-3.0" || !strings.Contains(lic["path"].(string), "open-government-licence/version/3") {
		t.Errorf("licence %v", lic)
	}
	res := got["resources"].([]any)[0].(map[string]any)
	if res["path"] != e.Download || res["format"] != "csv" || res["mediatype"] != "text/csv" || res["bytes"] != 1234.0 ||
		res["encoding"] != "utf-8" || res["name"] != "spend" || res["$schema"] != ProfileResource || res["profile"] != nil || res["type"] != "table" {
		t.Errorf("resource %v", res)
	}
	if _, ok := res["hash"]; ok {
		t.Errorf("resource has a hash: the manifest hash is not a hash of the file")
	}
	d := res["dialect"].(map[string]any)
	if d["$schema"] != ProfileDialect || d["delimiter"] != "," || d["lineTerminator"] != "\r\n" || d["header"] != true || d["headerRows"].([]any)[0] != 4.0 {
		t.Errorf("dialect %v", d)
	}
	fields := res["schema"].(map[string]any)["fields"].([]any)
	// groupChar only where the profiler saw one.
	want := []string{"Date date %d/%m/%Y ", "Amount number  ", "Supplier string  "}
	for i, f := range fields {
		m := f.(map[string]any)
		format, _ := m["format"].(string)
		group, _ := m["groupChar"].(string)
		if got := m["name"].(string) + " " + m["type"].(string) + " " + format + " " + group; got != want[i] {
			t.Errorf("field %d = %q, want %q", i, got, want[i])
		}
	}
}

func TestDataPackageWithoutTable(t *testing.T) {
	a := testAdvert("camden", "map", 1)
	a.Meta.Table = nil
	a.Meta.MediaType = "application/geo+json"
	a.Meta.Filename = "Trees Map!.geojson"
	dp := NewDataPackage(testSite(), Entry{Advert: a})
	r := dp.Resources[0]
	if dp.Profile != ProfilePackage || r.Type != "" || r.Schema != nil || r.Dialect != nil || r.Format != "geojson" || r.Name != "trees-map" {
		t.Errorf("package %+v resource %+v", dp, r)
	}
}

func TestCatalogPaging(t *testing.T) {
	url := func(n int) string { return "http://h/catalog.jsonld?page=" + strconv.Itoa(n) }
	links := func(p Page) map[string]string {
		out := map[string]string{}
		for _, tr := range CatalogGraph(testSite(), nil, p).Triples {
			if name, ok := strings.CutPrefix(tr.P.Value, nsHydra); ok && tr.O.Kind == KindIRI {
				out[name] = tr.O.Value
			}
		}
		return out
	}
	mid := links(Page{Number: 2, Size: 10, Total: 35, URL: url})
	for k, v := range map[string]string{"first": url(1), "last": url(4), "previous": url(1), "next": url(3),
		"nextPage": url(3), "view": url(2)} {
		if mid[k] != v {
			t.Errorf("page 2: hydra:%s = %q, want %q", k, mid[k], v)
		}
	}
	last := links(Page{Number: 4, Size: 10, Total: 35, URL: url})
	if _, ok := last["next"]; ok {
		t.Errorf("last page has a next link")
	}
	if empty := links(Page{Number: 1, Size: 10, Total: 0, URL: url}); empty["last"] != url(1) {
		t.Errorf("empty catalog: last = %q", empty["last"])
	}
}

// TestDataPackageDescribesTheFile: labels as the file has them, a BOM as
// utf-8-sig, white space skipped, numbers readable, amounts declared
// string with the reason.
func TestDataPackageDescribesTheFile(t *testing.T) {
	a := testAdvert("gla", "spend", 1)
	label, blank := "Transaction ID ", ""
	a.Meta.Table = &nii.Table{Encoding: "utf-8", BOM: true, Delimiter: ",", LineTerminator: "\n", HeaderRow: 1, Rows: 2, SkipInitialSpace: true, RaggedRows: 3,
		Columns: []nii.Column{
			{Name: "Transaction ID", Label: &label, Type: "integer"},
			{Name: "Amount", Type: "number", GroupChar: ",", Currency: true},
			{Name: "Net", Type: "string", Note: table.AmountNote},
			{Name: "Paid", Type: "boolean"},
			{Name: "column_5", Label: &blank, Type: "string"},
		}}
	dp := NewDataPackage(testSite(), Entry{Advert: a})
	r := dp.Resources[0]
	if r.Encoding != "utf-8-sig" || !r.Dialect.SkipInitialSpace || r.RaggedRows != 3 || r.Dialect.HeaderRows != nil {
		t.Fatalf("resource %+v dialect %+v", r, r.Dialect)
	}
	f := r.Schema.Fields
	if f[0].Name != "Transaction ID " || f[0].Title != "Transaction ID" || f[4].Name != "" || len(f) != 5 {
		t.Errorf("field names do not match the header: %+v", f)
	}
	if f[1].GroupChar != "," || f[1].BareNumber == nil || *f[1].BareNumber {
		t.Errorf("a £ amount: %+v", f[1])
	}
	if f[2].Type != "string" || !strings.Contains(f[2].Description, "(1,234.50)") {
		t.Errorf("an amounts column declared string without its reason: %+v", f[2])
	}
	if len(f[3].TrueValues) == 0 || len(f[3].FalseValues) == 0 {
		t.Errorf("a boolean without its values: %+v", f[3])
	}
}
