package node

import (
	"cmp"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/exchange"
	"github.com/nii-uk/nii/registry"
	"github.com/nii-uk/nii/registry/opendata"
)

// The federated catalog in the formats existing tools speak, on every node
// (registry-only ones included), public and read-only. registry/opendata
// does the translation; this file finds the entries and serves them.
//
//	GET|POST /api/3/action/{action}     CKAN action API: package_search, package_show, package_list,
//	                                    organization_list, organization_show, status_show, site_read, help_show
//	GET  /api/3                          {"version": 3}
//	GET  /catalog                        DCAT catalog, JSON-LD or Turtle by Accept; ?page=&page_size= and catalog filters
//	GET  /catalog.jsonld, /catalog.ttl
//	GET  /api/v1/datasets/{org}/{name}/dcat[.jsonld|.ttl]
//	GET  /api/v1/datasets/{org}/{name}/datapackage.json
//	GET  /api/v1/datasets/{org}/{name}/versions/{version}/datapackage.json
//	GET  /api/v1/datasets/{org}/{name}/versions/{version}/download   bytes: from the store, else relayed from a provider (open datasets)
//
// docs/opendata.md documents each.
func (n *Node) openDataRoutes(mux *http.ServeMux) {
	mux.HandleFunc("/api/3/action/{action}", n.handleCKAN)
	mux.HandleFunc("GET /api/3", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]int{"version": 3})
	})
	mux.HandleFunc("GET /catalog", n.handleDCATCatalog(""))
	mux.HandleFunc("GET /catalog.jsonld", n.handleDCATCatalog(mediaJSONLD))
	mux.HandleFunc("GET /catalog.ttl", n.handleDCATCatalog(mediaTurtle))
	mux.HandleFunc("GET /api/v1/datasets/{org}/{name}/dcat", n.handleDCATDataset(""))
	mux.HandleFunc("GET /api/v1/datasets/{org}/{name}/dcat.jsonld", n.handleDCATDataset(mediaJSONLD))
	mux.HandleFunc("GET /api/v1/datasets/{org}/{name}/dcat.ttl", n.handleDCATDataset(mediaTurtle))
	mux.HandleFunc("GET /api/v1/datasets/{org}/{name}/datapackage.json", n.handleDataPackage)
	mux.HandleFunc("GET /api/v1/datasets/{org}/{name}/versions/{version}/datapackage.json", n.handleDataPackage)
	mux.HandleFunc("GET /api/v1/datasets/{org}/{name}/versions/{version}/download", n.handleDownload)
}

const (
	mediaJSONLD = "application/ld+json"
	mediaTurtle = "text/turtle"
)

// hostRE is what a forwarded host may look like: a DNS name or an IP
// literal, and a port.
var hostRE = regexp.MustCompile(`^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(:[0-9]{1,5})?$`)

// baseURL is the absolute URL the request came in on: its scheme and
// Host, or, behind a reverse proxy, X-Forwarded-Proto and -Host (checked
// for shape, as they only ever shape links in the caller's own response).
func baseURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	if p := r.Header.Get("X-Forwarded-Proto"); p == "https" || p == "http" {
		scheme = p
	}
	host := r.Host
	if h := r.Header.Get("X-Forwarded-Host"); h != "" && hostRE.MatchString(h) {
		host = h
	}
	if !hostRE.MatchString(host) {
		host = "localhost"
	}
	return scheme + "://" + host
}

func (n *Node) site(r *http.Request) opendata.Site {
	return opendata.Site{Base: baseURL(r), Federation: n.cfg.Federation, Org: n.cfg.Org, OrgName: n.cfg.OrgName}
}

// downloadURL is where this node serves a version's bytes: the content
// endpoint if it holds the version, else the relay.
func (n *Node) downloadURL(base string, ref nii.Ref) string {
	if held, _ := n.store.HasVersion(ref); held {
		return base + opendata.ContentPath(ref.Dataset, ref.Version)
	}
	return base + opendata.DatasetPath(ref.Dataset) + "/versions/" + strconv.FormatUint(ref.Version, 10) + "/download"
}

// odEntry makes the translation's view of an advert.
func (n *Node) odEntry(base string, a *nii.Advert, verified bool) opendata.Entry {
	online, _ := n.presence(a.Origin)
	return opendata.Entry{
		Advert: a, Verified: verified, Online: online,
		Download: n.downloadURL(base, nii.Ref{Dataset: a.Dataset, Version: a.Version}),
	}
}

