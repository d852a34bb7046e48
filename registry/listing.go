package registry

import (
	"hash/maphash"
	"maps"
	"sort"
	"strings"
	"time"

	"github.com/google/btree"

	"github.com/nii-uk/nii"
)

// Listing aggregates: what the public list views (CKAN's package_list,
// organization_list and organization_show, 'nii peers') need, kept up to
// date as records are applied, replaced, withdrawn, re-verified, expired
// or evicted, so that a list costs the size of its answer (or the number
// of orgs) rather than a walk of the whole catalog.
//
// A dataset is listed when the catalog policy's publisher of it (Publisher
// with no options) is a live advert (not a tombstone): public views show
// that claim under the dataset's own name. The public aggregates count
// listed datasets that are not restricted, as CKAN does for an anonymous
// caller. Every change to a dataset's entries calls relist for that
// dataset, which recomputes its listing from its own claims (a handful)
// and moves the aggregates by the difference. TestListingMatchesRecount
// checks them against a full recount.
//
// Google's btree (github.com/google/btree, already in the build through
// badger; maintained, generic since v1.1) keeps the names in order for
// paging.

// A listed dataset counts as its publisher's record says: public (not
// restricted: counted in the public aggregates), its first issue (for
// its org's "created"), its themes and keywords (group_list, tag_list).
// Records do not change but for verified (which the listing does not
// read): a record replaced is a new record, so comparing pointers says
// whether a listing changed.

// orgListing is one org's public listed datasets.
type orgListing struct {
	datasets int
	issued   map[stamp]int32 // how many of them were first issued at each time (zero times not counted)
	earliest stamp           // the earliest of those times; zeroStamp if none
}

// listings are the aggregates. The zero value is not ready: see
// newListings.
type listings struct {
	// names holds each public listed dataset, by ListName then org (two
	// IDs can share a CKAN name: "a-b"/"c" and "a"/"b-c"), and sameNames
	// counts the datasets whose ListName is the one before them in that
	// order, so the distinct names are names.Len() - sameNames. The IDs
	// share the strings of entries' keys: no name is held twice.
	names     *btree.BTreeG[nii.DatasetID]
	sameNames int
	orgs      map[string]*orgListing
	themes    map[string]int     // public listed datasets per theme
	keywords  map[string]int     // public listed datasets per keyword
	live      map[nii.NodeID]int // live (not withdrawn) records per origin, replicas included
	// aliases maps the hash of each name SetAliases's function gives a
	// dataset, or a claim to publish it, to the dataset.
	aliases map[uint64]nii.DatasetID
}

func newListings() listings {
	return listings{
		names:    btree.NewG(32, listLess),
		orgs:     map[string]*orgListing{},
		themes:   map[string]int{},
		keywords: map[string]int{},
		live:     map[nii.NodeID]int{},
		aliases:  map[uint64]nii.DatasetID{},
	}
}

// ListName is the name package_list gives a dataset, and the order it
// lists them in: CKAN's "org-name".
func ListName(d nii.DatasetID) string { return d.Org + "-" + d.Name }

// OrgListing is one org as the public lists count it.
type OrgListing struct {
	Org      string
	Datasets int       // public listed datasets
	Issued   time.Time // the earliest issue date among them (zero if none gives one)
}

// setEntry replaces origin's entry for d (nil: removes it) and keeps the
// aggregates. It does not touch the search index. c.mu held.
func (c *Catalog) setEntry(d nii.DatasetID, origin nii.NodeID, e *record) {
	// Unlink origin's old record.
	var old *record
	head := c.entries[d]
	for p := &head; *p != nil; p = &(*p).next {
		if (*p).origin == origin {
			old = *p
			*p = old.next
			break
		}
	}
	c.entries[d] = head
	if old != nil {
		if !old.withdrawn {
			c.lists.live[origin]--
			if c.lists.live[origin] <= 0 {
				delete(c.lists.live, origin)
			}
		}
		if !old.replica && (e == nil || e.replica) {
			c.unalias(d, origin)
		}
	}
	if e != nil {
		e.next = c.entries[d]
		c.entries[d] = e
		if !e.withdrawn {
			c.lists.live[origin]++
		}
		if !e.replica && (old == nil || old.replica) {
			c.alias(d, origin)
		}
		if old == nil && e.next == nil {
			c.aliasDataset(d, true)
		}
	} else if c.entries[d] == nil {
		delete(c.entries, d)
		c.aliasDataset(d, false)
	}
	c.relist(d, old)
}

