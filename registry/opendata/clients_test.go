package opendata

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/nii-uk/nii"
)

// The requests below are the ones unmodified CKAN clients send, as their
// published source builds them:
//
//   - ckanapi's RemoteCKAN (ckanapi/common.py prepare_action,
//     ckanapi/remoteckan.py call_action): POST {address}/api/action/{name},
//     the body json.dumps(data_dict) (Python's default separators ", " and
//     ": "), Content-Type application/json, User-Agent
//     "ckanapi/{version} (+https://github.com/open-data/ckanapi)"; the
//     response is read as parsed["success"], parsed["result"], and on
//     failure parsed["error"]["__type"] and ["message"];
//   - ckanext-harvest's CKANHarvester (ckanext/harvest/harvesters/
//     ckanharvester.py _search_for_datasets, gather_stage): GET
//     {url}/api/3/action/package_search?{urlencode(params)} with params
//     {"rows": "100", "start": N, "sort": "id asc", "fq": " ".join(terms)},
//     terms "-organization:x" per excluded org, "organization:a OR
//     organization:b" for included ones, and "metadata_modified:[{iso}Z
//     TO *]" to re-gather incrementally; it pages until a page is empty,
//     fails if two pages are byte-identical, reads result.results[*].id
//     and .name, and with remote_orgs=create asks organization_show?id=
//     {owner_org} and group_show?id={group id}.

// clientCatalog is a catalog of n open datasets over three orgs, modified
// a day apart, and one restricted dataset.
func clientCatalog(n int) *fakeCatalog {
	var ads []*nii.Advert
	orgs := []string{"camden", "lambeth", "trafford"}
	for i := range n {
		a := testAdvert(orgs[i%3], fmt.Sprintf("set-%03d", i), 1)
		a.Meta.Modified = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, i-n/2)
		ads = append(ads, a)
	}
	r := testAdvert("camden", "restricted", 1)
	r.Meta.Access = nii.AccessRestricted
	return newFakeCatalog(append(ads, r)...)
}

func serve(cat Catalog) *httptest.Server {
	return httptest.NewServer(NewHandler(cat, Config{Federation: "london", Org: "registry", Version: "test"}))
}

// pyURLEncode is Python's urllib.parse.urlencode of ordered pairs
// (quote_plus: space as "+", only letters, digits and "_.-~" kept).
func pyURLEncode(pairs ...string) string {
	var parts []string
	for i := 0; i < len(pairs); i += 2 {
		parts = append(parts, url.QueryEscape(pairs[i])+"="+url.QueryEscape(pairs[i+1]))
	}
	return strings.Join(parts, "&")
}

// harvest replays ckanext-harvest's _search_for_datasets with fq terms and
// returns the package dicts it gathers.
func harvest(t *testing.T, base string, terms ...string) []map[string]any {
	t.Helper()
	start, rows := 0, 100
	var all []map[string]any
	seen := map[string]bool{}
	var previous string
	for pages := 0; ; pages++ {
		pairs := []string{"rows", fmt.Sprint(rows), "start", fmt.Sprint(start), "sort", "id asc"}
		if len(terms) > 0 {
			pairs = append(pairs, "fq", strings.Join(terms, " "))
		}
		u := base + "/api/3/action/package_search?" + pyURLEncode(pairs...)
		resp, err := http.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: %d %s", u, resp.StatusCode, b)
		}
		if previous != "" && string(b) == previous {
			t.Fatalf("the paging doesn't seem to work: %s", u)
		}
		previous = string(b)
		var body struct {
			Result struct {
				Results []map[string]any `json:"results"`
			} `json:"result"`
		}
		if err := json.Unmarshal(b, &body); err != nil {
			t.Fatalf("response from remote CKAN was not JSON: %v", err)
		}
		page := body.Result.Results
		for _, p := range page {
			id, _ := p["id"].(string)
			if seen[id] {
				t.Fatalf("dataset %s on two pages", id)
			}
			seen[id] = true
			if _, ok := p["name"].(string); !ok || !IsUUID(id) {
				t.Fatalf("a package without a string name and UUID id: %v", p)
			}
		}
		all = append(all, page...)
		if len(page) == 0 {
			return all
		}
		if pages > 10 {
			t.Fatal("paging does not end")
		}
		start += rows
	}
}

