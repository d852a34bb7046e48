package registry

import (
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/registry/search"
)

// The federated catalog: every node keeps the newest signed advert per
// (origin, dataset) it has seen, in badger, plus an in-memory search index.
//
// Key layout (see docs/storage.md):
//
//	ra/<origin>/<seq:8 BE>              signed advert (canonical CBOR)
//	rd/<origin>/<org>/<name>            seq of that origin's newest advert for the dataset
//	rw/<origin>                         watermark: every record of origin up to it is held
//	rs                                  this node's own last issued seq
//
// Tombstones are kept like adverts, so an old advert replayed after a
// withdrawal is recognised as stale.
var (
	prefixAdvert    = []byte("ra/")
	prefixDatasetIx = []byte("rd/")
	prefixWatermark = []byte("rw/")
	keySelfSeq      = []byte("rs")
)

func advertKey(origin nii.NodeID, seq uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte(string(prefixAdvert)+string(origin)+"/"), seq)
}

func datasetIxKey(origin nii.NodeID, d nii.DatasetID) []byte {
	return []byte(string(prefixDatasetIx) + string(origin) + "/" + d.Org + "/" + d.Name)
}

func watermarkKey(origin nii.NodeID) []byte { return []byte(string(prefixWatermark) + string(origin)) }

// Reasons a received record is not applied; each is counted.
const (
	RejectInvalid      = "invalid"       // does not decode or is inconsistent
	RejectBadSignature = "bad_signature" // signature fails
	RejectStale        = "stale"         // older than the record held for that origin and dataset
	RejectReplay       = "replay"        // the very record already held
	RejectOverload     = "overload"      // dropped unread: gossip could not keep up (anti-entropy brings it later)
	RejectNotMember    = "not_member"    // its origin is not (and was not) a member: parked, not stored (origins.go)
	RejectOverLimit    = "over_limit"    // its origin holds the most datasets one origin may, or the catalog the most origins
)

// ErrRejected matches every refusal of a received record.
var ErrRejected = errors.New("record rejected")

// RejectError says why a received record was refused.
type RejectError struct {
	Reason string // one of the Reject* constants
	Detail string
}

func (e *RejectError) Error() string { return "record rejected (" + e.Reason + "): " + e.Detail }

// Is makes errors.Is(err, ErrRejected) true for every RejectError.
func (e *RejectError) Is(target error) bool { return target == ErrRejected }

// CredentialVerifier checks a membership credential: that it is signed by a
// trust anchor and binds node to an org. It returns the org proven. The grants
// work supplies the real one; without it every org claim is unverified.
type CredentialVerifier func(credential string, node nii.NodeID) (org string, err error)

// Entry is one advert in the catalog with what this node knows of it.
type Entry struct {
	Advert   *nii.Advert `json:"advert"`
	Verified bool        `json:"verified"`
	Received time.Time   `json:"received"`
}

// Catalog is the federated catalog held by one node.
type Catalog struct {
	db     *badger.DB
	self   nii.NodeID
	key    ed25519.PrivateKey
	verify CredentialVerifier

	mu         sync.RWMutex
	selfSeq    uint64
	watermarks map[nii.NodeID]uint64
	maxSeq     map[nii.NodeID]uint64     // highest seq held per origin (≥ watermark)
	creds      map[nii.NodeID]string     // the credential of each origin's newest record
	perOrigin  map[nii.NodeID]int        // datasets held per origin
	entries    map[nii.DatasetID]*record // newest record per dataset per origin, tombstones included, chained (record.go)
	strs       interner                  // the strings records share
	index      *search.Index
	orgNames   map[string]orgName // org → the name its newest live advert gives it
	lists      listings           // what the list views count, kept as entries change (listing.go)
	aliasOf    AliasFunc          // SetAliases's names (listing.go)

	rejected sync.Map // reason -> *atomic.Int64
	applied  atomic.Int64

	grew        chan struct{} // a step more records added (heap.go)
	collections atomic.Int64
	added       int64 // records applied or signed; c.mu held
	nextCollect int64 // added count at which the next collection is asked for

	onChange func(*nii.Advert) // called (with c.mu held) for every record applied

	credential string // this node's membership credential, carried in its adverts

	adopted    atomic.Int64                        // own records learnt from the federation beyond selfSeq (a restored home)
	collisions atomic.Int64                        // own seqs found signed for other content
	onOwn      func(a *nii.Advert, collision bool) // told of both, c.mu held

	members         Members               // who counts as a member; nil: every origin (origins.go)
	limits          CatalogLimits         // with members set
	parked          parking               // records of origins not (yet) known as members
	evicted         atomic.Int64          // origins evicted to make room
	requireVerified bool                  // the catalog policy's mode (policy.go)
	expired         map[nii.NodeID]uint64 // origins expired, and the seq up to which (expiry.go)
}

