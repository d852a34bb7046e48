package opendata

import (
	"fmt"
	"net/url"
	"slices"
	"strings"

	"github.com/github/go-spdx/v2/spdxexp/spdxlicenses"
	"github.com/nii-uk/nii"
)

// The licences nii accepts on a publish, and what license_list serves:
// every SPDX licence identifier (the SPDX list, through go-spdx, holds
// the UK's OGL-UK-1.0/2.0/3.0, NCGL-UK-2.0 and OPL-UK-3.0), the UK
// government licences SPDX does not list (ukLicences below), CKAN's own
// licence IDs (uk-ogl, cc-by, …) and "other:URL" for a licence published
// at a URL of its own.

// ukLicences are UK public-sector licences outside the SPDX list.
var ukLicences = []licence{
	{id: "UK-Crown-Copyright", title: "Crown copyright (no open licence; reuse by permission)", url: "https://www.nationalarchives.gov.uk/information-management/re-using-public-sector-information/uk-government-licensing-framework/crown-copyright/"},
	{id: "UK-Charity-Commission", title: "Charity Commission Register of Charities licence (OGL with conditions)", url: "https://www.gov.uk/government/organisations/charity-commission/about/personal-information-charter", open: true},
	{id: "UK-Parliamentary-Copyright", title: "Parliamentary copyright", url: "https://www.parliament.uk/site-information/copyright-parliament/"},
	{id: "OS-OpenData", title: "OS OpenData Licence (Ordnance Survey; now OGL v3.0)", url: "https://www.ordnancesurvey.co.uk/documents/licensing/os-opendata-licence.pdf", open: true},
}

// ckanLicenceIDs are CKAN's default licence IDs, accepted as they are.
var ckanLicenceIDs = []string{"notspecified", "odc-pddl", "odc-odbl", "odc-by", "cc-zero", "cc-by", "cc-by-sa",
	"gfdl", "other-open", "other-pd", "other-at", "uk-ogl", "cc-nc", "other-nc", "other-closed"}

// OtherLicencePrefix introduces a licence given by its URL: "other:https://…".
const OtherLicencePrefix = "other:"

// CheckLicence validates a licence identifier and returns it as nii keeps
// it: an SPDX identifier in SPDX's spelling, a UK licence or CKAN ID in
// nii's, or "other:URL". An empty id is valid (no licence given). Errors
// wrap nii.ErrInvalid and say what is accepted.
func CheckLicence(id string) (string, error) {
	id = strings.TrimSpace(id)
	if id == "" {
		return "", nil
	}
	if u, ok := strings.CutPrefix(id, OtherLicencePrefix); ok {
		if !isHTTPURL(u) {
			return "", fmt.Errorf("%w licence %q: after other: give the licence's http(s) URL, e.g. other:https://example.org/licence", nii.ErrInvalid, id)
		}
		if len(id) > 1024 {
			return "", fmt.Errorf("%w licence: longer than 1024 bytes", nii.ErrInvalid)
		}
		if _, err := url.Parse(u); err != nil {
			return "", fmt.Errorf("%w licence %q: %v", nii.ErrInvalid, id, err)
		}
		return id, nil
	}
	if l, ok := licences[strings.ToLower(id)]; ok {
		return l.id, nil
	}
	if ok, canon := spdxlicenses.IsActiveLicense(id); ok {
		return canon, nil
	}
	if ok, canon := spdxlicenses.IsDeprecatedLicense(id); ok {
		return "", fmt.Errorf("%w licence %q: SPDX has deprecated %s; use its successor (e.g. GPL-2.0-only for GPL-2.0)", nii.ErrInvalid, id, canon)
	}
	return "", fmt.Errorf("%w licence %q: not a known licence: give an SPDX identifier (OGL-UK-3.0, CC-BY-4.0, ODbL-1.0, …), a UK licence SPDX does not list (%s), a CKAN licence id (uk-ogl, cc-by, …), or other:URL", nii.ErrInvalid, id, ukIDs())
}

func ukIDs() string {
	ids := make([]string, len(ukLicences))
	for i, l := range ukLicences {
		ids[i] = l.id
	}
	return strings.Join(ids, ", ")
}

// LicenseDict is a licence as CKAN's license_list gives it.
type LicenseDict struct {
	DomainContent  bool   `json:"domain_content"`
	DomainData     bool   `json:"domain_data"`
	DomainSoftware bool   `json:"domain_software"`
	Family         string `json:"family"`
	ID             string `json:"id"`
	IsGeneric      bool   `json:"is_generic"`
	IsOKDCompliant bool   `json:"is_okd_compliant"`
	IsOSICompliant bool   `json:"is_osi_compliant"`
	Maintainer     string `json:"maintainer"`
	ODConformance  string `json:"od_conformance"`
	OSDConformance string `json:"osd_conformance"`
	Status         string `json:"status"`
	Title          string `json:"title"`
	URL            string `json:"url"`
}

// LicenseList is license_list's result: the licences nii names (those
// with a title and URL of their own: the UK and Creative Commons family
// and CKAN's defaults), not every SPDX identifier it accepts.
func LicenseList() []LicenseDict {
	seen := map[string]bool{}
	var out []LicenseDict
	for _, l := range licences {
		if seen[l.title] {
			continue // one entry per licence, under its first listed id
		}
		seen[l.title] = true
		od := "not reviewed"
		if l.open {
			od = "approved"
		}
		out = append(out, LicenseDict{DomainData: true, ID: l.canonical, IsGeneric: l.url == "", IsOKDCompliant: l.open,
			ODConformance: od, OSDConformance: "not reviewed", Status: "active", Title: l.title, URL: l.url})
	}
	slices.SortFunc(out, func(a, b LicenseDict) int { return strings.Compare(a.ID, b.ID) })
	return out
}