// published returns the publisher's live advert of d (verified claims
// first), if the catalog has one.
func (n *Node) published(d nii.DatasetID) (registry.Entry, bool) {
	e, err := n.publisher(d)
	if err != nil {
		return registry.Entry{}, false
	}
	return e, !e.Advert.Withdrawn
}

// orgTitle returns an org's display name: this node's own, or the one
// its newest advert gives (kept by the catalog, so the organization facet
// of package_search costs a map lookup per org).
func (n *Node) orgTitle(org string) string {
	if org == n.cfg.Org && n.cfg.OrgName != "" {
		return n.cfg.OrgName
	}
	return n.catalog.OrgName(org)
}

// ---- CKAN ----

func ckanHelp(base, action string) string {
	return base + "/api/3/action/help_show?name=" + url.QueryEscape(action)
}

func writeCKAN(w http.ResponseWriter, base, action string, result any) {
	writeJSON(w, http.StatusOK, opendata.Response{Help: ckanHelp(base, action), Success: true, Result: result})
}

func writeCKANError(w http.ResponseWriter, base, action string, e *opendata.Error) {
	writeJSON(w, e.Status, opendata.Response{Help: ckanHelp(base, action), Success: false, Error: e})
}

// ckanActions describes each action, for help_show.
var ckanActions = map[string]string{
	"package_search":    "Search the federated catalog. Parameters: q, fq (organization, tags, groups, res_format, license_id, access, conforms_to, verified), sort (score desc, metadata_modified desc, title_string asc), rows (0-1000, default 10), start, facet.field (JSON list), facet.limit.",
	"package_show":      "One dataset. Parameter: id (the package name org-name, org/name, or the package id).",
	"package_list":      "The names of every dataset in the federated catalog. Parameters: limit, offset.",
	"organization_list": "The publishing orgs. Parameters: all_fields, sort (title asc, name asc, package_count desc), limit, offset.",
	"organization_show": "One org. Parameters: id (the org's name), include_datasets.",
	"status_show":       "What this site is.",
	"site_read":         "Whether the site may be read: always true.",
	"help_show":         "The description of an action. Parameter: name.",
}

func (n *Node) handleCKAN(w http.ResponseWriter, r *http.Request) {
	base := baseURL(r)
	action := r.PathValue("action")
	if r.Method != http.MethodGet && r.Method != http.MethodHead && r.Method != http.MethodPost {
		w.Header().Set("Allow", "GET, HEAD, POST")
		writeCKANError(w, base, action, &opendata.Error{Status: http.StatusMethodNotAllowed, Type: "Bad request", Message: "Bad request - use GET or POST"})
		return
	}
	if _, ok := ckanActions[action]; !ok {
		for _, suffix := range []string{"_create", "_update", "_patch", "_delete", "_purge"} {
			if strings.HasSuffix(action, suffix) {
				writeCKANError(w, base, action, &opendata.Error{Status: http.StatusForbidden, Type: "Authorization Error",
					Message: "Access denied: nii's CKAN API is read-only; publish with 'nii publish' on the publisher's node"})
				return
			}
		}
		writeCKANError(w, base, action, &opendata.Error{Status: http.StatusBadRequest, Type: "Bad request",
			Message: "Bad request - Action name not known: " + action})
		return
	}
	p, perr := opendata.ParamsFrom(r)
	if perr != nil {
		writeCKANError(w, base, action, perr)
		return
	}
	var (
		result any
		err    *opendata.Error
	)
	switch action {
	case "package_search":
		result, err = n.ckanPackageSearch(base, p)
	case "package_show":
		result, err = n.ckanPackageShow(base, p)
	case "package_list":
		result, err = n.ckanPackageList(p)
	case "organization_list":
		result, err = n.ckanOrganizationList(p)
	case "organization_show":
		result, err = n.ckanOrganizationShow(base, p)
	case "status_show":
		result = map[string]any{
			"site_title":       "nii " + n.cfg.Federation,
			"site_description": "The " + n.cfg.Federation + " federation's catalog, served by a nii node",
			"site_url":         base,
			"ckan_version":     "2.10.0", // the action API shapes this emulates
			"locale_default":   "en",
			"extensions":       []string{},
			"nii_version":      BuildVersion,
		}
	case "site_read":
		result = true
	case "help_show":
		doc, ok := ckanActions[p["name"]]
		if !ok {
			err = opendata.NotFound("Action function not found")
		}
		result = doc
	}
	if err != nil {
		writeCKANError(w, base, action, err)
		return
	}
	writeCKAN(w, base, action, result)
}

