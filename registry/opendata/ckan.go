package opendata

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/registry/search"
)

// The CKAN action API subset: response shapes as CKAN 2.9/2.10 returns
// them. docs/opendata.md lists what is and is not implemented.

// Response is the envelope of every CKAN action response.
type Response struct {
	Help    string `json:"help"`
	Success bool   `json:"success"`
	Result  any    `json:"result,omitempty"`
	Error   *Error `json:"error,omitempty"`
}

// Error is a CKAN action error. It marshals as CKAN does:
// {"__type": "Not Found Error", "message": "…"}; a validation error also
// names the offending parameter: {"__type": "Validation Error", "rows":
// ["…"], "message": "…"}.
type Error struct {
	Status  int    // HTTP status: 404, 409, 400, 403
	Type    string // "Not Found Error", "Validation Error", "Search Query Error"
	Message string
	Field   string // the parameter at fault, for validation errors
}

func (e *Error) Error() string { return e.Type + ": " + e.Message }

// MarshalJSON writes CKAN's error object.
func (e *Error) MarshalJSON() ([]byte, error) {
	m := map[string]any{"__type": e.Type, "message": e.Message}
	if e.Field != "" {
		m[e.Field] = []string{e.Message}
	}
	return json.Marshal(m)
}

// NotFound is CKAN's 404 error.
func NotFound(msg string) *Error {
	return &Error{Status: http.StatusNotFound, Type: "Not Found Error", Message: msg}
}

// Invalid is CKAN's 409 validation error about one parameter.
func Invalid(field, msg string) *Error {
	return &Error{Status: http.StatusConflict, Type: "Validation Error", Message: msg, Field: field}
}

// searchError is CKAN's 409 error for a query the search cannot parse.
func searchError(field string, err error) *Error {
	return &Error{Status: http.StatusConflict, Type: "Search Query Error", Message: "Search error: " + field + ": " + err.Error(), Field: field}
}

// Params are an action's parameters: from the query string of a GET, or
// the JSON object (or form) body of a POST, as CKAN accepts both.
type Params map[string]string

// MaxParamsBody bounds a POSTed parameter body.
const MaxParamsBody = 64 << 10

// ParamsFrom reads an action request's parameters. A POST body may be a
// JSON object (values that are not strings are kept as their JSON text,
// so facet.field may be a list) or a form; query-string parameters are
// read too, the body's winning.
func ParamsFrom(r *http.Request) (Params, *Error) {
	p := Params{}
	for k, v := range r.URL.Query() {
		if len(v) > 0 {
			p[k] = v[0]
		}
	}
	if r.Method != http.MethodPost || r.Body == nil {
		return p, nil
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxParamsBody+1))
	if err != nil {
		return nil, &Error{Status: http.StatusBadRequest, Type: "Validation Error", Message: "reading the request body: " + err.Error()}
	}
	if len(body) > MaxParamsBody {
		return nil, &Error{Status: http.StatusRequestEntityTooLarge, Type: "Validation Error", Message: fmt.Sprintf("request body over %d bytes", MaxParamsBody)}
	}
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return p, nil
	}
	ct := r.Header.Get("Content-Type")
	if strings.HasPrefix(ct, "application/x-www-form-urlencoded") {
		v, err := url.ParseQuery(string(body))
		if err != nil {
			return nil, &Error{Status: http.StatusBadRequest, Type: "Validation Error", Message: "bad form body: " + err.Error()}
		}
		for k, vs := range v {
			if len(vs) > 0 {
				p[k] = vs[0]
			}
		}
		return p, nil
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(body, &obj); err != nil {
		return nil, &Error{Status: http.StatusBadRequest, Type: "Validation Error", Message: "the body must be a JSON object of parameters: " + err.Error()}
	}
	for k, raw := range obj {
		var s string
		switch {
		case string(raw) == "null":
		case json.Unmarshal(raw, &s) == nil:
			p[k] = s
		default:
			p[k] = string(raw)
		}
	}
	return p, nil
}

// Int parses an integer parameter in [lo, hi], def if absent.
func (p Params) Int(name string, def, lo, hi int) (int, *Error) {
	s, ok := p[name]
	if !ok || s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		return 0, Invalid(name, "Invalid integer")
	}
	if n < lo || n > hi {
		return 0, Invalid(name, fmt.Sprintf("Must be an integer from %d to %d", lo, hi))
	}
	return n, nil
}

