package search

import (
	"encoding/binary"
	"errors"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/RoaringBitmap/roaring/v2"
	"github.com/nii-uk/nii"
)

// Doc is one searchable catalog entry: the newest advert of a dataset from one origin.
type Doc struct {
	Key string // unique: caller-chosen, e.g. origin + " " + dataset
	// Advert is what Put indexes (never a tombstone). A compact index
	// (NewCompactIndex) does not keep it: the Docs of its hits and of Get
	// carry Key and Verified only.
	Advert   *nii.Advert
	Verified bool // the origin's org claim is proven by a membership credential
}

// term is a text term's posting list.
//
// Most of a catalog's vocabulary is in one doc only (codes, numbers,
// names), and a roaring bitmap costs a few hundred bytes however small,
// so a term in one doc keeps that doc's ID in one and has no bitmap.
type term struct {
	bm *roaring.Bitmap // nil when the term is in one doc
	// w holds each doc's weighted term frequency in bitmap order: the doc
	// of rank r (1-based, as Bitmap.Rank counts) has weight w[r-1]. So
	// len(w) is the term's document frequency.
	w    []uint8
	one  uint32 // the doc, if bm is nil
	name string
}

// df returns how many docs hold the term.
func (t *term) df() int { return len(t.w) }

// weight returns doc d's weighted frequency of the term, 0 if none.
func (t *term) weight(d uint32) uint8 {
	if t.bm == nil {
		if t.one == d && len(t.w) == 1 {
			return t.w[0]
		}
		return 0
	}
	if !t.bm.Contains(d) {
		return 0
	}
	return t.w[t.bm.Rank(d)-1]
}

// value is a field value's posting list.
type value struct {
	bm    *roaring.Bitmap
	key   string // normalised, for lookups
	show  string // as first seen, for facets
	field int8
}

type slot struct {
	doc Doc
	// The doc's term IDs, so that it can be taken out of exactly those
	// posting lists, are in Index.docTermIDs; its value IDs in Index.valIDs.
	live bool
}

// Index is an in-memory search index over catalog docs. It is safe for
// concurrent use. Adverts passed to Put must not be modified afterwards.
type Index struct {
	mu      sync.RWMutex
	compact bool // keeps no adverts

	byKey map[string]uint32
	slots []slot
	mod   []int64   // Advert.Meta.Modified in Unix nanoseconds, by doc ID
	dl    []float32 // weighted document length, by doc ID
	title []string  // lowercased title, by doc ID
	free  []uint32  // doc IDs free for reuse
	sumDL float64

	all      *roaring.Bitmap // live docs
	verified *roaring.Bitmap

	// Each doc's value IDs live in one shared arena, in doc-ID order after
	// a bulk load, so that counting facets by scanning the matching docs
	// reads memory nearly sequentially.
	valIDs arena[uint32]

	// Each doc's term IDs, sorted and delta-encoded as uvarints (about 2
	// bytes a term rather than 4, and no allocation per doc), live in one
	// shared byte arena likewise.
	docTermIDs arena[byte]

	terms     []term
	freeTerms []uint32
	termIDs   map[string]uint32

	vals     []value
	freeVals []uint32
	fields   [nFields]map[string]uint32 // normalised value → value ID

	// The term dictionary, for prefix lookups: dict is sorted; dictNew is a
	// small sorted slice of terms added since the last merge; dead holds
	// terms removed since then, still in dict or dictNew.
	dict    []string
	dictNew []string
	dead    map[string]struct{}
}

// NewIndex returns an empty index.
func NewIndex() *Index {
	ix := &Index{
		byKey:    make(map[string]uint32),
		all:      roaring.New(),
		verified: roaring.New(),
		termIDs:  make(map[string]uint32),
		dead:     make(map[string]struct{}),
	}
	for i := range ix.fields {
		ix.fields[i] = make(map[string]uint32)
	}
	return ix
}

// NewCompactIndex returns an empty index that keeps no adverts: its hits
// carry each doc's Key and Verified, and the caller, which holds the
// adverts, fills them in. The catalog's index is one: it keeps its adverts
// in badger, not in the heap.
func NewCompactIndex() *Index {
	ix := NewIndex()
	ix.compact = true
	return ix
}

// Len returns the number of docs indexed.
func (ix *Index) Len() int {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	return len(ix.byKey)
}

