package registry

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/RoaringBitmap/roaring/v2"
	"github.com/nii-uk/nii/registry/registrytest"
)

// srchCorpus is registrytest's corpus as index documents.
func srchCorpus(n int) []Doc {
	c := registrytest.Corpus(n)
	docs := make([]Doc, len(c))
	for i, d := range c {
		docs[i] = Doc{Key: string(d.Advert.Origin) + " " + d.Advert.Dataset.String(), Advert: d.Advert, Verified: d.Verified}
	}
	return docs
}

var srch100k struct {
	once    sync.Once
	docs    []Doc
	ix      *Index
	buildMS float64
	heapMiB float64
}

func srchIndex() (*Index, []Doc) {
	b := &srch100k
	b.once.Do(func() {
		b.docs = srchCorpus(100_000)
		var m0, m1 runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m0)
		start := time.Now()
		ix := NewIndex()
		for _, d := range b.docs {
			ix.Put(d)
		}
		b.buildMS = float64(time.Since(start).Microseconds()) / 1000
		runtime.GC()
		runtime.ReadMemStats(&m1)
		b.heapMiB = float64(int64(m1.HeapAlloc)-int64(m0.HeapAlloc)) / (1 << 20)
		b.ix = ix
	})
	return b.ix, b.docs
}

func srchQueries() []Query {
	yes := true
	return []Query{
		{Text: "spend"},                 // common term
		{Text: "parking"},               // single term
		{Text: "air quality"},           // two terms
		{Text: "planning applications"}, // two terms, plural
		{Text: "spen"},                  // prefix
		{Text: "street tre"},            // term + prefix
		{Text: "con"},                   // short, wide prefix
		{Text: "parking", Publisher: []string{"lambeth"}},
		{Text: "trees", Publisher: []string{"hackney", "camden", "islington"}, Licence: []string{"OGL-UK-3.0"}},
		{Theme: []string{"environment"}}, // filter only
		{},                               // empty query, all facets
		{Text: "defibrillator"},          // rare term
		{Text: "spend", Offset: 500},     // deep page
		{Text: "council"},                // very common term
		{Text: "business rates", Format: []string{"csv"}, Sort: "title"},
		{Sort: "modified", Offset: 500}, // deep page, no text
		{Text: "supplier amount"},       // column names
		{Keyword: []string{"transparency"}, Access: []string{"open"}, Verified: &yes},
		{Text: "2023 q1"},                         // numbers
		{Text: "london borough data", Limit: 100}, // three very common terms
	}
}

func latencyPercentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p * float64(len(sorted)-1))
	return sorted[i]
}

// describe prints the set fields of q.
func describeQuery(q Query) string {
	var parts []string
	if q.Text != "" {
		parts = append(parts, fmt.Sprintf("text=%q", q.Text))
	}
	for _, f := range []struct {
		name string
		vals []string
	}{{"publisher", q.Publisher}, {"theme", q.Theme}, {"keyword", q.Keyword}, {"licence", q.Licence}, {"format", q.Format}, {"access", q.Access}, {"conforms", q.ConformsTo}} {
		if len(f.vals) > 0 {
			parts = append(parts, f.name+"="+strings.Join(f.vals, "|"))
		}
	}
	if q.Verified != nil {
		parts = append(parts, fmt.Sprintf("verified=%v", *q.Verified))
	}
	if q.Sort != "" {
		parts = append(parts, "sort="+q.Sort)
	}
	if q.Offset != 0 {
		parts = append(parts, fmt.Sprintf("offset=%d", q.Offset))
	}
	if q.Limit != 0 {
		parts = append(parts, fmt.Sprintf("limit=%d", q.Limit))
	}
	if len(parts) == 0 {
		return "(empty)"
	}
	return strings.Join(parts, " ")
}

// BenchmarkSearch100k runs a fixed mix of queries over a 100,000-doc index,
// in turn, and reports each query's latency percentiles (p50-us, p99-us,
// wall clock), the index's heap size (index-MiB: HeapAlloc after GC, less
// that before building it, so the docs themselves are not counted) and
// its build time (build-ms). With -v it logs each query's latencies.
func BenchmarkSearch100k(b *testing.B) {
	ix, _ := srchIndex()
	qs := srchQueries()
	lat := make([]time.Duration, 0, b.N)
	perQuery := make([][]time.Duration, len(qs))
	hits := make([]int, len(qs))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		qi := i % len(qs)
		start := time.Now()
		r := ix.Search(qs[qi])
		d := time.Since(start)
		lat = append(lat, d)
		perQuery[qi] = append(perQuery[qi], d)
		hits[qi] = r.Total
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(latencyPercentile(lat, 0.50).Nanoseconds())/1000, "p50-us")
	b.ReportMetric(float64(latencyPercentile(lat, 0.99).Nanoseconds())/1000, "p99-us")
	b.ReportMetric(srch100k.heapMiB, "index-MiB")
	b.ReportMetric(srch100k.buildMS, "build-ms")
	if b.N >= len(qs) && testing.Verbose() {
		for i, q := range qs {
			slices.Sort(perQuery[i])
			b.Logf("%-72s %6d matches  p50 %7.0fµs  max %7.0fµs", describeQuery(q),
				hits[i], float64(latencyPercentile(perQuery[i], 0.5).Nanoseconds())/1000, float64(perQuery[i][len(perQuery[i])-1].Nanoseconds())/1000)
		}
	}
}

// BenchmarkIndexPut measures Put: "new" into an index growing from empty
// (as when loading the catalog), "replace-in-100k" replacing docs of the
// 100,000-doc index (as when a newer advert arrives).
func BenchmarkIndexPut(b *testing.B) {
	b.Run("new", func(b *testing.B) {
		_, docs := srchIndex()
		ix := NewIndex()
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			d := docs[i%len(docs)]
			if i >= len(docs) {
				d.Key = fmt.Sprintf("%s#%d", d.Key, i)
			}
			ix.Put(d)
		}
	})
	b.Run("replace-in-100k", func(b *testing.B) {
		// Same key and content: the index is unchanged afterwards.
		ix, docs := srchIndex()
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			ix.Put(docs[(i*7919)%len(docs)])
		}
	})
}

// BenchmarkFacets compares the two ways of counting facets (scanning the
// matching docs' values, or AndCardinality per value) by match-set size,
// to place facetScanPerBlock.
func BenchmarkFacets(b *testing.B) {
	ix, _ := srchIndex()
	defer func(f int) { facetScanPerBlock = f }(facetScanPerBlock)
	rng := rand.New(rand.NewPCG(1, 1))
	for _, n := range []int{100, 1000, 4000, 16000, 37000, 60000, 90000} {
		match := roaring.New()
		for match.GetCardinality() < uint64(n) {
			match.Add(rng.Uint32N(100_000))
		}
		for _, way := range []struct {
			name string
			max  int
		}{{"scan", 1 << 30}, {"and", 0}} {
			b.Run(fmt.Sprintf("%d/%s", n, way.name), func(b *testing.B) {
				facetScanPerBlock = way.max
				out := map[string][]FacetCount{}
				ix.mu.RLock()
				defer ix.mu.RUnlock()
				for b.Loop() {
					ix.facets(match, false, out)
				}
			})
		}
	}
}
