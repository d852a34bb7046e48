package opendata

import (
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/nii-uk/nii"
)

// DCAT v3, DCAT-AP compatible: one dcat:Catalog (the federation as this
// node sees it), a dcat:Dataset per dataset and a dcat:Distribution for
// its latest version. Where DCAT-AP names a controlled vocabulary (EU
// file types, access rights, data themes) nii uses it when it can map a
// value, and otherwise describes the value with a blank node rather than
// inventing IRIs.

const (
	euFileType    = "http://publications.europa.eu/resource/authority/file-type/"
	euAccessRight = "http://publications.europa.eu/resource/authority/access-right/"
	euDataTheme   = "http://publications.europa.eu/resource/authority/data-theme/"
	ianaMediaType = "http://www.iana.org/assignments/media-types/"
)

// euFileTypes maps nii's short format names to the EU file-type authority.
var euFileTypes = map[string]string{
	"csv": "CSV", "json": "JSON", "geojson": "GEOJSON", "jsonld": "JSON_LD", "xlsx": "XLSX",
	"xls": "XLS", "ods": "ODS", "tsv": "TSV", "pdf": "PDF", "xml": "XML", "zip": "ZIP",
	"parquet": "PARQUET", "ndjson": "JSON",
}

// euThemes maps common theme words to the EU data-theme authority.
var euThemes = map[string]string{
	"finance": "ECON", "economy": "ECON", "spend": "ECON", "spending": "ECON", "budget": "ECON",
	"environment": "ENVI", "transport": "TRAN", "health": "HEAL", "education": "EDUC",
	"government": "GOVE", "public sector": "GOVE", "justice": "JUST", "crime": "JUST",
	"agriculture": "AGRI", "energy": "ENER", "science": "TECH", "technology": "TECH",
	"society": "SOCI", "population": "SOCI", "housing": "SOCI", "planning": "REGI",
	"regions": "REGI", "cities": "REGI", "international": "INTR",
}

// Page is one page of a paged catalog.
type Page struct {
	Number int // 1-based
	Size   int
	Total  int // datasets in the whole catalog (or the filtered view)
	// URL returns the absolute URL of page n of the same document.
	URL func(n int) string
}

// Last returns the last page's number (1 for an empty catalog).
func (p Page) Last() int { return max(1, (p.Total+p.Size-1)/p.Size) }

// CatalogGraph returns the DCAT graph of one page of the catalog: the
// catalog, the page's datasets with their distributions and publishers,
// and a Hydra view linking the other pages.
func CatalogGraph(site Site, entries []Entry, page Page) *Graph {
	g := &Graph{}
	cat := NewIRI(site.CatalogIRI())
	g.Type(cat, nsDCAT+"Catalog")
	title := "nii federation"
	if site.Federation != "" {
		title += " " + site.Federation
	}
	g.Add(cat, nsDCT+"title", LangLiteral(title, "en"))
	desc := "Datasets published across the " + site.Federation + " federation, as indexed by the nii node"
	if site.OrgName != "" {
		desc += " of " + site.OrgName
	} else if site.Org != "" {
		desc += " of " + site.Org
	}
	g.Add(cat, nsDCT+"description", LangLiteral(desc+".", "en"))
	g.Add(cat, nsFOAF+"homepage", NewIRI(site.Base+"/api/3/action/package_search"))
	if site.Org != "" {
		g.Add(cat, nsDCT+"publisher", publisher(g, site, site.Org, site.OrgName))
	}
	var newest time.Time
	pubs := map[string]bool{}
	for _, e := range entries {
		ds := addDataset(g, site, e, pubs)
		g.Add(cat, nsDCAT+"dataset", ds)
		if m := e.Advert.Meta.Modified; m.After(newest) {
			newest = m
		}
	}
	if !newest.IsZero() {
		g.Add(cat, nsDCT+"modified", dateTime(newest))
	}
	if page.URL != nil {
		view := NewIRI(page.URL(page.Number))
		g.Add(cat, nsHydra+"view", view)
		// Both Hydra's current PartialCollectionView and the older
		// PagedCollection terms that ckanext-dcat writes and reads, so
		// that every harvester following either finds the next page.
		g.Type(view, nsHydra+"PartialCollectionView")
		g.Type(view, nsHydra+"PagedCollection")
		g.Add(view, nsHydra+"totalItems", Typed(strconv.Itoa(page.Total), nsXSD+"integer"))
		g.Add(view, nsHydra+"itemsPerPage", Typed(strconv.Itoa(page.Size), nsXSD+"integer"))
		last := page.Last()
		links := []struct {
			n          int
			now, older string
		}{
			{1, "first", "firstPage"}, {last, "last", "lastPage"},
			{page.Number - 1, "previous", "previousPage"}, {page.Number + 1, "next", "nextPage"},
		}
		for _, l := range links {
			if l.n < 1 || l.n > last {
				continue
			}
			u := NewIRI(page.URL(l.n))
			g.Add(view, nsHydra+l.now, u)
			g.Add(view, nsHydra+l.older, u)
		}
	}
	return g
}

