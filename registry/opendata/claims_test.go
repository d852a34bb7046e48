package opendata

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/registry/search"
)

// TestClaimsKeptApart: an unlisted claim (an impostor's beside the real
// publisher) is shown only when asked for, and never under the dataset's
// CKAN name or id, DCAT IRI or organization.
func TestClaimsKeptApart(t *testing.T) {
	real := testAdvert("greenwich", "spend", 2)
	fake := testAdvert("greenwich", "spend", 9)
	fake.Origin = "12D3KooWImpostor"
	fake.Meta.Title = "Fake spend"
	fake.Meta.PublisherName = "Not Greenwich"
	cat := newFakeCatalog(real)
	cat.claims = []Claim{{Advert: fake, ID: "0123456789ab"}}
	cat.ix.Put(search.Doc{Key: string(fake.Origin) + " " + fake.Dataset.String(), Advert: fake, Verified: false})

	var res SearchResult
	if _, b := get(t, cat, "GET", "/api/3/action/package_search?fq=verified:false", ""); !ckanResult(t, b, &res).Success || res.Count != 1 {
		t.Fatalf("package_search fq=verified:false: %s", b)
	}
	p := res.Results[0]
	if p.Name != "greenwich-spend--claim-0123456789ab" || p.ID == PackageUUID(real.Dataset) || p.ID != ClaimPackageUUID(real.Dataset, "0123456789ab") ||
		p.OwnerOrg == OrgUUID("greenwich") || p.Organization.Name == "greenwich" || !strings.HasPrefix(p.Title, "[unverified claim]") {
		t.Fatalf("the claim's package takes the dataset's identity: name %s id %s org %s %s title %q", p.Name, p.ID, p.OwnerOrg, p.Organization.Name, p.Title)
	}
	var shown Package
	if _, b := get(t, cat, "GET", "/api/3/action/package_show?id="+p.Name, ""); !ckanResult(t, b, &shown).Success || shown.ID != p.ID {
		t.Fatalf("package_show of the claim by name: %s", b)
	}
	if _, b := get(t, cat, "GET", "/api/3/action/package_show?id="+p.ID, ""); !ckanResult(t, b, &shown).Success || shown.Name != p.Name {
		t.Fatalf("package_show of the claim by id: %s", b)
	}
	if _, b := get(t, cat, "GET", "/api/3/action/package_show?id=greenwich-spend", ""); !ckanResult(t, b, &shown).Success || shown.Title != real.Meta.Title || shown.ID != PackageUUID(real.Dataset) {
		t.Fatalf("package_show of the dataset: %s", b)
	}
	var names []string
	if _, b := get(t, cat, "GET", "/api/3/action/package_list", ""); !ckanResult(t, b, &names).Success || strings.Join(names, ",") != "greenwich-spend" {
		t.Fatalf("package_list lists the claim: %s", b)
	}
	var orgs []Organization
	if _, b := get(t, cat, "GET", "/api/3/action/organization_list?all_fields=true", ""); !ckanResult(t, b, &orgs).Success || len(orgs) != 1 ||
		orgs[0].Title != real.Meta.PublisherName || *orgs[0].PackageCount != 1 {
		t.Fatalf("organization_list counts or names the claim: %s", b)
	}

	// DCAT: the claim's IRI and publisher are its own; the dataset's graph
	// has one title.
	_, b := get(t, cat, "GET", "/api/v1/datasets/greenwich/spend/dcat.ttl?claim=0123456789ab", "")
	if !strings.Contains(string(b), "/api/v1/datasets/greenwich/spend/dcat?claim=0123456789ab>") || !strings.Contains(string(b), "claim=0123456789ab> a foaf:Agent") && !strings.Contains(string(b), "&claim=0123456789ab>") {
		t.Fatalf("the claim's DCAT:\n%s", b)
	}
	_, b = get(t, cat, "GET", "/api/v1/datasets/greenwich/spend/dcat.jsonld", "")
	if strings.Contains(string(b), "Fake spend") || strings.Contains(string(b), "Not Greenwich") {
		t.Fatalf("the dataset's DCAT holds the claim's record:\n%s", b)
	}
	var dp map[string]any
	_, b = get(t, cat, "GET", "/api/v1/datasets/greenwich/spend/datapackage.json?claim=0123456789ab", "")
	if json.Unmarshal(b, &dp) != nil || dp["name"] != "greenwich-spend--claim-0123456789ab" || !strings.HasSuffix(dp["id"].(string), "?claim=0123456789ab") {
		t.Fatalf("the claim's Data Package: %s", b)
	}
	if resp, _ := get(t, cat, "GET", "/api/v1/datasets/greenwich/spend/dcat?claim=ffffffffffff", ""); resp.StatusCode != 404 {
		t.Fatalf("an unknown claim: %d", resp.StatusCode)
	}
	_ = nii.DatasetID{}
}
