package node_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nii-uk/nii/internal/spenddata"

	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/node"
	"github.com/nii-uk/nii/node/nodetest"
	"github.com/nii-uk/nii/registry/opendata"
)

// openDataFederation starts a registry-only node and two publishers
// (lambeth, trafford) that publish the real spend files, and waits until
// the registry indexes all three datasets.
func openDataFederation(t *testing.T) (registry, lambeth, trafford *node.Node, files map[string][]byte) {
	t.Helper()
	orgs := []struct{ org, name string }{
		{"registry", "Cabinet Office registry"}, {"lambeth", "London Borough of Lambeth"}, {"trafford", "Trafford Council"},
	}
	nodes := nodetest.Federation(t, 3, nodetest.Options{Federation: "london", Configure: func(i int, c *node.Config) {
		c.Org, c.OrgName = orgs[i].org, orgs[i].name
		c.RegistryOnly = i == 0
	}})
	files = map[string][]byte{}
	for _, org := range []string{"lambeth", "trafford"} {
		b, err := os.ReadFile(spenddata.Path(org))
		if err != nil {
			t.Fatal(err)
		}
		files[org] = b
	}
	pub := func(n *node.Node, name string, data []byte, m nii.Metadata) {
		t.Helper()
		if _, err := n.Publish(context.Background(), bytes.NewReader(data), node.PublishRequest{Name: name, Filename: name + ".csv", Meta: m}); err != nil {
			t.Fatal(err)
		}
	}
	pub(nodes[1], "spend", files["lambeth"], nii.Metadata{Title: "Lambeth spend over £500", Description: "Invoices over the specified nett amount.",
		Licence: "OGL-UK-3.0", Keywords: []string{"spend", "transparency"}, Themes: []string{"finance"}})
	pub(nodes[2], "spend", files["trafford"], nii.Metadata{Title: "Trafford spend over £500", Licence: "OGL-UK-3.0",
		Keywords: []string{"spend"}, Themes: []string{"finance"}, ConformsTo: "https://www.gov.uk/government/publications/local-government-transparency-code-2015"})
	pub(nodes[2], "trees", []byte("id,species\n1,oak\n2,ash\n"), nii.Metadata{Title: "Street trees", Licence: "CC-BY-4.0",
		Keywords: []string{"trees"}, Themes: []string{"environment"}, Access: nii.AccessRestricted})
	nodetest.WaitFor(t, 20*time.Second, "the registry indexes all three datasets", func() bool {
		return sees(nodes[0], "lambeth/spend", 1) && sees(nodes[0], "trafford/spend", 1) && sees(nodes[0], "trafford/trees", 1)
	})
	return nodes[0], nodes[1], nodes[2], files
}

// fetch GETs (or POSTs, with a JSON body) url and returns the status, the
// headers and the body.
func fetch(t *testing.T, method, u string, body any, header ...string) (int, http.Header, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if e := resp.Trailer.Get(node.TrailerError); e != "" {
		t.Fatalf("%s %s: trailer error %s", method, u, e)
	}
	return resp.StatusCode, resp.Header, b
}

// ckan calls a CKAN action and decodes the envelope.
type ckanResp struct {
	Help    string          `json:"help"`
	Success bool            `json:"success"`
	Result  json.RawMessage `json:"result"`
	Error   map[string]any  `json:"error"`
}

func ckanCall(t *testing.T, base, action string, params url.Values) (int, ckanResp) {
	t.Helper()
	code, _, b := fetch(t, "GET", base+"/api/3/action/"+action+"?"+params.Encode(), nil)
	var r ckanResp
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("%s: not JSON: %v\n%s", action, err, b)
	}
	return code, r
}

type ckanPkg struct {
	ID           string `json:"id"`
	Name         string `json:"name"`
	Title        string `json:"title"`
	OwnerOrg     string `json:"owner_org"`
	LicenseID    string `json:"license_id"`
	State        string `json:"state"`
	Type         string `json:"type"`
	NumResources int    `json:"num_resources"`
	Organization struct {
		Name, Title string
	} `json:"organization"`
	Resources []struct {
		URL, Format, Mimetype, Hash string
		Size                        int64
	} `json:"resources"`
	Tags   []struct{ Name string } `json:"tags"`
	Extras []struct{ Key, Value string }
}

