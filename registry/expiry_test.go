package registry

import (
	"errors"
	"testing"

	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/registry/search"
)

// TestExpireOrigin: an expired origin's records are gone from every view
// and from the store, stay refused when gossip or anti-entropy brings them
// again (also after a restart), and newer records from it are accepted.
func TestExpireOrigin(t *testing.T) {
	db := memDB(t)
	self := newIdent()
	c, err := OpenCatalog(db, self.ID, self.Key, nil)
	if err != nil {
		t.Fatal(err)
	}
	mallory, other := newIdent(), newIdent()
	old1, old2 := mallory.Advert(t, 1, "spend", 1, "Fake spend"), mallory.Advert(t, 2, "budget", 1, "Fake budget")
	for _, sa := range []*nii.SignedAdvert{old1, old2, other.Advert(t, 1, "spend", 1, "Real spend")} {
		if _, _, err := c.Apply(sa); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Expire(self.ID); !errors.Is(err, nii.ErrInvalid) {
		t.Fatalf("expiring this node's own records: %v", err)
	}
	n, err := c.Expire(mallory.ID)
	if err != nil || n != 2 {
		t.Fatalf("Expire: %d, %v; want 2 records", n, err)
	}
	check := func(c *Catalog) {
		t.Helper()
		if got := c.Search(search.Query{Text: "fake"}); got.Total != 0 {
			t.Fatalf("search still finds the expired origin's records: %+v", got.Hits)
		}
		if got := c.Search(search.Query{Text: "real"}); got.Total != 1 {
			t.Fatalf("search lost another origin's record: %d hits", got.Total)
		}
		for _, o := range c.OriginList() {
			if o.ID == mallory.ID {
				t.Fatalf("OriginList still lists the expired origin: %+v", o)
			}
		}
		if recs, _, _, err := c.Page(mallory.ID, 0, 10); err != nil || len(recs) != 0 {
			t.Fatalf("Page serves %d expired records (%v)", len(recs), err)
		}
		for _, sa := range []*nii.SignedAdvert{old1, old2} {
			_, _, err := c.Apply(sa)
			var re *RejectError
			if !errors.As(err, &re) || re.Reason != RejectExpired {
				t.Fatalf("an expired record applied again: %v, want %s", err, RejectExpired)
			}
		}
	}
	check(c)
	c2, err := OpenCatalog(db, self.ID, self.Key, nil)
	if err != nil {
		t.Fatal(err)
	}
	check(c2)
	if _, isNew, err := c2.Apply(mallory.Advert(t, 3, "spend", 2, "Back again")); err != nil || !isNew {
		t.Fatalf("a newer record of an expired origin: new=%v, %v", isNew, err)
	}
}