func (n *Node) ckanPackageSearch(base string, p opendata.Params) (any, *opendata.Error) {
	s, err := opendata.ParseSearch(p)
	if err != nil {
		return nil, err
	}
	var res registry.Result
	if s.None {
		res = registry.Result{Facets: map[string][]registry.FacetCount{}}
	} else {
		res = n.catalog.Search(s.Query)
	}
	hits := res.Hits[:min(len(res.Hits), s.Rows)]
	entries := make([]opendata.Entry, len(hits))
	for i, h := range hits {
		entries[i] = n.odEntry(base, h.Doc.Advert, h.Doc.Verified)
	}
	return opendata.NewSearchResult(s, res, entries, n.orgTitle), nil
}

// lookupPackage finds the dataset a CKAN id names: a package id (UUID),
// "org-name" or "org/name".
func (n *Node) lookupPackage(id string) (registry.Entry, *opendata.Error) {
	id = strings.TrimSpace(id)
	if id == "" {
		return registry.Entry{}, opendata.Invalid("id", "Missing value")
	}
	if len(id) > 2*nii.MaxSlugLen+1 {
		return registry.Entry{}, opendata.NotFound("Not found")
	}
	if opendata.IsUUID(id) {
		var found *nii.DatasetID
		n.catalog.EachLive(func(e registry.Entry) {
			if found == nil && opendata.PackageUUID(e.Advert.Dataset) == id {
				d := e.Advert.Dataset
				found = &d
			}
		})
		if found != nil {
			if e, ok := n.published(*found); ok {
				return e, nil
			}
		}
		return registry.Entry{}, opendata.NotFound("Not found")
	}
	var hits []registry.Entry
	for _, d := range opendata.CKANNameCandidates(id) {
		if e, ok := n.published(d); ok {
			hits = append(hits, e)
		}
	}
	switch len(hits) {
	case 0:
		return registry.Entry{}, opendata.NotFound("Not found")
	case 1:
		return hits[0], nil
	}
	names := make([]string, len(hits))
	for i, e := range hits {
		names[i] = e.Advert.Dataset.String()
	}
	return registry.Entry{}, opendata.Invalid("id", fmt.Sprintf("%q names more than one dataset (%s): ask for org/name", id, strings.Join(names, ", ")))
}

func (n *Node) ckanPackageShow(base string, p opendata.Params) (any, *opendata.Error) {
	e, err := n.lookupPackage(p["id"])
	if err != nil {
		return nil, err
	}
	return opendata.NewPackage(n.odEntry(base, e.Advert, e.Verified)), nil
}

func (n *Node) ckanPackageList(p opendata.Params) (any, *opendata.Error) {
	limit, err := p.Int("limit", 1<<30, 0, 1<<30)
	if err != nil {
		return nil, err
	}
	offset, err := p.Int("offset", 0, 0, 1<<30)
	if err != nil {
		return nil, err
	}
	names := []string{}
	n.catalog.EachLive(func(e registry.Entry) { names = append(names, opendata.CKANName(e.Advert.Dataset)) })
	slices.Sort(names)
	names = slices.Compact(names) // two origins may claim one dataset
	names = names[min(offset, len(names)):]
	return names[:min(limit, len(names))], nil
}

// orgs gathers every org the node knows: publishers in the catalog (with
// their dataset counts) and members of the federation.
func (n *Node) orgs() map[string]*opendata.Organization {
	out := map[string]*opendata.Organization{}
	add := func(org, title string, created time.Time) *opendata.Organization {
		o := out[org]
		if o == nil {
			v := opendata.NewOrganization(org, title, created)
			v.PackageCount, v.NumFollowers = new(int), new(int)
			o = &v
			out[org] = o
		}
		if title != "" && o.Title == org {
			o.Title, o.DisplayName = title, title
		}
		return o
	}
	// One walk of the catalog for the counts and the earliest issue date
	// (no catalog calls inside it: it holds the catalog's lock), then
	// each org's name from the catalog.
	type seen struct {
		count  int
		issued time.Time
	}
	published := map[string]*seen{}
	n.catalog.EachLive(func(e registry.Entry) {
		a := e.Advert
		s := published[a.Dataset.Org]
		if s == nil {
			s = &seen{issued: a.Meta.Issued}
			published[a.Dataset.Org] = s
		}
		s.count++
		if !a.Meta.Issued.IsZero() && (s.issued.IsZero() || a.Meta.Issued.Before(s.issued)) {
			s.issued = a.Meta.Issued
		}
	})
	for org, s := range published {
		o := add(org, n.orgTitle(org), s.issued)
		*o.PackageCount = s.count
	}
	for _, peer := range n.peers.List() {
		if peer.Org != "" {
			add(peer.Org, "", time.Time{})
		}
	}
	if n.cfg.Org != "" {
		add(n.cfg.Org, n.cfg.OrgName, time.Time{})
	}
	return out
}