func TestOpenDataCKANOnRegistryNode(t *testing.T) {
	reg, lambeth, _, files := openDataFederation(t)
	base := reg.APIAddr()

	// A restricted dataset is private to CKAN clients: left out of a
	// search unless include_private is asked for, and marked private.
	if _, r := ckanCall(t, base, "package_search", url.Values{}); !strings.Contains(string(r.Result), `"count": 2`) {
		t.Fatalf("package_search without include_private: %s", r.Result)
	}

	// Everything, with facets.
	code, r := ckanCall(t, base, "package_search", url.Values{"facet.field": {`["organization","tags","res_format"]`}, "include_private": {"true"}})
	var res struct {
		Count        int       `json:"count"`
		Results      []ckanPkg `json:"results"`
		Sort         string    `json:"sort"`
		SearchFacets map[string]struct {
			Title string
			Items []struct {
				Name        string `json:"name"`
				DisplayName string `json:"display_name"`
				Count       int    `json:"count"`
			}
		} `json:"search_facets"`
		Facets map[string]map[string]int `json:"facets"`
	}
	json.Unmarshal(r.Result, &res)
	if code != 200 || !r.Success || !strings.Contains(r.Help, "help_show?name=package_search") || res.Count != 3 || len(res.Results) != 3 {
		t.Fatalf("package_search: %d %+v %+v", code, r, res)
	}
	orgFacet := res.SearchFacets["organization"]
	if orgFacet.Title != "organization" || len(orgFacet.Items) != 2 || orgFacet.Items[0].Name != "trafford" ||
		orgFacet.Items[0].Count != 2 || orgFacet.Items[0].DisplayName != "Trafford Council" {
		t.Errorf("organization facet: %+v", orgFacet)
	}
	if res.Facets["tags"]["spend"] != 2 || res.Facets["res_format"]["CSV"] != 3 {
		t.Errorf("facets: %+v", res.Facets)
	}

	// fq narrows, in Solr's syntax.
	code, r = ckanCall(t, base, "package_search", url.Values{"fq": {"organization:lambeth tags:spend"}})
	json.Unmarshal(r.Result, &res)
	if code != 200 || res.Count != 1 || res.Results[0].Name != "lambeth-spend" {
		t.Fatalf("fq organization:lambeth tags:spend: %d %+v", code, res)
	}
	p := res.Results[0]
	if p.Title != "Lambeth spend over £500" || p.OwnerOrg != opendata.OrgUUID("lambeth") || p.Organization.Title != "London Borough of Lambeth" ||
		p.LicenseID != "OGL-UK-3.0" || p.State != "active" || p.Type != "dataset" || p.NumResources != 1 ||
		p.Resources[0].Format != "CSV" || p.Resources[0].Size != int64(len(files["lambeth"])) {
		t.Errorf("package: %+v", p)
	}
	code, r = ckanCall(t, base, "package_search", url.Values{"fq": {"+organization:(lambeth OR trafford) +res_format:CSV"},
		"sort": {"title_string asc"}, "rows": {"1"}, "start": {"1"}, "include_private": {"true"}})
	json.Unmarshal(r.Result, &res)
	// Titles A→Z: "Lambeth spend…", "Street trees", "Trafford spend…"; start=1 is the second.
	if code != 200 || res.Count != 3 || len(res.Results) != 1 || res.Results[0].Name != "trafford-trees" || res.Sort != "title_string asc" {
		t.Fatalf("paged, sorted search: %d %+v", code, res)
	}
	code, r = ckanCall(t, base, "package_search", url.Values{"q": {"trafford"}, "rows": {"0"}, "include_private": {"true"}})
	json.Unmarshal(r.Result, &res)
	if code != 200 || res.Count != 2 || len(res.Results) != 0 {
		t.Fatalf("rows=0: %d %+v", code, res)
	}

	// The resource URL downloads the exact bytes, from a node that holds none.
	code, r = ckanCall(t, base, "package_show", url.Values{"id": {"lambeth-spend"}})
	var shown ckanPkg
	json.Unmarshal(r.Result, &shown)
	if code != 200 || shown.Name != "lambeth-spend" {
		t.Fatalf("package_show: %d %+v", code, r)
	}
	dl := shown.Resources[0].URL
	if !strings.HasPrefix(dl, base+"/api/v1/datasets/lambeth/spend/versions/1/") {
		t.Errorf("resource url %q is not on the node asked", dl)
	}
	code, _, got := fetch(t, "GET", dl, nil)
	if code != 200 || !bytes.Equal(got, files["lambeth"]) {
		t.Fatalf("download %s: %d, %d bytes, want %d", dl, code, len(got), len(files["lambeth"]))
	}
	for _, id := range []string{"lambeth/spend", shown.ID} {
		code, r = ckanCall(t, base, "package_show", url.Values{"id": {id}})
		var again ckanPkg
		json.Unmarshal(r.Result, &again)
		if code != 200 || again.Name != "lambeth-spend" {
			t.Errorf("package_show id=%s: %d %+v", id, code, r)
		}
	}
	// On the publisher the resource URL is its content endpoint.
	_, r = ckanCall(t, lambeth.APIAddr(), "package_show", url.Values{"id": {"lambeth-spend"}})
	json.Unmarshal(r.Result, &shown)
	if want := lambeth.APIAddr() + "/api/v1/datasets/lambeth/spend/versions/1/content"; shown.Resources[0].URL != want {
		t.Errorf("publisher's resource url %q, want %q", shown.Resources[0].URL, want)
	}

	// Lists.
	_, r = ckanCall(t, base, "package_list", nil)
	var names []string
	json.Unmarshal(r.Result, &names)
	// Public datasets only (trafford/trees is restricted: private to CKAN).
	if !slices.Equal(names, []string{"lambeth-spend", "trafford-spend"}) {
		t.Errorf("package_list: %v", names)
	}
	// Orgs with public datasets: not the registry's own, which has none.
	_, r = ckanCall(t, base, "organization_list", url.Values{"sort": {"name asc"}})
	json.Unmarshal(r.Result, &names)
	if !slices.Equal(names, []string{"lambeth", "trafford"}) {
		t.Errorf("organization_list: %v", names)
	}
	_, r = ckanCall(t, base, "organization_list", url.Values{"all_fields": {"true"}, "sort": {"package_count desc"}})
	var orgs []struct {
		Name         string `json:"name"`
		Title        string `json:"title"`
		PackageCount int    `json:"package_count"`
		IsOrg        bool   `json:"is_organization"`
	}
	json.Unmarshal(r.Result, &orgs)
	if len(orgs) != 2 || orgs[1].Name != "trafford" || orgs[1].PackageCount != 1 || orgs[1].Title != "Trafford Council" || !orgs[1].IsOrg {
		t.Errorf("organization_list all_fields: %+v", orgs)
	}
	_, r = ckanCall(t, base, "organization_show", url.Values{"id": {"trafford"}, "include_datasets": {"true"}})
	var org struct {
		Name     string    `json:"name"`
		Packages []ckanPkg `json:"packages"`
	}
	json.Unmarshal(r.Result, &org)
	if org.Name != "trafford" || len(org.Packages) != 1 {
		t.Errorf("organization_show: %+v", org)
	}

	// POST with a JSON body, as ckanapi sends it.
	code, _, b := fetch(t, "POST", base+"/api/3/action/package_search", map[string]any{"fq": "organization:trafford", "rows": 1, "include_private": true})
	var pr ckanResp
	json.Unmarshal(b, &pr)
	json.Unmarshal(pr.Result, &res)
	if code != 200 || res.Count != 2 || len(res.Results) != 1 {
		t.Errorf("POST package_search: %d %s", code, b)
	}

	// Bad input: CKAN's error shape and status, never a 500.
	for _, tc := range []struct {
		action string
		params url.Values
		status int
		typ    string
	}{
		{"package_show", url.Values{"id": {"nobody-nothing"}}, 404, "Not Found Error"},
		{"package_show", url.Values{"id": {"00000000-0000-5000-8000-000000000000"}}, 404, "Not Found Error"},
		{"package_show", url.Values{"id": {strings.Repeat("x", 10000)}}, 404, "Not Found Error"},
		{"package_show", nil, 409, "Validation Error"},
		{"organization_show", url.Values{"id": {"nobody"}}, 404, "Not Found Error"},
		{"package_search", url.Values{"rows": {"ten"}}, 409, "Validation Error"},
		{"package_search", url.Values{"rows": {"-1"}}, 409, "Validation Error"},
		{"package_search", url.Values{"fq": {"organization:(lambeth"}}, 409, "Search Query Error"},
		{"package_search", url.Values{"fq": {"-tags:spend"}}, 409, "Search Query Error"},
		{"package_search", url.Values{"sort": {"name desc"}}, 409, "Validation Error"},
		{"package_search", url.Values{"facet.field": {"organization"}}, 409, "Validation Error"},
		{"package_create", nil, 403, "Authorization Error"},
		{"no_such_action", nil, 400, "Bad request"},
	} {
		code, r := ckanCall(t, base, tc.action, tc.params)
		if code != tc.status || r.Success || r.Error["__type"] != tc.typ || r.Error["message"] == "" {
			t.Errorf("%s %v: %d %+v, want %d %s", tc.action, tc.params, code, r, tc.status, tc.typ)
		}
	}
	if code, _, _ := fetch(t, "DELETE", base+"/api/3/action/package_show", nil); code != 405 {
		t.Errorf("DELETE: %d, want 405", code)
	}
}

