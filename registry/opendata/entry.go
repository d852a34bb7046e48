package opendata

import (
	"crypto/sha1"
	"encoding/hex"
	"net/url"
	"strconv"
	"strings"

	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/registry/table"
)

// Entry is one dataset of the federated catalog as the translations see
// it: the publisher's newest advert and what the serving node knows of it.
type Entry struct {
	Advert   *nii.Advert // never a tombstone
	Verified bool        // the publisher's org claim is proven
	Online   bool        // the publisher is reachable now
	// Download is the absolute URL this node serves the version's bytes
	// from. The node chooses it (its own store, or a relay).
	Download string
	// Claim is "" for the dataset's listed publisher; otherwise it names
	// this origin's claim apart (Claim.ID), and every identifier the
	// translations give the record is derived from it.
	Claim string
}

// ClaimSep joins a dataset's CKAN name and a claim ID into the claim's own
// CKAN name: "greenwich-spend--claim-1a2b3c4d5e6f".
const ClaimSep = "--claim-"

// ClaimPackageUUID is the CKAN id of one origin's claim to a dataset:
// never the dataset's own id.
func ClaimPackageUUID(d nii.DatasetID, claim string) string {
	return StableUUID("claim:" + claim + ":" + d.String())
}

// PackageName is the CKAN name of an entry: the dataset's, or its claim's.
func (e Entry) PackageName() string {
	if e.Claim != "" {
		return CKANName(e.Advert.Dataset) + ClaimSep + e.Claim
	}
	return CKANName(e.Advert.Dataset)
}

// PackageID is the CKAN id of an entry: the dataset's, or its claim's.
func (e Entry) PackageID() string {
	if e.Claim != "" {
		return ClaimPackageUUID(e.Advert.Dataset, e.Claim)
	}
	return PackageUUID(e.Advert.Dataset)
}

// EntryIRI is the DCAT IRI of an entry: the dataset's, or its claim's.
func (s Site) EntryIRI(e Entry) string {
	if e.Claim != "" {
		return s.DatasetIRI(e.Advert.Dataset) + "?claim=" + url.QueryEscape(e.Claim)
	}
	return s.DatasetIRI(e.Advert.Dataset)
}

// PublisherIRI is the IRI of an entry's publisher: the org's, or — for a
// claim nothing proves — an agent of its own, so that a claim never
// speaks for the org.
func (s Site) PublisherIRI(e Entry) string {
	if e.Claim != "" {
		return s.OrgIRI(e.Advert.Dataset.Org) + "&claim=" + url.QueryEscape(e.Claim)
	}
	return s.OrgIRI(e.Advert.Dataset.Org)
}

// Site describes the node serving the documents.
type Site struct {
	// Base is the absolute URL the request came in on, without a trailing
	// slash: "http://127.0.0.1:7947". Every link is made from it.
	Base       string
	Federation string
	Org        string // the serving node's org
	OrgName    string
}

// CatalogIRI is the IRI of the federation's DCAT catalog on this node.
func (s Site) CatalogIRI() string { return s.Base + "/catalog" }

// DatasetIRI is the IRI of a dataset's DCAT description on this node; it
// dereferences to RDF (content negotiated).
func (s Site) DatasetIRI(d nii.DatasetID) string { return s.Base + DatasetPath(d) + "/dcat" }

// DatasetPath is the API path of a dataset, "/api/v1/datasets/org/name".
func DatasetPath(d nii.DatasetID) string { return "/api/v1/datasets/" + d.Org + "/" + d.Name }

// ContentPath is the API path of a version's bytes on a node that holds it.
func ContentPath(d nii.DatasetID, v uint64) string {
	return DatasetPath(d) + "/versions/" + strconv.FormatUint(v, 10) + "/content"
}

// OrgIRI is the IRI nii uses for a publishing org (a foaf:Agent): the
// CKAN organization_show call that describes it.
func (s Site) OrgIRI(org string) string {
	return s.Base + "/api/3/action/organization_show?id=" + url.QueryEscape(org)
}

