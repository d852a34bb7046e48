package registry

import (
	"cmp"
	"math"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/RoaringBitmap/roaring/v2"
	"github.com/nii-uk/nii"
)

// This file is the in-memory search index over the federated catalog.
//
// Every doc gets a dense uint32 ID (freed IDs are reused). Every text term
// and every field value (publisher, theme, keyword, licence, format,
// access, conforms-to) has a posting list: a roaring bitmap of doc IDs.
// A term's list also carries each doc's weighted term frequency, one byte
// per doc in bitmap rank order, so a (doc, term) pair costs about 3 bytes
// plus the 4 the doc keeps to find its terms again; a term in a single doc
// (most of a real vocabulary) is stored without a bitmap.
//
// A search ANDs the bitmaps it needs (each query term's, with the last
// term's prefix expansions ORed in, and each filter field's values ORed),
// counts facets over the match set (AndCardinality against each value's
// bitmap, or for small match sets a scan of the matching docs' values),
// and ranks the match set with BM25 over field-weighted frequencies,
// keeping only the best Offset+Limit in a bounded heap.
//
// Each doc records the posting lists it is in, so Delete and a replacing
// Put take it out of exactly those.

// Doc is one searchable catalog entry: the newest advert of a dataset from one origin.
type Doc struct {
	Key      string      // unique: caller-chosen, e.g. origin + " " + dataset
	Advert   *nii.Advert // never a tombstone
	Verified bool        // the origin's org claim is proven by a membership credential
}

// Query is a catalog search. Filters are ORed within a field and ANDed
// across fields; free-text terms are ANDed.
type Query struct {
	Text       string   // free text over title, description, keywords, themes, column names, dataset name, publisher
	Publisher  []string // org slugs; OR within a field, AND across fields
	Theme      []string
	Keyword    []string
	Licence    []string
	Format     []string // matches media type or its short form ("csv" for text/csv, "json", "xlsx", ...)
	Access     []string // "open" / "restricted"
	ConformsTo []string
	Verified   *bool  // nil: both
	Sort       string // "" or "relevance" (default; with empty Text falls back to "modified"), "modified" (newest first), "title" (A→Z)
	Offset     int
	Limit      int // default 20, max 1000
}

// Hit is one search result.
type Hit struct {
	Doc   Doc
	Score float64
}

// FacetCount is how many matching docs have one facet value.
type FacetCount struct {
	Value string `json:"value"`
	Count int    `json:"count"`
}

// Result is a page of search results with facet counts over every match.
type Result struct {
	Total  int                     // matches before paging
	Hits   []Hit                   // best first; Score is set when sorting by relevance
	Facets map[string][]FacetCount // keys: "publisher", "theme", "keyword", "licence", "format", "access"; counts over the full match set, sorted by count desc then value asc; at most 50 values per facet
}

// Search limits.
const (
	defaultLimit = 20
	maxLimit     = 1000
	maxFacetVals = 50
	// maxScoredTerms bounds how many multi-doc terms one query word's
	// prefix expansion scores (those in most docs); the rest still match.
	maxScoredTerms = 256
)

// Facetable fields. The first six are reported as facets.
const (
	fPublisher = iota
	fTheme
	fKeyword
	fLicence
	fFormat
	fAccess
	fConformsTo
	nFields
	nFacets = fConformsTo
)

var facetNames = [nFacets]string{"publisher", "theme", "keyword", "licence", "format", "access"}

// Field weights for ranking.
const (
	wTitle       = 3
	wKeyword     = 2
	wTheme       = 2
	wDatasetName = 2
	wColumn      = 1
	wDescription = 1
	wPublisher   = 1
)

// BM25 parameters.
const (
	bm25K1 = 1.2
	bm25B  = 0.5
	// prefixBoost discounts a prefix expansion against an exact match.
	prefixBoost = 0.8
	// minIDF: a query term whose idf is below this (it is in more than
	// about 99.9% of docs) is not scored, only matched.
	minIDF = 1e-3
)

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
	// tids are the doc's term IDs, so that it can be taken out of exactly
	// those posting lists. (Its value IDs are in Index.varena.)
	tids []uint32
	live bool
}