func TestOpenDataDCATAndDataPackage(t *testing.T) {
	reg, _, _, files := openDataFederation(t)
	base := reg.APIAddr()

	// JSON-LD, paged two at a time: follow hydra:next to the end.
	next := base + "/catalog.jsonld?page_size=2"
	var datasets []string
	for pages := 0; next != ""; pages++ {
		if pages > 3 {
			t.Fatal("hydra:next does not end")
		}
		code, h, b := fetch(t, "GET", next, nil)
		if code != 200 || h.Get("Content-Type") != "application/ld+json" {
			t.Fatalf("%s: %d %s", next, code, h.Get("Content-Type"))
		}
		var doc struct {
			Context map[string]string `json:"@context"`
			Graph   []map[string]any  `json:"@graph"`
		}
		if err := json.Unmarshal(b, &doc); err != nil {
			t.Fatalf("catalog JSON-LD is not JSON: %v", err)
		}
		if doc.Context["dcat"] != "http://www.w3.org/ns/dcat#" || doc.Context["dct"] != "http://purl.org/dc/terms/" {
			t.Fatalf("@context %v", doc.Context)
		}
		next = ""
		for _, n := range doc.Graph {
			types := n["@type"]
			switch {
			case types == "dcat:Dataset":
				datasets = append(datasets, n["dct:identifier"].(string))
			case types == "dcat:Distribution":
				if n["dcat:byteSize"].(map[string]any)["@type"] != "xsd:nonNegativeInteger" ||
					!strings.HasPrefix(n["dcat:mediaType"].(map[string]any)["@id"].(string), "http://www.iana.org/assignments/media-types/") {
					t.Errorf("distribution %v", n)
				}
			case slices.Contains(asStrings(types), "hydra:PartialCollectionView"):
				if n["hydra:totalItems"].(map[string]any)["@value"] != "3" {
					t.Errorf("view %v", n)
				}
				if nx, ok := n["hydra:next"].(map[string]any); ok {
					next = nx["@id"].(string)
				}
			}
		}
	}
	slices.Sort(datasets)
	if !slices.Equal(datasets, []string{"lambeth/spend", "trafford/spend", "trafford/trees"}) {
		t.Fatalf("datasets over all pages: %v", datasets)
	}

	// Turtle by content negotiation, and filtered.
	code, h, b := fetch(t, "GET", base+"/catalog?publisher=lambeth", nil, "Accept", "text/turtle;q=0.9, application/json;q=0.5")
	if code != 200 || !strings.HasPrefix(h.Get("Content-Type"), "text/turtle") ||
		!strings.Contains(string(b), "a dcat:Dataset") || strings.Count(string(b), "a dcat:Dataset") != 1 ||
		!strings.Contains(string(b), `dct:identifier "lambeth/spend"`) || !strings.Contains(string(b), "hydra:PartialCollectionView") {
		t.Fatalf("turtle catalog: %d %s\n%s", code, h.Get("Content-Type"), b)
	}
	code, _, b = fetch(t, "GET", base+"/api/v1/datasets/trafford/spend/dcat.ttl", nil)
	if code != 200 || !strings.Contains(string(b), "dcat:downloadURL <"+base+"/api/v1/datasets/trafford/spend/versions/1/download>") ||
		!strings.Contains(string(b), "dct:conformsTo <https://www.gov.uk/government/publications/local-government-transparency-code-2015>") {
		t.Fatalf("dataset turtle: %d\n%s", code, b)
	}
	for u, want := range map[string]int{
		"/api/v1/datasets/nobody/nothing/dcat.jsonld": 404,
		"/api/v1/datasets/BAD/x/dcat.ttl":             400,
		"/catalog.jsonld?page_size=100000":            400,
		"/catalog.ttl?page=0":                         400,
		"/catalog.ttl?page=99":                        200, // past the end: an empty page
	} {
		if code, _, b := fetch(t, "GET", base+u, nil); code != want {
			t.Errorf("%s: %d, want %d\n%s", u, code, want, b)
		}
	}

	// Data Package, from the catalog, on a node without the data.
	for _, path := range []string{"/api/v1/datasets/trafford/spend/datapackage.json", "/api/v1/datasets/trafford/spend/versions/1/datapackage.json"} {
		code, _, b := fetch(t, "GET", base+path, nil)
		var dp struct {
			Profile   string `json:"$schema"`
			Name      string `json:"name"`
			Version   string `json:"version"`
			Licenses  []struct{ Name string }
			Resources []struct {
				Path, Format, Mediatype, Encoding string
				Bytes                             int64
				Dialect                           struct{ Delimiter string }
				Schema                            struct {
					Fields []struct{ Name, Type, Format string }
				}
			}
		}
		if err := json.Unmarshal(b, &dp); err != nil || code != 200 {
			t.Fatalf("%s: %d %v\n%s", path, code, err, b)
		}
		r := dp.Resources[0]
		if dp.Profile != opendata.ProfilePackage || dp.Name != "trafford-spend" || dp.Version != "1" || dp.Licenses[0].Name != "OGL-UK-3.0" ||
			r.Format != "csv" || r.Mediatype != "text/csv" || r.Bytes != int64(len(files["trafford"])) || r.Dialect.Delimiter != "," ||
			len(r.Schema.Fields) != 16 || r.Schema.Fields[2].Name != "Date" || r.Schema.Fields[2].Type != "date" {
			t.Fatalf("%s: %s", path, b)
		}
		code, _, got := fetch(t, "GET", r.Path, nil)
		if code != 200 || !bytes.Equal(got, files["trafford"]) {
			t.Fatalf("datapackage path %s: %d, %d bytes", r.Path, code, len(got))
		}
	}
	for u, want := range map[string]int{
		"/api/v1/datasets/trafford/spend/versions/9/datapackage.json": 404,
		"/api/v1/datasets/trafford/spend/versions/x/datapackage.json": 400,
		"/api/v1/datasets/nobody/nothing/datapackage.json":            404,
		"/api/v1/datasets/trafford/trees/versions/1/download":         403, // restricted: never relayed
		"/api/v1/datasets/nobody/nothing/versions/1/download":         404,
	} {
		if code, _, b := fetch(t, "GET", base+u, nil); code != want {
			t.Errorf("%s: %d, want %d\n%s", u, code, want, b)
		}
	}
}

func asStrings(v any) []string {
	switch v := v.(type) {
	case string:
		return []string{v}
	case []any:
		var out []string
		for _, x := range v {
			s, _ := x.(string)
			out = append(out, s)
		}
		return out
	}
	return nil
}