// SetCredential sets the membership credential this node's next adverts
// carry ("" for none).
func (c *Catalog) SetCredential(cred string) {
	c.mu.Lock()
	c.credential = cred
	c.mu.Unlock()
}

// Reverify checks every advert's org claim again (after trust anchors
// change, a revocation arrives, or credentials may have expired) and
// reindexes those whose verified status changed. It returns how many
// changed.
func (c *Catalog) Reverify() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	changed := 0
	for d, head := range c.entries {
		for r := head; r != nil; r = r.next {
			v := c.verifiedClaim(c.strs.str(r.cred), r.origin, d.Org)
			if v == r.verified {
				continue
			}
			changed++
			// Entries are copied out, never shared: the record changes in place.
			r.verified = v
			c.relist(d, nil)
			if r.live() {
				c.index.SetVerified(c.docKey(r.origin, d), v)
			}
		}
	}
	return changed
}

// OnChange registers f to be told of every record applied from the
// federation. f runs with the catalog locked: it must not block or call back
// into the catalog (a non-blocking channel send is the intended use).
func (c *Catalog) OnChange(f func(*nii.Advert)) {
	c.mu.Lock()
	c.onChange = f
	c.mu.Unlock()
}

// OpenCatalog loads the catalog kept in db. self and key are this node's ID
// and signing key; verify may be nil.
func OpenCatalog(db *badger.DB, self nii.NodeID, key ed25519.PrivateKey, verify CredentialVerifier) (*Catalog, error) {
	c := &Catalog{
		grew:        make(chan struct{}, 1),
		nextCollect: growBurst,
		db:          db,
		self:        self,
		key:         key,
		verify:      verify,
		watermarks:  make(map[nii.NodeID]uint64),
		maxSeq:      make(map[nii.NodeID]uint64),
		creds:       make(map[nii.NodeID]string),
		perOrigin:   make(map[nii.NodeID]int),
		entries:     make(map[nii.DatasetID]*record),
		strs:        newInterner(),
		index:       search.NewCompactIndex(),
		orgNames:    make(map[string]orgName),
		lists:       newListings(),
		expired:     make(map[nii.NodeID]uint64),
	}
	err := db.View(func(txn *badger.Txn) error {
		if err := c.loadExpired(txn); err != nil {
			return err
		}
		if item, err := txn.Get(keySelfSeq); err == nil {
			if err := item.Value(func(b []byte) error { c.selfSeq = binary.BigEndian.Uint64(b); return nil }); err != nil {
				return err
			}
		} else if !errors.Is(err, badger.ErrKeyNotFound) {
			return err
		}
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefixWatermark, PrefetchValues: true})
		for it.Rewind(); it.Valid(); it.Next() {
			origin := nii.NodeID(it.Item().Key()[len(prefixWatermark):])
			it.Item().Value(func(b []byte) error { c.watermarks[origin] = binary.BigEndian.Uint64(b); return nil })
		}
		it.Close()
		// Records were verified when they arrived; loading trusts the store.
		it = txn.NewIterator(badger.IteratorOptions{Prefix: prefixAdvert, PrefetchValues: true, PrefetchSize: 256})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var a nii.Advert
			err := it.Item().Value(func(b []byte) error {
				sa, err := nii.DecodeSignedAdvert(b)
				if err != nil {
					return err
				}
				return nii.Unmarshal(sa.Body, &a)
			})
			if err != nil {
				return fmt.Errorf("catalog record %x: %w", it.Item().Key(), err)
			}
			c.install(&a)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("open catalog: %w", err)
	}
	c.watermarks[self] = c.selfSeq
	return c, nil
}

