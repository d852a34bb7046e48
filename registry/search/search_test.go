package search

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nii-uk/nii"
)

var srchT0 = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// srchDoc builds a doc for tests; mods adjust the metadata.
func srchDoc(pub, name, title string, mods ...func(*nii.Advert)) Doc {
	a := &nii.Advert{
		Origin:  nii.NodeID("node-" + pub),
		Seq:     1,
		Dataset: nii.DatasetID{Org: pub, Name: name},
		Version: 1,
		Meta: nii.Metadata{
			Title:     title,
			Publisher: pub,
			Access:    nii.AccessOpen,
			MediaType: "text/csv",
			Modified:  srchT0,
		},
	}
	for _, m := range mods {
		m(a)
	}
	return Doc{Key: pub + "/" + name, Advert: a}
}

func withDesc(s string) func(*nii.Advert)        { return func(a *nii.Advert) { a.Meta.Description = s } }
func withKeywords(k ...string) func(*nii.Advert) { return func(a *nii.Advert) { a.Meta.Keywords = k } }
func withThemes(k ...string) func(*nii.Advert)   { return func(a *nii.Advert) { a.Meta.Themes = k } }
func withLicence(l string) func(*nii.Advert)     { return func(a *nii.Advert) { a.Meta.Licence = l } }
func withMedia(m string) func(*nii.Advert)       { return func(a *nii.Advert) { a.Meta.MediaType = m } }
func withAccess(x nii.Access) func(*nii.Advert)  { return func(a *nii.Advert) { a.Meta.Access = x } }
func withConforms(c string) func(*nii.Advert)    { return func(a *nii.Advert) { a.Meta.ConformsTo = c } }
func withModified(days int) func(*nii.Advert) {
	return func(a *nii.Advert) { a.Meta.Modified = srchT0.AddDate(0, 0, days) }
}
func withColumns(names ...string) func(*nii.Advert) {
	return func(a *nii.Advert) {
		t := &nii.Table{}
		for _, n := range names {
			t.Columns = append(t.Columns, nii.Column{Name: n, Type: "string"})
		}
		a.Meta.Table = t
	}
}

func hitKeys(r Result) []string {
	var ks []string
	for _, h := range r.Hits {
		ks = append(ks, h.Doc.Key)
	}
	return ks
}

func sortedHitKeys(r Result) []string {
	ks := hitKeys(r)
	sort.Strings(ks)
	return ks
}

func facetCount(r Result, name, value string) int {
	for _, fc := range r.Facets[name] {
		if fc.Value == value {
			return fc.Count
		}
	}
	return 0
}

// checkSearchIndex verifies the index's internal consistency: every live doc is
// in exactly the posting lists it records, each term has one non-zero
// weight per doc, no posting list holds a dead doc or is empty, and the maps
// and dictionary agree with the lists.
func checkSearchIndex(t *testing.T, ix *Index) {
	t.Helper()
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	if int(ix.all.GetCardinality()) != len(ix.byKey) {
		t.Fatalf("all has %d docs, byKey %d", ix.all.GetCardinality(), len(ix.byKey))
	}
	inVal := map[uint32]map[uint32]bool{}
	inTerm := map[uint32]map[uint32]bool{}
	add := func(m map[uint32]map[uint32]bool, k, id uint32) {
		if m[k] == nil {
			m[k] = map[uint32]bool{}
		}
		m[k][id] = true
	}
	sumDL := 0.0
	for key, id := range ix.byKey {
		s := ix.slots[id]
		if !s.live || s.doc.Key != key {
			t.Fatalf("slot %d: live %v key %q, want %q", id, s.live, s.doc.Key, key)
		}
		for _, vid := range ix.docVals(id) {
			add(inVal, vid, id)
		}
		tids := ix.docTerms(id)
		if len(slices.Compact(slices.Sorted(slices.Values(tids)))) != len(tids) {
			t.Fatalf("doc %q: term IDs not unique", key)
		}
		for _, tid := range tids {
			add(inTerm, tid, id)
		}
		sumDL += float64(ix.dl[id])
	}
	used := 0
	for id := range ix.slots {
		if n := len(ix.docVals(uint32(id))); n > 0 && !ix.slots[id].live {
			t.Fatalf("dead doc %d has %d values", id, n)
		} else {
			used += n
		}
	}
	if len(ix.valIDs.data)-used != ix.valIDs.garbage {
		t.Fatalf("value arena: %d long, %d used, garbage %d", len(ix.valIDs.data), used, ix.valIDs.garbage)
	}
	if sumDL != ix.sumDL {
		t.Fatalf("sumDL %v, want %v", ix.sumDL, sumDL)
	}
	for i, id := range ix.free {
		if ix.slots[id].live || ix.all.Contains(id) || slices.Contains(ix.free[i+1:], id) {
			t.Fatalf("free ID %d in use or listed twice", id)
		}
	}
	check := func(what string, bm interface {
		ToArray() []uint32
		GetCardinality() uint64
	}, members map[uint32]bool) {
		if bm.GetCardinality() == 0 {
			t.Fatalf("%s is empty but not dropped", what)
		}
		for _, id := range bm.ToArray() {
			if !members[id] {
				t.Fatalf("%s holds doc %d which does not record it", what, id)
			}
		}
		if int(bm.GetCardinality()) != len(members) {
			t.Fatalf("%s: %d docs, %d record it", what, bm.GetCardinality(), len(members))
		}
	}
	nv := 0
	for vid, v := range ix.vals {
		if v.bm == nil {
			if len(inVal[uint32(vid)]) > 0 {
				t.Fatalf("dropped value %d still recorded by docs", vid)
			}
			continue
		}
		nv++
		check(fmt.Sprintf("value %q", v.key), v.bm, inVal[uint32(vid)])
		if ix.fields[v.field][v.key] != uint32(vid) {
			t.Fatalf("value %q not in field map %d", v.key, v.field)
		}
	}
	nf := 0
	for _, f := range ix.fields {
		nf += len(f)
	}
	if nf != nv {
		t.Fatalf("%d live values, field maps hold %d", nv, nf)
	}
	nt := 0
	for tid, tm := range ix.terms {
		if len(tm.w) == 0 {
			if tm.bm != nil || len(inTerm[uint32(tid)]) > 0 {
				t.Fatalf("dropped term %d still in use", tid)
			}
			continue
		}
		nt++
		if tm.bm == nil {
			if len(tm.w) != 1 || len(inTerm[uint32(tid)]) != 1 || !inTerm[uint32(tid)][tm.one] {
				t.Fatalf("single-doc term %q: %d weights, doc %d, recorded by %v", tm.name, len(tm.w), tm.one, inTerm[uint32(tid)])
			}
		} else {
			if tm.bm.GetCardinality() < 2 {
				t.Fatalf("term %q has a bitmap of %d", tm.name, tm.bm.GetCardinality())
			}
			check(fmt.Sprintf("term %q", tm.name), tm.bm, inTerm[uint32(tid)])
		}
		if len(tm.w) != len(inTerm[uint32(tid)]) || slices.Contains(tm.w, 0) {
			t.Fatalf("term %q: %d weights for %d docs, or a zero weight", tm.name, len(tm.w), len(inTerm[uint32(tid)]))
		}
		if ix.termIDs[tm.name] != uint32(tid) {
			t.Fatalf("term %q not in the term map", tm.name)
		}
		_, inDict := slices.BinarySearch(ix.dict, tm.name)
		_, inNew := slices.BinarySearch(ix.dictNew, tm.name)
		if !inDict && !inNew {
			t.Fatalf("term %q not in the dictionary", tm.name)
		}
	}
	if nt != len(ix.termIDs) {
		t.Fatalf("%d live terms, map holds %d", nt, len(ix.termIDs))
	}
	if !slices.IsSorted(ix.dict) || !slices.IsSorted(ix.dictNew) {
		t.Fatal("dictionary not sorted")
	}
	for d := range ix.dead {
		if _, ok := ix.termIDs[d]; ok {
			t.Fatalf("live term %q marked dead", d)
		}
	}
}