// Bool parses a boolean parameter ("true"/"false", as CKAN's asbool).
func (p Params) Bool(name string) (bool, *Error) {
	switch strings.ToLower(strings.TrimSpace(p[name])) {
	case "", "false", "f", "no", "n", "off", "0":
		return false, nil
	case "true", "t", "yes", "y", "on", "1":
		return true, nil
	}
	return false, Invalid(name, "Not a boolean value: "+p[name])
}

// ---- packages ----

// Package is a CKAN package (dataset) dict.
type Package struct {
	ID               string        `json:"id"`
	Name             string        `json:"name"`
	Title            string        `json:"title"`
	Notes            string        `json:"notes"`
	URL              string        `json:"url"`
	Version          string        `json:"version"`
	Author           *string       `json:"author"`
	AuthorEmail      *string       `json:"author_email"`
	Maintainer       *string       `json:"maintainer"`
	MaintainerEmail  *string       `json:"maintainer_email"`
	LicenseID        string        `json:"license_id"`
	LicenseTitle     string        `json:"license_title"`
	LicenseURL       string        `json:"license_url,omitempty"`
	IsOpen           bool          `json:"isopen"`
	State            string        `json:"state"`
	Type             string        `json:"type"`
	Private          bool          `json:"private"`
	MetadataCreated  string        `json:"metadata_created"`
	MetadataModified string        `json:"metadata_modified"`
	OwnerOrg         string        `json:"owner_org"`
	Organization     *Organization `json:"organization"`
	Resources        []Resource    `json:"resources"`
	NumResources     int           `json:"num_resources"`
	Tags             []Tag         `json:"tags"`
	NumTags          int           `json:"num_tags"`
	Groups           []Group       `json:"groups"`
	Extras           []Extra       `json:"extras"`
	Relationships    []any         `json:"relationships_as_object"`
	RelationshipsSub []any         `json:"relationships_as_subject"`
	Score            *float64      `json:"score,omitempty"` // package_search, sorted by relevance
}

// Resource is a CKAN resource dict: one per dataset, its latest version.
type Resource struct {
	ID               string  `json:"id"`
	PackageID        string  `json:"package_id"`
	Name             string  `json:"name"`
	Description      string  `json:"description"`
	URL              string  `json:"url"`
	Format           string  `json:"format"`
	Mimetype         string  `json:"mimetype"`
	Size             int64   `json:"size"`
	Hash             string  `json:"hash"`
	Created          string  `json:"created"`
	LastModified     string  `json:"last_modified"`
	MetadataModified string  `json:"metadata_modified"`
	Position         int     `json:"position"`
	State            string  `json:"state"`
	URLType          *string `json:"url_type"`
	DatastoreActive  bool    `json:"datastore_active"`
	// CKAN's cache and inner-type columns: always null in nii (no cache,
	// no archives), but present, as CKAN returns them.
	MimetypeInner    *string `json:"mimetype_inner"`
	CacheURL         *string `json:"cache_url"`
	CacheLastUpdated *string `json:"cache_last_updated"`
	// Nii-specific, as extra resource fields are in CKAN.
	Version  uint64 `json:"nii_version"`
	Manifest string `json:"nii_manifest"`
}

// Tag is a CKAN tag dict.
type Tag struct {
	ID          string  `json:"id"`
	Name        string  `json:"name"`
	DisplayName string  `json:"display_name"`
	State       string  `json:"state"`
	VocabID     *string `json:"vocabulary_id"`
}

// Group is a CKAN group dict; nii's themes are shown as groups.
type Group struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	Title       string `json:"title"`
	DisplayName string `json:"display_name"`
	Description string `json:"description"`
	ImageURL    string `json:"image_display_url"`
}

// Extra is a CKAN extra: a key and a string value.
type Extra struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// Organization is a CKAN organization dict, and a CKAN group dict (a
// theme, from group_list and group_show: IsOrganization false, Type
// "group"), which CKAN gives the same shape.
type Organization struct {
	ID             string    `json:"id"`
	Name           string    `json:"name"`
	Title          string    `json:"title"`
	DisplayName    string    `json:"display_name"`
	Description    string    `json:"description"`
	ImageURL       string    `json:"image_url"`
	ImageDisplay   string    `json:"image_display_url"`
	Created        *string   `json:"created"` // null when nii does not know
	IsOrganization bool      `json:"is_organization"`
	Type           string    `json:"type"`
	State          string    `json:"state"`
	ApprovalStatus string    `json:"approval_status"`
	PackageCount   *int      `json:"package_count,omitempty"`
	NumFollowers   *int      `json:"num_followers,omitempty"`
	Packages       []Package `json:"packages,omitempty"`
}