// install puts a verified advert into the in-memory views. c.mu held (or
// not yet shared).
func (c *Catalog) install(a *nii.Advert) {
	e := c.newRecord(a)
	if c.rec(a.Dataset, a.Origin) == nil {
		c.perOrigin[e.origin]++
	}
	c.setEntry(nii.DatasetID{Org: c.strs.of(a.Dataset.Org), Name: a.Dataset.Name}, e.origin, e)
	if a.Seq >= c.maxSeq[a.Origin] {
		c.creds[e.origin] = c.strs.str(e.cred)
	}
	if a.Seq > c.maxSeq[a.Origin] {
		c.maxSeq[e.origin] = a.Seq
	}
	key := c.docKey(a.Origin, a.Dataset)
	if a.Withdrawn || a.Replica {
		c.index.Delete(key)
	} else {
		c.index.Put(search.Doc{Key: key, Advert: a, Verified: e.verified})
		if name := a.Meta.PublisherName; name != "" {
			// A verified claim names its org over any unverified one: an
			// impostor does not get to rename the org it pretends to be.
			held, ok := c.orgNames[a.Dataset.Org]
			if !ok || (e.verified && !held.verified) || (e.verified == held.verified && !a.Meta.Modified.Before(held.modified)) {
				c.orgNames[c.strs.of(a.Dataset.Org)] = orgName{name, a.Meta.Modified, e.verified}
			}
		}
	}
}

// orgName is the display name an org's adverts give it, and when the
// advert that gave it was modified.
type orgName struct {
	name     string
	modified time.Time
	verified bool
}

// docKey is the search index's key of origin's claim to d: the dataset,
// then the number the catalog interned origin's ID under (interner), in
// base 36 — a third of the bytes of the node ID itself. c.mu held for
// writing (it may intern origin).
func (c *Catalog) docKey(origin nii.NodeID, d nii.DatasetID) string {
	return d.String() + " " + strconv.FormatUint(uint64(c.strs.id(string(origin))), 36)
}

// parseDocKey reverses docKey. c.mu held.
func (c *Catalog) parseDocKey(key string) (nii.DatasetID, nii.NodeID, bool) {
	ds, num, ok := strings.Cut(key, " ")
	if !ok {
		return nii.DatasetID{}, "", false
	}
	id, err := strconv.ParseUint(num, 36, 32)
	if err != nil || id == 0 || id >= uint64(len(c.strs.strs)) {
		return nii.DatasetID{}, "", false
	}
	d, err := nii.ParseDatasetID(ds)
	return d, nii.NodeID(c.strs.str(sid(id))), err == nil
}

// verifiedClaim reports whether cred proves that origin publishes for org.
func (c *Catalog) verifiedClaim(cred string, origin nii.NodeID, org string) bool {
	if c.verify == nil || cred == "" {
		return false
	}
	proven, err := c.verify(cred, origin)
	return err == nil && proven == org
}

func (c *Catalog) reject(reason string, format string, args ...any) error {
	v, _ := c.rejected.LoadOrStore(reason, new(atomic.Int64))
	v.(*atomic.Int64).Add(1)
	return &RejectError{Reason: reason, Detail: fmt.Sprintf(format, args...)}
}

