package search

import (
	"cmp"
	"math"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/RoaringBitmap/roaring/v2"
)

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
	Verified   *bool // nil: both
	// NotPublisher excludes these orgs (CKAN's fq=-organization:x).
	NotPublisher, NotTheme []string
	// ModifiedFrom and ModifiedTo keep docs whose Meta.Modified is in
	// [From, To] (either zero: unbounded), as CKAN's
	// fq=metadata_modified:[A TO B] does.
	ModifiedFrom, ModifiedTo time.Time
	Sort                     string // "" or "relevance" (default; with empty Text falls back to "modified"), "modified" (newest first), "title" (A→Z), "key" (Doc.Key A→Z: a stable order to page through)
	Offset                   int
	Limit                    int // default 20, max 1000
}

// Hit is one search result.
type Hit struct {
	Doc   Doc
	Score float64
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
	for field, vals := range map[int][]string{fPublisher: q.NotPublisher, fTheme: q.NotTheme} {
		for _, v := range vals {
			if vid, ok := ix.fields[field][normValue(int8(field), v)]; ok {
				match = roaring.AndNot(match, ix.vals[vid].bm)
			}
		}
	}
	if !q.ModifiedFrom.IsZero() || !q.ModifiedTo.IsZero() {
		from, to := int64(math.MinInt64), int64(math.MaxInt64)
		if !q.ModifiedFrom.IsZero() {
			from = modKey(q.ModifiedFrom)
		}
		if !q.ModifiedTo.IsZero() {
			to = modKey(q.ModifiedTo)
		}
		in := roaring.New()
		it := match.Iterator()
		for it.HasNext() {
			if id := it.Next(); from <= ix.mod[id] && ix.mod[id] <= to {
				in.Add(id)
			}
		}
		match = in
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
	case q.Sort == "key":
		mode = sortKey
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