// ckanTime formats t as CKAN does: UTC, microseconds, no zone.
func ckanTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02T15:04:05.000000")
}

// ckanTimeOrNull is ckanTime, or nil (JSON null) for the zero time: a
// client parses null as "unknown", where "" is not a timestamp.
func ckanTimeOrNull(t time.Time) *string {
	if t.IsZero() {
		return nil
	}
	s := ckanTime(t)
	return &s
}

// NewOrganization returns the organization dict of an org; created may be
// zero (unknown).
func NewOrganization(org, title string, created time.Time) Organization {
	if title == "" {
		title = org
	}
	return Organization{
		ID: OrgUUID(org), Name: org, Title: title, DisplayName: title, Created: ckanTimeOrNull(created),
		IsOrganization: true, Type: "organization", State: "active", ApprovalStatus: "approved",
	}
}

// NewPackage translates a catalog entry into a CKAN package.
func NewPackage(e Entry) Package {
	a := e.Advert
	m := &a.Meta
	d := a.Dataset
	lic := lookupLicence(m.Licence)
	pkgID := e.PackageID()
	org := NewOrganization(d.Org, orgTitle(m, d.Org), time.Time{})
	if e.Claim != "" {
		// A claim is not the org: it gets an organization of its own, so
		// a harvester never files it under the org it names.
		org = NewOrganization(d.Org+ClaimSep+e.Claim, orgTitle(m, d.Org)+" (claim by node "+a.Origin.Short()+", "+verifiedWord(e.Verified)+")", time.Time{})
	}
	ref := nii.Ref{Dataset: d, Version: a.Version}
	name := m.Filename
	if name == "" {
		name = m.Title
	}
	if name == "" {
		name = d.Name
	}
	res := Resource{
		ID: ResourceUUID(ref), PackageID: pkgID, Name: name,
		Description: fmt.Sprintf("Version %d of %s, %d bytes", a.Version, d, m.ByteSize),
		URL:         e.Download, Format: formatName(m.MediaType), Mimetype: m.MediaType,
		Size: m.ByteSize, Hash: a.Manifest.String(),
		Created: ckanTime(m.Modified), LastModified: ckanTime(m.Modified), MetadataModified: ckanTime(a.Signed),
		State: "active", Version: a.Version, Manifest: a.Manifest.String(),
	}
	p := Package{
		ID: pkgID, Name: e.PackageName(), Title: m.Title, Notes: m.Description,
		Version:   strconv.FormatUint(a.Version, 10),
		LicenseID: m.Licence, LicenseTitle: lic.title, LicenseURL: lic.url, IsOpen: lic.open,
		State: "active", Type: "dataset",
		// A restricted dataset's data needs a grant: to a CKAN client it
		// is a private dataset (package_search leaves it out unless
		// include_private=true), never a public record whose resource
		// answers 403.
		Private:         m.Access == nii.AccessRestricted,
		MetadataCreated: ckanTime(m.Issued), MetadataModified: ckanTime(m.Modified),
		OwnerOrg: org.ID, Organization: &org,
		Resources: []Resource{res}, NumResources: 1,
		Tags: []Tag{}, Groups: []Group{}, Relationships: []any{}, RelationshipsSub: []any{},
	}
	if p.Title == "" {
		p.Title = d.Name
	}
	if e.Claim != "" && !e.Verified {
		p.Title = "[unverified claim] " + p.Title
	}
	for _, k := range m.Keywords {
		p.Tags = append(p.Tags, Tag{ID: StableUUID("tag:" + k), Name: k, DisplayName: k, State: "active"})
	}
	p.NumTags = len(p.Tags)
	for _, t := range m.Themes {
		p.Groups = append(p.Groups, Group{ID: StableUUID("group:" + t), Name: t, Title: t, DisplayName: t})
	}
	p.Extras = []Extra{
		{"access", string(m.Access)},
		{"identifier", d.String()},
		{"publisher_node", string(a.Origin)},
		{"verified", strconv.FormatBool(e.Verified)},
		{"online", strconv.FormatBool(e.Online)},
		{"version", strconv.FormatUint(a.Version, 10)},
		{"manifest", a.Manifest.String()},
	}
	if m.ConformsTo != "" {
		p.Extras = append(p.Extras, Extra{"conforms_to", m.ConformsTo})
	}
	if e.Claim != "" {
		p.Extras = append(p.Extras, Extra{"claim", e.Claim})
	}
	if len(m.Themes) > 0 {
		b, _ := json.Marshal(m.Themes)
		p.Extras = append(p.Extras, Extra{"theme", string(b)})
	}
	slices.SortFunc(p.Extras, func(a, b Extra) int { return strings.Compare(a.Key, b.Key) })
	return p
}