// relist recomputes d's listing from its entries and moves the aggregates
// by the difference. gone is the record of d just unlinked from its
// entries, if any: it may be the one listed until now. c.mu held.
func (c *Catalog) relist(d nii.DatasetID, gone *record) {
	var old *record
	if gone != nil && gone.listed {
		old = gone
	} else {
		for r := c.entries[d]; r != nil; r = r.next {
			if r.listed {
				old = r
				break
			}
		}
	}
	now, _ := c.listingOf(d)
	if old == now {
		return
	}
	if old != nil {
		old.listed = false
		if !old.restricted {
			c.unlistPublic(d, old)
		}
	}
	if now != nil {
		now.listed = true
		if !now.restricted {
			c.listPublic(d, now)
		}
	}
}

// listingOf says whether d is listed now, and how. c.mu held.
func (c *Catalog) listingOf(d nii.DatasetID) (*record, bool) {
	pub := c.publisherRecord(d)
	if pub == nil || pub.withdrawn {
		return nil, false
	}
	return pub, true
}

// count moves each of keys' counts in m by delta, dropping those that
// reach zero.
func count(m map[string]int, keys []string, delta int) {
	for _, k := range keys {
		if m[k] += delta; m[k] <= 0 {
			delete(m, k)
		}
	}
}

func (c *Catalog) listPublic(d nii.DatasetID, l *record) {
	count(c.lists.themes, c.strs.list(l.themes), 1)
	count(c.lists.keywords, c.strs.list(l.keywords), 1)
	c.lists.sameNames -= c.lists.nameLinks(d)
	c.lists.names.ReplaceOrInsert(d)
	c.lists.sameNames += c.lists.nameLinks(d)
	o := c.lists.orgs[d.Org]
	if o == nil {
		o = &orgListing{issued: map[stamp]int32{}, earliest: zeroStamp}
		c.lists.orgs[d.Org] = o
	}
	o.datasets++
	if issued := l.issued; !issued.isZero() {
		o.issued[issued]++
		if o.earliest.isZero() || issued.before(o.earliest) {
			o.earliest = issued
		}
	}
}

func (c *Catalog) unlistPublic(d nii.DatasetID, l *record) {
	count(c.lists.themes, c.strs.list(l.themes), -1)
	count(c.lists.keywords, c.strs.list(l.keywords), -1)
	c.lists.sameNames -= c.lists.nameLinks(d)
	c.lists.names.Delete(d)
	c.lists.sameNames += c.lists.nameLinks(d)
	o := c.lists.orgs[d.Org]
	if o == nil {
		return
	}
	if o.datasets--; o.datasets <= 0 {
		delete(c.lists.orgs, d.Org)
		return
	}
	issued := l.issued
	if issued.isZero() {
		return
	}
	if o.issued[issued]--; o.issued[issued] > 0 {
		return
	}
	delete(o.issued, issued)
	if issued == o.earliest {
		// The earliest went: look again over this org's issue times only.
		o.earliest = zeroStamp
		for t := range o.issued {
			if o.earliest.isZero() || t.before(o.earliest) {
				o.earliest = t
			}
		}
	}
}

// relistAll recomputes every dataset's listing (after the policy's mode
// changes). c.mu held.
func (c *Catalog) relistAll() {
	for d := range c.entries {
		c.relist(d, nil)
	}
}

// ListedNames returns the ListNames of the public listed datasets, in
// order, from offset, at most limit (limit < 0: all), and how many there
// are. It costs the size of the page (and the offset's descent), not the
// catalog's.
func (c *Catalog) ListedNames(offset, limit int) ([]string, int) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	total := c.lists.names.Len() - c.lists.sameNames
	out := []string{}
	if limit == 0 || offset >= total {
		return out, total
	}
	if limit < 0 || limit > total-offset {
		limit = total - offset
	}
	// btree has no rank index: skip from the start. The skipped names
	// are visited, not made; the page's are written into one string and
	// handed out as its substrings (one allocation, not one a name).
	i := 0
	var prev nii.DatasetID
	var all strings.Builder
	ends := make([]int, 0, limit)
	c.lists.names.Ascend(func(d nii.DatasetID) bool {
		if i > 0 && cmpListName(prev, d) == 0 {
			return true // the name just counted, of another ID
		}
		prev = d
		if i >= offset {
			if all.Len() == 0 {
				all.Grow(limit * (len(d.Org) + len(d.Name) + 1))
			}
			all.WriteString(d.Org)
			all.WriteByte('-')
			all.WriteString(d.Name)
			ends = append(ends, all.Len())
		}
		i++
		return len(ends) < limit
	})
	names := all.String()
	out = make([]string, len(ends))
	start := 0
	for k, end := range ends {
		out[k], start = names[start:end], end
	}
	return out, total
}

