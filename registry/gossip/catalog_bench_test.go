package gossip

import (
	"runtime"
	"sort"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/registry"
	"github.com/nii-uk/nii/registry/registrytest"
)

// BenchmarkCatalog100k builds a federation catalog of 100,000 signed
// adverts from 33 borough origins and measures what issue 3 asks:
//
//   - search latency p50/p99 through the catalog (the query mix of
//     BenchmarkSearch100k);
//
//   - catalog memory (heap growth while applying 100k verified adverts,
//     badger's own memtables included);
//
//   - what a brand-new node transfers to catch up: the push/pull state
//     (per-origin watermarks) and the catalog pages fetched, and how long it
//     takes over real memberlist gossip.
//
//     go test ./registry/gossip -run XXX -bench Catalog100k -benchtime 1x -timeout 20m
func BenchmarkCatalog100k(b *testing.B) {
	const n = 100_000
	docs := registrytest.Docs(n)
	origins := map[string]ident{}
	seqs := map[nii.NodeID]uint64{}
	signed := make([]*nii.SignedAdvert, n)
	for i, d := range docs {
		a := *d.Advert
		org := a.Meta.Publisher
		id, ok := origins[org]
		if !ok {
			id = newIdent()
			origins[org] = id
		}
		seqs[id.ID]++
		a.Origin, a.Seq, a.Dataset.Org = id.ID, seqs[id.ID], org
		if a.Version == 0 {
			a.Version = 1
		}
		if a.Manifest.IsZero() {
			a.Manifest = nii.HashOf([]byte(a.Dataset.String()))
		}
		sa, err := nii.SignAdvert(&a, id.Key)
		if err != nil {
			b.Fatal(err)
		}
		signed[i] = sa
	}

	diskDB := func() *badger.DB {
		db, err := badger.Open(badger.DefaultOptions(b.TempDir()).WithLogger(nil).WithValueThreshold(1 << 10).
			WithMemTableSize(16 << 20).WithNumMemtables(2).WithBlockCacheSize(16 << 20).WithIndexCacheSize(8 << 20))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { db.Close() })
		return db
	}

	var net memNet
	net.cats = map[nii.NodeID]*registry.Catalog{}
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	start := time.Now()
	holder := newIdent()
	db := diskDB()
	cat, err := registry.OpenCatalog(db, holder.ID, holder.Key, nil)
	if err != nil {
		b.Fatal(err)
	}
	for _, sa := range signed {
		if _, _, err := cat.Apply(sa); err != nil {
			b.Fatal(err)
		}
	}
	for id, s := range seqs {
		cat.SetWatermark(id, s)
	}
	applyTime := time.Since(start)
	runtime.GC()
	runtime.ReadMemStats(&after)
	if cat.Len() != n {
		b.Fatalf("catalog holds %d adverts, want %d", cat.Len(), n)
	}

	// Search latency.
	queries := registrytest.Queries()
	var lat []time.Duration
	b.ResetTimer()
	for range b.N {
		for range 100 {
			for _, q := range queries {
				t := time.Now()
				cat.Search(q)
				lat = append(lat, time.Since(t))
			}
		}
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })

	// A new node joins the holder and catches up over gossip + pages.
	peersA, _ := registry.OpenPeers(db)
	gA, err := New(Config{Self: holder.ID, Org: "registry", Federation: "bench", BindAddr: "127.0.0.1", Profile: "lan"}, cat, peersA, &net)
	if err != nil {
		b.Fatal(err)
	}
	defer gA.Stop()
	net.cats[holder.ID] = cat
	newcomer := newIdent()
	dbB := diskDB()
	catB, _ := registry.OpenCatalog(dbB, newcomer.ID, newcomer.Key, nil)
	peersB, _ := registry.OpenPeers(dbB)
	gB, err := New(Config{Self: newcomer.ID, Org: "newcomer", Federation: "bench", BindAddr: "127.0.0.1", Profile: "lan"}, catB, peersB, &net)
	if err != nil {
		b.Fatal(err)
	}
	defer gB.Stop()
	pushPull := len((&delegate{gA}).LocalState(true))
	catchStart := time.Now()
	if _, err := gB.Join([]string{gA.Addr()}); err != nil {
		b.Fatal(err)
	}
	waitFor(b, 5*time.Minute, "the newcomer holds the whole catalog", func() bool { return catB.Len() == n })
	catchTime := time.Since(catchStart)

	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "search-p50-us")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "search-p99-us")
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/(1<<20), "catalog-MiB")
	b.ReportMetric(applyTime.Seconds(), "apply-100k-s")
	b.ReportMetric(float64(pushPull)/1024, "pushpull-KiB")
	b.ReportMetric(float64(net.bytes.Load())/(1<<20), "catchup-MiB")
	b.ReportMetric(catchTime.Seconds(), "catchup-s")
	b.ReportMetric(0, "ns/op")
}
