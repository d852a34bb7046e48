package registry

import (
	"fmt"
	"testing"
	"time"

	"github.com/nii-uk/nii"
)

// fakeMembers is a Members of a fixed set: members, and which are alive.
type fakeMembers struct{ member, alive map[nii.NodeID]bool }

func (f fakeMembers) IsMember(o nii.NodeID, _ string) bool { return f.member[o] }
func (f fakeMembers) Departed(o nii.NodeID) bool           { return !f.alive[o] }

func reasonOf(err error) string {
	if re, ok := err.(*RejectError); ok {
		return re.Reason
	}
	return ""
}

// Records of an origin that is not a member are parked, not stored or
// listed, and applied once it becomes one; past the origin limit an
// unverified departed origin is evicted to make room, a live one never.
func TestOriginsAdmittedAndBounded(t *testing.T) {
	c, _ := openCat(t)
	m := fakeMembers{member: map[nii.NodeID]bool{}, alive: map[nii.NodeID]bool{}}
	c.SetMembers(m, CatalogLimits{MaxOrigins: 3, MaxPerOrigin: 2, MaxParked: 4})

	stranger := newIdent()
	for i := range 10 {
		_, isNew, err := c.Apply(stranger.Advert(t, uint64(i+1), fmt.Sprintf("d%d", i), 1, "x"))
		if isNew || reasonOf(err) != RejectNotMember {
			t.Fatalf("a stranger's record %d: new=%v %v", i, isNew, err)
		}
	}
	if c.Origins() != 0 || c.Len() != 0 || c.Parked() != 4 {
		t.Fatalf("after a stranger's records: %d origins, %d listed, %d parked", c.Origins(), c.Len(), c.Parked())
	}
	if c.WantsOrigin(stranger.ID) {
		t.Fatal("a parked origin is to be fetched again at once")
	}
	m.member[stranger.ID], m.alive[stranger.ID] = true, true
	if k := c.Release(stranger.ID); k != 2 || c.Parked() != 0 {
		t.Fatalf("released %d (want 2: the per-origin limit), %d still parked", k, c.Parked())
	}
	if _, _, err := c.Apply(stranger.Advert(t, 20, "d20", 1, "x")); reasonOf(err) != RejectOverLimit {
		t.Fatalf("a third dataset of one origin: %v", err)
	}

	// Fill the origins: stranger, a (departed), b (alive).
	a, b, d := newIdent(), newIdent(), newIdent()
	for _, o := range []ident{a, b, d} {
		m.member[o.ID] = true
	}
	m.alive[b.ID] = true
	for i, o := range []ident{a, b} {
		if _, _, err := c.Apply(o.Advert(t, 1, fmt.Sprintf("spend-%d", i), 1, "x")); err != nil {
			t.Fatal(err)
		}
	}
	if _, isNew, err := c.Apply(d.Advert(t, 1, "new", 1, "x")); err != nil || !isNew {
		t.Fatalf("a new member's record at the origin limit: %v", err)
	}
	if c.Origins() != 3 || c.Evicted() != 1 || len(c.Lookup(nii.DatasetID{Org: "greenwich", Name: "spend-0"})) != 0 {
		t.Fatalf("after eviction: %d origins, %d evicted; the departed origin's record should be gone", c.Origins(), c.Evicted())
	}
	if recs, _, _, _ := c.Page(a.ID, 0, 10); len(recs) != 0 {
		t.Fatalf("the evicted origin's records are still stored: %d", len(recs))
	}
	// Every origin left is alive: nothing to evict, so a fourth origin is
	// refused.
	m.alive[d.ID] = true
	e := newIdent()
	m.member[e.ID] = true
	if _, _, err := c.Apply(e.Advert(t, 1, "e", 1, "x")); reasonOf(err) != RejectOverLimit {
		t.Fatalf("a fourth origin with nothing to evict: %v", err)
	}
}

// The member table forgets members departed long ago, and the longest
// departed first past its bound; live ones never.
func TestPeersPruned(t *testing.T) {
	p, err := OpenPeers(memDB(t))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		id := newIdent().ID
		p.Update(Peer{ID: id, Org: "o", State: PeerAlive})
		if i < 7 {
			p.Update(Peer{ID: id, Org: "o", State: PeerDead})
		}
	}
	if k := p.Prune(time.Now().Add(-time.Hour), 100); k != 0 {
		t.Fatalf("pruned %d recently departed members", k)
	}
	if k := p.Prune(time.Now().Add(time.Hour), 100); k != 7 || p.Len() != 3 {
		t.Fatalf("pruned %d, %d left; want the 7 departed gone", k, p.Len())
	}
	for range 5 {
		p.Update(Peer{ID: newIdent().ID, Org: "o", State: PeerDead})
	}
	if k := p.Prune(time.Now().Add(-time.Hour), 4); k != 4 || p.Len() != 4 {
		t.Fatalf("over the bound: pruned %d, %d left; want 4 left (3 alive, 1 departed)", k, p.Len())
	}
}

// This node's own records coming back beyond its counter (a restored
// home) are adopted and the counter moves past them; one of its seqs
// signed for other content is a collision. Both are reported.
func TestOwnRecordsFromAnEarlierLife(t *testing.T) {
	db := memDB(t)
	self := newIdent()
	c, err := OpenCatalog(db, self.ID, self.Key, nil)
	if err != nil {
		t.Fatal(err)
	}
	var seen []bool
	c.OnOwnRecord(func(a *nii.Advert, collision bool) { seen = append(seen, collision) })
	if _, _, err := c.Sign(nii.Advert{Dataset: nii.DatasetID{Org: "greenwich", Name: "spend"}, Version: 1,
		Manifest: nii.HashOf([]byte("v1")), Meta: nii.Metadata{Publisher: "greenwich", Title: "x", Access: nii.AccessOpen}}); err != nil {
		t.Fatal(err)
	}
	// An earlier life signed seq 1 for other content, and seq 5.
	if _, _, err := c.Apply(self.Advert(t, 1, "spend", 1, "other")); reasonOf(err) != RejectStale {
		t.Fatalf("a collision: %v", err)
	}
	if _, isNew, err := c.Apply(self.Advert(t, 5, "spend", 3, "later")); err != nil || !isNew {
		t.Fatalf("an own record beyond the counter: %v", err)
	}
	if c.SelfSeq() != 5 || len(seen) != 2 || !seen[0] || seen[1] {
		t.Fatalf("self seq %d, reports %v", c.SelfSeq(), seen)
	}
	if a, c2 := c.OwnLearnt(); a != 1 || c2 != 1 {
		t.Fatalf("adopted %d, collisions %d", a, c2)
	}
	_, next, err := c.Sign(nii.Advert{Dataset: nii.DatasetID{Org: "greenwich", Name: "other"}, Version: 1,
		Manifest: nii.HashOf([]byte("o")), Meta: nii.Metadata{Publisher: "greenwich", Title: "x", Access: nii.AccessOpen}})
	if err != nil || next.Seq != 6 {
		t.Fatalf("the next record: seq %d %v, want 6", next.Seq, err)
	}
}
