package node_test

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/piprate/json-gold/ld"
)

// TestOpenDataAgainstReferences checks the open-data formats of a real
// federation (a registry-only node and two publishers) against things
// outside nii: a real CKAN response, a standard JSON-LD processor, and the
// published CSV files themselves.
func TestOpenDataAgainstReferences(t *testing.T) {
	reg, _, _, files := openDataFederation(t)
	base := reg.APIAddr()
	t.Run("CKANShapes", func(t *testing.T) { testCKANShapes(t, base) })
	t.Run("DCATThroughJSONLDProcessor", func(t *testing.T) { testDCATThroughJSONLD(t, base, files) })
	t.Run("DataPackageMatchesCSV", func(t *testing.T) { testDataPackageMatchesCSV(t, base, files) })
}

// ---- CKAN shapes against a real CKAN response ----

// ckanFixture is a real package_search response from HDX's CKAN; its
// README says where it came from and what was trimmed.
const ckanFixture = "../registry/opendata/testdata/ckan/hdx_package_search.json"

// ckanCoreKeys lists, by path, the CKAN keys nii claims to implement. A
// path is a chain of keys from the response's root; "[]" is any element
// of a list. Every key listed must be in the fixture (or the list is
// wrong) and in nii's response, with a JSON type the fixture allows.
var ckanCoreKeys = map[string][]string{
	"":                                  {"help", "success", "result"},
	"result":                            {"count", "results", "search_facets", "facets", "sort"},
	"result.search_facets.organization": {"title", "items"},
	"result.search_facets.organization.items[]": {"name", "display_name", "count"},
	"result.search_facets.res_format":           {"title", "items"},
	"result.search_facets.res_format.items[]":   {"name", "display_name", "count"},
	"result.results[]": {"id", "name", "title", "notes", "url", "version", "maintainer",
		"license_id", "license_title", "license_url", "isopen", "state", "type", "private",
		"metadata_created", "metadata_modified", "owner_org", "organization", "resources",
		"num_resources", "tags", "num_tags", "groups", "relationships_as_object", "relationships_as_subject"},
	"result.results[].organization": {"id", "name", "title", "description", "image_url", "created",
		"is_organization", "type", "state", "approval_status"},
	"result.results[].resources[]": {"id", "package_id", "name", "description", "url", "format",
		"mimetype", "mimetype_inner", "size", "hash", "created", "last_modified", "metadata_modified",
		"position", "state", "url_type", "datastore_active", "cache_url", "cache_last_updated"},
	"result.results[].tags[]":   {"id", "name", "display_name", "state", "vocabulary_id"},
	"result.results[].groups[]": {"id", "name", "title", "display_name", "description", "image_display_url"},
}

// ckanNullable are keys CKAN itself returns as a string or null (its
// model columns are nullable): nii may give either where the fixture has
// one of them.
var ckanNullable = map[string]bool{
	"url": true, "version": true, "maintainer": true, "author": true, "author_email": true,
	"maintainer_email": true, "license_url": true,
	"mimetype": true, "mimetype_inner": true, "url_type": true, "cache_url": true,
	"cache_last_updated": true, "last_modified": true, "vocabulary_id": true, "hash": true,
	"format": true, "description": true,
}

// niiUnknown are paths where CKAN always has a string but nii may not
// know the value and gives null rather than a string that is not one
// (docs/opendata.md): an org's creation time inside a package.
var niiUnknown = map[string]bool{"organization.created": true}

// ckanNumberOrNull are keys CKAN returns as a number or null: a
// resource's size is null until known.
var ckanNumberOrNull = map[string]bool{"size": true}

// ckanTimestamps are keys holding CKAN's timestamps: ISO 8601 in UTC
// without a zone, microseconds ("2019-10-22T08:11:12.520687").
var ckanTimestamps = map[string]bool{
	"metadata_created": true, "metadata_modified": true, "created": true, "last_modified": true,
	"cache_last_updated": true,
}