// Index is an in-memory search index over catalog docs. It is safe for
// concurrent use. Adverts passed to Put must not be modified afterwards.
type Index struct {
	mu sync.RWMutex

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
	// reads memory nearly sequentially. vref[id] is offset<<24 | count.
	varena   []uint32
	vref     []uint64
	vgarbage int

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
	s.live = true
	var vb [16]uint32
	vids := vb[:0] // at most maxDocValues < 1<<vrefShift
	for _, v := range a.values {
		vids = append(vids, ix.addValue(id, v.field, v.key, v.show))
	}
	ix.setDocVals(id, vids)
	tids := slices.Grow(s.tids[:0], len(a.terms))
	for t, w := range a.terms {
		tids = append(tids, ix.addTerm(id, last, t, uint8(min(w, math.MaxUint8))))
	}
	s.tids = slices.Clip(tids)
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
	ix.vref = append(ix.vref, 0)
	return id
}

const vrefShift = 24

// vgarbageMin is the least garbage in the value arena worth compacting (a
// var for tests).
var vgarbageMin = 1 << 16

// docVals returns doc id's value IDs.
func (ix *Index) docVals(id uint32) []uint32 {
	r := ix.vref[id]
	off, n := r>>vrefShift, r&(1<<vrefShift-1)
	return ix.varena[off : off+n : off+n]
}

// setDocVals records doc id's value IDs, over its old ones if they fit.
func (ix *Index) setDocVals(id uint32, vids []uint32) {
	old := ix.docVals(id)
	off := ix.vref[id] >> vrefShift
	if len(vids) > len(old) {
		off = uint64(len(ix.varena))
		ix.varena = append(ix.varena, vids...)
		ix.vgarbage += len(old)
	} else {
		copy(old, vids)
		ix.vgarbage += len(old) - len(vids)
	}
	ix.vref[id] = off<<vrefShift | uint64(len(vids))
	if ix.vgarbage > vgarbageMin && ix.vgarbage > len(ix.varena)/2 {
		ix.compactVals()
	}
}

