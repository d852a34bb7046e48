package opendata_test

import (
	"crypto/ed25519"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"

	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/internal/storeopts"
	"github.com/nii-uk/nii/registry"
	"github.com/nii-uk/nii/registry/opendata"
	"github.com/nii-uk/nii/registry/registrytest"
	"github.com/nii-uk/nii/registry/search"
)

// regCatalog is a registry.Catalog as opendata's Catalog, as the node
// adapts it (node/opendata.go) less the store and the member table.
type regCatalog struct{ c *registry.Catalog }

func (r regCatalog) Search(q search.Query) search.Result { return r.c.Search(q) }
func (r regCatalog) Published(d nii.DatasetID) (*nii.Advert, bool, error) {
	e, err := r.c.Publisher(d)
	if err != nil {
		return nil, false, err
	}
	return e.Advert, e.Verified, nil
}
func (r regCatalog) claim(e registry.Entry) opendata.Claim {
	id := ""
	if !r.c.Listed(e) {
		id = registry.ClaimID(e.Advert.Origin)
	}
	return opendata.Claim{Advert: e.Advert, Verified: e.Verified, ID: id}
}
func (r regCatalog) Claims(d nii.DatasetID) []opendata.Claim {
	var out []opendata.Claim
	for _, e := range r.c.Lookup(d) {
		if !e.Advert.Withdrawn && !e.Advert.Replica {
			out = append(out, r.claim(e))
		}
	}
	return out
}
func (r regCatalog) PackageByUUID(id string) (nii.DatasetID, bool) { return r.c.ByAlias(id) }
func (r regCatalog) ListedThemes() map[string]int                  { return r.c.ListedThemes() }
func (r regCatalog) ListedKeywords() map[string]int                { return r.c.ListedKeywords() }
func (r regCatalog) ListedNames(offset, limit int) ([]string, int) {
	return r.c.ListedNames(offset, limit)
}
func (r regCatalog) ListedOrgs() []opendata.OrgCount {
	var out []opendata.OrgCount
	for _, o := range r.c.ListedOrgs() {
		out = append(out, opendata.OrgCount{Org: o.Org, Datasets: o.Datasets, Issued: o.Issued})
	}
	return out
}
func (r regCatalog) ClaimOf(a *nii.Advert, verified bool) string {
	return r.claim(registry.Entry{Advert: a, Verified: verified}).ID
}
func (r regCatalog) OrgName(org string) string { return r.c.OrgName(org) }
func (r regCatalog) Online(nii.NodeID) bool    { return true }
func (r regCatalog) Holds(nii.Ref) bool        { return false }
func (r regCatalog) Stored(ref nii.Ref) (*nii.Advert, error) {
	return nil, fmt.Errorf("version %s: %w", ref, nii.ErrNotFound)
}

// BenchmarkCatalogLists builds a real catalog (on-disk badger with the
// node's options, internal/storeopts) of 10,000 and 100,000 signed adverts
// from registrytest's corpus, one key per borough, and drives the CKAN
// list calls and package_search with one facet through the handler
// (routing, translation, JSON encoding; no network), reporting p50/p99
// and the heap in use the catalog costs, badger included
// (runtime.ReadMemStats after GC, from before making the corpus): after
// the build with the corpus dropped, after the calls, settled (once
// badger's table builders' allocator pool has drained, settledHeap), and
// settled again after dropping the catalog and reopening it from the
// store, as a node's start does. It also logs badger's tables' size on
// disk.
//
// NII_BENCH_HEAPPROFILE=FILE writes heap profiles after the build
// (FILE.N), settled (FILE.N.settled) and reopened (FILE.N.reopened), for
// 'go tool pprof -sample_index=inuse_space'. NII_BENCH_BADGER=low opens badger with the
// node's low_memory options, =defaults with badger's defaults (the node's
// before internal/storeopts), =snappy with the node's sizes but badger's
// compressed tables and a 32 MiB block cache, =small with
// BenchmarkCatalog100k's.
//
//	go test ./registry/opendata -run XXX -bench CatalogLists -benchtime 300x -timeout 30m
func BenchmarkCatalogLists(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) { benchCatalogLists(b, n) })
	}
}