func (n *Node) ckanOrganizationList(p opendata.Params) (any, *opendata.Error) {
	all, err := p.Bool("all_fields")
	if err != nil {
		return nil, err
	}
	limit, err := p.Int("limit", 1000, 0, 1<<30)
	if err != nil {
		return nil, err
	}
	offset, err := p.Int("offset", 0, 0, 1<<30)
	if err != nil {
		return nil, err
	}
	var list []*opendata.Organization
	for _, o := range n.orgs() {
		list = append(list, o)
	}
	byName := func(a, b *opendata.Organization) int { return strings.Compare(a.Name, b.Name) }
	switch sort := strings.ToLower(strings.TrimSpace(p["sort"])); sort {
	case "", "title asc", "title":
		slices.SortFunc(list, func(a, b *opendata.Organization) int {
			return cmp.Or(strings.Compare(strings.ToLower(a.Title), strings.ToLower(b.Title)), byName(a, b))
		})
	case "name asc", "name":
		slices.SortFunc(list, byName)
	case "package_count desc", "package_count":
		slices.SortFunc(list, func(a, b *opendata.Organization) int {
			return cmp.Or(cmp.Compare(*b.PackageCount, *a.PackageCount), byName(a, b))
		})
	default:
		return nil, opendata.Invalid("sort", "unsupported sort "+strconv.Quote(sort)+": want title asc, name asc or package_count desc")
	}
	list = list[min(offset, len(list)):]
	list = list[:min(limit, len(list))]
	if all {
		out := make([]opendata.Organization, len(list))
		for i, o := range list {
			out[i] = *o
		}
		return out, nil
	}
	names := make([]string, len(list))
	for i, o := range list {
		names[i] = o.Name
	}
	return names, nil
}

func (n *Node) ckanOrganizationShow(base string, p opendata.Params) (any, *opendata.Error) {
	id := strings.TrimSpace(p["id"])
	if id == "" {
		return nil, opendata.Invalid("id", "Missing value")
	}
	withDatasets, err := p.Bool("include_datasets")
	if err != nil {
		return nil, err
	}
	if nii.CheckSlug("org", id) != nil {
		return nil, opendata.NotFound("Organization not found")
	}
	o := n.orgs()[id]
	if o == nil {
		return nil, opendata.NotFound("Organization not found")
	}
	if withDatasets {
		o.Packages = []opendata.Package{}
		res := n.catalog.Search(registry.Query{Publisher: []string{id}, Sort: "title", Limit: 1000})
		for _, h := range res.Hits {
			o.Packages = append(o.Packages, opendata.NewPackage(n.odEntry(base, h.Doc.Advert, h.Doc.Verified)))
		}
	}
	return o, nil
}

// ---- DCAT ----

// DCAT paging.
const (
	dcatDefaultPageSize = 100
	dcatMaxPageSize     = 1000
)

// negotiate picks JSON-LD or Turtle from an Accept header (JSON-LD when
// nothing better matches).
func negotiate(accept string) string {
	best, bestQ := mediaJSONLD, -1.0
	for _, part := range strings.Split(accept, ",") {
		fields := strings.Split(part, ";")
		mt := strings.ToLower(strings.TrimSpace(fields[0]))
		q := 1.0
		for _, f := range fields[1:] {
			if v, ok := strings.CutPrefix(strings.TrimSpace(f), "q="); ok {
				if x, err := strconv.ParseFloat(v, 64); err == nil {
					q = x
				}
			}
		}
		var m string
		switch mt {
		case mediaTurtle, "application/x-turtle":
			m = mediaTurtle
		case mediaJSONLD, "application/json":
			m = mediaJSONLD
		}
		if m != "" && q > bestQ {
			best, bestQ = m, q
		}
	}
	return best
}

func writeGraph(w http.ResponseWriter, r *http.Request, format string, g *opendata.Graph) {
	if format == "" {
		format = negotiate(r.Header.Get("Accept"))
		w.Header().Set("Vary", "Accept")
	}
	if format == mediaTurtle {
		w.Header().Set("Content-Type", "text/turtle; charset=utf-8")
		g.WriteTurtle(w)
		return
	}
	w.Header().Set("Content-Type", mediaJSONLD)
	g.WriteJSONLD(w)
}

