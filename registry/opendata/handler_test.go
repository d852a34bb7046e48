package opendata

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/registry/search"
)

// fakeCatalog is a Catalog over a handful of adverts, with the real search
// index behind Search.
type fakeCatalog struct {
	ix        *search.Index
	published map[nii.DatasetID]*nii.Advert
	ambiguous map[nii.DatasetID]bool
	stored    map[nii.Ref]*nii.Advert
	claims    []Claim // unlisted claims (an impostor's)
}

func newFakeCatalog(ads ...*nii.Advert) *fakeCatalog {
	c := &fakeCatalog{ix: search.NewIndex(), published: map[nii.DatasetID]*nii.Advert{},
		ambiguous: map[nii.DatasetID]bool{}, stored: map[nii.Ref]*nii.Advert{}}
	for _, a := range ads {
		c.published[a.Dataset] = a
		c.ix.Put(search.Doc{Key: string(a.Origin) + " " + a.Dataset.String(), Advert: a, Verified: true})
	}
	return c
}

func (c *fakeCatalog) Search(q search.Query) search.Result { return c.ix.Search(q) }
func (c *fakeCatalog) Published(d nii.DatasetID) (*nii.Advert, bool, error) {
	if c.ambiguous[d] {
		return nil, false, fmt.Errorf("dataset %s: %w publisher: two claims", d, nii.ErrAmbiguous)
	}
	if a := c.published[d]; a != nil {
		return a, true, nil
	}
	return nil, false, fmt.Errorf("dataset %s: %w in the federated catalog", d, nii.ErrNotFound)
}
func (c *fakeCatalog) eachPublished(fn func(Claim)) {
	for _, a := range c.published {
		fn(Claim{Advert: a, Verified: true})
	}
	for _, cl := range c.claims {
		fn(cl)
	}
}

// ListedNames and ListedOrgs recount, as the catalog's aggregates would
// hold them.
func (c *fakeCatalog) ListedNames(offset, limit int) ([]string, int) {
	names := []string{}
	c.eachPublished(func(cl Claim) {
		if cl.ID == "" && cl.Advert.Meta.Access != nii.AccessRestricted {
			names = append(names, CKANName(cl.Advert.Dataset))
		}
	})
	slices.Sort(names)
	names = slices.Compact(names)
	total := len(names)
	names = names[min(offset, len(names)):]
	if limit >= 0 {
		names = names[:min(limit, len(names))]
	}
	return names, total
}
func (c *fakeCatalog) ListedOrgs() []OrgCount {
	by := map[string]*OrgCount{}
	c.eachPublished(func(cl Claim) {
		a := cl.Advert
		if cl.ID != "" || a.Meta.Access == nii.AccessRestricted {
			return
		}
		o := by[a.Dataset.Org]
		if o == nil {
			o = &OrgCount{Org: a.Dataset.Org}
			by[a.Dataset.Org] = o
		}
		o.Datasets++
		if t := a.Meta.Issued; !t.IsZero() && (o.Issued.IsZero() || t.Before(o.Issued)) {
			o.Issued = t
		}
	})
	var out []OrgCount
	for _, o := range by {
		out = append(out, *o)
	}
	return out
}
func (c *fakeCatalog) PackageByUUID(id string) (nii.DatasetID, bool) {
	var found nii.DatasetID
	c.eachPublished(func(cl Claim) {
		if d := cl.Advert.Dataset; PackageUUID(d) == id || cl.ID != "" && ClaimPackageUUID(d, cl.ID) == id {
			found = d
		}
	})
	return found, found != nii.DatasetID{}
}

// ListedThemes and ListedKeywords recount, like ListedNames.
func (c *fakeCatalog) ListedThemes() map[string]int {
	return c.listedTerms(func(a *nii.Advert) []string { return a.Meta.Themes })
}
func (c *fakeCatalog) ListedKeywords() map[string]int {
	return c.listedTerms(func(a *nii.Advert) []string { return a.Meta.Keywords })
}
func (c *fakeCatalog) listedTerms(of func(*nii.Advert) []string) map[string]int {
	out := map[string]int{}
	c.eachPublished(func(cl Claim) {
		if cl.ID == "" && cl.Advert.Meta.Access != nii.AccessRestricted {
			for _, t := range of(cl.Advert) {
				out[t]++
			}
		}
	})
	return out
}