func verifiedWord(v bool) string {
	if v {
		return "verified"
	}
	return "unverified"
}

// ---- package_search ----

// Search is a parsed package_search request.
type Search struct {
	// Query is what to ask the index. Its Limit is at least 1 (the
	// index's minimum); Rows is what the caller asked for, maybe 0 (only
	// the count and facets).
	Query      search.Query
	Rows       int
	Sort       string   // as echoed in the result
	Facets     []string // CKAN facet fields asked for
	FacetLimit int
	// None is set when a filter can match no nii dataset: the result is
	// empty without searching.
	None bool
	// IncludePrivate: restricted datasets are listed too (CKAN's
	// include_private); by default package_search leaves them out, as
	// CKAN leaves private datasets out for an anonymous caller.
	IncludePrivate bool
}

// ckanFacets maps CKAN facet fields to the index's facets.
var ckanFacets = map[string]string{
	"organization": "publisher",
	"tags":         "keyword",
	"groups":       "theme",
	"res_format":   "format",
	"license_id":   "licence",
	"access":       "access",
}

// DefaultSort is package_search's sort when none is given, as in CKAN.
const DefaultSort = "score desc, metadata_modified desc"

// Limits of package_search.
const (
	DefaultRows = 10
	MaxRows     = 1000
	// MaxStart bounds start so that start+rows stays well inside an int
	// and a deep page is refused rather than ranked.
	MaxStart = 1_000_000
)

// ParseSearch parses package_search's parameters: q, fq, rows, start,
// sort, facet.field, facet.limit, include_private. Unknown parameters are
// ignored, as CKAN ignores ones it does not use (include_drafts, …).
func ParseSearch(p Params) (Search, *Error) {
	s := Search{Sort: DefaultSort, FacetLimit: 50}
	var err *Error
	if s.IncludePrivate, err = p.Bool("include_private"); err != nil {
		return s, err
	}
	if s.Rows, err = p.Int("rows", DefaultRows, 0, 1<<30); err != nil {
		return s, err
	}
	s.Rows = min(s.Rows, MaxRows) // as CKAN caps rows at ckan.search.rows_max, silently
	s.Query.Limit = max(s.Rows, 1)
	if s.Query.Offset, err = p.Int("start", 0, 0, MaxStart); err != nil {
		return s, err
	}
	if s.FacetLimit, err = p.Int("facet.limit", 50, -1, 1000); err != nil {
		return s, err
	}
	if s.FacetLimit == -1 {
		s.FacetLimit = 1000
	}
	text, qf, perr := ParseQ(p["q"])
	if perr != nil {
		return s, searchError("q", perr)
	}
	ff, perr := ParseFilter(p["fq"])
	if perr != nil {
		return s, searchError("fq", perr)
	}
	f, merr := qf.Merge(ff)
	if merr != nil {
		return s, searchError("fq", merr)
	}
	f.Apply(&s.Query)
	s.None = f.None
	if !s.IncludePrivate {
		switch {
		case len(s.Query.Access) == 0:
			s.Query.Access = []string{string(nii.AccessOpen)}
		case !slices.Contains(s.Query.Access, string(nii.AccessOpen)):
			s.None = true // only private datasets asked for, and not included
		default:
			s.Query.Access = []string{string(nii.AccessOpen)}
		}
	}
	s.Query.Text = text
	if sort := strings.TrimSpace(p["sort"]); sort != "" {
		mode, serr := parseSort(sort)
		if serr != nil {
			return s, serr
		}
		s.Query.Sort, s.Sort = mode, sort
	} else {
		s.Query.Sort = "relevance"
	}
	if ff := strings.TrimSpace(p["facet.field"]); ff != "" {
		if err := json.Unmarshal([]byte(ff), &s.Facets); err != nil {
			return s, Invalid("facet.field", `Must be a JSON list of field names, e.g. ["organization","tags"]`)
		}
		for _, f := range s.Facets {
			if _, ok := ckanFacets[f]; !ok {
				return s, Invalid("facet.field", fmt.Sprintf("unknown facet field %q: want organization, tags, groups, res_format, license_id or access", f))
			}
		}
	}
	return s, nil
}