// Reject counts a received record refused before it could reach Apply —
// a gossip message that does not decode, a full inbox — under reason (one
// of the Reject* constants), as Apply counts its own refusals, and returns
// the refusal.
func (c *Catalog) Reject(reason, detail string) error {
	return c.reject(reason, "%s", detail)
}

// Rejected returns how many received records were refused, by reason.
func (c *Catalog) Rejected() map[string]int64 {
	out := map[string]int64{}
	c.rejected.Range(func(k, v any) bool {
		out[k.(string)] = v.(*atomic.Int64).Load()
		return true
	})
	return out
}

// Applied returns how many received records were accepted.
func (c *Catalog) Applied() int64 { return c.applied.Load() }

// Apply verifies a record received from the federation and stores it if it
// is newer than what is held for its origin and dataset. It returns the
// advert and true if it was new. A refused record's error wraps ErrRejected
// and names the reason; refusals are counted, never fatal.
func (c *Catalog) Apply(sa *nii.SignedAdvert) (*nii.Advert, bool, error) {
	// Gossip delivers each record to a node several times. A copy of a
	// record already held is refused without checking its signature, which
	// is most of the cost of a duplicate; this only ever shortens a
	// refusal, never skips a check on a record kept.
	var peek struct {
		Origin  nii.NodeID    `cbor:"1,keyasint"`
		Seq     uint64        `cbor:"2,keyasint"`
		Dataset nii.DatasetID `cbor:"3,keyasint"`
	}
	if nii.Unmarshal(sa.Body, &peek) == nil {
		c.mu.RLock()
		var held *nii.Advert
		// Our own records are compared whole (below): one with our seq but
		// other content is a fork (a restored home), not a copy.
		if r := c.rec(peek.Dataset, peek.Origin); r != nil && r.seq == peek.Seq && peek.Origin != c.self {
			c.db.View(func(txn *badger.Txn) error {
				held, _ = loadAdvert(txn, r.origin, r.seq)
				return nil
			})
		}
		c.mu.RUnlock()
		if held != nil {
			// The held record (verified when it came) stands for the copy.
			return held, false, c.reject(RejectReplay, "%s seq %d from %s is already held", peek.Dataset, peek.Seq, peek.Origin.Short())
		}
	}
	a, err := sa.Open()
	switch {
	case errors.Is(err, nii.ErrBadSignature):
		return nil, false, c.reject(RejectBadSignature, "%v", err)
	case err != nil:
		return nil, false, c.reject(RejectInvalid, "%v", err)
	}
	if err := c.admitOrigin(sa, a); err != nil {
		return a, false, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.expiredRecord(a.Origin, a.Seq) {
		return a, false, c.reject(RejectExpired, "%s seq %d from %s: its origin's records up to seq %d were expired", a.Dataset, a.Seq, a.Origin.Short(), c.expired[a.Origin])
	}
	if err := c.makeRoom(a); err != nil {
		return a, false, err
	}
	if held := c.rec(a.Dataset, a.Origin); held != nil {
		switch {
		case held.seq == a.Seq && a.Origin == c.self && !c.sameRecord(held, a):
			// Signed by our key, with a seq we issued for other content:
			// another life of this node (a restored home, or a copy of
			// its key running) issued it.
			c.collisions.Add(1)
			if c.onOwn != nil {
				c.onOwn(a, true)
			}
			return a, false, c.reject(RejectStale, "%s seq %d: this node's own seq, signed for other content (version %d, not %d): the home was restored from a backup, or another node runs with this key",
				a.Dataset, a.Seq, a.Version, held.version)
		case held.seq == a.Seq:
			return a, false, c.reject(RejectReplay, "%s seq %d from %s is already held", a.Dataset, a.Seq, a.Origin.Short())
		case held.seq > a.Seq:
			return a, false, c.reject(RejectStale, "%s seq %d from %s is older than the held seq %d", a.Dataset, a.Seq, a.Origin.Short(), held.seq)
		case !a.Withdrawn && !held.withdrawn && a.Version < held.version:
			return a, false, c.reject(RejectStale, "%s version %d from %s is older than the held version %d", a.Dataset, a.Version, a.Origin.Short(), held.version)
		}
	}
	// Our own record beyond our counter (its signature verified: it is
	// ours) was issued by an earlier life of this node whose state this
	// store lacks — the home was restored from a backup. It is adopted,
	// and the counter moves past it, so the next record supersedes it
	// rather than reusing its seq.
	adopt := a.Origin == c.self && a.Seq > c.selfSeq
	// A record that directly follows the watermark extends it, so a node
	// that received everything by broadcast can vouch for it in
	// anti-entropy too.
	var extra func(*badger.Txn) error
	advance := a.Seq == c.watermarks[a.Origin]+1 || adopt
	if advance {
		extra = func(txn *badger.Txn) error {
			seq := binary.BigEndian.AppendUint64(nil, max(a.Seq, c.watermarks[a.Origin]))
			if adopt {
				if err := txn.Set(keySelfSeq, binary.BigEndian.AppendUint64(nil, a.Seq)); err != nil {
					return err
				}
			}
			return txn.Set(watermarkKey(a.Origin), seq)
		}
	}
	if err := c.store(sa, a, extra); err != nil {
		return nil, false, err
	}
	if advance {
		c.watermarks[a.Origin] = max(a.Seq, c.watermarks[a.Origin])
	}
	if adopt {
		c.selfSeq = a.Seq
		c.adopted.Add(1)
		if c.onOwn != nil {
			c.onOwn(a, false)
		}
	}
	c.install(a)
	c.applied.Add(1)
	c.noteGrowth()
	if c.onChange != nil {
		c.onChange(a)
	}
	return a, true, nil
}

// store writes a record and its dataset index entry, deleting the record it
// supersedes, in one transaction. extra runs in the same transaction.
func (c *Catalog) store(sa *nii.SignedAdvert, a *nii.Advert, extra func(*badger.Txn) error) error {
	b, err := nii.EncodeSignedAdvert(sa)
	if err != nil {
		return err
	}
	return c.db.Update(func(txn *badger.Txn) error {
		ixKey := datasetIxKey(a.Origin, a.Dataset)
		if item, err := txn.Get(ixKey); err == nil {
			var old uint64
			item.Value(func(v []byte) error { old = binary.BigEndian.Uint64(v); return nil })
			if err := txn.Delete(advertKey(a.Origin, old)); err != nil {
				return err
			}
		} else if !errors.Is(err, badger.ErrKeyNotFound) {
			return err
		}
		if err := txn.Set(advertKey(a.Origin, a.Seq), b); err != nil {
			return err
		}
		if err := txn.Set(ixKey, binary.BigEndian.AppendUint64(nil, a.Seq)); err != nil {
			return err
		}
		if extra != nil {
			return extra(txn)
		}
		return nil
	})
}

// Sign issues this node's next record: it fills Origin, Seq and Signed,
// signs, stores and indexes it, and returns it for gossip.
func (c *Catalog) Sign(a nii.Advert) (*nii.SignedAdvert, *nii.Advert, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	a.Origin = c.self
	a.Seq = c.selfSeq + 1
	a.Signed = time.Now().UTC()
	a.Credential = c.credential
	sa, err := nii.SignAdvert(&a, c.key)
	if err != nil {
		return nil, nil, err
	}
	seq := binary.BigEndian.AppendUint64(nil, a.Seq)
	err = c.store(sa, &a, func(txn *badger.Txn) error {
		if err := txn.Set(keySelfSeq, seq); err != nil {
			return err
		}
		return txn.Set(watermarkKey(c.self), seq)
	})
	if err != nil {
		return nil, nil, fmt.Errorf("store own advert: %w", err)
	}
	c.selfSeq = a.Seq
	c.watermarks[c.self] = a.Seq
	c.install(&a)
	c.noteGrowth()
	return sa, &a, nil
}

// Watermarks returns, per origin, the seq up to which this node holds every
// record of that origin. Anti-entropy exchanges exactly this.
func (c *Catalog) Watermarks() map[nii.NodeID]uint64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make(map[nii.NodeID]uint64, len(c.watermarks))
	for k, v := range c.watermarks {
		out[k] = v
	}
	return out
}