func TestAnalyze(t *testing.T) {
	for in, want := range map[string][]string{
		"Spend over £500":            {"spend", "500"},
		"Spend-over-£500":            {"spend", "500"},
		"The Street Trees of London": {"street", "tree", "london"},
		"Business rates (2023/24)":   {"business", "rate", "2023", "24"},
		"bus gas class analyses":     {"bus", "gas", "class", "analyse"},
		"CAFÉ Ünïcode—dash":          {"café", "ünïcode", "dash"},
		"supplier_name,Amount":       {"supplier", "name", "amount"},
		"":                           nil,
	} {
		if got := analyze(in); !slices.Equal(got, want) {
			t.Errorf("analyze(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSearchTextExactAndPrefix(t *testing.T) {
	ix := NewIndex()
	ix.Put(srchDoc("greenwich", "spend", "Spend over £500 2024"))
	ix.Put(srchDoc("lambeth", "spending-plan", "Spending plan"))
	ix.Put(srchDoc("hackney", "trees", "Street trees"))
	ix.Put(srchDoc("camden", "air", "Air quality sensor readings"))

	cases := []struct {
		q    string
		want []string
	}{
		{"spend", []string{"greenwich/spend", "lambeth/spending-plan"}}, // exact + prefix ("spending")
		{"Spend over £500", []string{"greenwich/spend"}},
		{"spen", []string{"greenwich/spend", "lambeth/spending-plan"}}, // prefix
		{"spending", []string{"lambeth/spending-plan"}},
		{"sp", nil}, // too short for a prefix
		{"tree", []string{"hackney/trees"}},
		{"trees", []string{"hackney/trees"}}, // stemmed
		{"street tre", []string{"hackney/trees"}},
		{"tre street", nil}, // only the last term is a prefix
		{"air quality", []string{"camden/air"}},
		{"quality air", []string{"camden/air"}},
		{"reading", []string{"camden/air"}},
		{"sensor read", []string{"camden/air"}},
		{"nonexistent", nil},
		{"air nonexistent", nil},
		{"air ove", []string{"camden/air"}}, // typing a stop word
	}
	for _, c := range cases {
		r := ix.Search(Query{Text: c.q})
		got := sortedHitKeys(r)
		if !slices.Equal(got, c.want) {
			t.Errorf("%q: got %q, want %q", c.q, got, c.want)
		}
		if r.Total != len(c.want) {
			t.Errorf("%q: total %d, want %d", c.q, r.Total, len(c.want))
		}
	}
	// An exact match outranks a prefix expansion.
	r := ix.Search(Query{Text: "spend"})
	if hitKeys(r)[0] != "greenwich/spend" {
		t.Errorf("spend: order %q, want the exact match first", hitKeys(r))
	}
	// A query of stop words only is an empty query.
	if r := ix.Search(Query{Text: "the of and"}); r.Total != 4 {
		t.Errorf("stop words only: total %d, want 4", r.Total)
	}
}

func TestSearchFieldsSearched(t *testing.T) {
	ix := NewIndex()
	ix.Put(srchDoc("greenwich", "alpha", "One", withDesc("mentions aardvark")))
	ix.Put(srchDoc("lambeth", "beta", "Two", withKeywords("bison")))
	ix.Put(srchDoc("hackney", "gamma", "Three", withThemes("capybara")))
	ix.Put(srchDoc("camden", "dingo-data", "Four"))
	ix.Put(srchDoc("islington", "epsilon", "Five", withColumns("emu_count", "Date")))
	ix.Put(srchDoc("city-of-london", "zeta", "Six", func(a *nii.Advert) { a.Meta.PublisherName = "Corporation of London" }))
	for q, want := range map[string]string{
		"aardvark":    "greenwich/alpha",
		"bison":       "lambeth/beta",
		"capybara":    "hackney/gamma",
		"dingo":       "camden/dingo-data",
		"emu":         "islington/epsilon",
		"greenwich":   "greenwich/alpha",
		"corporation": "city-of-london/zeta",
		"city london": "city-of-london/zeta",
	} {
		if got := hitKeys(ix.Search(Query{Text: q})); !slices.Equal(got, []string{want}) {
			t.Errorf("%q: got %q, want %q", q, got, want)
		}
	}
}

func TestSearchFieldWeighting(t *testing.T) {
	ix := NewIndex()
	// Same length, same age; only where the word sits differs.
	ix.Put(srchDoc("lambeth", "d", "Records list", withDesc("zebra crossing records")))
	ix.Put(srchDoc("greenwich", "t", "Zebra crossings", withDesc("records list records")))
	ix.Put(srchDoc("hackney", "k", "Records list", withDesc("crossing records records"), withKeywords("zebra")))
	r := ix.Search(Query{Text: "zebra"})
	if got, want := hitKeys(r), []string{"greenwich/t", "hackney/k", "lambeth/d"}; !slices.Equal(got, want) {
		t.Fatalf("order %q, want %q (title > keyword > description)", got, want)
	}
	if !(r.Hits[0].Score > r.Hits[1].Score && r.Hits[1].Score > r.Hits[2].Score && r.Hits[2].Score > 0) {
		t.Errorf("scores not strictly decreasing: %v %v %v", r.Hits[0].Score, r.Hits[1].Score, r.Hits[2].Score)
	}
}

func TestSearchANDSemantics(t *testing.T) {
	ix := NewIndex()
	ix.Put(srchDoc("a", "1", "Street trees"))
	ix.Put(srchDoc("a", "2", "Street lighting"))
	ix.Put(srchDoc("a", "3", "Tree preservation orders"))
	ix.Put(srchDoc("a", "4", "Street works", withDesc("includes tree pits")))
	for q, want := range map[string][]string{
		"street":          {"a/1", "a/2", "a/4"},
		"tree":            {"a/1", "a/3", "a/4"},
		"street tree":     {"a/1", "a/4"},
		"street trees":    {"a/1", "a/4"},
		"street lighting": {"a/2"},
		"lighting tree":   nil,
	} {
		if got := sortedHitKeys(ix.Search(Query{Text: q})); !slices.Equal(got, want) {
			t.Errorf("%q: got %q, want %q", q, got, want)
		}
	}
}

func TestSearchUnicodeAndPunctuation(t *testing.T) {
	ix := NewIndex()
	ix.Put(srchDoc("a", "spend", "Spend over £500 — Q1 2024/25"))
	ix.Put(srchDoc("a", "pavement-licences", "CAFÉ licences (pavement)"))
	ix.Put(srchDoc("a", "ratio", "Ratio 500:1"))
	for q, want := range map[string][]string{
		"£500":              {"a/ratio", "a/spend"},
		"Spend-over-£500":   {"a/spend"},
		"spend over 500":    {"a/spend"},
		"\"spend\" (£500)!": {"a/spend"},
		"q1":                {"a/spend"},
		"2024/25":           {"a/spend"},
		"café":              {"a/pavement-licences"},
		"CAFÉ LICENCE":      {"a/pavement-licences"},
		"pavement":          {"a/pavement-licences"},
		"cafe":              nil,                                           // no accent folding
		"£":                 {"a/pavement-licences", "a/ratio", "a/spend"}, // no words: an empty query
	} {
		if got := sortedHitKeys(ix.Search(Query{Text: q})); !slices.Equal(got, want) {
			t.Errorf("%q: got %q, want %q", q, got, want)
		}
	}
}

// corpus builds a deterministic varied set of docs.
func searchCorpus(n int, seed uint64) []Doc {
	rng := rand.New(rand.NewPCG(seed, 7))
	pubs := []string{"greenwich", "lambeth", "southwark", "hackney", "camden", "islington", "lewisham", "newham", "brent", "ealing"}
	ths := []string{"finance", "environment", "transport", "housing", "health", "education", "planning", "waste"}
	lics := []string{"OGL-UK-3.0", "CC-BY-4.0", "ODbL-1.0", ""}
	mts := []string{"text/csv", "text/csv", "application/json", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "application/geo+json"}
	confs := []string{"", "", "https://schemas.example/spend", "https://schemas.example/trees"}
	docs := make([]Doc, n)
	for i := range docs {
		pub := pubs[rng.IntN(len(pubs))]
		var k []string
		for range 1 + rng.IntN(4) {
			w := fmt.Sprintf("kw%02d", rng.IntN(80))
			if !slices.Contains(k, w) {
				k = append(k, w)
			}
		}
		var th []string
		for range 1 + rng.IntN(2) {
			w := ths[rng.IntN(len(ths))]
			if !slices.Contains(th, w) {
				th = append(th, w)
			}
		}
		acc := nii.AccessOpen
		if rng.IntN(4) == 0 {
			acc = nii.AccessRestricted
		}
		d := srchDoc(pub, fmt.Sprintf("ds%04d", i), fmt.Sprintf("Dataset %d word%d", i, rng.IntN(20)),
			withKeywords(k...), withThemes(th...), withLicence(lics[rng.IntN(len(lics))]), withMedia(mts[rng.IntN(len(mts))]),
			withAccess(acc), withConforms(confs[rng.IntN(len(confs))]), withModified(rng.IntN(400)),
			withDesc(fmt.Sprintf("common text uniq%d", i)))
		d.Verified = rng.IntN(3) != 0
		docs[i] = d
	}
	return docs
}

var searchTestFormats = map[string]string{
	"text/csv":         "csv",
	"application/json": "json",
	"application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx",
	"application/geo+json": "geojson",
}

// matches is the test's own statement of the filter semantics.
func queryMatches(d Doc, q Query) bool {
	m := d.Advert.Meta
	in := func(vals []string, have ...string) bool {
		if len(vals) == 0 {
			return true
		}
		for _, v := range vals {
			if slices.Contains(have, strings.ToLower(v)) {
				return true
			}
		}
		return false
	}
	lower := func(ss []string) []string {
		var out []string
		for _, s := range ss {
			out = append(out, strings.ToLower(s))
		}
		return out
	}
	f := searchTestFormats[m.MediaType]
	return in(q.Publisher, m.Publisher) && in(q.Theme, lower(m.Themes)...) && in(q.Keyword, lower(m.Keywords)...) &&
		(len(q.Licence) == 0 || (m.Licence != "" && in(q.Licence, strings.ToLower(m.Licence)))) &&
		in(q.Format, f, m.MediaType) && in(q.Access, string(m.Access)) &&
		(len(q.ConformsTo) == 0 || (m.ConformsTo != "" && in(q.ConformsTo, strings.ToLower(m.ConformsTo)))) &&
		(q.Verified == nil || *q.Verified == d.Verified)
}

func wantSearchFacets(docs []Doc, q Query) map[string][]FacetCount {
	counts := map[string]map[string]int{}
	for _, n := range facetNames {
		counts[n] = map[string]int{}
	}
	for _, d := range docs {
		if !queryMatches(d, q) {
			continue
		}
		m := d.Advert.Meta
		counts["publisher"][m.Publisher]++
		for _, v := range m.Themes {
			counts["theme"][v]++
		}
		for _, v := range m.Keywords {
			counts["keyword"][v]++
		}
		if m.Licence != "" {
			counts["licence"][m.Licence]++
		}
		counts["format"][searchTestFormats[m.MediaType]]++
		counts["access"][string(m.Access)]++
	}
	out := map[string][]FacetCount{}
	for name, c := range counts {
		fcs := []FacetCount{}
		for v, n := range c {
			fcs = append(fcs, FacetCount{v, n})
		}
		sort.Slice(fcs, func(i, j int) bool {
			if fcs[i].Count != fcs[j].Count {
				return fcs[i].Count > fcs[j].Count
			}
			return fcs[i].Value < fcs[j].Value
		})
		if len(fcs) > 50 {
			fcs = fcs[:50]
		}
		out[name] = fcs
	}
	return out
}

func ptrTo[T any](v T) *T { return &v }

func searchFilterQueries() []Query {
	return []Query{
		{},
		{Publisher: []string{"greenwich"}},
		{Publisher: []string{"greenwich", "lambeth"}},
		{Publisher: []string{"Greenwich", "nowhere"}},
		{Publisher: []string{"nowhere"}},
		{Theme: []string{"finance"}},
		{Theme: []string{"finance", "waste"}, Publisher: []string{"hackney", "camden"}},
		{Keyword: []string{"kw07"}},
		{Keyword: []string{"kw07", "kw08", "kw09"}, Access: []string{"restricted"}},
		{Licence: []string{"OGL-UK-3.0"}},
		{Licence: []string{"ogl-uk-3.0", "CC-BY-4.0"}, Format: []string{"json"}},
		{Format: []string{"csv"}},
		{Format: []string{"text/csv"}},
		{Format: []string{"xlsx", "geojson"}},
		{Format: []string{"application/geo+json"}},
		{Access: []string{"open"}},
		{Access: []string{"restricted"}},
		{ConformsTo: []string{"https://schemas.example/spend"}},
		{ConformsTo: []string{"https://schemas.example/spend", "https://schemas.example/trees"}, Theme: []string{"housing"}},
		{Verified: ptrTo(true)},
		{Verified: ptrTo(false)},
		{Verified: ptrTo(true), Publisher: []string{"brent"}, Theme: []string{"health"}},
		{Publisher: []string{"brent"}, Theme: []string{"health"}, Keyword: []string{"kw01", "kw02"}, Licence: []string{"OGL-UK-3.0"}},
	}
}

func TestSearchFiltersAndFacets(t *testing.T) {
	docs := searchCorpus(700, 1)
	ix := NewIndex()
	for _, d := range docs {
		ix.Put(d)
	}
	checkSearchIndex(t, ix)
	defer func(f int) { facetScanPerBlock = f }(facetScanPerBlock)
	for _, facetScanPerBlock = range []int{4096, 0, 1 << 30} { // default, never scan docs, always scan docs
		for _, q := range searchFilterQueries() {
			q.Limit = 1000
			r := ix.Search(q)
			var want []string
			for _, d := range docs {
				if queryMatches(d, q) {
					want = append(want, d.Key)
				}
			}
			sort.Strings(want)
			if got := sortedHitKeys(r); !slices.Equal(got, want) {
				t.Errorf("%+v: got %d hits, want %d", q, len(got), len(want))
			}
			if r.Total != len(want) {
				t.Errorf("%+v: total %d, want %d", q, r.Total, len(want))
			}
			wf := wantSearchFacets(docs, q)
			if len(r.Facets) != len(facetNames) {
				t.Errorf("%+v: facets %v", q, r.Facets)
			}
			for _, name := range facetNames {
				if !slices.Equal(r.Facets[name], wf[name]) {
					t.Errorf("%+v: facet %s = %v, want %v", q, name, r.Facets[name], wf[name])
				}
			}
		}
	}
	// The keyword facet has 80 values: capped at 50.
	if n := len(ix.Search(Query{}).Facets["keyword"]); n != 50 {
		t.Errorf("keyword facet has %d values, want 50", n)
	}
}

// Text plus filters: "common" is in every doc, uniqN in one.
func TestSearchTextWithFilters(t *testing.T) {
	docs := searchCorpus(300, 2)
	ix := NewIndex()
	for _, d := range docs {
		ix.Put(d)
	}
	for _, q := range searchFilterQueries() {
		q.Text = "common"
		q.Limit = 1000
		r := ix.Search(q)
		n := 0
		for _, d := range docs {
			if queryMatches(d, q) {
				n++
			}
		}
		if r.Total != n || len(r.Hits) != n {
			t.Errorf("%+v: total %d hits %d, want %d", q, r.Total, len(r.Hits), n)
		}
		wf := wantSearchFacets(docs, q)
		for _, name := range facetNames {
			if !slices.Equal(r.Facets[name], wf[name]) {
				t.Errorf("%+v: facet %s = %v, want %v", q, name, r.Facets[name], wf[name])
			}
		}
	}
	d := docs[42]
	r := ix.Search(Query{Text: "uniq42"})
	if got := hitKeys(r); !slices.Equal(got, []string{d.Key}) {
		t.Fatalf("uniq42: %q", got)
	}
	if got := facetCount(r, "publisher", d.Advert.Meta.Publisher); got != 1 {
		t.Errorf("uniq42 publisher facet %d", got)
	}
	if r := ix.Search(Query{Text: "uniq42", Publisher: []string{"not-" + d.Advert.Meta.Publisher}}); r.Total != 0 {
		t.Errorf("uniq42 with another publisher: %d", r.Total)
	}
}

func TestSearchVerified(t *testing.T) {
	ix := NewIndex()
	a := srchDoc("greenwich", "a", "Parking fines")
	a.Verified = true
	ix.Put(a)
	ix.Put(srchDoc("greenwich", "b", "Parking fines"))
	for v, want := range map[*bool][]string{nil: {"greenwich/a", "greenwich/b"}, ptrTo(true): {"greenwich/a"}, ptrTo(false): {"greenwich/b"}} {
		if got := sortedHitKeys(ix.Search(Query{Text: "parking", Verified: v})); !slices.Equal(got, want) {
			t.Errorf("verified %v: %q, want %q", v, got, want)
		}
	}
	// Replacing the doc updates the verified set.
	a.Verified = false
	ix.Put(a)
	if r := ix.Search(Query{Verified: ptrTo(true)}); r.Total != 0 {
		t.Errorf("after unverifying: %d verified", r.Total)
	}
}

func TestSearchSort(t *testing.T) {
	ix := NewIndex()
	ix.Put(srchDoc("a", "1", "banana parking", withModified(5)))
	ix.Put(srchDoc("a", "2", "Apple parking parking", withModified(1)))
	ix.Put(srchDoc("a", "3", "cherry parking", withModified(9)))
	ix.Put(srchDoc("a", "4", "apple", withModified(9), withDesc("parking")))
	ix.Put(srchDoc("a", "0", "Apple parking parking", withModified(1))) // ties with a/2

	cases := []struct {
		q    Query
		want []string
	}{
		{Query{}, []string{"a/3", "a/4", "a/1", "a/0", "a/2"}},                  // empty text: modified
		{Query{Sort: "relevance"}, []string{"a/3", "a/4", "a/1", "a/0", "a/2"}}, // same
		{Query{Sort: "modified"}, []string{"a/3", "a/4", "a/1", "a/0", "a/2"}},  // newest first, then key
		{Query{Sort: "title"}, []string{"a/4", "a/0", "a/2", "a/1", "a/3"}},     // A→Z ignoring case, ties by modified then key
		{Query{Text: "parking", Sort: "modified"}, []string{"a/3", "a/4", "a/1", "a/0", "a/2"}},
		{Query{Text: "parking", Sort: "title"}, []string{"a/4", "a/0", "a/2", "a/1", "a/3"}},
		// Relevance: two title hits beat one; a description hit is last;
		// equal scores fall back to modified, then key.
		{Query{Text: "parking"}, []string{"a/0", "a/2", "a/3", "a/1", "a/4"}},
	}
	for _, c := range cases {
		if got := hitKeys(ix.Search(c.q)); !slices.Equal(got, c.want) {
			t.Errorf("%+v: %q, want %q", c.q, got, c.want)
		}
	}
	// Unset and far-future times sort as oldest and newest.
	ix.Put(srchDoc("a", "zero", "Undated", func(a *nii.Advert) { a.Meta.Modified = time.Time{} }))
	ix.Put(srchDoc("a", "far", "Far future", func(a *nii.Advert) { a.Meta.Modified = time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC) }))
	if got, want := hitKeys(ix.Search(Query{})), []string{"a/far", "a/3", "a/4", "a/1", "a/0", "a/2", "a/zero"}; !slices.Equal(got, want) {
		t.Errorf("with extreme times: %q, want %q", got, want)
	}
	r := ix.Search(Query{Text: "parking"})
	if r.Hits[0].Score != r.Hits[1].Score {
		t.Errorf("a/0 and a/2 should tie: %v %v", r.Hits[0].Score, r.Hits[1].Score)
	}
	if !(r.Hits[2].Score == r.Hits[3].Score && r.Hits[1].Score > r.Hits[2].Score && r.Hits[3].Score > r.Hits[4].Score) {
		t.Errorf("scores %v", r.Hits)
	}
}

func TestSearchPaging(t *testing.T) {
	docs := searchCorpus(537, 3)
	ix := NewIndex()
	for _, d := range docs {
		ix.Put(d)
	}
	for _, base := range []Query{{}, {Text: "common"}, {Text: "dataset word1"}, {Sort: "title"}, {Theme: []string{"finance"}, Sort: "modified"}} {
		all := base
		all.Limit = 1000
		full := ix.Search(all)
		if len(full.Hits) != full.Total {
			t.Fatalf("%+v: %d hits of %d", base, len(full.Hits), full.Total)
		}
		for _, size := range []int{1, 7, 20, 100} {
			var paged []string
			seen := map[string]bool{}
			for off := 0; off < full.Total+size; off += size {
				q := base
				q.Offset, q.Limit = off, size
				r := ix.Search(q)
				if r.Total != full.Total {
					t.Fatalf("total %d changed to %d", full.Total, r.Total)
				}
				if want := max(0, min(size, full.Total-off)); len(r.Hits) != want {
					t.Fatalf("%+v offset %d: %d hits, want %d", base, off, len(r.Hits), want)
				}
				for _, k := range hitKeys(r) {
					if seen[k] {
						t.Fatalf("%+v: %s on two pages", base, k)
					}
					seen[k] = true
					paged = append(paged, k)
				}
			}
			if !slices.Equal(paged, hitKeys(full)) {
				t.Errorf("%+v size %d: pages differ from the full list", base, size)
			}
		}
	}
}

func TestSearchLimit(t *testing.T) {
	ix := NewIndex()
	for _, d := range searchCorpus(1200, 4) {
		ix.Put(d)
	}
	for _, c := range []struct{ limit, want int }{{0, 20}, {-5, 20}, {5, 5}, {1000, 1000}, {5000, 1000}} {
		r := ix.Search(Query{Text: "common", Limit: c.limit})
		if len(r.Hits) != c.want || r.Total != 1200 {
			t.Errorf("limit %d: %d hits total %d, want %d of 1200", c.limit, len(r.Hits), r.Total, c.want)
		}
	}
	if r := ix.Search(Query{Offset: 1195, Limit: 20}); len(r.Hits) != 5 {
		t.Errorf("last page: %d hits", len(r.Hits))
	}
	if r := ix.Search(Query{Offset: 5000}); len(r.Hits) != 0 || r.Total != 1200 {
		t.Errorf("beyond the end: %d hits total %d", len(r.Hits), r.Total)
	}
	if r := ix.Search(Query{Offset: -3, Limit: 2}); len(r.Hits) != 2 {
		t.Errorf("negative offset: %d hits", len(r.Hits))
	}
}

func TestSearchStableOrder(t *testing.T) {
	ix := NewIndex()
	// Many identical docs: every order decision is a tie-break.
	for i := range 200 {
		ix.Put(srchDoc("a", fmt.Sprintf("d%03d", (i*37)%200), "Parking fines", withModified(i%3)))
	}
	first := hitKeys(ix.Search(Query{Text: "parking", Limit: 1000}))
	for i := 1; i < len(first); i++ {
		a, _ := ix.Get(first[i-1])
		b, _ := ix.Get(first[i])
		ma, mb := a.Advert.Meta.Modified, b.Advert.Meta.Modified
		if ma.Before(mb) || (ma.Equal(mb) && a.Key > b.Key) {
			t.Fatalf("%s before %s", a.Key, b.Key)
		}
	}
	for range 5 {
		for _, q := range []Query{{Text: "parking", Limit: 1000}, {Text: "parking", Limit: 10, Offset: 50}} {
			r := ix.Search(q)
			if want := first[q.Offset : q.Offset+len(r.Hits)]; !slices.Equal(hitKeys(r), want) {
				t.Fatalf("order changed")
			}
		}
	}
}

func TestIndexPutReplaces(t *testing.T) {
	ix := NewIndex()
	ix.Put(srchDoc("greenwich", "x", "Allotment waiting list", withKeywords("allotments"), withThemes("environment"), withLicence("OGL-UK-3.0")))
	ix.Put(srchDoc("lambeth", "y", "Allotment sites", withThemes("environment")))
	if r := ix.Search(Query{Text: "waiting"}); r.Total != 1 {
		t.Fatalf("waiting: %d", r.Total)
	}
	r := ix.Search(Query{})
	if facetCount(r, "theme", "environment") != 2 || facetCount(r, "licence", "OGL-UK-3.0") != 1 || facetCount(r, "keyword", "allotments") != 1 {
		t.Fatalf("facets before: %v", r.Facets)
	}
	// Same key, new content.
	ix.Put(srchDoc("greenwich", "x", "Parking permits", withThemes("transport"), withLicence("CC-BY-4.0"), withMedia("application/json")))
	if ix.Len() != 2 {
		t.Errorf("len %d after replace", ix.Len())
	}
	if r := ix.Search(Query{Text: "waiting"}); r.Total != 0 {
		t.Errorf("old term still found: %q", hitKeys(r))
	}
	if got := hitKeys(ix.Search(Query{Text: "allotment"})); !slices.Equal(got, []string{"lambeth/y"}) {
		t.Errorf("allotment: %q", got)
	}
	if got := hitKeys(ix.Search(Query{Text: "permit"})); !slices.Equal(got, []string{"greenwich/x"}) {
		t.Errorf("permit: %q", got)
	}
	r = ix.Search(Query{})
	for _, c := range []struct {
		facet, value string
		want         int
	}{
		{"theme", "environment", 1}, {"theme", "transport", 1}, {"licence", "OGL-UK-3.0", 0},
		{"licence", "CC-BY-4.0", 1}, {"keyword", "allotments", 0}, {"format", "json", 1}, {"format", "csv", 1},
	} {
		if got := facetCount(r, c.facet, c.value); got != c.want {
			t.Errorf("facet %s %s = %d, want %d", c.facet, c.value, got, c.want)
		}
	}
	if r := ix.Search(Query{Keyword: []string{"allotments"}}); r.Total != 0 {
		t.Errorf("old keyword filter still matches")
	}
	d, ok := ix.Get("greenwich/x")
	if !ok || d.Advert.Meta.Title != "Parking permits" {
		t.Errorf("Get: %v %v", ok, d.Advert)
	}
	checkSearchIndex(t, ix)
}

func TestIndexDelete(t *testing.T) {
	defer func(n int) { vgarbageMin = n }(vgarbageMin)
	vgarbageMin = 64 // compact the value arena as docs go
	docs := searchCorpus(200, 5)
	ix := NewIndex()
	for _, d := range docs {
		ix.Put(d)
	}
	victim := docs[117] // uniq117 is no other doc's term or prefix
	m := victim.Advert.Meta
	before := ix.Search(Query{})
	ix.Delete(victim.Key)
	ix.Delete(victim.Key) // twice is harmless
	ix.Delete("no such key")
	if ix.Len() != 199 {
		t.Errorf("len %d", ix.Len())
	}
	if _, ok := ix.Get(victim.Key); ok {
		t.Error("Get after Delete")
	}
	if r := ix.Search(Query{Text: "uniq117"}); r.Total != 0 {
		t.Errorf("unique term still found")
	}
	if r := ix.Search(Query{Text: "uniq11", Limit: 100}); r.Total != 10 || slices.Contains(hitKeys(r), victim.Key) {
		t.Errorf("found by prefix (%d hits)", r.Total)
	}
	after := ix.Search(Query{})
	if after.Total != before.Total-1 {
		t.Errorf("total %d → %d", before.Total, after.Total)
	}
	if facetCount(after, "publisher", m.Publisher) != facetCount(before, "publisher", m.Publisher)-1 {
		t.Errorf("publisher facet did not drop")
	}
	for _, th := range m.Themes {
		if facetCount(after, "theme", th) != facetCount(before, "theme", th)-1 {
			t.Errorf("theme facet %s did not drop", th)
		}
	}
	rest := slices.Delete(slices.Clone(docs), 117, 118)
	for _, q := range searchFilterQueries() {
		wf := wantSearchFacets(rest, q)
		r := ix.Search(q)
		for _, name := range facetNames {
			if !slices.Equal(r.Facets[name], wf[name]) {
				t.Errorf("%+v: facet %s = %v, want %v", q, name, r.Facets[name], wf[name])
			}
		}
	}
	checkSearchIndex(t, ix)

	// The freed ID is reused without inheriting anything.
	ix.Put(srchDoc("newcomer", "n", "Fresh thing"))
	if got := hitKeys(ix.Search(Query{Text: "fresh"})); !slices.Equal(got, []string{"newcomer/n"}) {
		t.Errorf("fresh: %q", got)
	}
	if r := ix.Search(Query{Text: "uniq117"}); r.Total != 0 {
		t.Errorf("reused ID inherited a term")
	}
	checkSearchIndex(t, ix)

	// Delete everything: the index is empty and holds no sets.
	for _, d := range rest {
		ix.Delete(d.Key)
	}
	ix.Delete("newcomer/n")
	checkSearchIndex(t, ix)
	if r := ix.Search(Query{}); r.Total != 0 || len(r.Facets["publisher"]) != 0 {
		t.Errorf("empty index: %+v", r)
	}
	ix.mu.RLock()
	if len(ix.termIDs) != 0 || len(ix.fields[fPublisher]) != 0 {
		t.Errorf("posting lists left: %d terms, %d publishers", len(ix.termIDs), len(ix.fields[fPublisher]))
	}
	ix.mu.RUnlock()
	// Tombstones and nil adverts delete.
	d := srchDoc("a", "b", "Thing")
	ix.Put(d)
	tomb := *d.Advert
	tomb.Withdrawn = true
	ix.Put(Doc{Key: d.Key, Advert: &tomb})
	if ix.Len() != 0 {
		t.Errorf("tombstone did not delete")
	}
}

// Many puts, replaces and deletes, checked against a rebuilt index, with the
// term dictionary merging several times.
func TestIndexChurn(t *testing.T) {
	defer func(n int) { vgarbageMin = n }(vgarbageMin)
	vgarbageMin = 64 // compact the value arena often
	rng := rand.New(rand.NewPCG(9, 9))
	docs := searchCorpus(3000, 6)
	ix := NewIndex()
	live := map[string]Doc{}
	for i := range 6000 {
		d := docs[rng.IntN(len(docs))]
		switch rng.IntN(3) {
		case 0:
			ix.Delete(d.Key)
			delete(live, d.Key)
		default:
			// Replace under a random key from a smaller key space.
			d.Key = fmt.Sprintf("k%d", rng.IntN(1500))
			ix.Put(d)
			live[d.Key] = d
		}
		if i%1000 == 0 {
			checkSearchIndex(t, ix)
		}
	}
	checkSearchIndex(t, ix)
	fresh := NewIndex()
	var rest []Doc
	for _, d := range live {
		fresh.Put(d)
		rest = append(rest, d)
	}
	for _, q := range append(searchFilterQueries(), Query{Text: "common"}, Query{Text: "uniq12"}, Query{Text: "dataset word"}, Query{Text: "kw1"}, Query{Text: "uniq"}) {
		q.Limit = 1000
		a, b := ix.Search(q), fresh.Search(q)
		if a.Total != b.Total || !slices.Equal(hitKeys(a), hitKeys(b)) {
			t.Errorf("%+v: churned %d hits, fresh %d", q, a.Total, b.Total)
		}
		for i := range a.Hits {
			if d := a.Hits[i].Score - b.Hits[i].Score; d > 1e-9 || d < -1e-9 {
				t.Errorf("%+v: score %v vs %v", q, a.Hits[i].Score, b.Hits[i].Score)
				break
			}
		}
		for _, name := range facetNames {
			if !slices.Equal(a.Facets[name], b.Facets[name]) {
				t.Errorf("%+v: facet %s differs", q, name)
			}
		}
	}
}

func TestIndexConcurrent(t *testing.T) {
	docs := searchCorpus(400, 8)
	ix := NewIndex()
	for _, d := range docs[:200] {
		ix.Put(d)
	}
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Go(func() {
			for i := range 300 {
				d := docs[200+(i*2+w)%200]
				if i%3 == 2 {
					ix.Delete(d.Key)
				} else {
					ix.Put(d)
				}
			}
		})
	}
	queries := []Query{{}, {Text: "common"}, {Text: "uniq1"}, {Text: "dataset wor", Theme: []string{"finance"}}, {Sort: "title", Offset: 30}}
	for s := range 4 {
		wg.Go(func() {
			for i := range 150 {
				r := ix.Search(queries[(i+s)%len(queries)])
				if len(r.Hits) > r.Total || len(r.Hits) > 20 {
					t.Errorf("hits %d total %d", len(r.Hits), r.Total)
					return
				}
				_ = ix.Len()
				ix.Get(docs[i].Key)
			}
		})
	}
	wg.Wait()
	checkSearchIndex(t, ix)
}

// Searching allocates per query, not per matching doc.
func TestSearchAllocsBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a 5000-doc index")
	}
	docs := searchCorpus(5000, 10)
	ix := NewIndex()
	for _, d := range docs {
		ix.Put(d)
	}
	for _, q := range []Query{{}, {Text: "common"}, {Text: "common dataset"}, {Text: "uniq"}, {Theme: []string{"finance"}, Sort: "title"}, {Text: "common", Offset: 900, Limit: 100}} {
		r := ix.Search(q)
		allocs := testing.AllocsPerRun(5, func() { ix.Search(q) })
		t.Logf("%+v: %d matches, %.0f allocs", q.Text, r.Total, allocs)
		if allocs > 150 {
			t.Errorf("%+v (%d matches): %.0f allocations", q, r.Total, allocs)
		}
	}
}

