package search_test

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
	"github.com/nii-uk/nii/registry/search"
)

var srch100k struct {
	once    sync.Once
	docs    []search.Doc
	ix      *search.Index
	buildMS float64
	heapMiB float64
}

func srchIndex() (*search.Index, []search.Doc) {
	b := &srch100k
	b.once.Do(func() {
		b.docs = registrytest.Docs(100_000)
		var m0, m1 runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m0)
		start := time.Now()
		ix := search.NewIndex()
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

func latencyPercentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p * float64(len(sorted)-1))
	return sorted[i]
}

// describe prints the set fields of q.
func describeQuery(q search.Query) string {
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
	qs := registrytest.Queries()
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
		ix := search.NewIndex()
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
	defer search.SetFacetScanPerBlock(search.SetFacetScanPerBlock(0))
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
				search.SetFacetScanPerBlock(way.max)
				out := map[string][]search.FacetCount{}
				for b.Loop() {
					ix.CountFacets(match, out)
				}
			})
		}
	}
}