// compactVals rewrites the value arena in doc-ID order without garbage.
func (ix *Index) compactVals() {
	arena := make([]uint32, 0, len(ix.varena)-ix.vgarbage)
	for id := range ix.vref {
		v := ix.docVals(uint32(id))
		ix.vref[id] = uint64(len(arena))<<vrefShift | uint64(len(v))
		arena = append(arena, v...)
	}
	ix.varena = arena
	ix.vgarbage = 0
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
	for _, tid := range s.tids {
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
	s.tids = s.tids[:0]
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

// ---- text analysis ----

// stopWords are dropped from docs and queries. The list is short on
// purpose: "it", "no" or "all" can be meaningful in dataset titles.
var stopWords = map[string]bool{
	"a": true, "an": true, "and": true, "the": true, "of": true, "for": true,
	"in": true, "on": true, "to": true, "by": true, "with": true, "over": true,
	"at": true, "from": true, "or": true, "is": true, "are": true, "as": true,
	"be": true, "this": true, "that": true, "into": true, "per": true,
}

func isWordRune(r rune) bool { return unicode.IsLetter(r) || unicode.IsNumber(r) }

// tokens calls fn with each lowercased word of s, stop words included.
func tokens(s string, fn func(tok string)) {
	s = strings.ToLower(s) // once, so the words are substrings
	start := -1
	for i, r := range s {
		if isWordRune(r) {
			if start < 0 {
				start = i
			}
			continue
		}
		if start >= 0 {
			fn(s[start:i])
			start = -1
		}
	}
	if start >= 0 {
		fn(s[start:])
	}
}

// stem strips a plural "s" from words of more than 3 letters not ending in "ss".
func stem(t string) string {
	if len(t) > 3 && t[len(t)-1] == 's' && t[len(t)-2] != 's' && utf8.RuneCountInString(t) > 3 {
		return t[:len(t)-1]
	}
	return t
}

// analyze returns the index terms of s, in order: lowercased words, stop
// words dropped, plurals stemmed.
func analyze(s string) []string {
	var out []string
	tokens(s, func(t string) {
		if !stopWords[t] {
			out = append(out, stem(t))
		}
	})
	return out
}

type fieldValue struct {
	field     int8
	key, show string
}

type analysis struct {
	terms  map[string]int // term → weighted frequency
	length int            // weighted length
	values []fieldValue
}

func (a *analysis) text(s string, weight int) {
	tokens(s, func(t string) {
		if stopWords[t] {
			return
		}
		a.terms[stem(t)] += weight
		a.length += weight
	})
}

// maxDocValues bounds the field values indexed per doc (Metadata.Validate
// allows 32 keywords, 32 themes and five single values).
const maxDocValues = 1024

func (a *analysis) value(field int8, v string) {
	show := strings.TrimSpace(v)
	if show == "" || len(a.values) >= maxDocValues {
		return
	}
	key := normValue(field, show)
	for _, o := range a.values {
		if o.field == field && o.key == key {
			return
		}
	}
	a.values = append(a.values, fieldValue{field, key, show})
}

func normValue(field int8, v string) string {
	v = strings.TrimSpace(v)
	if field == fFormat && strings.Contains(v, "/") {
		return FormatName(v)
	}
	if field == fFormat {
		v = strings.TrimPrefix(v, ".")
	}
	return strings.ToLower(v)
}

func (a *analysis) analyse(ad *nii.Advert) {
	m := &ad.Meta
	a.terms = make(map[string]int, 48)
	a.text(m.Title, wTitle)
	for _, k := range m.Keywords {
		a.text(k, wKeyword)
	}
	for _, t := range m.Themes {
		a.text(t, wTheme)
	}
	a.text(ad.Dataset.Name, wDatasetName)
	if m.Table != nil {
		for _, c := range m.Table.Columns {
			a.text(c.Name, wColumn)
		}
	}
	a.text(m.Description, wDescription)
	pub := m.Publisher
	if pub == "" {
		pub = ad.Dataset.Org
	}
	a.text(pub, wPublisher)
	a.text(m.PublisherName, wPublisher)

	a.value(fPublisher, pub)
	for _, t := range m.Themes {
		a.value(fTheme, t)
	}
	for _, k := range m.Keywords {
		a.value(fKeyword, k)
	}
	a.value(fLicence, m.Licence)
	if m.MediaType != "" {
		a.value(fFormat, FormatName(m.MediaType))
	}
	acc := string(m.Access)
	if acc == "" {
		acc = string(nii.AccessOpen)
	}
	a.value(fAccess, acc)
	a.value(fConformsTo, m.ConformsTo)
}

// FormatName returns the short name of a media type: "csv" for text/csv,
// "xlsx" for the OOXML spreadsheet type and so on, else the subtype.
func FormatName(mediaType string) string {
	mt, _, _ := strings.Cut(mediaType, ";")
	mt = strings.ToLower(strings.TrimSpace(mt))
	switch mt {
	case "text/csv", "application/csv":
		return "csv"
	case "application/json", "text/json":
		return "json"
	case "application/geo+json", "application/vnd.geo+json":
		return "geojson"
	case "application/ld+json":
		return "jsonld"
	case "application/x-ndjson", "application/ndjson", "application/jsonl":
		return "ndjson"
	case "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet":
		return "xlsx"
	case "application/vnd.ms-excel":
		return "xls"
	case "application/vnd.oasis.opendocument.spreadsheet":
		return "ods"
	case "text/tab-separated-values":
		return "tsv"
	case "application/pdf":
		return "pdf"
	case "application/xml", "text/xml":
		return "xml"
	case "application/zip", "application/x-zip-compressed":
		return "zip"
	case "application/vnd.apache.parquet", "application/x-parquet":
		return "parquet"
	}
	_, sub, ok := strings.Cut(mt, "/")
	if !ok {
		return mt
	}
	return sub
}

// ---- search ----

// group is one query term: the terms that satisfy it (the exact term and,
// for the last query word, its prefix expansions), sorted by ID, each with
// its idf (prefix expansions discounted).
type group struct {
	tids    []uint32 // multi-doc terms scored, by cursor
	idf     []float64
	singles []single // single-doc terms, by doc
}

// single is a term in one doc only.
type single struct {
	doc uint32
	w   uint8
	idf float64
}

// Search runs q.
func (ix *Index) Search(q Query) Result {
	limit := q.Limit
	if limit <= 0 {
		limit = defaultLimit
	}
	limit = min(limit, maxLimit)
	offset := max(q.Offset, 0)
	qterms, last := parseText(q.Text)

	ix.mu.RLock()
	defer ix.mu.RUnlock()

	res := Result{Facets: make(map[string][]FacetCount, nFacets), Hits: []Hit{}}
	for _, n := range facetNames {
		res.Facets[n] = []FacetCount{}
	}

	// Gather the bitmaps to intersect.
	var and []*roaring.Bitmap
	var groups []group
	n := float64(len(ix.byKey))
	for i, t := range qterms {
		var tids []uint32
		exact, hasExact := ix.termIDs[t]
		if hasExact {
			tids = append(tids, exact)
		}
		if i == len(qterms)-1 && last != "" && utf8.RuneCountInString(last) >= 3 {
			tids = ix.prefixTerms(tids, last, t)
			if len(tids) == 0 && len(qterms) > 1 && stopPrefix(last) {
				// "spend ove": the user is typing a stop word.
				continue
			}
		}
		if len(tids) == 0 {
			return res
		}
		var g group
		var bms []*roaring.Bitmap
		var ones []uint32 // docs of single-doc terms
		for _, tid := range tids {
			t := &ix.terms[tid]
			df := float64(t.df())
			idf := math.Log(1 + (n-df+0.5)/(df+0.5))
			if !hasExact || tid != exact {
				idf *= prefixBoost
			}
			if t.bm == nil {
				ones = append(ones, t.one)
				g.singles = append(g.singles, single{t.one, t.w[0], idf})
			} else {
				bms = append(bms, t.bm)
				g.tids = append(g.tids, tid)
				g.idf = append(g.idf, idf)
			}
		}
		if len(g.tids) > maxScoredTerms {
			// Score the expansions in most docs; the rest only match.
			idx := make([]int, len(g.tids))
			for i := range idx {
				idx[i] = i
			}
			slices.SortFunc(idx, func(a, b int) int {
				ta, tb := &ix.terms[g.tids[a]], &ix.terms[g.tids[b]]
				if c := cmp.Compare(tb.df(), ta.df()); c != 0 {
					return c
				}
				return strings.Compare(ta.name, tb.name)
			})
			idx = idx[:maxScoredTerms]
			tids, idf := make([]uint32, len(idx)), make([]float64, len(idx))
			for i, j := range idx {
				tids[i], idf[i] = g.tids[j], g.idf[j]
			}
			g.tids, g.idf = tids, idf
		}
		slices.SortFunc(g.singles, func(a, b single) int { return cmp.Compare(a.doc, b.doc) })
		groups = append(groups, g)
		switch {
		case len(bms) == 1 && len(ones) == 0:
			and = append(and, bms[0])
		case len(bms) == 0:
			and = append(and, roaring.BitmapOf(ones...))
		default:
			u := roaring.FastOr(bms...)
			u.AddMany(ones)
			and = append(and, u)
		}
	}
	for field, vals := range [nFields][]string{
		fPublisher: q.Publisher, fTheme: q.Theme, fKeyword: q.Keyword, fLicence: q.Licence,
		fFormat: q.Format, fAccess: q.Access, fConformsTo: q.ConformsTo,
	} {
		if len(vals) == 0 {
			continue
		}
		var bms []*roaring.Bitmap
		for _, v := range vals {
			if vid, ok := ix.fields[field][normValue(int8(field), v)]; ok && !slices.Contains(bms, ix.vals[vid].bm) {
				bms = append(bms, ix.vals[vid].bm)
			}
		}
		switch len(bms) {
		case 0:
			return res
		case 1:
			and = append(and, bms[0])
		default:
			and = append(and, roaring.FastOr(bms...))
		}
	}
	var match *roaring.Bitmap
	switch len(and) {
	case 0:
		match = ix.all
	case 1:
		match = and[0]
	default:
		// Smallest first: each AND then costs at most the running result.
		slices.SortFunc(and, func(a, b *roaring.Bitmap) int { return cmp.Compare(a.GetCardinality(), b.GetCardinality()) })
		match = roaring.FastAnd(and...)
	}
	if q.Verified != nil {
		if *q.Verified {
			match = roaring.And(match, ix.verified)
		} else {
			match = roaring.AndNot(match, ix.verified)
		}
	}
	total := int(match.GetCardinality())
	res.Total = total
	if total == 0 {
		return res
	}
	ix.facets(match, match == ix.all, res.Facets)

	if offset >= total {
		return res
	}
	mode := sortModified
	switch {
	case q.Sort == "title":
		mode = sortTitle
	case q.Sort == "modified":
	case len(groups) > 0:
		mode = sortRelevance
	}
	top := ix.rank(match, groups, mode, min(offset+limit, total))
	if offset < len(top) {
		top = top[offset:]
		res.Hits = make([]Hit, len(top))
		for i, it := range top {
			res.Hits[i] = Hit{Doc: ix.slots[it.id].doc, Score: it.score}
		}
	}
	return res
}

// parseText returns the query's terms, deduplicated, and the last word as
// typed (lowercased, unstemmed) for prefix matching. If the last word is a
// stop word, last is "". The last word's term is always last in terms.
func parseText(text string) (terms []string, last string) {
	var lastTok string
	tokens(text, func(t string) {
		lastTok = t
		if stopWords[t] {
			return
		}
		s := stem(t)
		if i := slices.Index(terms, s); i >= 0 {
			terms = slices.Delete(terms, i, i+1)
		}
		terms = append(terms, s)
	})
	if lastTok != "" && !stopWords[lastTok] {
		last = lastTok
	}
	return terms, last
}

// stopPrefix reports whether t is a proper prefix of a stop word.
func stopPrefix(t string) bool {
	for w := range stopWords {
		if len(w) > len(t) && strings.HasPrefix(w, t) {
			return true
		}
	}
	return false
}

// facetScanPerBlock chooses how facets are counted. Roaring keeps each
// block of 65536 doc IDs as a sorted array of up to 4096 IDs, or as a
// bitmap above that. Against a bitmap, AndCardinality with a value's
// posting list costs about the value's size, so counting every value
// costs about the index's total value postings whatever the match size;
// against an array it is a merge costing match + value per value, which is
// slow. So small match sets (about array-sized) are counted by scanning
// the matching docs' values instead, costing matches × values per doc.
// A var so tests can force either way.
var facetScanPerBlock = 4096

func (ix *Index) facets(match *roaring.Bitmap, all bool, out map[string][]FacetCount) {
	card := match.GetCardinality()
	var counts [nFacets][]FacetCount
	blocks := (len(ix.slots) + 1<<16 - 1) >> 16
	if !all && card <= uint64(facetScanPerBlock)*uint64(blocks) {
		per := make([]int32, len(ix.vals))
		var buf [256]uint32
		it := match.ManyIterator()
		for k := it.NextMany(buf[:]); k > 0; k = it.NextMany(buf[:]) {
			for _, id := range buf[:k] {
				r := ix.vref[id]
				off, n := r>>vrefShift, r&(1<<vrefShift-1)
				for _, vid := range ix.varena[off : off+n] {
					per[vid]++
				}
			}
		}
		for vid, c := range per {
			if v := &ix.vals[vid]; c > 0 && v.field < nFacets {
				counts[v.field] = append(counts[v.field], FacetCount{v.show, int(c)})
			}
		}
	} else {
		for f := range nFacets {
			c := make([]FacetCount, 0, len(ix.fields[f]))
			for _, vid := range ix.fields[f] {
				v := &ix.vals[vid]
				var k uint64
				if all {
					k = v.bm.GetCardinality()
				} else {
					k = match.AndCardinality(v.bm)
				}
				if k > 0 {
					c = append(c, FacetCount{v.show, int(k)})
				}
			}
			counts[f] = c
		}
	}
	for f, c := range counts {
		slices.SortFunc(c, func(a, b FacetCount) int {
			if a.Count != b.Count {
				return b.Count - a.Count
			}
			return strings.Compare(a.Value, b.Value)
		})
		if len(c) > maxFacetVals {
			c = slices.Clip(c[:maxFacetVals])
		}
		if c == nil {
			c = []FacetCount{}
		}
		out[facetNames[f]] = c
	}
}

type sortMode int

const (
	sortRelevance sortMode = iota
	sortModified
	sortTitle
)

type item struct {
	id    uint32
	score float64
}

// better reports whether a ranks before b: by score (relevance) or title,
// then newest first, then key.
func (ix *Index) better(mode sortMode, a, b item) bool {
	switch mode {
	case sortRelevance:
		if a.score != b.score {
			return a.score > b.score
		}
	case sortTitle:
		if c := strings.Compare(ix.title[a.id], ix.title[b.id]); c != 0 {
			return c < 0
		}
	}
	if ma, mb := ix.mod[a.id], ix.mod[b.id]; ma != mb {
		return ma > mb
	}
	return ix.slots[a.id].doc.Key < ix.slots[b.id].doc.Key
}

// rank returns the best k docs of match, best first, keeping a bounded
// heap of the k best seen so far.
func (ix *Index) rank(match *roaring.Bitmap, groups []group, mode sortMode, k int) []item {
	var sc *scorer
	if mode == sortRelevance {
		sc = ix.newScorer(groups, match.GetCardinality())
	}
	// h is a heap with the worst kept item at h[0].
	h := make([]item, 0, k)
	worse := func(i, j int) bool { return ix.better(mode, h[j], h[i]) }
	down := func(i int) {
		for {
			c := 2*i + 1
			if c >= len(h) {
				return
			}
			if c+1 < len(h) && worse(c+1, c) {
				c++
			}
			if !worse(c, i) {
				return
			}
			h[i], h[c] = h[c], h[i]
			i = c
		}
	}
	up := func(i int) {
		for i > 0 {
			p := (i - 1) / 2
			if !worse(i, p) {
				return
			}
			h[i], h[p] = h[p], h[i]
			i = p
		}
	}
	// Most docs lose to the worst kept on the primary key alone, so that
	// is checked first against a copy of it.
	var worstScore float64
	var worstMod int64
	var worstTitle string
	mods, titles := ix.mod, ix.title
	keep := func(x item) {
		if len(h) < k {
			h = append(h, x)
			up(len(h) - 1)
		} else if ix.better(mode, x, h[0]) {
			h[0] = x
			down(0)
		} else {
			return
		}
		if len(h) == k {
			worstScore, worstMod, worstTitle = h[0].score, mods[h[0].id], titles[h[0].id]
		}
	}
	var buf [256]uint32
	it := match.ManyIterator()
	for n := it.NextMany(buf[:]); n > 0; n = it.NextMany(buf[:]) {
		switch {
		case mode == sortRelevance:
			for _, id := range buf[:n] {
				x := item{id, sc.score(id)}
				if len(h) < k || x.score >= worstScore {
					keep(x)
				}
			}
		case mode == sortModified:
			for _, id := range buf[:n] {
				if len(h) < k || mods[id] >= worstMod {
					keep(item{id: id})
				}
			}
		default: // title
			for _, id := range buf[:n] {
				if len(h) < k || titles[id] <= worstTitle {
					keep(item{id: id})
				}
			}
		}
	}
	slices.SortFunc(h, func(a, b item) int {
		if ix.better(mode, a, b) {
			return -1
		}
		if ix.better(mode, b, a) {
			return 1
		}
		return 0
	})
	return h
}

// cursor walks one term's postings in doc order, tracking rank so that
// each doc's weight can be read.
type cursor struct {
	t      *term
	idf    float64
	sparse bool // look docs up by Rank instead of walking
	it     roaring.ManyIntIterable
	buf    []uint32
	pos    int // index in buf of the first doc not yet passed
	base   int // rank-1 of buf[0]
	done   bool
}

// weight returns doc d's weighted frequency of the term, 0 if none. Docs
// must be asked for in increasing order.
func (c *cursor) weight(d uint32) uint8 {
	if c.sparse {
		return c.t.weight(d)
	}
	for !c.done {
		b := c.buf
		if len(b) > 0 && b[len(b)-1] >= d {
			i := c.pos
			// Matches are usually close together: step, then bisect.
			for end := min(i+8, len(b)); i < end && b[i] < d; i++ {
			}
			if b[i] < d {
				j, _ := slices.BinarySearch(b[i:], d)
				i += j
			}
			c.pos = i
			if b[i] == d {
				return c.t.w[c.base+i]
			}
			return 0
		}
		c.base += len(b)
		n := c.it.NextMany(c.buf[:cap(c.buf)])
		c.buf = c.buf[:n]
		c.pos = 0
		c.done = n == 0
	}
	return 0
}

type scorer struct {
	ix      *Index
	groups  []scoreGroup
	cursors []cursor
	// BM25's length normalisation k1·(1 − b + b·dl/avgdl) = n0 + n1·dl.
	n0, n1 float64
}

func (ix *Index) newScorer(groups []group, matches uint64) *scorer {
	avg := ix.sumDL / float64(max(len(ix.byKey), 1))
	if avg <= 0 {
		avg = 1
	}
	sc := &scorer{ix: ix, groups: make([]scoreGroup, 0, len(groups)), n0: bm25K1 * (1 - bm25B), n1: bm25K1 * bm25B / avg}
	total := 0
	for _, g := range groups {
		total += len(g.tids)
	}
	sc.cursors = make([]cursor, total)
	var bufs []uint32
	k := 0
	for _, g := range groups {
		if len(g.singles) == 0 && slices.Max(g.idf) < minIDF {
			// In (nearly) every doc: it filters but cannot rank.
			continue
		}
		cs := sc.cursors[k : k+len(g.tids)]
		k += len(g.tids)
		for j, tid := range g.tids {
			t := &ix.terms[tid]
			c := cursor{t: t, idf: g.idf[j]}
			// Walking costs the posting list's length; a Rank lookup costs
			// up to a container scan per match.
			if t.bm == nil || matches*64 < uint64(t.df()) {
				c.sparse = true
			} else {
				if len(bufs) < 128 {
					bufs = make([]uint32, 128*16)
				}
				c.buf, bufs = bufs[:0:128], bufs[128:]
				c.it = t.bm.ManyIterator()
			}
			cs[j] = c
		}
		sc.groups = append(sc.groups, scoreGroup{cursors: cs, singles: g.singles})
	}
	return sc
}

type scoreGroup struct {
	cursors []cursor
	singles []single // by doc; those before next are passed
	next    int
}

// score returns doc d's BM25 score: per query term, the best of its
// matching terms' idf × saturated weighted frequency, summed. Docs must be
// scored in increasing order.
func (sc *scorer) score(d uint32) float64 {
	norm := sc.n0 + sc.n1*float64(sc.ix.dl[d])
	var total float64
	for gi := range sc.groups {
		g := &sc.groups[gi]
		best := 0.0
		for i := range g.cursors {
			c := &g.cursors[i]
			if w := c.weight(d); w > 0 {
				tf := float64(w)
				best = max(best, c.idf*tf*(bm25K1+1)/(tf+norm))
			}
		}
		for ; g.next < len(g.singles) && g.singles[g.next].doc <= d; g.next++ {
			if x := g.singles[g.next]; x.doc == d {
				tf := float64(x.w)
				best = max(best, x.idf*tf*(bm25K1+1)/(tf+norm))
			}
		}
		total += best
	}
	return total
}