// Get returns the doc with the given key.
func (ix *Index) Get(key string) (Doc, bool) {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	id, ok := ix.byKey[key]
	if !ok {
		return Doc{}, false
	}
	return ix.slots[id].doc, true
}

// Delete removes the doc with the given key, if any.
func (ix *Index) Delete(key string) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	id, ok := ix.byKey[key]
	if !ok {
		return
	}
	ix.unindex(id)
	ix.setDocVals(id, nil)
	delete(ix.byKey, key)
	ix.slots[id] = slot{}
	ix.title[id] = ""
	ix.free = append(ix.free, id)
}

// Put inserts d, or replaces the doc with the same key. A doc without an
// advert, or with a tombstone, is deleted instead.
func (ix *Index) Put(d Doc) {
	if d.Advert == nil || d.Advert.Withdrawn {
		ix.Delete(d.Key)
		return
	}
	// Analyse outside the lock.
	var a analysis
	a.analyse(d.Advert)
	title := strings.ToLower(d.Advert.Meta.Title)

	ix.mu.Lock()
	defer ix.mu.Unlock()
	id, ok := ix.byKey[d.Key]
	if ok {
		ix.unindex(id)
	} else {
		id = ix.newID()
		ix.byKey[d.Key] = id
	}
	// A brand-new ID is above every ID in every posting list, so its
	// weights are appended rather than inserted.
	last := id == uint32(len(ix.slots)-1)
	s := &ix.slots[id]
	s.doc = d
	if ix.compact {
		// The caller holds the adverts (the catalog, in its store) and
		// fills in its hits'.
		s.doc.Advert = nil
	}
	s.live = true
	var vb [16]uint32
	vids := vb[:0] // at most maxDocValues < 1<<vrefShift
	for _, v := range a.values {
		vids = append(vids, ix.addValue(id, v.field, v.key, v.show))
	}
	ix.setDocVals(id, vids)
	var tb [64]uint32
	tids := tb[:0]
	for t, w := range a.terms {
		tids = append(tids, ix.addTerm(id, last, t, uint8(min(w, math.MaxUint8))))
	}
	slices.Sort(tids)
	var eb [128]byte
	ix.setDocTerms(id, appendIDs(eb[:0], tids))
	ix.mod[id] = modKey(d.Advert.Meta.Modified)
	ix.dl[id] = float32(a.length)
	ix.sumDL += float64(a.length)
	ix.title[id] = title
	ix.all.Add(id)
	if d.Verified {
		ix.verified.Add(id)
	}
}

var (
	minNano = time.Unix(0, math.MinInt64)
	maxNano = time.Unix(0, math.MaxInt64)
)

// modKey returns t in Unix nanoseconds, clamped (a zero time sorts oldest).
func modKey(t time.Time) int64 {
	switch {
	case t.Before(minNano):
		return math.MinInt64
	case t.After(maxNano):
		return math.MaxInt64
	}
	return t.UnixNano()
}

func (ix *Index) newID() uint32 {
	if n := len(ix.free); n > 0 {
		id := ix.free[n-1]
		ix.free = ix.free[:n-1]
		return id
	}
	id := uint32(len(ix.slots))
	ix.slots = append(ix.slots, slot{})
	ix.mod = append(ix.mod, 0)
	ix.dl = append(ix.dl, 0)
	ix.title = append(ix.title, "")
	ix.valIDs.ref = append(ix.valIDs.ref, 0)
	ix.docTermIDs.ref = append(ix.docTermIDs.ref, 0)
	return id
}

// arena holds every doc's run of T in one shared slice: ref[id] is
// offset<<vrefShift | length. A run that grows moves to the end and leaves
// garbage behind; past min garbage, and more garbage than live data, the
// arena is rewritten in doc-ID order.
type arena[T any] struct {
	data    []T
	ref     []uint64
	garbage int
}

const vrefShift = 24

// get returns doc id's run (capped: appending to it copies).
func (a *arena[T]) get(id uint32) []T {
	r := a.ref[id]
	off, n := r>>vrefShift, r&(1<<vrefShift-1)
	return a.data[off : off+n : off+n]
}