// Watermark returns the watermark for one origin.
func (c *Catalog) Watermark(origin nii.NodeID) uint64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.watermarks[origin]
}

// SetWatermark records that every record of origin up to seq is held. It
// never moves a watermark backwards.
func (c *Catalog) SetWatermark(origin nii.NodeID, seq uint64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if seq <= c.watermarks[origin] || origin == c.self {
		return nil
	}
	err := c.db.Update(func(txn *badger.Txn) error {
		return txn.Set(watermarkKey(origin), binary.BigEndian.AppendUint64(nil, seq))
	})
	if err != nil {
		return err
	}
	c.watermarks[origin] = seq
	return nil
}

// HasRecord reports whether the record origin/seq is held (or superseded:
// anything at or below the watermark counts as held).
func (c *Catalog) HasRecord(origin nii.NodeID, seq uint64) bool {
	c.mu.RLock()
	wm := c.watermarks[origin]
	c.mu.RUnlock()
	if seq <= wm {
		return true
	}
	err := c.db.View(func(txn *badger.Txn) error {
		_, err := txn.Get(advertKey(origin, seq))
		return err
	})
	return err == nil
}

// MaxPageRecords bounds one catalog page.
const MaxPageRecords = 500

// Page returns the records of origin with seq > after, in seq order, at
// most limit, whether more follow, and this node's watermark for origin.
// It serves the catalog protocol: a node catching up fetches pages until
// more is false and then adopts the watermark.
func (c *Catalog) Page(origin nii.NodeID, after uint64, limit int) ([]*nii.SignedAdvert, bool, uint64, error) {
	limit = min(max(limit, 1), MaxPageRecords)
	wm := c.Watermark(origin)
	var out []*nii.SignedAdvert
	more := false
	prefix := []byte(string(prefixAdvert) + string(origin) + "/")
	err := c.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true, PrefetchSize: min(limit, 100)})
		defer it.Close()
		for it.Seek(binary.BigEndian.AppendUint64(prefix, after+1)); it.ValidForPrefix(prefix); it.Next() {
			if len(out) == limit {
				more = true
				return nil
			}
			err := it.Item().Value(func(b []byte) error {
				sa, err := nii.DecodeSignedAdvert(b)
				if err != nil {
					return err
				}
				out = append(out, sa)
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	return out, more, wm, err
}

// Lookup returns every origin's entry for a dataset, tombstones included,
// the publisher's (by org, verified first) before replicas.
// Each entry's advert is read from the store (record.go).
func (c *Catalog) Lookup(d nii.DatasetID) []Entry {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.entriesOf(c.records(d))
}

// Search runs a query over the catalog's live (not withdrawn) adverts.
// The index holds no adverts: each hit's is read from the store, so a
// page costs its rows, not the catalog. A hit whose record changed
// since the index answered carries the record held now (or, withdrawn
// since, is left out).
func (c *Catalog) Search(q search.Query) search.Result {
	res := c.index.Search(q)
	if len(res.Hits) == 0 {
		return res
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	hits := res.Hits[:0]
	c.db.View(func(txn *badger.Txn) error {
		for _, h := range res.Hits {
			d, origin, ok := c.parseDocKey(h.Doc.Key)
			r := c.rec(d, origin)
			if !ok || r == nil || !r.live() {
				res.Total--
				continue
			}
			a, err := loadAdvert(txn, r.origin, r.seq)
			if err != nil {
				res.Total--
				continue
			}
			h.Doc.Advert, h.Doc.Verified = a, r.verified
			hits = append(hits, h)
		}
		return nil
	})
	res.Hits = hits
	return res
}

// OrgName returns the display name an org gives itself in the most
// recently modified of its live adverts that names it, "" if none does.
// It is kept as adverts are applied: asking costs a map lookup.
func (c *Catalog) OrgName(org string) string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	n := c.orgNames[org]
	if c.requireVerified && !n.verified {
		return ""
	}
	return n.name
}

// EachLive calls fn with every live publisher entry — what Search can
// find: no tombstones, no replicas — in no particular order. It reads
// every such advert from the store (seconds at 100,000 datasets) under
// the catalog's read lock, so fn must be quick and must not call the
// catalog. The list views use the aggregates (listing.go) instead;
// callers that want a few kinds of claim use EachLiveWhere.
func (c *Catalog) EachLive(fn func(Entry)) {
	c.EachLiveWhere(func(LiveClaim) bool { return true }, fn)
}

// Len returns the number of searchable adverts.
func (c *Catalog) Len() int { return c.index.Len() }

// Origins returns how many origins the catalog holds records from.
func (c *Catalog) Origins() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.maxSeq)
}

