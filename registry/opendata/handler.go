package opendata

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/registry/search"
)

// The federated catalog over HTTP in the formats existing tools speak,
// public and read-only:
//
//	GET|POST /api/3/action/{action}     CKAN action API: package_search, package_show, package_list,
//	GET|POST /api/action/{action}       organization_list, organization_show, group_list, group_show,
//	                                    tag_list, license_list, status_show, site_read, help_show
//	                                    (CKAN serves both paths; ckanapi's RemoteCKAN calls the second)
//	GET  /api/3                          {"version": 3}
//	GET  /catalog                        DCAT catalog, JSON-LD or Turtle by Accept; ?page=&page_size= and catalog filters
//	GET  /catalog.jsonld, /catalog.ttl
//	GET  /api/v1/datasets/{org}/{name}/dcat[.jsonld|.ttl]
//	GET  /api/v1/datasets/{org}/{name}/datapackage.json
//	GET  /api/v1/datasets/{org}/{name}/versions/{version}/datapackage.json
//
// docs/opendata.md documents each. The node mounts a Handler at these
// paths; the download links it writes point at the node's own content and
// relay endpoints, which the node serves.

// Catalog is what the handler reads: the federated catalog as the serving
// node sees it. Package node adapts its catalog, member table and store to
// it.
type Catalog interface {
	// Search runs a catalog query. Where q.Verified is nil the catalog
	// applies its policy's default: a node with trust anchors lists only
	// verified records unless asked for unverified ones.
	Search(q search.Query) search.Result
	// Published returns the publisher's live advert of d (the catalog's
	// choice among claims) and whether its org claim is verified. Errors
	// wrap nii.ErrNotFound (no claim, or withdrawn), nii.ErrAmbiguous or
	// nii.ErrRefused (an unverified only claim on a node with anchors).
	Published(d nii.DatasetID) (a *nii.Advert, verified bool, err error)
	// Claims returns every live claim to publish d (no tombstones, no
	// replicas).
	Claims(d nii.DatasetID) []Claim
	// PackageByUUID returns the dataset whose package UUID (PackageUUID,
	// or ClaimPackageUUID of one of its claims) id may be, from an index
	// the catalog keeps; the caller checks which of its claims, if any,
	// id names.
	PackageByUUID(id string) (nii.DatasetID, bool)
	// ListedThemes and ListedKeywords return, for each theme (CKAN group)
	// and keyword (tag) of the datasets ListedNames lists, how many carry
	// it; kept like ListedNames.
	ListedThemes() map[string]int
	ListedKeywords() map[string]int
	// ListedNames returns the CKAN names (CKANName) of the datasets public
	// views list under their own names and that are not restricted,
	// sorted, without repeats, from offset, at most limit (< 0: all), and
	// how many there are. The catalog keeps them as records arrive, so a
	// page costs its own size, not the catalog's.
	ListedNames(offset, limit int) ([]string, int)
	// ListedOrgs returns, for each org with such a dataset, how many it
	// has and the earliest issue date among them; kept like ListedNames.
	ListedOrgs() []OrgCount
	// ClaimOf returns "" if public views list a (a search hit) under its
	// dataset's own name, else the ID that names its claim apart.
	ClaimOf(a *nii.Advert, verified bool) string
	// OrgName returns the display name an org gives itself in its
	// adverts, "" if none does.
	OrgName(org string) string
	// Online reports whether a node is reachable now.
	Online(id nii.NodeID) bool
	// Holds reports whether the serving node stores a version: its bytes
	// are then linked from the content endpoint, else from the relay.
	Holds(r nii.Ref) bool
	// Stored returns a version the serving node stores, as the advert its
	// record amounts to (for the Data Package of a version the catalog no
	// longer advertises). Errors wrap nii.ErrNotFound.
	Stored(r nii.Ref) (*nii.Advert, error)
}