func benchCatalogLists(b *testing.B, n int) {
	// The heap is measured from here, before the corpus and its signed
	// adverts exist, to after the build with them dropped: the catalog
	// and its badger (memtables, caches) are what remains.
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	corpus := registrytest.Corpus(n)
	type ident struct {
		id  nii.NodeID
		key ed25519.PrivateKey
	}
	origins := map[string]ident{}
	seqs := map[nii.NodeID]uint64{}
	signed := make([]*nii.SignedAdvert, len(corpus))
	for i, d := range corpus {
		a := *d.Advert
		id, ok := origins[a.Meta.Publisher]
		if !ok {
			pub, priv, _ := ed25519.GenerateKey(nil)
			id = ident{nii.NodeIDFromPublicKey(pub), priv}
			origins[a.Meta.Publisher] = id
		}
		seqs[id.id]++
		a.Origin, a.Seq = id.id, seqs[id.id]
		a.Manifest = nii.HashOf([]byte(a.Dataset.String()))
		a.Meta.Issued, a.Signed = a.Meta.Modified, a.Meta.Modified
		sa, err := nii.SignAdvert(&a, id.key)
		if err != nil {
			b.Fatal(err)
		}
		signed[i] = sa
	}
	corpus = nil
	var probe nii.Advert // a dataset in the middle, for package_show
	if err := nii.Unmarshal(signed[n/2].Body, &probe); err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	var opts badger.Options
	switch os.Getenv("NII_BENCH_BADGER") {
	case "", "node": // the node's own options (internal/storeopts)
		opts = storeopts.Badger(dir, false)
	case "snappy": // the node's sizes with badger's compressed tables and a 32 MiB block cache
		opts = storeopts.Badger(dir, false).WithCompression(options.Snappy).WithBlockCacheSize(32 << 20)
	case "low": // the node's low_memory options
		opts = storeopts.Badger(dir, true)
	case "defaults": // the node's before storeopts: badger's defaults, 64 MiB memtables, Snappy, 256 MiB block cache
		opts = badger.DefaultOptions(dir).WithValueThreshold(1 << 10).WithNumVersionsToKeep(1).WithDetectConflicts(true)
	case "small": // BenchmarkCatalog100k's
		opts = badger.DefaultOptions(dir).WithValueThreshold(1 << 10).
			WithMemTableSize(16 << 20).WithNumMemtables(2).WithBlockCacheSize(16 << 20).WithIndexCacheSize(8 << 20)
	default:
		b.Fatalf("NII_BENCH_BADGER=%s: want node, low, defaults, snappy or small", os.Getenv("NII_BENCH_BADGER"))
	}
	opts = opts.WithLogger(nil)
	db, err := badger.Open(opts)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	self, key, _ := ed25519.GenerateKey(nil)
	cat, err := registry.OpenCatalog(db, nii.NodeIDFromPublicKey(self), key, nil)
	if err != nil {
		b.Fatal(err)
	}
	cat.SetAliases(opendata.PackageUUIDOf)
	// The catalog collects while it grows, as the node runs it
	// (registry/heap.go); NII_BENCH_NOCOLLECT=1 leaves it to the runtime.
	// It is stopped before the catalog is dropped for the reopen below
	// (its goroutine holds the catalog), as a node stops it at close.
	done := make(chan struct{})
	var collector sync.WaitGroup
	if os.Getenv("NII_BENCH_NOCOLLECT") != "1" {
		collector.Go(func() { cat.CollectWhileGrowing(done) })
	}
	stopCollector := sync.OnceFunc(func() { close(done); collector.Wait() })
	defer stopCollector()
	built := time.Now()
	for _, sa := range signed {
		if _, _, err := cat.Apply(sa); err != nil {
			b.Fatal(err)
		}
	}
	signed = nil
	runtime.GC()
	runtime.ReadMemStats(&after)
	if cat.Len() != n {
		b.Fatalf("catalog holds %d, want %d", cat.Len(), n)
	}
	overStart := func(inuse uint64) float64 { return float64(int64(inuse)-int64(before.HeapInuse)) / (1 << 20) }
	heapMiB := overStart(after.HeapInuse)
	b.Logf("n=%d: heap in use grew %.1f MiB building the catalog in %v (HeapInuse %.1f → %.1f MiB; %d collections while it grew)", n, heapMiB,
		time.Since(built).Round(time.Millisecond), float64(before.HeapInuse)/(1<<20), float64(after.HeapInuse)/(1<<20), cat.Collections())
	writeHeapProfile(b, fmt.Sprint(n))

	h := opendata.NewHandler(regCatalog{cat}, opendata.Config{Federation: "london", Org: "camden", Version: "bench"})
	for _, c := range []struct{ name, path string }{
		{"package_list", "/api/3/action/package_list"},
		{"package_list,limit=1000", "/api/3/action/package_list?limit=1000&offset=5000"},
		{"organization_list", "/api/3/action/organization_list?all_fields=true"},
		{"organization_show", "/api/3/action/organization_show?id=lambeth"},
		{"package_search,facet=tags", `/api/3/action/package_search?rows=20&q=spend&facet.field=["tags"]`},
		{"package_search,facet=org", `/api/3/action/package_search?rows=20&q=spend&facet.field=["organization"]`},
		{"package_search,all,facet=tags", `/api/3/action/package_search?rows=20&facet.field=["tags"]`},
		{"group_list", "/api/3/action/group_list?all_fields=true"},
		{"tag_list", "/api/3/action/tag_list"},
		{"package_show,name", "/api/3/action/package_show?id=" + probe.Dataset.String()},
		{"package_show,uuid", "/api/3/action/package_show?id=" + opendata.PackageUUID(probe.Dataset)},
	} {
		b.Run(c.name, func(b *testing.B) {
			lat := make([]time.Duration, 0, b.N)
			for b.Loop() {
				lat = append(lat, registrytest.TimeGet(b, h, c.path, ""))
			}
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
			b.ReportMetric(heapMiB, "catalog-heap-MiB")
		})
	}
	// 'nii peers' asks the catalog for these two (node.PeerList), then
	// walks the member table, which is not the catalog's.
	b.Run("nii_peers,catalog", func(b *testing.B) {
		lat := make([]time.Duration, 0, b.N)
		for b.Loop() {
			t0 := time.Now()
			counts, creds := cat.CountByOrigin(), cat.Credentials()
			lat = append(lat, time.Since(t0))
			if len(counts) == 0 || len(creds) == 0 {
				b.Fatal("no origins")
			}
		}
		slices.Sort(lat)
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	})
	var end runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&end)
	b.Logf("n=%d: heap in use after the calls %.1f MiB above the start (HeapInuse %.1f MiB)", n,
		overStart(end.HeapInuse), float64(end.HeapInuse)/(1<<20))
	settled, waited := settledHeap()
	b.Logf("n=%d: heap in use settled %.1f MiB above the start after %v more (HeapInuse %.1f MiB)", n,
		overStart(settled), waited, float64(settled)/(1<<20))
	writeHeapProfile(b, fmt.Sprintf("%d.settled", n))

	// A node that restarts loads the catalog from its store instead of
	// building it from gossip: the same records, without the garbage of
	// verifying and decoding each advert as it arrived between them.
	stopCollector()
	h, cat = nil, nil
	opened := time.Now()
	cat, err = registry.OpenCatalog(db, nii.NodeIDFromPublicKey(self), key, nil)
	if err != nil {
		b.Fatal(err)
	}
	cat.SetAliases(opendata.PackageUUIDOf)
	took := time.Since(opened)
	if cat.Len() != n {
		b.Fatalf("reopened catalog holds %d, want %d", cat.Len(), n)
	}
	reopened, waited := settledHeap()
	b.Logf("n=%d: catalog reopened from the store in %v: heap in use %.1f MiB above the start, settled after %v (HeapInuse %.1f MiB)", n,
		took.Round(time.Millisecond), overStart(reopened), waited, float64(reopened)/(1<<20))
	writeHeapProfile(b, fmt.Sprintf("%d.reopened", n))
	var tables int64
	ssts, _ := filepath.Glob(filepath.Join(dir, "*.sst"))
	for _, f := range ssts {
		if fi, err := os.Stat(f); err == nil {
			tables += fi.Size()
		}
	}
	b.Logf("n=%d: badger's tables on disk %.1f MiB (what the memtable holds not yet among them)", n, float64(tables)/(1<<20))
	runtime.KeepAlive(cat)
}