// CKANName is the CKAN package name of a dataset: "org-name". CKAN names
// are [a-z0-9_-], which nii's slugs already are.
func CKANName(d nii.DatasetID) string { return d.Org + "-" + d.Name }

// CKANNameCandidates returns the dataset IDs a CKAN name or ID could mean:
// "org/name" is itself; "org-name" is split at each hyphen (a slug may
// hold hyphens, so "north-east-spend" is north/east-spend or
// north-east/spend; the caller looks each up).
func CKANNameCandidates(s string) []nii.DatasetID {
	if d, err := nii.ParseDatasetID(s); err == nil {
		return []nii.DatasetID{d}
	}
	var out []nii.DatasetID
	for i := 0; i < len(s); i++ {
		if s[i] != '-' {
			continue
		}
		d := nii.DatasetID{Org: s[:i], Name: s[i+1:]}
		if d.Validate() == nil {
			out = append(out, d)
		}
	}
	return out
}

// uuidNamespace is the namespace of nii's name-based CKAN IDs: RFC 4122's
// URL namespace (any fixed value would do; this one is well known).
var uuidNamespace = [16]byte{0x6b, 0xa7, 0xb8, 0x11, 0x9d, 0xad, 0x11, 0xd1, 0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4, 0x30, 0xc8}

// StableUUID returns the name-based (version 5) UUID of s, so that every
// node gives a dataset or resource the same CKAN ID.
func StableUUID(s string) string {
	h := sha1.New()
	h.Write(uuidNamespace[:])
	h.Write([]byte(s))
	var u [16]byte
	copy(u[:], h.Sum(nil))
	u[6] = u[6]&0x0f | 0x50
	u[8] = u[8]&0x3f | 0x80
	var b [36]byte
	hex.Encode(b[0:8], u[0:4])
	b[8] = '-'
	hex.Encode(b[9:13], u[4:6])
	b[13] = '-'
	hex.Encode(b[14:18], u[6:8])
	b[18] = '-'
	hex.Encode(b[19:23], u[8:10])
	b[23] = '-'
	hex.Encode(b[24:], u[10:])
	return string(b[:])
}

// OrgUUID is the CKAN id of an organization (CKAN gives UUIDs; nii's are
// derived from the org's slug, the same on every node).
func OrgUUID(org string) string { return StableUUID("organization:" + org) }

// GroupUUID is the CKAN id of a group (a nii theme).
func GroupUUID(theme string) string { return StableUUID("group:" + theme) }

// PackageUUID is the CKAN id of a dataset.
func PackageUUID(d nii.DatasetID) string { return StableUUID("dataset:" + d.String()) }

// PackageUUIDOf is the CKAN id of a dataset (claim "") or of one claim to
// publish it (ClaimPackageUUID): the names a catalog indexes for
// Catalog.PackageByUUID.
func PackageUUIDOf(d nii.DatasetID, claim string) string {
	if claim == "" {
		return PackageUUID(d)
	}
	return ClaimPackageUUID(d, claim)
}

// ResourceUUID is the CKAN id of a dataset version's one resource.
func ResourceUUID(r nii.Ref) string { return StableUUID("resource:" + r.String()) }

// IsUUID reports whether s has the 8-4-4-4-12 hex shape.
func IsUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, c := range s {
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !strings.ContainsRune("0123456789abcdef", c) {
				return false
			}
		}
	}
	return true
}

// licence is what nii knows of a licence identifier.
type licence struct {
	id, title, url string
	open           bool
	canonical      string // the first of its ids: what license_list names it
}

// licences maps lowercased identifiers (SPDX, CKAN's own IDs for the same
// licences, and the UK licences SPDX lacks) to their names and canonical
// URLs.
var licences = map[string]licence{}