// A prefix with more expansions than are scored still matches every doc
// holding any of them.
func TestSearchWidePrefix(t *testing.T) {
	ix := NewIndex()
	n := maxScoredTerms + 50
	for i := range n {
		// Each term in two docs (so it has a bitmap), plus one single-doc term.
		ix.Put(srchDoc("a", fmt.Sprintf("x%d", i), fmt.Sprintf("zed%04d", i)))
		ix.Put(srchDoc("b", fmt.Sprintf("x%d", i), fmt.Sprintf("zed%04d", i)))
		ix.Put(srchDoc("c", fmt.Sprintf("x%d", i), fmt.Sprintf("zedsolo%04d", i)))
	}
	r := ix.Search(Query{Text: "zed", Limit: 1000})
	if r.Total != 3*n {
		t.Fatalf("zed: total %d, want %d", r.Total, 3*n)
	}
	scored := 0
	for _, h := range r.Hits {
		if h.Score > 0 {
			scored++
		}
	}
	// All single-doc terms are scored, and maxScoredTerms two-doc ones.
	if want := min(1000, n+2*maxScoredTerms); scored != want {
		t.Errorf("%d hits scored, want %d", scored, want)
	}
	if r := ix.Search(Query{Text: "zedsolo00"}); r.Total != 100 {
		t.Errorf("zedsolo00: %d", r.Total)
	}
}