func TestCKANHarvesterGathers(t *testing.T) {
	srv := serve(clientCatalog(250))
	defer srv.Close()

	all := harvest(t, srv.URL)
	if len(all) != 250 {
		t.Fatalf("gathered %d packages, want 250 (the restricted one is private, left out)", len(all))
	}
	for _, p := range all {
		if p["private"] != false {
			t.Fatalf("a gathered package is private: %v", p["name"])
		}
		// import_stage reads extras as a list of {key, value}, resources'
		// urls, and the organization by owner_org.
		for _, e := range p["extras"].([]any) {
			kv := e.(map[string]any)
			if _, ok := kv["key"].(string); !ok {
				t.Fatalf("an extra without a string key: %v", kv)
			}
			if _, ok := kv["value"].(string); !ok {
				t.Fatalf("an extra without a string value: %v", kv)
			}
		}
		if res := p["resources"].([]any); len(res) != 1 || res[0].(map[string]any)["url"] == "" {
			t.Fatalf("resources: %v", res)
		}
		org := p["organization"].(map[string]any)
		if p["owner_org"] != org["id"] || !IsUUID(org["id"].(string)) || org["created"] == nil {
			t.Fatalf("organization %v, owner_org %v", org, p["owner_org"])
		}
	}

	// Excluded orgs, then included ones, as the harvester writes them.
	if got := harvest(t, srv.URL, "-organization:camden", "-organization:lambeth"); len(got) != 83 {
		t.Errorf("with camden and lambeth excluded: %d packages, want 83", len(got))
	}
	if got := harvest(t, srv.URL, "organization:camden OR organization:lambeth"); len(got) != 167 {
		t.Errorf("camden or lambeth: %d packages, want 167", len(got))
	}
	// The incremental re-gather: modified since the last job, less an hour.
	since := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(-time.Hour)
	fq := "metadata_modified:[" + since.Format("2006-01-02T15:04:05") + "Z TO *]"
	if got := harvest(t, srv.URL, "-organization:trafford", fq); len(got) != 83 {
		t.Errorf("modified since %s, trafford excluded: %d packages, want 83", since, len(got))
	}

	// remote_orgs=create and remote_groups=create resolve the ids.
	p := all[0]
	for _, u := range []string{"/api/3/action/organization_show?id=" + p["owner_org"].(string),
		"/api/3/action/group_show?id=" + p["groups"].([]any)[0].(map[string]any)["id"].(string)} {
		resp, err := http.Get(srv.URL + u)
		if err != nil {
			t.Fatal(err)
		}
		var body struct {
			Result map[string]any `json:"result"`
		}
		json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != 200 || body.Result["id"] == nil || body.Result["name"] == nil {
			t.Errorf("GET %s: %d %v", u, resp.StatusCode, body.Result)
		}
	}
}

