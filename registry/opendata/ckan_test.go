package opendata

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/registry/search"
)

func TestNewPackage(t *testing.T) {
	e := Entry{Advert: testAdvert("lambeth", "spend", 3), Verified: true, Online: true, Download: "http://h/x"}
	p := NewPackage(e)
	if p.Name != "lambeth-spend" || p.Title != "Spend over £500" || p.Notes != "Every payment over £500." {
		t.Errorf("name/title/notes = %q %q %q", p.Name, p.Title, p.Notes)
	}
	if p.ID != PackageUUID(nii.DatasetID{Org: "lambeth", Name: "spend"}) || !IsUUID(p.ID) {
		t.Errorf("id %q", p.ID)
	}
	if p.OwnerOrg != OrgUUID("lambeth") || !IsUUID(p.OwnerOrg) || p.Organization.ID != p.OwnerOrg || p.Organization.Name != "lambeth" || p.Organization.Title != "London Borough of lambeth" {
		t.Errorf("organization %+v", p.Organization)
	}
	if p.LicenseID != "OGL-UK-3.0" || p.LicenseTitle != "Open Government Licence v3.0" || !p.IsOpen {
		t.Errorf("licence %q %q %v", p.LicenseID, p.LicenseTitle, p.IsOpen)
	}
	if p.State != "active" || p.Type != "dataset" || p.Private || p.NumResources != 1 || p.NumTags != 2 {
		t.Errorf("state/type/private/counts: %+v", p)
	}
	if p.MetadataCreated != "2024-01-02T03:04:05.000000" || p.MetadataModified != "2024-01-03T03:04:05.000000" {
		t.Errorf("times %q %q", p.MetadataCreated, p.MetadataModified)
	}
	r := p.Resources[0]
	if r.URL != "http://h/x" || r.Format != "CSV" || r.Mimetype != "text/csv" || r.Size != 1234 ||
		r.Hash != e.Advert.Manifest.String() || r.Name != "spend.csv" || r.PackageID != p.ID || !IsUUID(r.ID) {
		t.Errorf("resource %+v", r)
	}
	extras := map[string]string{}
	for _, x := range p.Extras {
		extras[x.Key] = x.Value
	}
	for k, v := range map[string]string{"verified": "true", "publisher_node": "12D3KooWTestOrigin", "version": "3",
		"access": "open", "theme": `["finance"]`, "conforms_to": e.Advert.Meta.ConformsTo} {
		if extras[k] != v {
			t.Errorf("extra %s = %q, want %q", k, extras[k], v)
		}
	}
	if p.Tags[0].Name != "spend" || p.Groups[0].Name != "finance" {
		t.Errorf("tags %+v groups %+v", p.Tags, p.Groups)
	}
}