// DatasetGraph returns the DCAT graph of one dataset.
func DatasetGraph(site Site, e Entry) *Graph {
	g := &Graph{}
	ds := addDataset(g, site, e, map[string]bool{})
	// DCAT links catalog to dataset (there is no inverse property).
	g.Add(NewIRI(site.CatalogIRI()), nsDCAT+"dataset", ds)
	return g
}

// addDataset adds a dataset, its distribution and (once per org, tracked
// in pubs) its publisher, and returns the dataset's node.
func addDataset(g *Graph, site Site, e Entry, pubs map[string]bool) Term {
	a := e.Advert
	m := &a.Meta
	d := a.Dataset
	ds := NewIRI(site.EntryIRI(e))
	g.Type(ds, nsDCAT+"Dataset")
	if e.Claim != "" {
		g.Add(ds, nsDCT+"identifier", Literal(d.String()+ClaimSep+e.Claim))
	} else {
		g.Add(ds, nsDCT+"identifier", Literal(d.String()))
	}
	title := m.Title
	if title == "" {
		title = d.Name
	}
	g.Add(ds, nsDCT+"title", LangLiteral(title, "en"))
	g.Add(ds, nsDCT+"description", LangLiteral(m.Description, "en"))
	g.Add(ds, nsDCAT+"version", Literal(strconv.FormatUint(a.Version, 10)))
	if !m.Issued.IsZero() {
		g.Add(ds, nsDCT+"issued", dateTime(m.Issued))
	}
	if !m.Modified.IsZero() {
		g.Add(ds, nsDCT+"modified", dateTime(m.Modified))
	}
	pubIRI := NewIRI(site.PublisherIRI(e))
	g.Add(ds, nsDCT+"publisher", pubIRI)
	if key := site.PublisherIRI(e); !pubs[key] {
		pubs[key] = true
		g.Type(pubIRI, nsFOAF+"Agent")
		if e.Claim != "" {
			// Not the org: whoever made this claim, named as such.
			g.Add(pubIRI, nsFOAF+"name", Literal(orgTitle(m, d.Org)+" (claim by node "+string(a.Origin)+", "+verifiedWord(e.Verified)+")"))
			g.Add(pubIRI, nsDCT+"identifier", Literal(d.Org+ClaimSep+e.Claim))
		} else {
			g.Add(pubIRI, nsFOAF+"name", Literal(orgTitle(m, d.Org)))
			g.Add(pubIRI, nsDCT+"identifier", Literal(d.Org))
		}
	}
	for _, k := range m.Keywords {
		g.Add(ds, nsDCAT+"keyword", LangLiteral(k, "en"))
	}
	for _, t := range m.Themes {
		g.Add(ds, nsDCAT+"theme", theme(g, t))
	}
	if m.ConformsTo != "" {
		g.Add(ds, nsDCT+"conformsTo", standard(g, m.ConformsTo))
	}
	access := "PUBLIC"
	if m.Access == nii.AccessRestricted {
		access = "RESTRICTED"
	}
	g.Add(ds, nsDCT+"accessRights", NewIRI(euAccessRight+access))
	g.Add(ds, nsDCAT+"landingPage", NewIRI(site.Base+"/api/v1/catalog/"+d.Org+"/"+d.Name))
	lic := licenceTerm(g, m.Licence)

	dist := NewIRI(site.EntryIRI(e) + "#distribution-" + strconv.FormatUint(a.Version, 10))
	g.Add(ds, nsDCAT+"distribution", dist)
	g.Type(dist, nsDCAT+"Distribution")
	dname := m.Filename
	if dname == "" {
		dname = title
	}
	g.Add(dist, nsDCT+"title", Literal(dname))
	g.Add(dist, nsDCT+"identifier", Literal(nii.Ref{Dataset: d, Version: a.Version}.String()))
	if e.Download != "" {
		g.Add(dist, nsDCAT+"accessURL", NewIRI(e.Download))
		g.Add(dist, nsDCAT+"downloadURL", NewIRI(e.Download))
	}
	if mt := mediaType(m.MediaType); mt != "" {
		g.Add(dist, nsDCAT+"mediaType", NewIRI(ianaMediaType+mt))
		if ft, ok := euFileTypes[strings.ToLower(formatName(mt))]; ok {
			g.Add(dist, nsDCT+"format", NewIRI(euFileType+ft))
		}
	}
	g.Add(dist, nsDCAT+"byteSize", Typed(strconv.FormatInt(max(m.ByteSize, 0), 10), nsXSD+"nonNegativeInteger"))
	if !m.Modified.IsZero() {
		g.Add(dist, nsDCT+"issued", dateTime(m.Modified))
		g.Add(dist, nsDCT+"modified", dateTime(m.Modified))
	}
	if lic.Value != "" {
		g.Add(dist, nsDCT+"license", lic)
	}
	g.Add(dist, nsDCT+"accessRights", NewIRI(euAccessRight+access))
	return ds
}