// cmpListName compares a's and b's ListNames without making them.
func cmpListName(a, b nii.DatasetID) int {
	if a.Org == b.Org { // the common case: "org-" then the names
		return strings.Compare(a.Name, b.Name)
	}
	x, y := [3]string{a.Org, "-", a.Name}, [3]string{b.Org, "-", b.Name}
	i, io, j, jo := 0, 0, 0, 0
	for {
		for i < len(x) && io == len(x[i]) {
			i, io = i+1, 0
		}
		for j < len(y) && jo == len(y[j]) {
			j, jo = j+1, 0
		}
		switch {
		case i == len(x) && j == len(y):
			return 0
		case i == len(x):
			return -1
		case j == len(y):
			return 1
		}
		n := min(len(x[i])-io, len(y[j])-jo)
		if c := strings.Compare(x[i][io:io+n], y[j][jo:jo+n]); c != 0 {
			return c
		}
		io, jo = io+n, jo+n
	}
}

// listLess orders names: by ListName, then org.
func listLess(a, b nii.DatasetID) bool {
	if c := cmpListName(a, b); c != 0 {
		return c < 0
	}
	return a.Org < b.Org
}

// nameLinks counts, among d's neighbours in names and d itself (if
// held), the adjacent pairs that share a ListName: what d adds to
// sameNames, or takes away.
func (l *listings) nameLinks(d nii.DatasetID) int {
	var chain [3]nii.DatasetID
	n := 0
	l.names.DescendLessOrEqual(d, func(e nii.DatasetID) bool {
		if e != d {
			chain[n], n = e, n+1
		}
		return e == d // past d itself, stop at the one before it
	})
	if _, held := l.names.Get(d); held {
		chain[n], n = d, n+1
	}
	l.names.AscendGreaterOrEqual(d, func(e nii.DatasetID) bool {
		if e != d {
			chain[n], n = e, n+1
		}
		return e == d
	})
	links := 0
	for k := 1; k < n; k++ {
		if cmpListName(chain[k-1], chain[k]) == 0 {
			links++
		}
	}
	return links
}

// ListedOrgs returns every org with a public listed dataset, by name.
func (c *Catalog) ListedOrgs() []OrgListing {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([]OrgListing, 0, len(c.lists.orgs))
	for org, o := range c.lists.orgs {
		out = append(out, OrgListing{Org: org, Datasets: o.datasets, Issued: o.earliest.time()})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Org < out[j].Org })
	return out
}

// ListedOrg returns one org's public listing; false if it lists nothing.
func (c *Catalog) ListedOrg(org string) (OrgListing, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	o := c.lists.orgs[org]
	if o == nil {
		return OrgListing{}, false
	}
	return OrgListing{Org: org, Datasets: o.datasets, Issued: o.earliest.time()}, true
}

// ListedThemes returns, for each theme of the public listed datasets, how
// many carry it: CKAN's groups. It costs the number of themes.
func (c *Catalog) ListedThemes() map[string]int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return maps.Clone(c.lists.themes)
}

// ListedKeywords returns, for each keyword of the public listed datasets,
// how many carry it: CKAN's tags. It costs the number of keywords.
func (c *Catalog) ListedKeywords() map[string]int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return maps.Clone(c.lists.keywords)
}

// AliasFunc names a dataset (claim "") or one claim to publish it (claim:
// its ClaimID) for a view that finds datasets by names of its own, such
// as CKAN's package UUIDs.
type AliasFunc func(d nii.DatasetID, claim string) string

// SetAliases has the catalog keep f's names of every dataset and of every
// claim to publish one (replicas aside), tombstones included, so that
// ByAlias finds a dataset by them in a map lookup. Only a 64-bit hash of
// each name is kept: callers check the dataset they get back.
func (c *Catalog) SetAliases(f AliasFunc) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.aliasOf = f
	clear(c.lists.aliases)
	for d, head := range c.entries {
		c.aliasDataset(d, true)
		for r := head; r != nil; r = r.next {
			if !r.replica {
				c.alias(d, r.origin)
			}
		}
	}
}

// ByAlias returns the dataset one of SetAliases's names names, if any.
// Claims names it too: the caller checks which claim the name is of.
func (c *Catalog) ByAlias(name string) (nii.DatasetID, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	d, ok := c.lists.aliases[maphash.String(aliasSeed, name)]
	return d, ok
}

// aliasSeed hashes alias names (any fixed seed: the map lives in memory).
var aliasSeed = maphash.MakeSeed()

func (c *Catalog) aliasDataset(d nii.DatasetID, on bool) {
	if c.aliasOf == nil {
		return
	}
	h := maphash.String(aliasSeed, c.aliasOf(d, ""))
	if on {
		c.lists.aliases[h] = d
	} else {
		delete(c.lists.aliases, h)
	}
}

func (c *Catalog) alias(d nii.DatasetID, origin nii.NodeID) {
	if c.aliasOf != nil {
		c.lists.aliases[maphash.String(aliasSeed, c.aliasOf(d, ClaimID(origin)))] = d
	}
}

func (c *Catalog) unalias(d nii.DatasetID, origin nii.NodeID) {
	if c.aliasOf != nil {
		delete(c.lists.aliases, maphash.String(aliasSeed, c.aliasOf(d, ClaimID(origin))))
	}
}
