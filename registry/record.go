package registry

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/nii-uk/nii"
)

// Compact records. The catalog keeps in memory, per advert held (the
// newest of one origin for one dataset, tombstones included), only what
// ordering records, choosing a dataset's publisher and the list
// aggregates need: a record of a couple of hundred bytes whose strings are
// interned (an origin's node ID and credential, kinds, standards, themes
// and keywords are each held once however many records carry them). The
// signed advert itself stays in badger under ra/<origin>/<seq> and is read
// back, decoded, when a caller asks for it (Lookup, Publisher, Search's
// hits, EachLive). Records were verified when they arrived; reading one
// back trusts the store, as OpenCatalog does. docs/storage.md gives the
// heap this costs.

// record is one held advert, in memory. A dataset's records (one per
// origin) are chained through next. Its strings are interned (interner):
// the origin as a shared string, the rest as numbers into the catalog's
// table, themes and keywords as one number per distinct list. So a record
// is 96 bytes (192 before interning), with no allocation of its own besides itself.
type record struct {
	next     *record
	origin   nii.NodeID // interned
	seq      uint64
	version  uint64
	received int64 // when it arrived, Unix nanoseconds
	issued   stamp // Meta.Issued
	cred     sid   // Credential
	kind     sid   // Meta.Kind
	conforms sid   // Meta.ConformsTo
	themes   lid   // Meta.Themes
	keywords lid   // Meta.Keywords

	withdrawn, replica, restricted, verified bool
	listed                                   bool // its dataset's listing (listing.go) is this record
}

// live reports whether r is a live claim to publish: what Search finds.
func (r *record) live() bool { return !r.withdrawn && !r.replica }

// stamp is a time to the nanosecond, in 12 bytes rather than time.Time's
// 24 (no location, no monotonic reading: records' times are UTC wall
// times). The zero time.Time round-trips to a time that IsZero.
type stamp struct {
	sec  int64
	nsec int32
}

func stampOf(t time.Time) stamp { return stamp{t.Unix(), int32(t.Nanosecond())} }

func (s stamp) time() time.Time { return time.Unix(s.sec, int64(s.nsec)).UTC() }

func (s stamp) before(o stamp) bool { return s.sec < o.sec || (s.sec == o.sec && s.nsec < o.nsec) }

// isZero reports whether s is the zero time.Time's stamp.
func (s stamp) isZero() bool { return s == zeroStamp }

var zeroStamp = stampOf(time.Time{})

// sid numbers an interned string; 0 is "".
type sid uint32

// lid numbers an interned list of strings; 0 is the empty list.
type lid uint32

// interner holds one copy of each string records carry, and of each
// set of them (themes, keywords: a catalog's datasets repeat a few
// hundred combinations). It only grows, as the map of strings before it
// did: what it holds is bounded by the distinct values ever seen, not by
// the records held. The zero value is not ready: see newInterner.
type interner struct {
	ids   map[string]sid
	strs  []string // by sid; strs[0] is ""
	lists map[string]lid
	lv    [][]string // by lid; lv[0] is nil
}

func newInterner() interner {
	return interner{ids: map[string]sid{}, strs: []string{""}, lists: map[string]lid{}, lv: [][]string{nil}}
}

// of returns the held copy of s.
func (in *interner) of(s string) string { return in.strs[in.id(s)] }

// id returns s's number, interning it.
func (in *interner) id(s string) sid {
	if s == "" {
		return 0
	}
	if id, ok := in.ids[s]; ok {
		return id
	}
	id := sid(len(in.strs))
	in.strs = append(in.strs, s)
	in.ids[s] = id
	return id
}

// str returns the string numbered id.
func (in *interner) str(id sid) string { return in.strs[id] }

// listID returns the number of ss as a multiset: its strings sorted, so
// that lists of the same strings in another order (keywords picked in any
// order) share one number. Records' themes and keywords are only counted
// (listing.go), never shown in order. ss is not modified.
func (in *interner) listID(ss []string) lid {
	if len(ss) == 0 {
		return 0
	}
	if !slices.IsSorted(ss) {
		ss = slices.Sorted(slices.Values(ss))
	}
	// Each string length-prefixed: the key names one list only.
	var k []byte
	for _, s := range ss {
		k = binary.AppendUvarint(k, uint64(len(s)))
		k = append(k, s...)
	}
	if id, ok := in.lists[string(k)]; ok {
		return id
	}
	l := make([]string, len(ss))
	for i, s := range ss {
		l[i] = in.of(s)
	}
	id := lid(len(in.lv))
	in.lv = append(in.lv, l)
	in.lists[string(k)] = id
	return id
}

// list returns the list numbered id. Callers must not modify it.
func (in *interner) list(id lid) []string { return in.lv[id] }