func (n *Node) handleDCATCatalog(format string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		q, err := parseQuery(r) // the catalog's filters: q, publisher, theme, …
		if err != nil {
			writeErr(w, err)
			return
		}
		v := r.URL.Query()
		page, size := 1, dcatDefaultPageSize
		for name, dst := range map[string]*int{"page": &page, "page_size": &size} {
			if s := v.Get(name); s != "" {
				k, err := strconv.Atoi(s)
				if err != nil || k < 1 || (name == "page_size" && k > dcatMaxPageSize) || (name == "page" && k > 1_000_000) {
					writeError(w, http.StatusBadRequest, "invalid", fmt.Sprintf("%s %q: want a whole number from 1 (page_size at most %d)", name, s, dcatMaxPageSize))
					return
				}
				*dst = k
			}
		}
		if q.Sort == "" || q.Sort == "relevance" && q.Text == "" {
			q.Sort = "title" // a stable order to page through
		}
		q.Offset, q.Limit = (page-1)*size, size
		res := n.catalog.Search(q)
		base := baseURL(r)
		entries := make([]opendata.Entry, len(res.Hits))
		for i, h := range res.Hits {
			entries[i] = n.odEntry(base, h.Doc.Advert, h.Doc.Verified)
		}
		path := r.URL.Path
		pageURL := func(k int) string {
			u := url.Values{}
			for key, vals := range v {
				if key != "page" && key != "page_size" {
					u[key] = vals
				}
			}
			u.Set("page", strconv.Itoa(k))
			u.Set("page_size", strconv.Itoa(size))
			return base + path + "?" + u.Encode()
		}
		writeGraph(w, r, format, opendata.CatalogGraph(n.site(r), entries, opendata.Page{Number: page, Size: size, Total: res.Total, URL: pageURL}))
	}
}

// publishedFromPath finds the live catalog entry of the dataset in the
// request path.
func (n *Node) publishedFromPath(r *http.Request) (registry.Entry, error) {
	d, err := datasetFromPath(r)
	if err != nil {
		return registry.Entry{}, err
	}
	e, ok := n.published(d)
	if !ok {
		return registry.Entry{}, fmt.Errorf("dataset %s: %w in the federated catalog", d, exchange.ErrNotFound)
	}
	return e, nil
}

func (n *Node) handleDCATDataset(format string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		e, err := n.publishedFromPath(r)
		if err != nil {
			writeErr(w, err)
			return
		}
		writeGraph(w, r, format, opendata.DatasetGraph(n.site(r), n.odEntry(baseURL(r), e.Advert, e.Verified)))
	}
}

// ---- Data Package ----

func (n *Node) handleDataPackage(w http.ResponseWriter, r *http.Request) {
	d, err := datasetFromPath(r)
	if err != nil {
		writeErr(w, err)
		return
	}
	var version uint64
	if s := r.PathValue("version"); s != "" && s != "latest" {
		ref, err := nii.ParseRef(d.String() + "@" + s)
		if err != nil {
			writeErr(w, err)
			return
		}
		version = ref.Version
	}
	base := baseURL(r)
	e, ok := n.published(d)
	var entry opendata.Entry
	switch {
	case ok && (version == 0 || version == e.Advert.Version):
		entry = n.odEntry(base, e.Advert, e.Verified)
	default:
		// An older version (the catalog holds only the newest advert), or
		// a dataset only this node holds: describe the stored version.
		rec, err := n.store.Version(nii.Ref{Dataset: d, Version: version})
		if err != nil {
			switch {
			case ok:
				writeErr(w, fmt.Errorf("version %d of %s: %w here; the federation advertises only the latest, version %d", version, d, exchange.ErrNotFound, e.Advert.Version))
			default:
				writeErr(w, fmt.Errorf("dataset %s: %w in the federated catalog", d, exchange.ErrNotFound))
			}
			return
		}
		a := &nii.Advert{Origin: rec.Publisher, Dataset: d, Version: rec.Ref.Version, Manifest: rec.Manifest, Meta: rec.Meta}
		entry = n.odEntry(base, a, ok && e.Verified && e.Advert.Origin == rec.Publisher)
	}
	w.Header().Set("Content-Type", "application/json")
	writeJSON(w, http.StatusOK, opendata.NewDataPackage(n.site(r), entry))
}