// Own returns this node's entry for d, if any.
func (c *Catalog) Own(d nii.DatasetID) (*nii.Advert, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	r := c.rec(d, c.self)
	if r == nil {
		return nil, false
	}
	es := c.entriesOf([]*record{r})
	if len(es) == 0 {
		return nil, false
	}
	return es[0].Advert, true
}

// OwnRecords returns this node's own current records (adverts, replica
// adverts and tombstones).
func (c *Catalog) OwnRecords() []*nii.Advert {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var own []*record
	for d := range c.entries {
		if r := c.rec(d, c.self); r != nil {
			own = append(own, r)
		}
	}
	var out []*nii.Advert
	for _, e := range c.entriesOf(own) {
		out = append(out, e.Advert)
	}
	return out
}

// Credentials returns, per origin, the membership credential its newest
// record carries ("" if none), for showing which members are verified.
func (c *Catalog) Credentials() map[nii.NodeID]string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return maps.Clone(c.creds)
}

// Credential returns the membership credential origin's newest record
// carries ("" if none, or no record of origin is held).
func (c *Catalog) Credential(origin nii.NodeID) string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.creds[origin]
}

// CountByOrigin returns how many live datasets each origin advertises.
// It is kept as records change (listing.go): asking costs the number of
// origins.
func (c *Catalog) CountByOrigin() map[nii.NodeID]int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return maps.Clone(c.lists.live)
}