// newRecord makes a's record. c.mu held (or not yet shared).
func (c *Catalog) newRecord(a *nii.Advert) *record {
	return &record{
		origin:     nii.NodeID(c.strs.of(string(a.Origin))),
		seq:        a.Seq,
		version:    a.Version,
		received:   time.Now().UnixNano(),
		issued:     stampOf(a.Meta.Issued),
		cred:       c.strs.id(a.Credential),
		kind:       c.strs.id(a.Meta.Kind),
		conforms:   c.strs.id(a.Meta.ConformsTo),
		themes:     c.strs.listID(a.Meta.Themes),
		keywords:   c.strs.listID(a.Meta.Keywords),
		withdrawn:  a.Withdrawn,
		replica:    a.Replica,
		restricted: a.Meta.Access == nii.AccessRestricted,
		verified:   c.verifiedClaim(a.Credential, a.Origin, a.Dataset.Org),
	}
}

// rec returns origin's record of d, nil if none. c.mu held.
func (c *Catalog) rec(d nii.DatasetID, origin nii.NodeID) *record {
	for r := c.entries[d]; r != nil; r = r.next {
		if r.origin == origin {
			return r
		}
	}
	return nil
}

// records returns d's records in Lookup's order: claims before replicas,
// verified first, newest version first, then by origin. c.mu held.
func (c *Catalog) records(d nii.DatasetID) []*record {
	var out []*record
	for r := c.entries[d]; r != nil; r = r.next {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.replica != b.replica {
			return !a.replica
		}
		if a.verified != b.verified {
			return a.verified
		}
		if a.version != b.version {
			return a.version > b.version
		}
		return a.origin < b.origin
	})
	return out
}

// publisherRecord is choosePublisherMode's rule (with no options) over
// records: the chosen claim, or nil where Publisher would refuse. c.mu
// held.
func (c *Catalog) publisherRecord(d nii.DatasetID) *record {
	var claims []*record
	for _, r := range c.records(d) {
		if !r.replica {
			claims = append(claims, r)
		}
	}
	switch {
	case len(claims) == 0:
		return nil
	case claims[0].verified:
		return claims[0]
	case len(claims) == 1 && !c.requireVerified:
		return claims[0]
	}
	return nil
}

// errGone: a record was superseded between choosing it and reading it.
var errGone = errors.New("record superseded")

// loadAdvert reads the advert origin/seq back from the store.
func loadAdvert(txn *badger.Txn, origin nii.NodeID, seq uint64) (*nii.Advert, error) {
	item, err := txn.Get(advertKey(origin, seq))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, errGone
	}
	if err != nil {
		return nil, err
	}
	var a nii.Advert
	err = item.Value(func(b []byte) error {
		sa, err := nii.DecodeSignedAdvert(b)
		if err != nil {
			return err
		}
		return nii.Unmarshal(sa.Body, &a)
	})
	if err != nil {
		return nil, fmt.Errorf("catalog record %s seq %d: %w", origin.Short(), seq, err)
	}
	return &a, nil
}

// entries reads rs back as Entries, in order, skipping any the store no
// longer holds (it cannot, with c.mu held: records change only under the
// write lock, in the same step as the store). c.mu held.
func (c *Catalog) entriesOf(rs []*record) []Entry {
	if len(rs) == 0 {
		return nil
	}
	out := make([]Entry, 0, len(rs))
	c.db.View(func(txn *badger.Txn) error {
		for _, r := range rs {
			a, err := loadAdvert(txn, r.origin, r.seq)
			if err != nil {
				continue
			}
			out = append(out, Entry{Advert: a, Verified: r.verified, Received: time.Unix(0, r.received).UTC()})
		}
		return nil
	})
	return out
}

// LiveClaim is what the catalog holds in memory of one live claim to
// publish a dataset, for callers that pick a few claims out of all of
// them before reading those (EachLiveWhere).
type LiveClaim struct {
	Dataset    nii.DatasetID
	Origin     nii.NodeID
	Verified   bool
	Kind       string // Meta.Kind
	ConformsTo string // Meta.ConformsTo
}

// EachLiveWhere calls fn with the entry of every live claim (as EachLive)
// for which keep, asked of what the catalog holds in memory, is true; only
// those are read from the store. keep and fn run under the catalog's read
// lock: they must be quick and must not call the catalog.
func (c *Catalog) EachLiveWhere(keep func(LiveClaim) bool, fn func(Entry)) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var picked []*record
	for d, head := range c.entries {
		for r := head; r != nil; r = r.next {
			if r.live() && keep(LiveClaim{Dataset: d, Origin: r.origin, Verified: r.verified, Kind: c.strs.str(r.kind), ConformsTo: c.strs.str(r.conforms)}) {
				picked = append(picked, r)
			}
		}
	}
	for _, e := range c.entriesOf(picked) {
		fn(e)
	}
}

// EachLiveKind calls fn with the entry of every live claim of kind
// (nii.KindStandard, nii.KindMapping, ...): EachLiveWhere by kind.
func (c *Catalog) EachLiveKind(kind string, fn func(Entry)) {
	c.EachLiveWhere(func(l LiveClaim) bool { return l.Kind == kind }, fn)
}