func dateTime(t time.Time) Term {
	return Typed(t.UTC().Format(time.RFC3339Nano), nsXSD+"dateTime")
}

// mediaType returns a media type's type/subtype, lowercased, if it is a
// well-formed one (the rest, parameters, is dropped).
func mediaType(s string) string {
	mt, _, _ := strings.Cut(s, ";")
	mt = strings.ToLower(strings.TrimSpace(mt))
	typ, sub, ok := strings.Cut(mt, "/")
	if !ok || !isToken(typ) || !isToken(sub) {
		return ""
	}
	return mt
}

// isToken reports whether s is a non-empty RFC 6838 restricted name.
func isToken(s string) bool {
	if s == "" || len(s) > 127 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || strings.ContainsRune("!#$&-^_.+", c)) {
			return false
		}
	}
	return true
}

// isHTTPURL reports whether s is an absolute http(s) URL with a host.
func isHTTPURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

// publisher adds the serving node's org as an agent.
func publisher(g *Graph, site Site, org, name string) Term {
	p := NewIRI(site.OrgIRI(org))
	g.Type(p, nsFOAF+"Agent")
	if name == "" {
		name = org
	}
	g.Add(p, nsFOAF+"name", Literal(name))
	g.Add(p, nsDCT+"identifier", Literal(org))
	return p
}

// theme returns a dcat:theme value: the theme itself if it is an IRI, the
// EU data theme it maps to, or a skos:Concept labelled with it.
func theme(g *Graph, t string) Term {
	if isHTTPURL(t) {
		return NewIRI(t)
	}
	if code, ok := euThemes[strings.ToLower(strings.TrimSpace(t))]; ok {
		return NewIRI(euDataTheme + code)
	}
	b := g.NewBlank()
	g.Type(b, nsSKOS+"Concept")
	g.Add(b, nsSKOS+"prefLabel", LangLiteral(t, "en"))
	return b
}

// standard returns a dct:conformsTo value: the IRI, or a dct:Standard
// identified by the text.
func standard(g *Graph, s string) Term {
	if isHTTPURL(s) {
		return NewIRI(s)
	}
	b := g.NewBlank()
	g.Type(b, nsDCT+"Standard")
	g.Add(b, nsDCT+"identifier", Literal(s))
	return b
}

// licenceTerm returns a dct:license value: the licence's canonical IRI,
// the identifier if it is an IRI, or a dct:LicenseDocument identified by
// it. Zero if there is no licence.
func licenceTerm(g *Graph, id string) Term {
	if id == "" {
		return Term{}
	}
	l := lookupLicence(id)
	switch {
	case l.url != "":
		return NewIRI(l.url)
	case isHTTPURL(id):
		return NewIRI(id)
	}
	b := g.NewBlank()
	g.Type(b, nsDCT+"LicenseDocument")
	g.Add(b, nsDCT+"identifier", Literal(id))
	return b
}