// SelfSeq returns the seq of this node's newest record.
func (c *Catalog) SelfSeq() uint64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.selfSeq
}

// sameRecord reports whether the held record and a (of one origin, seq
// and dataset) say the same thing. c.mu held.
func (c *Catalog) sameRecord(held *record, a *nii.Advert) bool {
	es := c.entriesOf([]*record{held})
	if len(es) == 0 {
		return false
	}
	b := es[0].Advert
	return a.Version == b.Version && a.Manifest == b.Manifest && a.Withdrawn == b.Withdrawn && a.Replica == b.Replica
}

// OnOwnRecord registers f to be told when the federation hands back one of
// this node's own records that this store lacks: adopted (collision false:
// a record beyond this node's counter, which moves past it) or a collision
// (a seq this node issued, signed for other content). Both mean an earlier
// life of this node key — a restored home, or a copy running elsewhere. f
// runs with the catalog locked: it must not block or call the catalog.
func (c *Catalog) OnOwnRecord(f func(a *nii.Advert, collision bool)) {
	c.mu.Lock()
	c.onOwn = f
	c.mu.Unlock()
}

// OwnLearnt returns how many of this node's own records were learnt from
// the federation beyond its counter, and how many collisions were seen.
func (c *Catalog) OwnLearnt() (adopted, collisions int64) {
	return c.adopted.Load(), c.collisions.Load()
}