// TestSearchHarvesterFilters: what a CKAN harvester asks — organizations
// excluded, a modified-since window, a stable key order to page through.
func TestSearchHarvesterFilters(t *testing.T) {
	ix := NewIndex()
	ix.Put(srchDoc("camden", "b", "spend", withModified(5)))
	ix.Put(srchDoc("camden", "a", "spend", withModified(1)))
	ix.Put(srchDoc("brent", "c", "spend", withModified(9)))
	keys := func(r Result) []string {
		var out []string
		for _, h := range r.Hits {
			out = append(out, h.Doc.Key)
		}
		return out
	}
	if got := keys(ix.Search(Query{Sort: "key"})); !slices.Equal(got, []string{"brent/c", "camden/a", "camden/b"}) {
		t.Errorf("key order: %q", got)
	}
	if got := keys(ix.Search(Query{Sort: "key", Offset: 1, Limit: 1})); !slices.Equal(got, []string{"camden/a"}) {
		t.Errorf("key order, second page of one: %q", got)
	}
	if got := keys(ix.Search(Query{Sort: "key", NotPublisher: []string{"camden"}})); !slices.Equal(got, []string{"brent/c"}) {
		t.Errorf("camden excluded: %q", got)
	}
	r := ix.Search(Query{Sort: "key", ModifiedFrom: srchT0.AddDate(0, 0, 5)})
	if got := keys(r); !slices.Equal(got, []string{"brent/c", "camden/b"}) || r.Total != 2 {
		t.Errorf("modified since day 5: %q (total %d)", got, r.Total)
	}
	if got := keys(ix.Search(Query{Sort: "key", ModifiedFrom: srchT0.AddDate(0, 0, 2), ModifiedTo: srchT0.AddDate(0, 0, 6)})); !slices.Equal(got, []string{"camden/b"}) {
		t.Errorf("modified in days [2, 6]: %q", got)
	}
}
