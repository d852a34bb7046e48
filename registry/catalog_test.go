package registry

import (
	"crypto/ed25519"
	"errors"
	"testing"

	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/registry/registrytest"
	"github.com/nii-uk/nii/registry/search"
)

// ident and memDB are registrytest's, under the short names these tests use.
type ident = registrytest.Ident

var (
	newIdent = registrytest.NewIdent
	memDB    = registrytest.MemDB
)

func openCat(t testing.TB) (*Catalog, ident) {
	t.Helper()
	self := newIdent()
	c, err := OpenCatalog(memDB(t), self.ID, self.Key, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c, self
}

// TestApplyRejectsAttacks is the table of hostile or stale records a node
// must refuse, each with its reason counted.
func TestApplyRejectsAttacks(t *testing.T) {
	c, _ := openCat(t)
	greenwich, mallory := newIdent(), newIdent()

	v2 := greenwich.Advert(t, 5, "spend", 2, "Spend v2")
	if _, isNew, err := c.Apply(v2); err != nil || !isNew {
		t.Fatalf("a valid advert: new=%v err=%v", isNew, err)
	}
	forged := *greenwich.Advert(t, 9, "spend", 3, "Spend v3")
	forged.Sig = ed25519.Sign(mallory.Key, append([]byte("nii/advert/v1\x00"), forged.Body...))
	tampered := *greenwich.Advert(t, 10, "spend", 4, "Spend v4")
	tampered.Body = append([]byte(nil), tampered.Body...)
	for i := range tampered.Body { // change "Spend v4" into "Spend v5" in place
		if string(tampered.Body[i:i+8]) == "Spend v4" {
			tampered.Body[i+7] = '5'
			break
		}
	}
	unsigned := *greenwich.Advert(t, 11, "spend", 5, "x")
	unsigned.Sig = nil
	c.Apply(greenwich.Tombstone(t, 20, "old-spend"))

	for _, tc := range []struct {
		name   string
		sa     *nii.SignedAdvert
		reason string
	}{
		{"forged by another key", &forged, RejectBadSignature},
		{"tampered body", &tampered, RejectBadSignature},
		{"no signature", &unsigned, RejectBadSignature},
		{"replayed", v2, RejectReplay},
		{"older seq, same dataset", greenwich.Advert(t, 4, "spend", 1, "Spend v1"), RejectStale},
		{"newer seq, older version", greenwich.Advert(t, 6, "spend", 1, "Spend v1 again"), RejectStale},
		{"advert replayed after its withdrawal", greenwich.Advert(t, 19, "old-spend", 1, "Old"), RejectStale},
		// A record of ours beyond our counter, signed by our key, is ours:
		// an earlier life of this node (a restored home) signed it, and it
		// is adopted (TestOwnRecordsFromAnEarlierLife), no longer refused.
		{"garbage", &nii.SignedAdvert{Body: []byte{0xa1, 0x01}, Sig: make([]byte, 64)}, RejectInvalid},
		{"empty", &nii.SignedAdvert{}, RejectInvalid},
	} {
		before := c.Rejected()[tc.reason]
		_, isNew, err := c.Apply(tc.sa)
		var re *RejectError
		if isNew || !errors.As(err, &re) || re.Reason != tc.reason || !errors.Is(err, ErrRejected) {
			t.Errorf("%s: new=%v err=%v, want rejected as %s", tc.name, isNew, err, tc.reason)
			continue
		}
		if got := c.Rejected()[tc.reason]; got != before+1 {
			t.Errorf("%s: %s count went %d -> %d", tc.name, tc.reason, before, got)
		}
	}
	// Nothing refused changed what is listed.
	e := c.Lookup(nii.DatasetID{Org: "greenwich", Name: "spend"})
	if len(e) != 1 || e[0].Advert.Version != 2 || e[0].Advert.Meta.Title != "Spend v2" {
		t.Fatalf("after attacks the catalog lists %+v", e)
	}
	if res := c.Search(search.Query{Text: "spend"}); res.Total != 1 {
		t.Fatalf("search finds %d datasets, want 1 (the withdrawn one is not listed)", res.Total)
	}
}

func TestCatalogPersistsAndPages(t *testing.T) {
	db := memDB(t)
	self, other := newIdent(), newIdent()
	c, err := OpenCatalog(db, self.ID, self.Key, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := uint64(1); i <= 25; i++ {
		c.Apply(other.Advert(t, i, "ds-"+string(rune('a'+i-1)), 1, "Dataset"))
	}
	// Superseding ds-a drops its old record from the origin's log.
	c.Apply(other.Advert(t, 26, "ds-a", 2, "Dataset a v2"))
	for v, title := range []string{"Mine one", "Mine two"} {
		_, _, err := c.Sign(nii.Advert{Dataset: nii.DatasetID{Org: "greenwich", Name: "mine"}, Version: uint64(v + 1),
			Manifest: nii.HashOf([]byte(title)), Meta: nii.Metadata{Title: title, Publisher: "greenwich"}})
		if err != nil {
			t.Fatal(err)
		}
	}

	var seqs []uint64
	after := uint64(0)
	for {
		recs, more, wm, err := c.Page(other.ID, after, 10)
		if err != nil {
			t.Fatal(err)
		}
		if wm != 26 {
			t.Fatalf("watermark %d after records 1..26 arrived in order, want 26", wm)
		}
		for _, sa := range recs {
			a, _ := sa.Open()
			seqs = append(seqs, a.Seq)
			after = a.Seq
		}
		if !more {
			break
		}
	}
	if len(seqs) != 25 || seqs[0] != 2 || seqs[24] != 26 {
		t.Fatalf("paged seqs %v, want 2..26 (seq 1 superseded)", seqs)
	}

	// Reopen: everything is still there, own seq included.
	c2, err := OpenCatalog(db, self.ID, self.Key, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c2.Len() != 26 || c2.SelfSeq() != 2 || c2.Watermark(self.ID) != 2 {
		t.Fatalf("reopened: len %d selfSeq %d wm %d", c2.Len(), c2.SelfSeq(), c2.Watermark(self.ID))
	}
	if own, ok := c2.Own(nii.DatasetID{Org: "greenwich", Name: "mine"}); !ok || own.Meta.Title != "Mine two" {
		t.Fatalf("own advert after reopen: %+v", own)
	}
	c2.SetWatermark(other.ID, 3) // never backwards
	if c2.Watermark(other.ID) != 26 || !c2.HasRecord(other.ID, 1) {
		t.Fatal("watermark moved backwards or HasRecord ignores it")
	}
}

func TestWatermarkAdvancesOnlyWithoutGaps(t *testing.T) {
	c, _ := openCat(t)
	o := newIdent()
	c.Apply(o.Advert(t, 1, "a", 1, "A"))
	c.Apply(o.Advert(t, 3, "c", 1, "C")) // seq 2 not seen yet
	if wm := c.Watermark(o.ID); wm != 1 {
		t.Fatalf("watermark %d with seq 2 missing, want 1", wm)
	}
	c.Apply(o.Advert(t, 2, "b", 1, "B"))
	if wm := c.Watermark(o.ID); wm != 2 {
		t.Fatalf("watermark %d after seq 2 arrived, want 2 (3 arrived before it, so only catch-up may vouch for it)", wm)
	}
}
