package registry

import (
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/nii-uk/nii"
)

// Which origins the catalog takes records from, and how many. Any member
// can relay a record signed by any key, so a signature proves only that
// the record is its origin's, not that the origin belongs to the
// federation: one member gossiping thousands of adverts, each signed by a
// fresh key, would otherwise fill the catalog, the store and the search
// index with origins nobody knows. So, once a node sets Members:
//
//   - A record whose origin the catalog holds nothing of is stored only if
//     the origin is (or was) a member: in the member table (seen in
//     gossip), or carrying a membership credential that verifies for it.
//     Otherwise it is parked in memory (a few per origin, a bounded total,
//     never persisted or listed) and counted as not_member; it is applied
//     when gossip shows its origin, and dropped on restart.
//   - An origin holds at most MaxPerOrigin datasets, the catalog at most
//     MaxOrigins origins. At the limit, an origin that is neither verified
//     nor alive in gossip (unverified, departed) is evicted — its records
//     deleted — to make room; if there is none, the record is refused
//     (over_limit).
//
// Without Members (registry-level tests) every origin is taken, unlimited.

// Members tells the catalog who is, or was, a member of the federation.
// Package node wires the member table and the verifier in.
type Members interface {
	// IsMember reports whether origin is in the member table, or
	// credential (from its record) verifies as origin's membership
	// credential.
	IsMember(origin nii.NodeID, credential string) bool
	// Departed reports whether origin is not alive in gossip now.
	Departed(origin nii.NodeID) bool
}

// CatalogLimits bound the catalog once Members is set; 0 takes the default.
type CatalogLimits struct {
	MaxOrigins   int // origins the catalog holds records from
	MaxPerOrigin int // datasets (records, tombstones included) one origin may hold
	MaxParked    int // records of unknown origins parked, in all
}

// Catalog limit defaults: far above any real federation (33 boroughs, a
// few thousand datasets each), far below what a flood would need.
const (
	DefaultMaxOrigins   = 10_000
	DefaultMaxPerOrigin = 100_000
	DefaultMaxParked    = 1024
	maxParkedPerOrigin  = 16
	// parkedRefetchAfter is how long an origin that was parked is not
	// caught up again (anti-entropy would otherwise fetch a flood's
	// records at every push/pull).
	parkedRefetchAfter = 10 * time.Minute
)

func (l CatalogLimits) withDefaults() CatalogLimits {
	if l.MaxOrigins <= 0 {
		l.MaxOrigins = DefaultMaxOrigins
	}
	if l.MaxPerOrigin <= 0 {
		l.MaxPerOrigin = DefaultMaxPerOrigin
	}
	if l.MaxParked <= 0 {
		l.MaxParked = DefaultMaxParked
	}
	return l
}

// SetMembers makes the catalog take records only from members, within
// limits. Call it before records arrive (before gossip starts).
func (c *Catalog) SetMembers(m Members, l CatalogLimits) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.members = m
	c.limits = l.withDefaults()
}

// admitOrigin refuses (and parks) a record whose origin the catalog holds
// nothing of and that is not a member. c.mu not held.
func (c *Catalog) admitOrigin(sa *nii.SignedAdvert, a *nii.Advert) error {
	if c.members == nil || a.Origin == c.self {
		return nil
	}
	c.mu.RLock()
	_, held := c.maxSeq[a.Origin]
	c.mu.RUnlock()
	if held || c.members.IsMember(a.Origin, a.Credential) {
		return nil
	}
	c.parked.put(a.Origin, sa, c.limits.MaxParked)
	return c.reject(RejectNotMember, "%s seq %d: its origin %s is not a member (not seen in gossip, no membership credential that verifies); parked until it is",
		a.Dataset, a.Seq, a.Origin.Short())
}

// makeRoom checks a record against the limits, evicting an unverified,
// departed origin if the catalog is full. c.mu held.
func (c *Catalog) makeRoom(a *nii.Advert) error {
	if c.members == nil || a.Origin == c.self || c.rec(a.Dataset, a.Origin) != nil {
		return nil // a newer record in a place already held: no growth
	}
	if _, held := c.maxSeq[a.Origin]; held {
		if c.perOrigin[a.Origin] >= c.limits.MaxPerOrigin {
			return c.reject(RejectOverLimit, "%s from %s: the origin already holds %d datasets, the most one origin may", a.Dataset, a.Origin.Short(), c.perOrigin[a.Origin])
		}
		return nil
	}
	if len(c.maxSeq) < c.limits.MaxOrigins {
		return nil
	}
	if !c.evictOne() {
		return c.reject(RejectOverLimit, "%s from %s: the catalog holds %d origins, the most it may, and none is unverified and departed", a.Dataset, a.Origin.Short(), len(c.maxSeq))
	}
	return nil
}