// parseSort maps a CKAN sort ("field dir, field dir") onto the index's
// orders. The first clause decides; later clauses are tie-breakers, which
// the index applies its own way, but they must still be ones it knows.
func parseSort(s string) (string, *Error) {
	mode := ""
	for i, clause := range strings.Split(s, ",") {
		f := strings.Fields(strings.ToLower(clause))
		if len(f) == 1 {
			f = append(f, "asc") // Solr needs a direction; CKAN passes it on
		}
		var m string
		switch {
		case len(f) != 2:
		case f[0] == "score" && f[1] == "desc":
			m = "relevance"
		case (f[0] == "metadata_modified" || f[0] == "metadata_created") && f[1] == "desc":
			m = "modified"
		case (f[0] == "title_string" || f[0] == "title") && f[1] == "asc":
			m = "title"
		case (f[0] == "id" || f[0] == "name") && f[1] == "asc":
			// A stable order to page through, as ckanext-harvest asks
			// ("id asc"): by dataset name (a nii package id is derived
			// from its name, so the order is that of names, not of the
			// ids' hex).
			m = "key"
		}
		if m == "" {
			return "", Invalid("sort", fmt.Sprintf("unsupported sort %q: nii's index sorts by score desc, metadata_modified desc, title_string asc, name asc or id asc", strings.TrimSpace(clause)))
		}
		if i == 0 {
			mode = m
		}
	}
	return mode, nil
}

// FacetItem is one value of a facet in search_facets.
type FacetItem struct {
	Name        string `json:"name"`
	DisplayName string `json:"display_name"`
	Count       int    `json:"count"`
}

// SearchFacet is one field of search_facets.
type SearchFacet struct {
	Title string      `json:"title"`
	Items []FacetItem `json:"items"`
}

// SearchResult is package_search's result.
type SearchResult struct {
	Count        int                       `json:"count"`
	Results      []Package                 `json:"results"`
	Facets       map[string]map[string]int `json:"facets"`
	SearchFacets map[string]SearchFacet    `json:"search_facets"`
	Sort         string                    `json:"sort"`
}

// NewSearchResult assembles package_search's result from the index's
// result and the hits' entries (in hit order). orgTitle names an org for
// the organization facet's display_name ("" if unknown).
func NewSearchResult(s Search, res search.Result, entries []Entry, orgTitle func(string) string) SearchResult {
	out := SearchResult{
		Count: res.Total, Results: []Package{}, Sort: s.Sort,
		Facets: map[string]map[string]int{}, SearchFacets: map[string]SearchFacet{},
	}
	for i, e := range entries {
		p := NewPackage(e)
		if s.Query.Sort == "relevance" && s.Query.Text != "" && i < len(res.Hits) {
			score := res.Hits[i].Score
			p.Score = &score
		}
		out.Results = append(out.Results, p)
	}
	for _, f := range s.Facets {
		counts := res.Facets[ckanFacets[f]]
		sf := SearchFacet{Title: f, Items: []FacetItem{}}
		flat := map[string]int{}
		for i, c := range counts {
			if i == s.FacetLimit {
				break
			}
			name, display := c.Value, c.Value
			switch f {
			case "organization":
				if t := orgTitle(c.Value); t != "" {
					display = t
				}
			case "res_format":
				name = strings.ToUpper(c.Value)
				display = name
			}
			flat[name] = c.Count
			sf.Items = append(sf.Items, FacetItem{Name: name, DisplayName: display, Count: c.Count})
		}
		out.Facets[f] = flat
		out.SearchFacets[f] = sf
	}
	return out
}