func (c *fakeCatalog) Claims(d nii.DatasetID) []Claim {
	var out []Claim
	if a := c.published[d]; a != nil {
		out = append(out, Claim{Advert: a, Verified: true})
	}
	for _, cl := range c.claims {
		if cl.Advert.Dataset == d {
			out = append(out, cl)
		}
	}
	return out
}
func (c *fakeCatalog) ClaimOf(a *nii.Advert, verified bool) string {
	for _, cl := range c.claims {
		if cl.Advert == a {
			return cl.ID
		}
	}
	return ""
}
func (c *fakeCatalog) OrgName(org string) string {
	for _, a := range c.published {
		if a.Dataset.Org == org {
			return a.Meta.PublisherName
		}
	}
	return ""
}
func (c *fakeCatalog) Online(nii.NodeID) bool { return true }
func (c *fakeCatalog) Holds(r nii.Ref) bool   { return c.stored[r] != nil }
func (c *fakeCatalog) Stored(r nii.Ref) (*nii.Advert, error) {
	if a := c.stored[r]; a != nil {
		return a, nil
	}
	return nil, fmt.Errorf("version %s: %w", r, nii.ErrNotFound)
}

// get serves one request through a Handler over cat.
func get(t *testing.T, cat Catalog, method, target, accept string) (*http.Response, []byte) {
	t.Helper()
	h := NewHandler(cat, Config{Federation: "london", Org: "camden", OrgName: "London Borough of Camden", Version: "test",
		Error: func(w http.ResponseWriter, err error) {
			code := http.StatusInternalServerError
			switch {
			case errors.Is(err, nii.ErrInvalid):
				code = http.StatusBadRequest
			case errors.Is(err, nii.ErrNotFound):
				code = http.StatusNotFound
			case errors.Is(err, nii.ErrAmbiguous):
				code = http.StatusConflict
			}
			http.Error(w, err.Error(), code)
		}})
	r := httptest.NewRequest(method, target, nil)
	if accept != "" {
		r.Header.Set("Accept", accept)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	b, _ := io.ReadAll(w.Result().Body)
	return w.Result(), b
}

func ckanResult(t *testing.T, b []byte, into any) Response {
	t.Helper()
	var raw struct {
		Response
		Result json.RawMessage `json:"result"`
		Error  map[string]any  `json:"error"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatalf("not a CKAN response: %v: %s", err, b)
	}
	if into != nil && raw.Success {
		if err := json.Unmarshal(raw.Result, into); err != nil {
			t.Fatalf("result: %v: %s", err, raw.Result)
		}
	}
	raw.Response.Success = raw.Success
	return raw.Response
}

// TestHandlerCKAN walks the CKAN actions the handler answers over a
// Catalog, without a node: package lookup by name and by id, an ambiguous
// name, the organization list's sorts and paging, package_list.
func TestHandlerCKAN(t *testing.T) {
	lam, tra := testAdvert("lambeth", "spend", 2), testAdvert("trafford", "spend", 1)
	tra.Meta.PublisherName = "Trafford Council"
	cat := newFakeCatalog(lam, tra, testAdvert("lambeth", "trees", 1))
	cat.ambiguous[nii.DatasetID{Org: "north", Name: "east-spend"}] = true

	var p Package
	if resp, b := get(t, cat, "GET", "/api/3/action/package_show?id=lambeth-spend", ""); resp.StatusCode != 200 || !ckanResult(t, b, &p).Success || p.Name != "lambeth-spend" {
		t.Fatalf("package_show by name: %d %s", resp.StatusCode, b)
	}
	if !strings.HasSuffix(p.Resources[0].URL, "/api/v1/datasets/lambeth/spend/versions/2/download") {
		t.Errorf("a version not held here links the relay: %s", p.Resources[0].URL)
	}
	cat.stored[nii.Ref{Dataset: lam.Dataset, Version: 2}] = lam
	if _, b := get(t, cat, "GET", "/api/3/action/package_show?id="+PackageUUID(lam.Dataset), ""); !ckanResult(t, b, &p).Success ||
		p.Name != "lambeth-spend" || !strings.HasSuffix(p.Resources[0].URL, "/api/v1/datasets/lambeth/spend/versions/2/content") {
		t.Errorf("package_show by id, held here: %s", b)
	}
	if resp, b := get(t, cat, "GET", "/api/3/action/package_show?id=north-east-spend", ""); resp.StatusCode != 409 || !strings.Contains(string(b), "ambiguous publisher") {
		t.Errorf("an ambiguous dataset: %d %s, want 409 saying so", resp.StatusCode, b)
	}
	if resp, _ := get(t, cat, "GET", "/api/3/action/package_show?id=nobody-nothing", ""); resp.StatusCode != 404 {
		t.Errorf("an unknown package: %d, want 404", resp.StatusCode)
	}

	var names []string
	for _, tc := range []struct{ query, want string }{
		// Only orgs with listed datasets: not the serving node's own org
		// (camden), nor members with nothing published.
		{"", "lambeth,trafford"},
		{"sort=name%20asc&limit=1&offset=1", "trafford"},
		{"sort=package_count%20desc&limit=1", "lambeth"},
	} {
		if _, b := get(t, cat, "GET", "/api/3/action/organization_list?"+tc.query, ""); !ckanResult(t, b, &names).Success || strings.Join(names, ",") != tc.want {
			t.Errorf("organization_list?%s: %s, want %s", tc.query, b, tc.want)
		}
	}
	if resp, _ := get(t, cat, "GET", "/api/3/action/organization_list?sort=bogus", ""); resp.StatusCode != 409 {
		t.Errorf("a bad sort: %d, want 409", resp.StatusCode)
	}
	if _, b := get(t, cat, "GET", "/api/3/action/package_list", ""); !ckanResult(t, b, &names).Success || strings.Join(names, ",") != "lambeth-spend,lambeth-trees,trafford-spend" {
		t.Errorf("package_list: %s", b)
	}
}

// TestHandlerDCATAndDataPackage: content negotiation, paging errors through
// the node's error writer, and the Data Package of an older stored version.
func TestHandlerDCATAndDataPackage(t *testing.T) {
	lam := testAdvert("lambeth", "spend", 2)
	cat := newFakeCatalog(lam)
	old := *lam
	old.Version = 1
	cat.stored[nii.Ref{Dataset: lam.Dataset, Version: 1}] = &old
	cat.ambiguous[nii.DatasetID{Org: "north", Name: "spend"}] = true

	for _, tc := range []struct{ path, accept, want string }{
		{"/catalog", "text/turtle", "text/turtle; charset=utf-8"},
		{"/catalog", "text/turtle;q=0.5, application/ld+json", "application/ld+json"},
		{"/catalog.ttl", "application/ld+json", "text/turtle; charset=utf-8"},
		{"/api/v1/datasets/lambeth/spend/dcat", "", "application/ld+json"},
	} {
		resp, b := get(t, cat, "GET", tc.path, tc.accept)
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != tc.want || !strings.Contains(string(b), "lambeth") {
			t.Errorf("%s (Accept %q): %d %s, want %s", tc.path, tc.accept, resp.StatusCode, resp.Header.Get("Content-Type"), tc.want)
		}
	}
	for _, tc := range []struct {
		path   string
		status int
	}{
		{"/catalog?page_size=0", 400},
		{"/catalog?sort=sideways", 400},
		{"/api/v1/datasets/lambeth/nothing/dcat", 404},
		{"/api/v1/datasets/north/spend/dcat", 409},
		{"/api/v1/datasets/lambeth/spend/versions/7/datapackage.json", 404},
	} {
		if resp, b := get(t, cat, "GET", tc.path, ""); resp.StatusCode != tc.status {
			t.Errorf("%s: %d %s, want %d", tc.path, resp.StatusCode, b, tc.status)
		}
	}
	var dp DataPackage
	resp, b := get(t, cat, "GET", "/api/v1/datasets/lambeth/spend/versions/1/datapackage.json", "")
	if err := json.Unmarshal(b, &dp); err != nil || resp.StatusCode != 200 || len(dp.Resources) != 1 ||
		!strings.HasSuffix(dp.Resources[0].Path, "/api/v1/datasets/lambeth/spend/versions/1/content") {
		t.Errorf("an older stored version's data package: %d %s", resp.StatusCode, b)
	}
}

// TestLinksNoNetworking checks the transitive imports: the translation and
// its handler never link libp2p or nii's node and exchange. (memberlist
// still comes in through package registry, which holds gossip until it
// moves to its own package; then it belongs in this list.)
func TestLinksNoNetworking(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Skipf("go list: %v", err)
	}
	for _, p := range strings.Fields(string(out)) {
		for _, banned := range []string{"libp2p", "github.com/nii-uk/nii/node", "github.com/nii-uk/nii/exchange"} {
			if strings.Contains(p, banned) {
				t.Errorf("registry/opendata links %s", p)
			}
		}
	}
}