// set records doc id's run, over its old one if it fits, and compacts the
// arena when garbage passes min.
func (a *arena[T]) set(id uint32, v []T, min int) {
	old := a.get(id)
	off := a.ref[id] >> vrefShift
	if len(v) > len(old) {
		off = uint64(len(a.data))
		a.data = append(a.data, v...)
		a.garbage += len(old)
	} else {
		copy(old, v)
		a.garbage += len(old) - len(v)
	}
	a.ref[id] = off<<vrefShift | uint64(len(v))
	if a.garbage > min && a.garbage > len(a.data)/2 {
		a.compact()
	}
}

// compact rewrites the arena in doc-ID order without garbage.
func (a *arena[T]) compact() {
	data := make([]T, 0, len(a.data)-a.garbage)
	for id := range a.ref {
		v := a.get(uint32(id))
		a.ref[id] = uint64(len(data))<<vrefShift | uint64(len(v))
		data = append(data, v...)
	}
	a.data = data
	a.garbage = 0
}

// vgarbageMin is the least garbage in the value arena worth compacting (a
// var for tests).
var vgarbageMin = 1 << 16

// docVals returns doc id's value IDs.
func (ix *Index) docVals(id uint32) []uint32 { return ix.valIDs.get(id) }

// setDocVals records doc id's value IDs, over its old ones if they fit.
func (ix *Index) setDocVals(id uint32, vids []uint32) { ix.valIDs.set(id, vids, vgarbageMin) }

// tgarbageMin is the least garbage in the term arena worth compacting (a
// var for tests).
var tgarbageMin = 1 << 18

// docTerms returns doc id's term IDs, sorted.
func (ix *Index) docTerms(id uint32) []uint32 { return ix.docTermsTo(nil, id) }

// docTermsTo appends doc id's term IDs, sorted, to dst.
func (ix *Index) docTermsTo(dst []uint32, id uint32) []uint32 {
	out, err := decodeIDs(dst, ix.docTermIDs.get(id))
	if err != nil {
		panic("search: term arena corrupt: " + err.Error()) // the index wrote it
	}
	return out
}

// setDocTerms records doc id's encoded term IDs, over its old ones if they
// fit.
func (ix *Index) setDocTerms(id uint32, enc []byte) { ix.docTermIDs.set(id, enc, tgarbageMin) }

// appendIDs appends ids, sorted ascending and distinct, to dst: the first
// as a uvarint, each next as a uvarint of its distance from the one
// before.
func appendIDs(dst []byte, ids []uint32) []byte {
	prev := uint32(0)
	for _, id := range ids {
		dst = binary.AppendUvarint(dst, uint64(id-prev))
		prev = id
	}
	return dst
}

// decodeIDs reverses appendIDs, appending to dst.
func decodeIDs(dst []uint32, b []byte) ([]uint32, error) {
	var prev uint64
	for i := 0; len(b) > 0; i++ {
		d, n := binary.Uvarint(b)
		if n <= 0 {
			return dst, errors.New("bad uvarint")
		}
		if i > 0 && d == 0 {
			return dst, errors.New("IDs not distinct")
		}
		if prev += d; prev > math.MaxUint32 || d > math.MaxUint32 {
			return dst, errors.New("ID beyond 32 bits")
		}
		dst = append(dst, uint32(prev))
		b = b[n:]
	}
	return dst, nil
}

// unindex removes doc id from every posting list, keeping its ID and key.
func (ix *Index) unindex(id uint32) {
	s := &ix.slots[id]
	for _, vid := range ix.docVals(id) {
		v := &ix.vals[vid]
		v.bm.Remove(id)
		if v.bm.IsEmpty() {
			delete(ix.fields[v.field], v.key)
			*v = value{}
			ix.freeVals = append(ix.freeVals, vid)
		}
	}
	var tb [64]uint32
	for _, tid := range ix.docTermsTo(tb[:0], id) {
		t := &ix.terms[tid]
		if t.bm != nil {
			r := int(t.bm.Rank(id)) // id is in bm
			t.w = slices.Delete(t.w, r-1, r)
			t.bm.Remove(id)
			if len(t.w) == 1 {
				t.one, t.bm = t.bm.Minimum(), nil
			}
		} else {
			t.w = t.w[:0]
		}
		if len(t.w) == 0 {
			delete(ix.termIDs, t.name)
			ix.dead[t.name] = struct{}{}
			*t = term{}
			ix.freeTerms = append(ix.freeTerms, tid)
		}
	}
	ix.maybeMergeDict()
	ix.setDocTerms(id, nil)
	s.live = false
	ix.all.Remove(id)
	ix.verified.Remove(id)
	ix.sumDL -= float64(ix.dl[id])
	ix.dl[id] = 0
	ix.mod[id] = 0
}