// Claim is one origin's live claim to publish a dataset.
type Claim struct {
	Advert   *nii.Advert
	Verified bool
	// ID is "" for the claim public views list under the dataset's own
	// name (the catalog policy's publisher). Any other claim — an
	// impostor's beside the verified publisher, either of two rival
	// claims, an unverified one on a node with trust anchors — is shown
	// only when asked for, never merged with the dataset, under names of
	// its own made from ID: CKAN name and id, DCAT IRI.
	ID string
}

// Config describes the serving node to the handler.
type Config struct {
	Federation string
	Org        string // the serving node's org
	OrgName    string
	Version    string // nii's build, for status_show
	// Error writes an error of a non-CKAN route (DCAT, Data Package) in
	// the node's own API error format; its kind (nii.ErrNotFound, ...)
	// decides the status. nil: plain text by kind.
	Error func(w http.ResponseWriter, err error)
}

// Handler serves the CKAN, DCAT and Data Package routes over a Catalog.
type Handler struct {
	cat Catalog
	cfg Config
	mux *http.ServeMux
}

var _ http.Handler = (*Handler)(nil)

// NewHandler returns the handler of the open-data routes.
func NewHandler(cat Catalog, cfg Config) *Handler {
	h := &Handler{cat: cat, cfg: cfg, mux: http.NewServeMux()}
	h.mux.HandleFunc("/api/3/action/{action}", h.handleCKAN)
	h.mux.HandleFunc("/api/action/{action}", h.handleCKAN)
	h.mux.HandleFunc("GET /api/3", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]int{"version": 3})
	})
	h.mux.HandleFunc("GET /catalog", h.handleDCATCatalog(""))
	h.mux.HandleFunc("GET /catalog.jsonld", h.handleDCATCatalog(mediaJSONLD))
	h.mux.HandleFunc("GET /catalog.ttl", h.handleDCATCatalog(mediaTurtle))
	h.mux.HandleFunc("GET /api/v1/datasets/{org}/{name}/dcat", h.handleDCATDataset(""))
	h.mux.HandleFunc("GET /api/v1/datasets/{org}/{name}/dcat.jsonld", h.handleDCATDataset(mediaJSONLD))
	h.mux.HandleFunc("GET /api/v1/datasets/{org}/{name}/dcat.ttl", h.handleDCATDataset(mediaTurtle))
	h.mux.HandleFunc("GET /api/v1/datasets/{org}/{name}/datapackage.json", h.handleDataPackage)
	h.mux.HandleFunc("GET /api/v1/datasets/{org}/{name}/versions/{version}/datapackage.json", h.handleDataPackage)
	return h
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

const (
	mediaJSONLD = "application/ld+json"
	mediaTurtle = "text/turtle"
)

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// fail writes err through the configured error writer.
func (h *Handler) fail(w http.ResponseWriter, err error) {
	if h.cfg.Error != nil {
		h.cfg.Error(w, err)
		return
	}
	status := http.StatusInternalServerError
	switch {
	case errors.Is(err, nii.ErrInvalid):
		status = http.StatusBadRequest
	case errors.Is(err, nii.ErrNotFound):
		status = http.StatusNotFound
	case errors.Is(err, nii.ErrAmbiguous):
		status = http.StatusConflict
	}
	http.Error(w, err.Error(), status)
}

// hostRE is what a forwarded host may look like: a DNS name or an IP
// literal, and a port.
var hostRE = regexp.MustCompile(`^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(:[0-9]{1,5})?$`)