func TestStableUUID(t *testing.T) {
	a, b := StableUUID("dataset:lambeth/spend"), StableUUID("dataset:lambeth/spend")
	if a != b || !regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`).MatchString(a) {
		t.Fatalf("StableUUID = %q, %q: want one deterministic version-5 UUID", a, b)
	}
	if StableUUID("dataset:lambeth/trees") == a {
		t.Fatal("two names, one UUID")
	}
}

func TestCKANNameCandidates(t *testing.T) {
	got := CKANNameCandidates("north-east-spend")
	want := []nii.DatasetID{{Org: "north", Name: "east-spend"}, {Org: "north-east", Name: "spend"}}
	if !slices.Equal(got, want) {
		t.Errorf("candidates = %v, want %v", got, want)
	}
	if got := CKANNameCandidates("lambeth/spend"); !slices.Equal(got, []nii.DatasetID{{Org: "lambeth", Name: "spend"}}) {
		t.Errorf("org/name candidates = %v", got)
	}
	for _, bad := range []string{"", "-", "lambeth", "-spend", "lambeth-", "LAMBETH-SPEND", "../etc"} {
		if got := CKANNameCandidates(bad); len(got) != 0 {
			t.Errorf("CKANNameCandidates(%q) = %v, want none", bad, got)
		}
	}
}

func TestParseSearch(t *testing.T) {
	s, err := ParseSearch(Params{"q": "spend organization:lambeth", "fq": "tags:(spend OR pay) res_format:CSV",
		"rows": "5", "start": "10", "sort": "metadata_modified desc", "facet.field": `["organization","tags"]`})
	if err != nil {
		t.Fatal(err)
	}
	q := s.Query
	if q.Text != "spend" || !slices.Equal(q.Publisher, []string{"lambeth"}) || !slices.Equal(q.Keyword, []string{"spend", "pay"}) ||
		!slices.Equal(q.Format, []string{"CSV"}) || q.Limit != 5 || q.Offset != 10 || q.Sort != "modified" || s.Sort != "metadata_modified desc" ||
		!slices.Equal(s.Facets, []string{"organization", "tags"}) {
		t.Errorf("parsed %+v", s)
	}
	s, err = ParseSearch(Params{})
	if err != nil || s.Rows != DefaultRows || s.Sort != DefaultSort || s.Query.Sort != "relevance" || len(s.Facets) != 0 {
		t.Errorf("defaults %+v, %v", s, err)
	}
	s, err = ParseSearch(Params{"rows": "0"})
	if err != nil || s.Rows != 0 || s.Query.Limit != 1 {
		t.Errorf("rows=0: %+v, %v", s, err)
	}
	// CKAN caps rows at its maximum silently.
	if s, err = ParseSearch(Params{"rows": "5000"}); err != nil || s.Rows != MaxRows || s.Query.Limit != MaxRows {
		t.Errorf("rows=5000: %+v, %v; want capped at %d", s, err, MaxRows)
	}
	// ckanext-harvest pages with sort=id asc; name asc is the same stable order.
	for _, sort := range []string{"id asc", "name asc"} {
		if s, err = ParseSearch(Params{"sort": sort}); err != nil || s.Query.Sort != "key" || s.Sort != sort {
			t.Errorf("sort=%s: %+v, %v", sort, s, err)
		}
	}
	// Restricted (private) datasets are left out unless include_private.
	if s, _ = ParseSearch(Params{}); strings.Join(s.Query.Access, ",") != "open" {
		t.Errorf("default access filter %q, want open", s.Query.Access)
	}
	if s, _ = ParseSearch(Params{"include_private": "true"}); len(s.Query.Access) != 0 || s.None {
		t.Errorf("include_private: %+v", s.Query)
	}
	if s, _ = ParseSearch(Params{"fq": "private:true"}); !s.None {
		t.Errorf("private:true without include_private matches: %+v", s.Query)
	}
	for _, tc := range []struct {
		p        Params
		typ, fld string
	}{
		{Params{"rows": "ten"}, "Validation Error", "rows"},
		{Params{"rows": "-1"}, "Validation Error", "rows"},
		{Params{"start": "-5"}, "Validation Error", "start"},
		{Params{"start": "99999999999999999999"}, "Validation Error", "start"},
		{Params{"sort": "name desc"}, "Validation Error", "sort"},
		{Params{"sort": "metadata_modified asc"}, "Validation Error", "sort"},
		{Params{"facet.field": "organization"}, "Validation Error", "facet.field"},
		{Params{"facet.field": `["nonsense"]`}, "Validation Error", "facet.field"},
		{Params{"fq": "organization:(a"}, "Search Query Error", "fq"},
		{Params{"q": "a OR b"}, "Search Query Error", "q"},
		{Params{"q": "organization:a", "fq": "organization:b"}, "Search Query Error", "fq"},
	} {
		_, err := ParseSearch(tc.p)
		if err == nil || err.Status != http.StatusConflict || err.Type != tc.typ || err.Field != tc.fld {
			t.Errorf("ParseSearch(%v) = %+v, want a 409 %s on %s", tc.p, err, tc.typ, tc.fld)
		}
	}
}

func TestErrorShape(t *testing.T) {
	b, _ := json.Marshal(Response{Help: "h", Success: false, Error: Invalid("rows", "Invalid integer")})
	var got map[string]any
	json.Unmarshal(b, &got)
	e := got["error"].(map[string]any)
	if got["success"] != false || e["__type"] != "Validation Error" || e["message"] != "Invalid integer" ||
		e["rows"].([]any)[0] != "Invalid integer" || got["result"] != nil {
		t.Fatalf("error response %s", b)
	}
	b, _ = json.Marshal(Response{Error: NotFound("Not found")})
	if !strings.Contains(string(b), `"error":{"__type":"Not Found Error","message":"Not found"}`) {
		t.Fatalf("not found %s", b)
	}
}

func TestNewSearchResultFacets(t *testing.T) {
	s, _ := ParseSearch(Params{"facet.field": `["organization","res_format"]`, "facet.limit": "1"})
	res := search.Result{Total: 3, Facets: map[string][]search.FacetCount{
		"publisher": {{Value: "lambeth", Count: 2}, {Value: "camden", Count: 1}},
		"format":    {{Value: "csv", Count: 3}},
	}}
	out := NewSearchResult(s, res, nil, func(org string) string { return "LB " + org })
	if out.Count != 3 || len(out.Results) != 0 || out.Sort != DefaultSort {
		t.Errorf("result %+v", out)
	}
	org := out.SearchFacets["organization"]
	if org.Title != "organization" || len(org.Items) != 1 || org.Items[0] != (FacetItem{Name: "lambeth", DisplayName: "LB lambeth", Count: 2}) {
		t.Errorf("organization facet %+v", org)
	}
	if out.Facets["res_format"]["CSV"] != 3 || out.SearchFacets["res_format"].Items[0].Name != "CSV" {
		t.Errorf("format facet %+v %+v", out.Facets, out.SearchFacets)
	}
}

func TestParamsFromJSONBody(t *testing.T) {
	r := httptest.NewRequest("POST", "/api/3/action/package_search?rows=3",
		strings.NewReader(`{"q": "spend", "rows": 7, "facet.field": ["organization"], "fq": null}`))
	r.Header.Set("Content-Type", "application/json")
	p, err := ParamsFrom(r)
	if err != nil {
		t.Fatal(err)
	}
	if p["q"] != "spend" || p["rows"] != "7" || p["facet.field"] != `["organization"]` {
		t.Fatalf("params %v", p)
	}
	if _, ok := p["fq"]; ok {
		t.Fatalf("null fq kept: %v", p)
	}
	r = httptest.NewRequest("POST", "/api/3/action/package_search", strings.NewReader(`[1,2]`))
	if _, err := ParamsFrom(r); err == nil || err.Status != http.StatusBadRequest {
		t.Fatalf("array body: %v", err)
	}
	r = httptest.NewRequest("POST", "/api/3/action/package_search", strings.NewReader(strings.Repeat(" ", MaxParamsBody+1)))
	if _, err := ParamsFrom(r); err == nil || err.Status != http.StatusRequestEntityTooLarge {
		t.Fatalf("huge body: %v", err)
	}
}