// evictOne deletes the records of the unverified, departed origin whose
// newest record arrived longest ago. c.mu held.
func (c *Catalog) evictOne() bool {
	newest := map[nii.NodeID]time.Time{}
	for _, head := range c.entries {
		for r := head; r != nil; r = r.next {
			if t := time.Unix(0, r.received); t.After(newest[r.origin]) {
				newest[r.origin] = t
			}
		}
	}
	var victim nii.NodeID
	var at time.Time
	for o := range c.maxSeq {
		if o == c.self || (victim != "" && !newest[o].Before(at)) {
			continue
		}
		if cred := c.creds[o]; cred != "" && c.verify != nil {
			if _, err := c.verify(cred, o); err == nil {
				continue // verified: a member, kept
			}
		}
		if !c.members.Departed(o) {
			continue
		}
		victim, at = o, newest[o]
	}
	if victim == "" {
		return false
	}
	c.evict(victim)
	return true
}

// evict forgets every record of origin, in memory and in the store. c.mu
// held.
func (c *Catalog) evict(origin nii.NodeID) {
	var drop []nii.DatasetID
	for d := range c.entries {
		if c.rec(d, origin) != nil {
			drop = append(drop, d)
		}
	}
	for _, d := range drop {
		c.setEntry(d, origin, nil)
		c.index.Delete(c.docKey(origin, d))
	}
	delete(c.maxSeq, origin)
	delete(c.watermarks, origin)
	delete(c.creds, origin)
	delete(c.perOrigin, origin)
	wb := c.db.NewWriteBatch()
	defer wb.Cancel()
	c.db.View(func(txn *badger.Txn) error {
		for _, prefix := range [][]byte{
			[]byte(string(prefixAdvert) + string(origin) + "/"),
			[]byte(string(prefixDatasetIx) + string(origin) + "/"),
		} {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
			for it.Rewind(); it.Valid(); it.Next() {
				wb.Delete(it.Item().KeyCopy(nil))
			}
			it.Close()
		}
		return nil
	})
	wb.Delete(watermarkKey(origin))
	wb.Flush()
	c.evicted.Add(1)
}

// Evicted returns how many origins were evicted to make room.
func (c *Catalog) Evicted() int64 { return c.evicted.Load() }

// Parked returns how many records of unknown origins are parked.
func (c *Catalog) Parked() int { return c.parked.len() }

// WantsOrigin reports whether it is worth fetching origin's records: the
// catalog holds some, or the origin was not parked lately. Gossip asks it
// before a catch-up, so a flood of unknown origins is not fetched again at
// every push/pull.
func (c *Catalog) WantsOrigin(origin nii.NodeID) bool {
	if c.members == nil {
		return true
	}
	c.mu.RLock()
	_, held := c.maxSeq[origin]
	c.mu.RUnlock()
	return held || !c.parked.recentlyParked(origin)
}

// Release applies the records parked for origin, once it has become a
// member (gossip calls it when it sees origin alive). It returns how many
// were applied.
func (c *Catalog) Release(origin nii.NodeID) int {
	k := 0
	for _, sa := range c.parked.take(origin) {
		if _, isNew, err := c.Apply(sa); err == nil && isNew {
			k++
		}
	}
	return k
}

// parking holds records of origins not (yet) known as members.
type parking struct {
	mu     sync.Mutex
	m      map[nii.NodeID][]*nii.SignedAdvert
	n      int
	parked map[nii.NodeID]time.Time // when each origin was last parked
}

func (p *parking) put(origin nii.NodeID, sa *nii.SignedAdvert, max int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m == nil {
		p.m, p.parked = map[nii.NodeID][]*nii.SignedAdvert{}, map[nii.NodeID]time.Time{}
	}
	if len(p.parked) >= 4*max {
		clear(p.parked) // bounded: at worst a few extra fetches
	}
	p.parked[origin] = time.Now()
	if p.n >= max || len(p.m[origin]) >= maxParkedPerOrigin {
		return
	}
	for _, held := range p.m[origin] {
		if string(held.Body) == string(sa.Body) {
			return // a copy (gossip delivers each record several times)
		}
	}
	p.m[origin] = append(p.m[origin], sa)
	p.n++
}

func (p *parking) take(origin nii.NodeID) []*nii.SignedAdvert {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := p.m[origin]
	delete(p.m, origin)
	delete(p.parked, origin)
	p.n -= len(out)
	return out
}

func (p *parking) recentlyParked(origin nii.NodeID) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	at, ok := p.parked[origin]
	return ok && time.Since(at) < parkedRefetchAfter
}

func (p *parking) len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n
}