// BaseURL is the absolute URL a request came in on: its scheme and Host,
// or, behind a reverse proxy, X-Forwarded-Proto and -Host (checked for
// shape, as they only ever shape links in the caller's own response).
func BaseURL(r *http.Request) string {
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

func (h *Handler) site(r *http.Request) Site {
	return Site{Base: BaseURL(r), Federation: h.cfg.Federation, Org: h.cfg.Org, OrgName: h.cfg.OrgName}
}

// DownloadPath is the API path of the relay of a version's bytes, for a
// node that does not hold it.
func DownloadPath(ref nii.Ref) string {
	return DatasetPath(ref.Dataset) + "/versions/" + strconv.FormatUint(ref.Version, 10) + "/download"
}

// entry makes the translation's view of an advert: with whether its
// publisher is online and where this node serves its bytes (the content
// endpoint if it holds the version, else the relay).
func (h *Handler) entry(base string, a *nii.Advert, verified bool, claim string) Entry {
	ref := nii.Ref{Dataset: a.Dataset, Version: a.Version}
	dl := base + DownloadPath(ref)
	if h.cat.Holds(ref) {
		dl = base + ContentPath(ref.Dataset, ref.Version)
	}
	return Entry{Advert: a, Verified: verified, Online: h.cat.Online(a.Origin), Download: dl, Claim: claim}
}

// hitEntry is entry for a search hit.
func (h *Handler) hitEntry(base string, hit search.Hit) Entry {
	a := hit.Doc.Advert
	return h.entry(base, a, hit.Doc.Verified, h.cat.ClaimOf(a, hit.Doc.Verified))
}

// claimEntry finds the claim named id among d's claims.
func (h *Handler) claimEntry(base string, d nii.DatasetID, id string) (Entry, bool) {
	for _, c := range h.cat.Claims(d) {
		if c.ID == id && id != "" {
			return h.entry(base, c.Advert, c.Verified, c.ID), true
		}
	}
	return Entry{}, false
}

// orgTitle returns an org's display name: the serving node's own, or the
// one its newest advert gives.
func (h *Handler) orgTitle(org string) string {
	if org == h.cfg.Org && h.cfg.OrgName != "" {
		return h.cfg.OrgName
	}
	return h.cat.OrgName(org)
}

func datasetFromPath(r *http.Request) (nii.DatasetID, error) {
	return nii.ParseDatasetID(r.PathValue("org") + "/" + r.PathValue("name"))
}

// ---- CKAN ----

func ckanHelp(base, action string) string {
	return base + "/api/3/action/help_show?name=" + url.QueryEscape(action)
}

func writeCKAN(w http.ResponseWriter, base, action string, result any) {
	writeJSON(w, http.StatusOK, Response{Help: ckanHelp(base, action), Success: true, Result: result})
}

func writeCKANError(w http.ResponseWriter, base, action string, e *Error) {
	writeJSON(w, e.Status, Response{Help: ckanHelp(base, action), Success: false, Error: e})
}

// ckanActions describes each action, for help_show.
var ckanActions = map[string]string{
	"package_search":    "Search the federated catalog. Parameters: q, fq (organization, owner_org, tags, groups, res_format, license_id, access, conforms_to, verified, private, capacity; -organization:x, -groups:x; metadata_modified:[FROM TO UNTIL]), sort (score desc, metadata_modified desc, title_string asc, name asc, id asc), rows (0-1000, default 10; more is capped at 1000), start, facet.field (JSON list), facet.limit, include_private.",
	"package_show":      "One dataset. Parameter: id (the package name org-name, org/name, or the package id).",
	"package_list":      "The names of every public dataset in the federated catalog. Parameters: limit, offset.",
	"organization_list": "The publishing orgs. Parameters: all_fields, sort (title asc, name asc, package_count desc), limit, offset.",
	"organization_show": "One org. Parameters: id (the org's name or id), include_datasets.",
	"group_list":        "The themes datasets are filed under, as groups. Parameters: all_fields, sort (title asc, name asc, package_count desc), limit, offset.",
	"group_show":        "One group (theme). Parameters: id (its name or id), include_datasets.",
	"tag_list":          "The keywords datasets carry. Parameters: query (a substring), all_fields.",
	"license_list":      "The licences nii knows.",
	"status_show":       "What this site is.",
	"site_read":         "Whether the site may be read: always true.",
	"help_show":         "The description of an action. Parameter: name.",
}

func (h *Handler) handleCKAN(w http.ResponseWriter, r *http.Request) {
	base := BaseURL(r)
	action := r.PathValue("action")
	if r.Method != http.MethodGet && r.Method != http.MethodHead && r.Method != http.MethodPost {
		w.Header().Set("Allow", "GET, HEAD, POST")
		writeCKANError(w, base, action, &Error{Status: http.StatusMethodNotAllowed, Type: "Bad request", Message: "Bad request - use GET or POST"})
		return
	}
	if _, ok := ckanActions[action]; !ok {
		for _, suffix := range []string{"_create", "_update", "_patch", "_delete", "_purge"} {
			if strings.HasSuffix(action, suffix) {
				writeCKANError(w, base, action, &Error{Status: http.StatusForbidden, Type: "Authorization Error",
					Message: "Access denied: nii's CKAN API is read-only; publish with 'nii publish' on the publisher's node"})
				return
			}
		}
		writeCKANError(w, base, action, &Error{Status: http.StatusBadRequest, Type: "Bad request",
			Message: "Bad request - Action name not known: " + action})
		return
	}
	p, perr := ParamsFrom(r)
	if perr != nil {
		writeCKANError(w, base, action, perr)
		return
	}
	var (
		result any
		err    *Error
	)
	switch action {
	case "package_search":
		result, err = h.ckanPackageSearch(base, p)
	case "package_show":
		result, err = h.ckanPackageShow(base, p)
	case "package_list":
		result, err = h.ckanPackageList(p)
	case "organization_list":
		result, err = h.ckanOrganizationList(p)
	case "organization_show":
		result, err = h.ckanOrganizationShow(base, p)
	case "group_list":
		result, err = h.ckanGroupList(p)
	case "group_show":
		result, err = h.ckanGroupShow(base, p)
	case "tag_list":
		result, err = h.ckanTagList(p)
	case "license_list":
		result = LicenseList()
	case "status_show":
		result = map[string]any{
			"site_title":       "nii " + h.cfg.Federation,
			"site_description": "The " + h.cfg.Federation + " federation's catalog, served by a nii node",
			"site_url":         base,
			"ckan_version":     "2.10.0", // the action API shapes this emulates
			"locale_default":   "en",
			"extensions":       []string{},
			"nii_version":      h.cfg.Version,
		}
	case "site_read":
		result = true
	case "help_show":
		doc, ok := ckanActions[p["name"]]
		if !ok {
			err = NotFound("Action function not found")
		}
		result = doc
	}
	if err != nil {
		writeCKANError(w, base, action, err)
		return
	}
	writeCKAN(w, base, action, result)
}

func (h *Handler) ckanPackageSearch(base string, p Params) (any, *Error) {
	s, err := ParseSearch(p)
	if err != nil {
		return nil, err
	}
	// owner_org filters may give the organization's id (a UUID).
	orgs := h.orgs()
	for _, list := range []*[]string{&s.Query.Publisher, &s.Query.NotPublisher} {
		for i, v := range *list {
			if IsUUID(v) {
				for slug, o := range orgs {
					if o.ID == v {
						(*list)[i] = slug
					}
				}
			}
		}
	}
	var res search.Result
	if s.None {
		res = search.Result{Facets: map[string][]search.FacetCount{}}
	} else {
		res = h.cat.Search(s.Query)
	}
	hits := res.Hits[:min(len(res.Hits), s.Rows)]
	entries := make([]Entry, len(hits))
	for i, hit := range hits {
		entries[i] = h.hitEntry(base, hit)
	}
	out := NewSearchResult(s, res, entries, h.orgTitle)
	for i := range out.Results {
		h.fillOrg(&out.Results[i], orgs)
	}
	return out, nil
}

// fillOrg gives a package's organization what organization_show says of
// it (its creation time), so that both agree.
func (h *Handler) fillOrg(p *Package, orgs map[string]*Organization) {
	if o := orgs[p.Organization.Name]; o != nil && p.Organization != nil {
		p.Organization.Created = o.Created
	}
}

// lookupPackage finds the dataset a CKAN id names: a package id (UUID),
// "org-name" or "org/name".
func (h *Handler) lookupPackage(base, id string) (Entry, *Error) {
	id = strings.TrimSpace(id)
	if id == "" {
		return Entry{}, Invalid("id", "Missing value")
	}
	if len(id) > 2*nii.MaxSlugLen+1 {
		return Entry{}, NotFound("Not found")
	}
	var candidates []nii.DatasetID
	if IsUUID(id) {
		var found *Claim
		if d, ok := h.cat.PackageByUUID(id); ok {
			for _, c := range h.cat.Claims(d) {
				if c.ID == "" && PackageUUID(d) == id || c.ID != "" && ClaimPackageUUID(d, c.ID) == id {
					found = &c
					break
				}
			}
		}
		switch {
		case found == nil:
			return Entry{}, NotFound("Not found")
		case found.ID != "":
			return h.entry(base, found.Advert, found.Verified, found.ID), nil
		}
		candidates = []nii.DatasetID{found.Advert.Dataset}
	} else if name, claim, ok := strings.Cut(id, ClaimSep); ok {
		for _, d := range CKANNameCandidates(name) {
			if e, ok := h.claimEntry(base, d, claim); ok {
				return e, nil
			}
		}
		return Entry{}, NotFound("Not found")
	} else {
		candidates = CKANNameCandidates(id)
	}
	var (
		hits      []Entry
		ambiguous error
	)
	for _, d := range candidates {
		a, verified, err := h.cat.Published(d)
		switch {
		case err == nil:
			hits = append(hits, h.entry(base, a, verified, ""))
		case errors.Is(err, nii.ErrAmbiguous) && ambiguous == nil:
			ambiguous = err
		}
	}
	switch {
	case len(hits) == 1:
		return hits[0], nil
	case len(hits) == 0 && ambiguous != nil:
		return Entry{}, Invalid("id", ambiguous.Error())
	case len(hits) == 0:
		return Entry{}, NotFound("Not found")
	}
	names := make([]string, len(hits))
	for i, e := range hits {
		names[i] = e.Advert.Dataset.String()
	}
	return Entry{}, Invalid("id", fmt.Sprintf("%q names more than one dataset (%s): ask for org/name", id, strings.Join(names, ", ")))
}

func (h *Handler) ckanPackageShow(base string, p Params) (any, *Error) {
	e, err := h.lookupPackage(base, p["id"])
	if err != nil {
		return nil, err
	}
	pkg := NewPackage(e)
	h.fillOrg(&pkg, h.orgs())
	return pkg, nil
}

func (h *Handler) ckanPackageList(p Params) (any, *Error) {
	limit, err := p.Int("limit", 1<<30, 0, 1<<30)
	if err != nil {
		return nil, err
	}
	offset, err := p.Int("offset", 0, 0, 1<<30)
	if err != nil {
		return nil, err
	}
	// Only what public views list under the dataset's name, and not
	// restricted datasets: CKAN's package_list leaves private ones out.
	names, _ := h.cat.ListedNames(offset, limit)
	return names, nil
}

// OrgCount is one org's public listed datasets: how many, and the
// earliest issue date among them (zero if none gives one).
type OrgCount struct {
	Org      string
	Datasets int
	Issued   time.Time
}

// orgs gathers every org the node knows: publishers in the catalog (with
// their dataset counts) and members of the federation.
func (h *Handler) orgs() map[string]*Organization {
	out := map[string]*Organization{}
	add := func(org, title string, created time.Time) *Organization {
		o := out[org]
		if o == nil {
			v := NewOrganization(org, title, created)
			v.PackageCount, v.NumFollowers = new(int), new(int)
			o = &v
			out[org] = o
		}
		if title != "" && o.Title == org {
			o.Title, o.DisplayName = title, title
		}
		return o
	}
	// The catalog keeps the counts and the earliest issue dates as records
	// arrive (ListedOrgs): an org is what its listed datasets' publisher
	// proves it is; its count is of public datasets, as CKAN's for an
	// anonymous caller. Each org's name comes from the catalog.
	for _, oc := range h.cat.ListedOrgs() {
		o := add(oc.Org, h.orgTitle(oc.Org), oc.Issued)
		*o.PackageCount = oc.Datasets
	}
	// Orgs with no listed dataset (a registry's own org, a member that
	// has published nothing, an org only an unverified claim names) are
	// not listed: CKAN lists organizations that hold packages, and a
	// harvester would make empty ones.
	return out
}

func (h *Handler) ckanOrganizationList(p Params) (any, *Error) {
	orgs := h.orgs()
	list := make([]*Organization, 0, len(orgs))
	for _, o := range orgs {
		list = append(list, o)
	}
	return groupList(p, list)
}

// groupList answers organization_list and group_list from their groups,
// as CKAN's group_list does for both: sort (title asc, the default;
// name asc; package_count desc), offset, limit (default 1000), and names
// or, with all_fields, the dicts.
func groupList(p Params, list []*Organization) (any, *Error) {
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
	byName := func(a, b *Organization) int { return strings.Compare(a.Name, b.Name) }
	switch sort := strings.ToLower(strings.TrimSpace(p["sort"])); sort {
	case "", "title asc", "title":
		slices.SortFunc(list, func(a, b *Organization) int {
			return cmp.Or(strings.Compare(strings.ToLower(a.Title), strings.ToLower(b.Title)), byName(a, b))
		})
	case "name asc", "name":
		slices.SortFunc(list, byName)
	case "package_count desc", "package_count":
		slices.SortFunc(list, func(a, b *Organization) int {
			return cmp.Or(cmp.Compare(*b.PackageCount, *a.PackageCount), byName(a, b))
		})
	default:
		return nil, Invalid("sort", "unsupported sort "+strconv.Quote(sort)+": want title asc, name asc or package_count desc")
	}
	list = list[min(offset, len(list)):]
	list = list[:min(limit, len(list))]
	if all {
		out := make([]Organization, len(list))
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

func (h *Handler) ckanOrganizationShow(base string, p Params) (any, *Error) {
	id := strings.TrimSpace(p["id"])
	if id == "" {
		return nil, Invalid("id", "Missing value")
	}
	withDatasets, err := p.Bool("include_datasets")
	if err != nil {
		return nil, err
	}
	orgs := h.orgs()
	if IsUUID(id) {
		for slug, o := range orgs {
			if o.ID == id {
				id = slug
			}
		}
	}
	if nii.CheckSlug("org", id) != nil {
		return nil, NotFound("Organization not found")
	}
	o := orgs[id]
	if o == nil {
		return nil, NotFound("Organization not found")
	}
	if withDatasets {
		o.Packages = []Package{}
		res := h.cat.Search(search.Query{Publisher: []string{id}, Access: []string{string(nii.AccessOpen)}, Sort: "title", Limit: 1000})
		for _, hit := range res.Hits {
			pkg := NewPackage(h.hitEntry(base, hit))
			h.fillOrg(&pkg, orgs)
			o.Packages = append(o.Packages, pkg)
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

func writeGraph(w http.ResponseWriter, r *http.Request, format string, g *Graph) {
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

func (h *Handler) handleDCATCatalog(format string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v := r.URL.Query()
		q, err := CatalogQuery(v) // the catalog's filters: q, publisher, theme, …
		if err != nil {
			h.fail(w, err)
			return
		}
		page, size := 1, dcatDefaultPageSize
		for name, dst := range map[string]*int{"page": &page, "page_size": &size} {
			if s := v.Get(name); s != "" {
				k, err := strconv.Atoi(s)
				if err != nil || k < 1 || (name == "page_size" && k > dcatMaxPageSize) || (name == "page" && k > 1_000_000) {
					h.fail(w, nii.Errorf(nii.ErrInvalid, "%s %q: want a whole number from 1 (page_size at most %d)", name, s, dcatMaxPageSize))
					return
				}
				*dst = k
			}
		}
		if q.Sort == "" || q.Sort == "relevance" && q.Text == "" {
			q.Sort = "title" // a stable order to page through
		}
		q.Offset, q.Limit = (page-1)*size, size
		res := h.cat.Search(q)
		base := BaseURL(r)
		entries := make([]Entry, len(res.Hits))
		for i, hit := range res.Hits {
			entries[i] = h.hitEntry(base, hit)
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
		writeGraph(w, r, format, CatalogGraph(h.site(r), entries, Page{Number: page, Size: size, Total: res.Total, URL: pageURL}))
	}
}

func (h *Handler) handleDCATDataset(format string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		d, err := datasetFromPath(r)
		if err != nil {
			h.fail(w, err)
			return
		}
		if claim := r.URL.Query().Get("claim"); claim != "" {
			e, ok := h.claimEntry(BaseURL(r), d, claim)
			if !ok {
				h.fail(w, fmt.Errorf("dataset %s: claim %q: %w", d, claim, nii.ErrNotFound))
				return
			}
			writeGraph(w, r, format, DatasetGraph(h.site(r), e))
			return
		}
		a, verified, err := h.cat.Published(d)
		if err != nil {
			h.fail(w, err)
			return
		}
		writeGraph(w, r, format, DatasetGraph(h.site(r), h.entry(BaseURL(r), a, verified, "")))
	}
}

// ---- Data Package ----

func (h *Handler) handleDataPackage(w http.ResponseWriter, r *http.Request) {
	d, err := datasetFromPath(r)
	if err != nil {
		h.fail(w, err)
		return
	}
	var version uint64
	if s := r.PathValue("version"); s != "" && s != "latest" {
		ref, err := nii.ParseRef(d.String() + "@" + s)
		if err != nil {
			h.fail(w, err)
			return
		}
		version = ref.Version
	}
	base := BaseURL(r)
	if claim := r.URL.Query().Get("claim"); claim != "" {
		e, ok := h.claimEntry(base, d, claim)
		if !ok || (version != 0 && version != e.Advert.Version) {
			h.fail(w, fmt.Errorf("dataset %s: claim %q: %w", d, claim, nii.ErrNotFound))
			return
		}
		writeJSON(w, http.StatusOK, NewDataPackage(h.site(r), e))
		return
	}
	pub, verified, perr := h.cat.Published(d)
	var entry Entry
	switch {
	case perr == nil && (version == 0 || version == pub.Version):
		entry = h.entry(base, pub, verified, "")
	default:
		// An older version (the catalog holds only the newest advert), or
		// a dataset only this node holds: describe the stored version.
		a, err := h.cat.Stored(nii.Ref{Dataset: d, Version: version})
		if err != nil {
			switch {
			case perr == nil:
				h.fail(w, fmt.Errorf("version %d of %s: %w here; the federation advertises only the latest, version %d", version, d, nii.ErrNotFound, pub.Version))
			case errors.Is(perr, nii.ErrAmbiguous):
				h.fail(w, perr)
			default:
				h.fail(w, fmt.Errorf("dataset %s: %w in the federated catalog", d, nii.ErrNotFound))
			}
			return
		}
		entry = h.entry(base, a, perr == nil && verified && pub.Origin == a.Origin, "")
	}
	w.Header().Set("Content-Type", "application/json")
	writeJSON(w, http.StatusOK, NewDataPackage(h.site(r), entry))
}

// CatalogQuery parses the federated catalog's query parameters, as nii's
// own GET /api/v1/catalog and the DCAT catalog take them: q, publisher,
// theme, keyword, licence, format, access, conforms_to (repeatable),
// verified, sort, offset, limit. Errors wrap nii.ErrInvalid.
func CatalogQuery(v url.Values) (search.Query, error) {
	q := search.Query{
		Text:       v.Get("q"),
		Publisher:  v["publisher"],
		Theme:      v["theme"],
		Keyword:    v["keyword"],
		Licence:    v["licence"],
		Format:     v["format"],
		Access:     v["access"],
		ConformsTo: v["conforms_to"],
		Sort:       v.Get("sort"),
		Limit:      20,
	}
	switch q.Sort {
	case "", "relevance", "modified", "title":
	default:
		return q, fmt.Errorf("%w sort %q: want relevance, modified or title", nii.ErrInvalid, q.Sort)
	}
	if s := v.Get("verified"); s != "" {
		b, err := strconv.ParseBool(s)
		if err != nil {
			return q, fmt.Errorf("%w verified %q: want true or false", nii.ErrInvalid, s)
		}
		q.Verified = &b
	}
	for name, dst := range map[string]*int{"offset": &q.Offset, "limit": &q.Limit} {
		if s := v.Get(name); s != "" {
			k, err := strconv.Atoi(s)
			if err != nil || k < 0 || (name == "limit" && (k == 0 || k > 1000)) {
				return q, fmt.Errorf("%w %s %q: want a whole number (limit 1 to 1000)", nii.ErrInvalid, name, s)
			}
			*dst = k
		}
	}
	if len(q.Text) > 1000 {
		return q, fmt.Errorf("%w q: longer than 1000 bytes", nii.ErrInvalid)
	}
	return q, nil
}

// ---- groups, tags, licences ----

// newGroup is a theme as a CKAN group: the group dict is CKAN's
// organization dict with is_organization false and type "group".
func newGroup(theme string, count int) *Organization {
	return &Organization{ID: GroupUUID(theme), Name: theme, Title: theme, DisplayName: theme,
		Type: "group", State: "active", ApprovalStatus: "approved", PackageCount: &count, NumFollowers: new(int)}
}

func (h *Handler) ckanGroupList(p Params) (any, *Error) {
	themes := h.cat.ListedThemes()
	list := make([]*Organization, 0, len(themes))
	for t, n := range themes {
		list = append(list, newGroup(t, n))
	}
	return groupList(p, list)
}

func (h *Handler) ckanGroupShow(base string, p Params) (any, *Error) {
	id := strings.TrimSpace(p["id"])
	if id == "" {
		return nil, Invalid("id", "Missing value")
	}
	withDatasets, err := p.Bool("include_datasets")
	if err != nil {
		return nil, err
	}
	themes := h.cat.ListedThemes()
	for t, n := range themes {
		if t != id && GroupUUID(t) != id {
			continue
		}
		g := newGroup(t, n)
		if withDatasets {
			g.Packages = []Package{}
			orgs := h.orgs()
			res := h.cat.Search(search.Query{Theme: []string{t}, Access: []string{string(nii.AccessOpen)}, Sort: "title", Limit: 1000})
			for _, hit := range res.Hits {
				pkg := NewPackage(h.hitEntry(base, hit))
				h.fillOrg(&pkg, orgs)
				g.Packages = append(g.Packages, pkg)
			}
		}
		return g, nil
	}
	return nil, NotFound("Group not found")
}

// TagDict is a tag as tag_list with all_fields gives it.
type TagDict struct {
	ID      string  `json:"id"`
	Name    string  `json:"name"`
	VocabID *string `json:"vocabulary_id"`
}

func (h *Handler) ckanTagList(p Params) (any, *Error) {
	all, err := p.Bool("all_fields")
	if err != nil {
		return nil, err
	}
	query := strings.ToLower(strings.TrimSpace(p["query"]))
	tags := h.cat.ListedKeywords()
	names := make([]string, 0, len(tags))
	for k := range tags {
		if query == "" || strings.Contains(strings.ToLower(k), query) {
			names = append(names, k)
		}
	}
	slices.Sort(names)
	if !all {
		return names, nil
	}
	out := make([]TagDict, len(names))
	for i, k := range names {
		out[i] = TagDict{ID: StableUUID("tag:" + k), Name: k}
	}
	return out, nil
}
