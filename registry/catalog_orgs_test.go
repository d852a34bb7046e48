package registry

import (
	"slices"
	"testing"
	"time"

	"github.com/nii-uk/nii"
)

// TestOrgNameAndEachLive checks the two views the open-data API reads
// instead of paging the search index: an org's display name from its
// newest named advert, and the walk over live publisher entries.
func TestOrgNameAndEachLive(t *testing.T) {
	c, _ := openCat(t)
	g := newIdent()
	day := time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC)
	apply := func(seq uint64, name, orgName string, modified time.Time, replica bool) {
		t.Helper()
		a := &nii.Advert{Origin: g.ID, Seq: seq, Dataset: nii.DatasetID{Org: "greenwich", Name: name}, Version: 1,
			Manifest: nii.HashOf([]byte(name)), Signed: modified, Replica: replica,
			Meta: nii.Metadata{Title: name, Publisher: "greenwich", PublisherName: orgName, Modified: modified, Access: nii.AccessOpen}}
		sa, err := nii.SignAdvert(a, g.Key)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := c.Apply(sa); err != nil {
			t.Fatal(err)
		}
	}
	apply(1, "spend", "Royal Borough of Greenwich", day.Add(48*time.Hour), false)
	apply(2, "trees", "Greenwich (old name)", day, false) // older: does not win
	apply(3, "parks", "", day.Add(72*time.Hour), false)   // newest, unnamed: does not erase
	if got := c.OrgName("greenwich"); got != "Royal Borough of Greenwich" {
		t.Errorf("OrgName = %q", got)
	}
	if got := c.OrgName("nobody"); got != "" {
		t.Errorf("OrgName(nobody) = %q", got)
	}
	if _, _, err := c.Apply(g.Tombstone(t, 4, "trees")); err != nil {
		t.Fatal(err)
	}
	var live []string
	c.EachLive(func(e Entry) { live = append(live, e.Advert.Dataset.Name) })
	slices.Sort(live)
	if !slices.Equal(live, []string{"parks", "spend"}) {
		t.Errorf("EachLive = %v, want parks and spend (trees withdrawn)", live)
	}
	if c.Len() != len(live) {
		t.Errorf("EachLive walks %d entries, the index holds %d", len(live), c.Len())
	}
}