// writeHeapProfile writes a heap profile to $NII_BENCH_HEAPPROFILE.suffix
// if that is set.
func writeHeapProfile(b *testing.B, suffix string) {
	f := os.Getenv("NII_BENCH_HEAPPROFILE")
	if f == "" {
		return
	}
	out, err := os.Create(f + "." + suffix)
	if err != nil {
		b.Fatal(err)
	}
	defer out.Close()
	if err := pprof.Lookup("heap").WriteTo(out, 0); err != nil {
		b.Fatal(err)
	}
}

// settledHeap is HeapInuse once badger's table-builder allocator pool has
// drained: it keeps up to 8 allocators after flushes and compactions and
// frees one every 2 s (ristretto's z.AllocatorPool), so the heap is
// sampled every 2 s until it has not fallen for five samples in a row, or
// for at most a minute.
func settledHeap() (uint64, time.Duration) {
	const period, still, most = 2 * time.Second, 5, 30
	var m runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m)
	low, t0 := m.HeapInuse, time.Now()
	for i, flat := 0, 0; i < most && flat < still; i++ {
		time.Sleep(period) // the pool's own clock: nothing to poll for
		runtime.GC()
		runtime.ReadMemStats(&m)
		if m.HeapInuse < low {
			low, flat = m.HeapInuse, 0
		} else {
			flat++
		}
	}
	return low, time.Since(t0).Round(time.Second)
}