func (ix *Index) addValue(id uint32, field int8, key, show string) uint32 {
	vid, ok := ix.fields[field][key]
	if !ok {
		if n := len(ix.freeVals); n > 0 {
			vid = ix.freeVals[n-1]
			ix.freeVals = ix.freeVals[:n-1]
		} else {
			vid = uint32(len(ix.vals))
			ix.vals = append(ix.vals, value{})
		}
		ix.vals[vid] = value{bm: roaring.New(), key: key, show: show, field: field}
		ix.fields[field][key] = vid
	}
	ix.vals[vid].bm.Add(id)
	return vid
}

func (ix *Index) addTerm(id uint32, last bool, name string, w uint8) uint32 {
	tid, ok := ix.termIDs[name]
	if !ok {
		if n := len(ix.freeTerms); n > 0 {
			tid = ix.freeTerms[n-1]
			ix.freeTerms = ix.freeTerms[:n-1]
		} else {
			tid = uint32(len(ix.terms))
			ix.terms = append(ix.terms, term{})
		}
		name = strings.Clone(name) // not pinning the text it was cut from
		ix.terms[tid] = term{w: []uint8{w}, one: id, name: name}
		ix.termIDs[name] = tid
		ix.addDict(name)
		return tid
	}
	t := &ix.terms[tid]
	if t.bm == nil {
		t.bm = roaring.BitmapOf(t.one)
	}
	t.bm.Add(id)
	if last {
		t.w = append(t.w, w)
	} else {
		t.w = slices.Insert(t.w, int(t.bm.Rank(id))-1, w)
	}
	return tid
}

// addDict records a new term for prefix lookups.
func (ix *Index) addDict(name string) {
	if _, ok := ix.dead[name]; ok {
		// Removed and back before a merge: still in dict or dictNew.
		delete(ix.dead, name)
		return
	}
	i, _ := slices.BinarySearch(ix.dictNew, name)
	ix.dictNew = slices.Insert(ix.dictNew, i, name)
	ix.maybeMergeDict()
}

// Merge thresholds: a merge costs O(vocabulary), an insert into dictNew
// O(len(dictNew)).
const (
	dictNewMax  = 2048
	dictDeadMin = 1024
)

// maybeMergeDict folds dictNew into dict and purges dead terms once either
// has grown enough that the merge is amortised.
func (ix *Index) maybeMergeDict() {
	if len(ix.dictNew) < dictNewMax && (len(ix.dead) < dictDeadMin || len(ix.dead) < len(ix.dict)/4) {
		return
	}
	merged := make([]string, 0, len(ix.dict)+len(ix.dictNew)-len(ix.dead))
	i, j := 0, 0
	for i < len(ix.dict) || j < len(ix.dictNew) {
		var t string
		if j == len(ix.dictNew) || (i < len(ix.dict) && ix.dict[i] <= ix.dictNew[j]) {
			t = ix.dict[i]
			i++
		} else {
			t = ix.dictNew[j]
			j++
		}
		if len(ix.dead) > 0 {
			if _, ok := ix.dead[t]; ok {
				continue
			}
		}
		merged = append(merged, t)
	}
	ix.dict = merged
	ix.dictNew = ix.dictNew[:0]
	clear(ix.dead)
}

// prefixTerms appends the IDs of live terms starting with p, other than
// exact.
func (ix *Index) prefixTerms(dst []uint32, p, exact string) []uint32 {
	for _, d := range [2][]string{ix.dict, ix.dictNew} {
		i, _ := slices.BinarySearch(d, p)
		for ; i < len(d) && strings.HasPrefix(d[i], p); i++ {
			if d[i] == exact {
				continue
			}
			if tid, ok := ix.termIDs[d[i]]; ok {
				dst = append(dst, tid)
			}
		}
	}
	return dst
}

// SetVerified changes whether the doc with the given key is verified (its
// org claim proven), without indexing it again.
func (ix *Index) SetVerified(key string, v bool) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	id, ok := ix.byKey[key]
	if !ok {
		return
	}
	ix.slots[id].doc.Verified = v
	if v {
		ix.verified.Add(id)
	} else {
		ix.verified.Remove(id)
	}
}