// ckanapiCall replays RemoteCKAN.call_action and returns what it returns
// (the result) or the error type and message it raises.
func ckanapiCall(t *testing.T, base, action, body string) (result json.RawMessage, errType, errMsg string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, strings.TrimRight(base, "/")+"/"+"api/action/"+action, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "ckanapi/4.7 (+https://github.com/open-data/ckanapi)")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var parsed struct {
		Success bool            `json:"success"`
		Result  json.RawMessage `json:"result"`
		Error   map[string]any  `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&parsed); err != nil {
		t.Fatalf("%s: not JSON (ckanapi raises CKANAPIError): %v", action, err)
	}
	if parsed.Success {
		return parsed.Result, "", ""
	}
	typ, _ := parsed.Error["__type"].(string)
	msg, _ := parsed.Error["message"].(string)
	return nil, typ, msg
}

func TestCKANAPIRemoteCKAN(t *testing.T) {
	srv := serve(clientCatalog(12))
	defer srv.Close()
	for _, tc := range []struct {
		action, body string
		check        func(json.RawMessage) error
	}{
		{"package_search", `{"q": "spend", "rows": 5, "facet.field": ["organization", "tags"]}`, func(r json.RawMessage) error {
			var v struct {
				Count   int              `json:"count"`
				Results []map[string]any `json:"results"`
				Facets  map[string]map[string]int
			}
			if err := json.Unmarshal(r, &v); err != nil || v.Count != 12 || len(v.Results) != 5 || len(v.Facets["organization"]) != 3 {
				return fmt.Errorf("%v %+v", err, v)
			}
			return nil
		}},
		{"package_show", `{"id": "camden-set-000"}`, func(r json.RawMessage) error {
			var v map[string]any
			json.Unmarshal(r, &v)
			if v["name"] != "camden-set-000" {
				return fmt.Errorf("%v", v["name"])
			}
			return nil
		}},
		{"package_list", `{}`, wantStrings(12)},
		{"organization_list", `{}`, wantStrings(3)},
		{"group_list", `{}`, wantStrings(1)},
		{"tag_list", `{}`, wantStrings(2)},
		{"license_list", `{}`, func(r json.RawMessage) error {
			var v []map[string]any
			if err := json.Unmarshal(r, &v); err != nil || len(v) == 0 || v[0]["id"] == nil || v[0]["title"] == nil {
				return fmt.Errorf("%v %s", err, r)
			}
			return nil
		}},
		{"status_show", `{}`, func(r json.RawMessage) error {
			var v map[string]any
			if json.Unmarshal(r, &v); v["ckan_version"] == nil {
				return fmt.Errorf("%s", r)
			}
			return nil
		}},
	} {
		res, typ, msg := ckanapiCall(t, srv.URL, tc.action, tc.body)
		if typ != "" {
			t.Errorf("%s: ckanapi raises %s: %s", tc.action, typ, msg)
			continue
		}
		if err := tc.check(res); err != nil {
			t.Errorf("%s: %v", tc.action, err)
		}
	}
	// Errors map onto ckanapi's exceptions by __type.
	for action, want := range map[string]string{"package_show": "Not Found Error", "package_create": "Authorization Error"} {
		if _, typ, msg := ckanapiCall(t, srv.URL, action, `{"id": "nobody-nothing"}`); typ != want || msg == "" {
			t.Errorf("%s: %q %q, want %s", action, typ, msg, want)
		}
	}
}

func wantStrings(n int) func(json.RawMessage) error {
	return func(r json.RawMessage) error {
		var v []string
		if err := json.Unmarshal(r, &v); err != nil || len(v) != n {
			return fmt.Errorf("%v: %s, want %d names", err, r, n)
		}
		return nil
	}
}

// TestLicenseListShape: each licence has the keys, with the JSON types,
// of CKAN's own licence register (ckan/model/license.py, the dicts
// license_list returns).
func TestLicenseListShape(t *testing.T) {
	b, _ := json.Marshal(LicenseList())
	var got []map[string]any
	json.Unmarshal(b, &got)
	if len(got) < 10 {
		t.Fatalf("%d licences", len(got))
	}
	want := map[string]string{"domain_content": "bool", "domain_data": "bool", "domain_software": "bool", "family": "string",
		"id": "string", "is_okd_compliant": "bool", "is_osi_compliant": "bool", "maintainer": "string", "status": "string",
		"title": "string", "url": "string"}
	ids := map[string]bool{}
	for _, l := range got {
		for k, typ := range want {
			switch l[k].(type) {
			case bool:
				if typ != "bool" {
					t.Errorf("%v: %s is a bool", l["id"], k)
				}
			case string:
				if typ != "string" {
					t.Errorf("%v: %s is a string", l["id"], k)
				}
			default:
				t.Errorf("%v: %s missing or of type %T", l["id"], k, l[k])
			}
		}
		ids[l["id"].(string)] = true
	}
	for _, id := range []string{"OGL-UK-3.0", "OGL-UK-2.0", "NCGL-UK-2.0", "UK-Crown-Copyright", "CC-BY-4.0"} {
		if !ids[id] {
			t.Errorf("license_list lacks %s", id)
		}
	}
}

func TestCheckLicence(t *testing.T) {
	for in, want := range map[string]string{
		"": "", "OGL-UK-3.0": "OGL-UK-3.0", "ogl-uk-3.0": "OGL-UK-3.0", "uk-ogl": "uk-ogl", "cc-by-4.0": "CC-BY-4.0",
		"MIT": "MIT", "NCGL-UK-2.0": "NCGL-UK-2.0", "uk-crown-copyright": "UK-Crown-Copyright",
		"other:https://example.org/licence": "other:https://example.org/licence",
	} {
		if got, err := CheckLicence(in); err != nil || got != want {
			t.Errorf("CheckLicence(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"open", "OGL", "other:", "other:ftp://x", "GPL-2.0"} {
		if _, err := CheckLicence(in); err == nil {
			t.Errorf("CheckLicence(%q) accepted", in)
		}
	}
}