func init() {
	for _, l := range []struct {
		ids []string
		licence
	}{
		{[]string{"OGL-UK-3.0", "uk-ogl", "OGL-3.0"}, licence{title: "Open Government Licence v3.0", url: "http://www.nationalarchives.gov.uk/doc/open-government-licence/version/3/", open: true}},
		{[]string{"OGL-UK-2.0"}, licence{title: "Open Government Licence v2.0", url: "http://www.nationalarchives.gov.uk/doc/open-government-licence/version/2/", open: true}},
		{[]string{"OGL-UK-1.0"}, licence{title: "Open Government Licence v1.0", url: "http://www.nationalarchives.gov.uk/doc/open-government-licence/version/1/", open: true}},
		{[]string{"NCGL-UK-2.0"}, licence{title: "Non-Commercial Government Licence v2.0", url: "http://www.nationalarchives.gov.uk/doc/non-commercial-government-licence/version/2/"}},
		{[]string{"OPL-UK-3.0"}, licence{title: "Open Parliament Licence v3.0", url: "https://www.parliament.uk/site-information/copyright-parliament/open-parliament-licence/", open: true}},
		{[]string{"CC-BY-4.0", "cc-by"}, licence{title: "Creative Commons Attribution 4.0", url: "https://creativecommons.org/licenses/by/4.0/", open: true}},
		{[]string{"CC-BY-SA-4.0", "cc-by-sa"}, licence{title: "Creative Commons Attribution Share-Alike 4.0", url: "https://creativecommons.org/licenses/by-sa/4.0/", open: true}},
		{[]string{"CC0-1.0", "cc-zero"}, licence{title: "Creative Commons CCZero", url: "https://creativecommons.org/publicdomain/zero/1.0/", open: true}},
		{[]string{"ODbL-1.0", "odc-odbl"}, licence{title: "Open Data Commons Open Database License (ODbL)", url: "https://opendatacommons.org/licenses/odbl/1-0/", open: true}},
		{[]string{"ODC-By-1.0", "odc-by"}, licence{title: "Open Data Commons Attribution License", url: "https://opendatacommons.org/licenses/by/1-0/", open: true}},
		{[]string{"PDDL-1.0", "odc-pddl"}, licence{title: "Open Data Commons Public Domain Dedication and License (PDDL)", url: "https://opendatacommons.org/licenses/pddl/1-0/", open: true}},
		{[]string{"CC-BY-NC-4.0", "cc-nc"}, licence{title: "Creative Commons Non-Commercial 4.0", url: "https://creativecommons.org/licenses/by-nc/4.0/"}},
		{[]string{"GFDL-1.3-or-later", "gfdl"}, licence{title: "GNU Free Documentation License", url: "https://www.gnu.org/licenses/fdl-1.3.html", open: true}},
		{[]string{"notspecified"}, licence{title: "License not specified"}},
		{[]string{"other-open"}, licence{title: "Other (Open)", open: true}},
		{[]string{"other-pd"}, licence{title: "Other (Public Domain)", open: true}},
		{[]string{"other-at"}, licence{title: "Other (Attribution)", open: true}},
		{[]string{"other-nc"}, licence{title: "Other (Non-Commercial)"}},
		{[]string{"other-closed"}, licence{title: "Other (Not Open)"}},
	} {
		for _, id := range l.ids {
			v := l.licence
			v.id, v.canonical = id, l.ids[0]
			licences[strings.ToLower(id)] = v
		}
	}
	for _, l := range ukLicences {
		l.canonical = l.id
		licences[strings.ToLower(l.id)] = l
	}
}

// lookupLicence returns what is known of id; an unknown one is titled by
// its identifier and has no URL ("other:URL" has its URL).
func lookupLicence(id string) licence {
	if l, ok := licences[strings.ToLower(id)]; ok {
		l.id = id
		return l
	}
	if u, ok := strings.CutPrefix(id, OtherLicencePrefix); ok && isHTTPURL(u) {
		return licence{id: id, title: "Other licence (" + u + ")", url: u}
	}
	return licence{id: id, title: id}
}

// formatName is a media type's short name upper-cased, as CKAN shows
// formats: "CSV".
func formatName(mediaType string) string {
	if mediaType == "" {
		return ""
	}
	return strings.ToUpper(table.FormatName(mediaType))
}

// orgTitle is the display name of an advert's publisher.
func orgTitle(m *nii.Metadata, org string) string {
	if m.PublisherName != "" {
		return m.PublisherName
	}
	return org
}
