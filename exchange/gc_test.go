package exchange

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/dgraph-io/badger/v4"
	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/exchange/chunker"
)

// referencedChunks is what the versions' manifests name, by a scan.
func referencedChunks(t *testing.T, s *Store) map[nii.Hash]struct{} {
	t.Helper()
	m, _, err := s.referenced(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestGCSparesLeasedChunks is the window GC must not fall into: a publish
// whose chunks were all stored by an earlier, abandoned ingest finds them
// held and writes nothing, then GC runs before it commits. Its lease keeps
// them; without a lease the commit refuses rather than naming a chunk that
// is gone.
func TestGCSparesLeasedChunks(t *testing.T) {
	s, db := openStore(t)
	sg := newSigner(t)
	d := nii.DatasetID{Org: "greenwich", Name: "spend"}
	data := randBytes(7, 2<<20)
	ctx := context.Background()
	if _, _, err := s.Ingest(ctx, bytes.NewReader(data)); err != nil { // abandoned
		t.Fatal(err)
	}
	stranded, _ := scanCounts(t, db)

	lease := s.NewLease()
	chunks, size, err := s.Ingest(WithLease(ctx, lease), bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.GC(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Chunks != 0 || res.Spared != stranded {
		t.Fatalf("GC with the publish's lease held: deleted %d, spared %d; want 0 and %d", res.Chunks, res.Spared, stranded)
	}
	rec, err := s.Publish(d, func(v uint64) (*nii.SignedManifest, error) { return sg.manifest(t, d, v, chunks, size), nil })
	if err != nil {
		t.Fatal(err)
	}
	lease.Release()
	if got := readAll(t, s, rec); !bytes.Equal(got, data) {
		t.Fatal("published version does not read back")
	}

	// No lease: GC between ingest and commit takes the chunks, and the
	// commit says so.
	other := randBytes(8, 1<<20)
	chunks, size, err = s.Ingest(ctx, bytes.NewReader(other))
	if err != nil {
		t.Fatal(err)
	}
	res, err = s.GC(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Chunks == 0 {
		t.Fatal("GC deleted none of an unleased, uncommitted ingest's chunks")
	}
	_, err = s.Publish(d, func(v uint64) (*nii.SignedManifest, error) { return sg.manifest(t, d, v, chunks, size), nil })
	if !errors.Is(err, nii.ErrNotFound) {
		t.Fatalf("commit after its chunks were collected: %v, want ErrNotFound", err)
	}
	checkExactCounts(t, s, db)
}

// TestGCRacingPublishes runs collections back to back while publishes
// (some sharing chunks with abandoned ingests, so that they find chunks
// held rather than write them) commit, then checks every committed version
// reads back whole, and that a last collection leaves exactly the chunks
// the versions name.
func TestGCRacingPublishes(t *testing.T) {
	db, err := badger.Open(badger.DefaultOptions(t.TempDir()).WithLogger(nil).WithValueThreshold(1 << 10).
		WithMemTableSize(8 << 20).WithValueLogFileSize(16 << 20))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	p := chunker.Params{Min: 1 << 10, Avg: 4 << 10, Max: 16 << 10}
	s, err := NewStore(db, p)
	if err != nil {
		t.Fatal(err)
	}
	sg := newSigner(t)
	ctx := context.Background()
	rounds := 12
	if testing.Short() {
		rounds = 4
	}
	var (
		mu        sync.Mutex
		committed = map[*VersionRecord][]byte{}
		stop      atomic.Bool
		gcs       atomic.Int64
		collected atomic.Int64
		wg        sync.WaitGroup
	)
	gcErr := make(chan error, 1)
	go func() {
		defer close(gcErr)
		for !stop.Load() {
			res, err := s.GC(ctx)
			if err != nil {
				gcErr <- err
				return
			}
			gcs.Add(1)
			collected.Add(res.Chunks)
		}
	}()
	errs := make(chan error, 4*rounds)
	for w := range 4 {
		wg.Go(func() {
			d := nii.DatasetID{Org: "greenwich", Name: "spend-" + string(rune('a'+w))}
			for i := range rounds {
				data := randBytes(uint64(100*w+i), 600<<10+i*1024)
				// An abandoned ingest of most of the file first.
				if _, _, err := s.Ingest(ctx, bytes.NewReader(data[:len(data)*3/4])); err != nil {
					errs <- err
					return
				}
				lease := s.NewLease()
				chunks, size, err := s.Ingest(WithLease(ctx, lease), bytes.NewReader(data))
				if err != nil {
					lease.Release()
					errs <- err
					return
				}
				rec, err := s.Publish(d, func(v uint64) (*nii.SignedManifest, error) { return sg.manifest(t, d, v, chunks, size), nil })
				lease.Release()
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				committed[rec] = data
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	stop.Store(true)
	if err := <-gcErr; err != nil {
		t.Fatal(err)
	}
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for rec, data := range committed {
		if got := readAll(t, s, rec); !bytes.Equal(got, data) {
			t.Fatalf("%s lost content to a collection", rec.Ref)
		}
	}
	res, err := s.GC(ctx)
	if err != nil {
		t.Fatal(err)
	}
	chunks, _ := scanCounts(t, db)
	if want := int64(len(referencedChunks(t, s))); chunks != want {
		t.Fatalf("after a quiet collection %d chunks remain, the versions name %d", chunks, want)
	}
	checkExactCounts(t, s, db)
	t.Logf("%d versions, %d collections during the publishes deleted %d chunks; the last deleted %d (%d bytes), spared %d",
		len(committed), gcs.Load(), collected.Load(), res.Chunks, res.Bytes, res.Spared)
	if gcs.Load() < 2 {
		t.Fatalf("only %d collections ran during the publishes: the race was not exercised", gcs.Load())
	}
}

// checkExactCounts compares the kept counts with a scan that reads every
// value's length (badger's ValueSize only estimates it).
func checkExactCounts(t *testing.T, s *Store, db *badger.DB) {
	t.Helper()
	var chunks, size int64
	err := db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefixChunk})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			chunks++
			size += chunkItemExactSize(it.Item())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	st, err := s.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Chunks != chunks || st.ChunkBytes != size {
		t.Fatalf("Stats counts %d chunks, %d bytes; a scan finds %d, %d", st.Chunks, st.ChunkBytes, chunks, size)
	}
}

// TestGCRacingPulls pulls versions into a store that already holds some of
// their chunks unreferenced (an abandoned ingest, as an interrupted pull
// leaves), with collections running back to back: the pulls rely on
// finding those chunks held, and every version must still read back whole.
func TestGCRacingPulls(t *testing.T) {
	pub, _ := openStore(t)
	sg := newSigner(t)
	ctx := context.Background()
	var recs []*VersionRecord
	var datas [][]byte
	for i := range 6 {
		d := nii.DatasetID{Org: "greenwich", Name: "spend-" + string(rune('a'+i))}
		data := randBytes(uint64(50+i), 2<<20)
		recs, datas = append(recs, publish(t, pub, sg, d, data)), append(datas, data)
	}
	server, puller := newPullHost(t), newPullHost(t)
	server.ServeContent(pub, allow)
	puller.AddPeerAddrs(server.ID(), server.Addrs())

	dst, db := openStore(t)
	for _, data := range datas {
		if _, _, err := dst.Ingest(ctx, bytes.NewReader(data[:len(data)/2])); err != nil {
			t.Fatal(err)
		}
	}
	var stop atomic.Bool
	var gcs atomic.Int64
	gcErr := make(chan error, 1)
	go func() {
		defer close(gcErr)
		for !stop.Load() {
			if _, err := dst.GC(ctx); err != nil {
				gcErr <- err
				return
			}
			gcs.Add(1)
		}
	}()
	var wg sync.WaitGroup
	errs := make(chan error, len(recs))
	for _, rec := range recs {
		wg.Go(func() {
			_, err := Pull(ctx, puller, dst, PullRequest{Ref: rec.Ref, Manifest: rec.Manifest, Publisher: sg.id, Providers: []nii.NodeID{server.ID()}})
			errs <- err
		})
	}
	wg.Wait()
	stop.Store(true)
	if err := <-gcErr; err != nil {
		t.Fatal(err)
	}
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	for i, rec := range recs {
		got, err := dst.Version(rec.Ref)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(readAll(t, dst, got), datas[i]) {
			t.Fatalf("%s lost content to a collection", rec.Ref)
		}
	}
	if gcs.Load() < 2 {
		t.Fatalf("only %d collections ran during the pulls", gcs.Load())
	}
	checkExactCounts(t, dst, db)
}