var ckanTimeRE = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?$`)

func jsonType(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "bool"
	case float64, json.Number:
		return "number"
	case string:
		return "string"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return fmt.Sprintf("%T", v)
}

// ckanTypeOK reports whether nii's value may stand where CKAN returned
// want, for key.
func ckanTypeOK(path, key string, got, want any) bool {
	g, w := jsonType(got), jsonType(want)
	switch {
	case g == w:
		return true
	case niiUnknown[tail(path)]:
		return g == "null" && w == "string"
	case ckanNullable[key]:
		return (g == "string" || g == "null") && (w == "string" || w == "null")
	case ckanNumberOrNull[key]:
		return (g == "number" || g == "null") && (w == "number" || w == "null")
	}
	return false
}

// compareCKANShape walks nii's response (got) beside CKAN's (want) along
// the paths of keys, reporting every core key that is missing or has
// another JSON type, and every timestamp not in CKAN's format.
func compareCKANShape(t *testing.T, keys map[string][]string, path string, got, want any) {
	t.Helper()
	g, gok := got.(map[string]any)
	w, wok := want.(map[string]any)
	if !gok || !wok {
		t.Errorf("%s: nii has %s, CKAN %s", orRoot(path), jsonType(got), jsonType(want))
		return
	}
	for _, k := range keys[path] {
		p := k
		if path != "" {
			p = path + "." + k
		}
		wv, ok := w[k]
		if !ok {
			t.Fatalf("the CKAN fixture lacks %s: the list of core keys is wrong", p)
		}
		gv, ok := g[k]
		if !ok {
			t.Errorf("nii's response lacks CKAN core key %s", p)
			continue
		}
		if !ckanTypeOK(p, k, gv, wv) {
			t.Errorf("%s: nii gives %s (%.60v), CKAN %s (%.60v)", p, jsonType(gv), gv, jsonType(wv), wv)
			continue
		}
		if ckanTimestamps[k] {
			for who, v := range map[string]any{"nii": gv, "CKAN": wv} {
				if s, isStr := v.(string); isStr && !ckanTimeRE.MatchString(s) {
					t.Errorf("%s: %s's timestamp %q is not CKAN's format (UTC, no zone, like 2019-10-22T08:11:12.520687)", p, who, s)
				}
			}
		}
		switch wv := wv.(type) {
		case map[string]any:
			compareCKANShape(t, keys, p, gv, wv)
		case []any:
			if _, listed := keys[p+"[]"]; !listed {
				continue
			}
			gl := gv.([]any)
			if len(wv) == 0 || len(gl) == 0 {
				t.Errorf("%s: cannot compare elements (nii has %d, CKAN %d)", p, len(gl), len(wv))
				continue
			}
			for _, el := range gl {
				compareCKANShape(t, keys, p+"[]", el, wv[0])
			}
		}
	}
}

// tail is the last two keys of a path: "organization.created".
func tail(path string) string {
	parts := strings.Split(path, ".")
	return strings.Join(parts[max(0, len(parts)-2):], ".")
}

func orRoot(path string) string {
	if path == "" {
		return "(root)"
	}
	return path
}

// rerooted returns the key paths under prefix with prefix replaced by
// "result" (package_show's result is the package dict that package_search
// lists).
func rerooted(keys map[string][]string, prefix string) map[string][]string {
	out := map[string][]string{"": {"help", "success", "result"}}
	for p, ks := range keys {
		if rest, ok := strings.CutPrefix(p, prefix); ok {
			out["result"+rest] = ks
		}
	}
	return out
}

func decodeJSON(t *testing.T, b []byte) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, b)
	}
	return v
}

func testCKANShapes(t *testing.T, base string) {
	raw, err := os.ReadFile(ckanFixture)
	if err != nil {
		t.Fatal(err)
	}
	fixture := decodeJSON(t, raw).(map[string]any)

	// package_search, with the facets the fixture has, so that every
	// package nii lists is compared.
	code, _, b := fetch(t, "GET", base+"/api/3/action/package_search?"+url.Values{
		"facet.field": {`["organization","res_format"]`}, "rows": {"10"}, "include_private": {"true"}}.Encode(), nil)
	if code != 200 {
		t.Fatalf("package_search: %d %s", code, b)
	}
	got := decodeJSON(t, b)
	if n := len(got.(map[string]any)["result"].(map[string]any)["results"].([]any)); n != 3 {
		t.Fatalf("package_search lists %d packages, want 3", n)
	}
	compareCKANShape(t, ckanCoreKeys, "", got, fixture)

	// facets: {field: {value: count}}, counts numbers.
	for field, counts := range got.(map[string]any)["result"].(map[string]any)["facets"].(map[string]any) {
		for v, c := range counts.(map[string]any) {
			if jsonType(c) != "number" {
				t.Errorf("facets.%s.%s is %s, want a number", field, v, jsonType(c))
			}
		}
	}

	// package_show answers with the same package dict.
	pkg := fixture["result"].(map[string]any)["results"].([]any)[0]
	showFixture := map[string]any{"help": fixture["help"], "success": true, "result": pkg}
	for _, id := range []string{"lambeth-spend", "trafford-trees"} {
		code, _, b = fetch(t, "GET", base+"/api/3/action/package_show?id="+id, nil)
		if code != 200 {
			t.Fatalf("package_show %s: %d %s", id, code, b)
		}
		compareCKANShape(t, rerooted(ckanCoreKeys, "result.results[]"), "", decodeJSON(t, b), showFixture)
	}

	// What HDX's response does not show, against CKAN's documented
	// package schema: extras as [{"key", "value"}] strings, contact fields
	// string or null.
	res := got.(map[string]any)["result"].(map[string]any)["results"].([]any)
	for _, p := range res {
		p := p.(map[string]any)
		for _, k := range []string{"author", "author_email", "maintainer_email"} {
			if v, ok := p[k]; !ok || !ckanTypeOK(k, k, v, nil) {
				t.Errorf("package %v: %s = %#v (present %v), want a string or null", p["name"], k, v, ok)
			}
		}
		extras, ok := p["extras"].([]any)
		if !ok || len(extras) == 0 {
			t.Errorf("package %v: extras %#v, want a list", p["name"], p["extras"])
		}
		for _, x := range extras {
			x, _ := x.(map[string]any)
			if len(x) != 2 || jsonType(x["key"]) != "string" || jsonType(x["value"]) != "string" {
				t.Errorf("package %v: extra %#v, want {\"key\": string, \"value\": string}", p["name"], x)
			}
		}
	}
}

// ---- DCAT read by a JSON-LD processor ----

// offlineLoader refuses every fetch: the catalog's @context must be
// inline, so a harvester without network access can read it.
type offlineLoader struct{ t *testing.T }

func (l offlineLoader) LoadDocument(u string) (*ld.RemoteDocument, error) {
	l.t.Errorf("the JSON-LD processor tried to fetch %s: the @context must be inline", u)
	return nil, fmt.Errorf("offline: %s", u)
}

// rdfGraph indexes quads of the default graph: subject → predicate →
// objects.
type rdfGraph map[string]map[string][]ld.Node

const (
	rdfTypeIRI = "http://www.w3.org/1999/02/22-rdf-syntax-ns#type"
	dcatNS     = "http://www.w3.org/ns/dcat#"
	dctNS      = "http://purl.org/dc/terms/"
	foafNS     = "http://xmlns.com/foaf/0.1/"
	xsdNS      = "http://www.w3.org/2001/XMLSchema#"
)

func nodeKey(n ld.Node) string {
	switch n := n.(type) {
	case *ld.IRI:
		return n.Value
	case ld.IRI:
		return n.Value
	case *ld.BlankNode:
		return n.Attribute
	case ld.BlankNode:
		return n.Attribute
	}
	return ""
}

func literal(n ld.Node) (ld.Literal, bool) {
	switch n := n.(type) {
	case *ld.Literal:
		return *n, true
	case ld.Literal:
		return n, true
	}
	return ld.Literal{}, false
}

// jsonldToRDF converts a JSON-LD document to N-Quads with json-gold,
// offline, and parses the N-Quads back into a graph.
func jsonldToRDF(t *testing.T, doc []byte) (rdfGraph, string) {
	t.Helper()
	var in any
	if err := json.Unmarshal(doc, &in); err != nil {
		t.Fatalf("JSON-LD is not JSON: %v", err)
	}
	opts := ld.NewJsonLdOptions("")
	opts.Format = "application/n-quads"
	opts.DocumentLoader = offlineLoader{t}
	out, err := ld.NewJsonLdProcessor().ToRDF(in, opts)
	if err != nil {
		t.Fatalf("json-gold ToRDF: %v", err)
	}
	nq, _ := out.(string)
	ds, err := ld.ParseNQuads(nq)
	if err != nil {
		t.Fatalf("parsing json-gold's N-Quads: %v\n%s", err, nq)
	}
	g := rdfGraph{}
	for name, quads := range ds.Graphs {
		if name != "@default" && len(quads) > 0 {
			t.Errorf("quads in a named graph %q: nii's catalog is one default graph", name)
		}
		for _, q := range quads {
			s, p := nodeKey(q.Subject), nodeKey(q.Predicate)
			if g[s] == nil {
				g[s] = map[string][]ld.Node{}
			}
			g[s][p] = append(g[s][p], q.Object)
		}
	}
	return g, nq
}

// iris returns the IRI objects of s p.
func (g rdfGraph) iris(s, p string) []string {
	var out []string
	for _, o := range g[s][p] {
		if _, isLit := literal(o); !isLit {
			out = append(out, nodeKey(o))
		}
	}
	return out
}

func (g rdfGraph) literals(s, p string) []ld.Literal {
	var out []ld.Literal
	for _, o := range g[s][p] {
		if l, ok := literal(o); ok {
			out = append(out, l)
		}
	}
	return out
}

func (g rdfGraph) hasType(s, class string) bool { return slices.Contains(g.iris(s, rdfTypeIRI), class) }

func testDCATThroughJSONLD(t *testing.T, base string, files map[string][]byte) {
	code, _, b := fetch(t, "GET", base+"/catalog.jsonld?page_size=1000", nil)
	if code != 200 {
		t.Fatalf("catalog: %d %s", code, b)
	}
	var top map[string]any
	json.Unmarshal(b, &top)
	if _, inline := top["@context"].(map[string]any); !inline {
		t.Fatalf("@context is %T (%v): want an inline object, so that no harvester needs the network", top["@context"], top["@context"])
	}
	g, nq := jsonldToRDF(t, b)

	cat := base + "/catalog"
	if !g.hasType(cat, dcatNS+"Catalog") {
		t.Fatalf("%s is not a dcat:Catalog in the quads:\n%s", cat, nq)
	}
	// Every published dataset, as CKAN's package_list names them.
	_, r := ckanCall(t, base, "package_list", nil)
	var names []string
	json.Unmarshal(r.Result, &names)
	want := map[string]string{} // dataset IRI → org/name
	// and the restricted one, which DCAT lists (with its access rights)
	// and CKAN keeps private.
	for _, n := range append(names, "trafford-trees") {
		org, name, _ := strings.Cut(n, "-")
		want[base+"/api/v1/datasets/"+org+"/"+name+"/dcat"] = org + "/" + name
	}
	got := g.iris(cat, dcatNS+"dataset")
	slices.Sort(got)
	if len(got) != 3 || len(want) != 3 {
		t.Fatalf("catalog's dcat:dataset: %v; package_list: %v", got, names)
	}
	for _, ds := range got {
		id, ok := want[ds]
		if !ok {
			t.Errorf("dcat:dataset %s is not a published dataset (%v)", ds, names)
			continue
		}
		if !g.hasType(ds, dcatNS+"Dataset") {
			t.Errorf("%s is not a dcat:Dataset", ds)
		}
		for _, p := range []string{dctNS + "title", dctNS + "identifier", dcatNS + "keyword", dctNS + "modified"} {
			if len(g.literals(ds, p)) == 0 {
				t.Errorf("%s has no %s", id, p)
			}
		}
		if l := g.literals(ds, dctNS+"title"); len(l) != 1 || l[0].Language != "en" {
			t.Errorf("%s dct:title %+v, want one @en literal", id, l)
		}
		for _, l := range g.literals(ds, dctNS+"modified") {
			if _, err := time.Parse(time.RFC3339Nano, l.Value); err != nil || l.Datatype != xsdNS+"dateTime" {
				t.Errorf("%s dct:modified %+v, want an xsd:dateTime", id, l)
			}
		}
		pubs := g.iris(ds, dctNS+"publisher")
		if len(pubs) != 1 || !g.hasType(pubs[0], foafNS+"Agent") || len(g.literals(pubs[0], foafNS+"name")) != 1 {
			t.Errorf("%s dct:publisher %v is not a foaf:Agent with a foaf:name", id, pubs)
		}
		dists := g.iris(ds, dcatNS+"distribution")
		if len(dists) != 1 || !g.hasType(dists[0], dcatNS+"Distribution") {
			t.Errorf("%s dcat:distribution %v is not one dcat:Distribution", id, dists)
			continue
		}
		dist := dists[0]
		dl := g.iris(dist, dcatNS+"downloadURL")
		mt := g.iris(dist, dcatNS+"mediaType")
		size := g.literals(dist, dcatNS+"byteSize")
		lic := g.iris(dist, dctNS+"license")
		if len(dl) != 1 || len(mt) != 1 || mt[0] != "http://www.iana.org/assignments/media-types/text/csv" ||
			len(size) != 1 || size[0].Datatype != xsdNS+"nonNegativeInteger" || len(lic) != 1 {
			t.Errorf("%s distribution: downloadURL %v mediaType %v byteSize %+v license %v", id, dl, mt, size, lic)
			continue
		}
		org, _, _ := strings.Cut(id, "/")
		if id == "trafford/trees" {
			continue // restricted: not relayed; its size is checked by the unit tests
		}
		if n, _ := strconv.Atoi(size[0].Value); n != len(files[org]) {
			t.Errorf("%s byteSize %s, want %d", id, size[0].Value, len(files[org]))
		}
		// The downloadURL gives the published bytes, from a node that
		// holds none of them.
		if code, _, body := fetch(t, "GET", dl[0], nil); code != 200 || !bytes.Equal(body, files[org]) {
			t.Errorf("%s downloadURL %s: %d, %d bytes, want %d", id, dl[0], code, len(body), len(files[org]))
		}
		if want := "http://www.nationalarchives.gov.uk/doc/open-government-licence/version/3/"; lic[0] != want {
			t.Errorf("%s dct:license %s, want %s", id, lic[0], want)
		}
	}

	// One dataset's own document says the same about it as the catalog.
	code, _, b = fetch(t, "GET", base+"/api/v1/datasets/lambeth/spend/dcat.jsonld", nil)
	if code != 200 {
		t.Fatalf("dataset document: %d %s", code, b)
	}
	one, _ := jsonldToRDF(t, b)
	ds := base + "/api/v1/datasets/lambeth/spend/dcat"
	for p, objs := range one[ds] {
		if len(objs) != len(g[ds][p]) {
			t.Errorf("dataset document and catalog disagree on %s: %d vs %d values", p, len(objs), len(g[ds][p]))
		}
	}
}

// ---- Data Package against the published CSV ----

// frictionless mirrors the parts of the Data Package and Table Schema
// specs a reader needs to load the CSV.
type frictionless struct {
	Name      string `json:"name"`
	Resources []struct {
		Name     string `json:"name"`
		Path     string `json:"path"`
		Format   string `json:"format"`
		Encoding string `json:"encoding"`
		Bytes    int64  `json:"bytes"`
		Dialect  struct {
			Delimiter   string `json:"delimiter"`
			QuoteChar   string `json:"quoteChar"`
			Header      bool   `json:"header"`
			HeaderRows  []int  `json:"headerRows"`
			DoubleQuote bool   `json:"doubleQuote"`
		} `json:"dialect"`
		Schema struct {
			Fields []struct {
				Name      string `json:"name"`
				Type      string `json:"type"`
				Format    string `json:"format"`
				GroupChar string `json:"groupChar"`
			} `json:"fields"`
			MissingValues []string `json:"missingValues"`
		} `json:"schema"`
	} `json:"resources"`
}

func testDataPackageMatchesCSV(t *testing.T, base string, files map[string][]byte) {
	for _, org := range []string{"lambeth", "trafford"} {
		code, _, b := fetch(t, "GET", base+"/api/v1/datasets/"+org+"/spend/datapackage.json", nil)
		var dp frictionless
		if err := json.Unmarshal(b, &dp); err != nil || code != 200 || len(dp.Resources) != 1 {
			t.Fatalf("%s datapackage: %d %v\n%s", org, code, err, b)
		}
		r := dp.Resources[0]
		if dp.Name != org+"-spend" || r.Format != "csv" || r.Encoding == "" || !r.Dialect.Header || r.Bytes != int64(len(files[org])) {
			t.Errorf("%s datapackage: %s", org, b)
		}
		// Read the file as the descriptor says: delimiter, quote char,
		// the header on row headerRows[0] (1 when absent).
		code, _, data := fetch(t, "GET", r.Path, nil)
		if code != 200 || !bytes.Equal(data, files[org]) {
			t.Fatalf("%s path %s: %d", org, r.Path, code)
		}
		// utf-8-sig: UTF-8 after a byte-order mark (trafford.csv has one).
		if hasBOM := bytes.HasPrefix(data, []byte("\ufeff")); r.Encoding != map[bool]string{false: "utf-8", true: "utf-8-sig"}[hasBOM] {
			t.Fatalf("%s encoding %q, byte-order mark %v", org, r.Encoding, hasBOM)
		}
		data = bytes.TrimPrefix(data, []byte("\ufeff"))
		cr := csv.NewReader(bytes.NewReader(data))
		if len(r.Dialect.Delimiter) != 1 || r.Dialect.QuoteChar != `"` {
			t.Fatalf("%s dialect %+v", org, r.Dialect)
		}
		cr.Comma = rune(r.Dialect.Delimiter[0])
		cr.FieldsPerRecord = -1
		headerRow := 1
		if len(r.Dialect.HeaderRows) > 0 {
			headerRow = r.Dialect.HeaderRows[0]
		}
		var header []string
		for i := 1; i <= headerRow; i++ {
			rec, err := cr.Read()
			if err != nil {
				t.Fatalf("%s row %d: %v", org, i, err)
			}
			header = rec
		}
		var names []string
		for _, f := range r.Schema.Fields {
			names = append(names, f.Name)
		}
		if !slices.Equal(names, header) {
			t.Errorf("%s schema fields %q, CSV header (row %d) %q", org, names, headerRow, header)
		}
		// The first data rows fit the declared types.
		for i := 0; i < 20; i++ {
			rec, err := cr.Read()
			if err != nil {
				break
			}
			for j, f := range r.Schema.Fields {
				if j >= len(rec) || slices.Contains(r.Schema.MissingValues, rec[j]) {
					continue
				}
				if err := fitsType(rec[j], f.Type, f.Format, f.GroupChar); err != nil {
					t.Errorf("%s row %d field %q (%s %s): %v", org, headerRow+1+i, f.Name, f.Type, f.Format, err)
				}
			}
		}
	}
}

// fitsType checks a CSV value against a Table Schema type (the types
// nii infers) as a Table Schema reader would: groupChar removed from
// numbers, no other leniency.
func fitsType(v, typ, format, groupChar string) error {
	switch typ {
	case "integer":
		_, err := strconv.ParseInt(v, 10, 64)
		return err
	case "number":
		if groupChar != "" {
			v = strings.ReplaceAll(v, groupChar, "")
		}
		_, err := strconv.ParseFloat(v, 64)
		return err
	case "date":
		layout := "2006-01-02"
		if format != "" && format != "default" && format != "any" {
			layout = strings.NewReplacer("%d", "02", "%m", "01", "%Y", "2006", "%y", "06", "%b", "Jan").Replace(format)
		}
		_, err := time.Parse(layout, v)
		return err
	case "boolean":
		_, err := strconv.ParseBool(strings.ToLower(v))
		return err
	}
	return nil
}
