package exchange

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/dgraph-io/badger/v4"
	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/exchange/chunker"
	"github.com/nii-uk/nii/internal/niitest"
)

func TestRecentLocsKeepsTheNewest(t *testing.T) {
	var r recentLocs
	ptr := func(i int) packPtr { return packPtr{pack: 1, off: int64(i), size: 10, format: ptrFormat} }
	hash := func(i int) nii.Hash { return nii.HashOf([]byte{byte(i), byte(i >> 8), byte(i >> 16)}) }
	for i := range locsMax + 10 {
		r.put(hash(i), ptr(i))
	}
	if p, ok := r.get(hash(0)); !ok || p != ptr(0) {
		t.Fatalf("the first location, one generation back: %v %v", p, ok)
	}
	if p, ok := r.get(hash(locsMax + 9)); !ok || p != ptr(locsMax+9) {
		t.Fatalf("the newest location: %v %v", p, ok)
	}
	for i := locsMax + 10; i < 2*locsMax+10; i++ {
		r.put(hash(i), ptr(i))
	}
	if _, ok := r.get(hash(0)); ok {
		t.Fatal("a location two generations back is still kept")
	}
	if n := r.size(); n > 2*locsMax {
		t.Fatalf("%d locations kept, the bound is %d", n, 2*locsMax)
	}

	// A chunk written again is where it was written last, once.
	h := hash(locsMax + 20)
	r.put(h, ptr(7))
	if p, _ := r.get(h); p != ptr(7) {
		t.Fatalf("rewritten chunk at %v, want %v", p, ptr(7))
	}
	r.forget(h)
	if _, ok := r.get(h); ok {
		t.Fatal("forgotten location still kept")
	}
	// Frames without a CRC are not kept: their bytes are checked only by
	// hashing them.
	old := hash(3 * locsMax)
	r.put(old, packPtr{pack: 1, size: 10, format: ptrFormatV1})
	if _, ok := r.get(old); ok {
		t.Fatal("a frame without a CRC was kept")
	}
}

// TestChunkReadsWhereItWasWritten: a chunk just written is read from where
// it was written without the index: with its index entry deleted behind
// the store's back, the read still returns its bytes (what a hint may do:
// the frame's hash, size and CRC say they are the chunk's). A hint naming
// the wrong frame is caught by the frame's checks: the read goes to the
// index, returns the right bytes and drops nothing.
func TestChunkReadsWhereItWasWritten(t *testing.T) {
	s, db := openStore(t)
	sg := newSigner(t)
	data := randBytes(31, 1<<20)
	rec := publish(t, s, sg, nii.DatasetID{Org: "greenwich", Name: "spend"}, data)
	m := mustManifest(t, s, rec)
	for _, c := range m.Chunks {
		if _, ok := s.locs.get(c.Hash); !ok {
			t.Fatalf("chunk %s was written but its location is not kept", c.Hash)
		}
	}
	a, b := m.Chunks[0].Hash, m.Chunks[1].Hash
	want := func(h nii.Hash) []byte {
		t.Helper()
		got, err := s.Chunk(h)
		if err != nil || nii.HashOf(got) != h {
			t.Fatalf("chunk %s: %v", h, err)
		}
		return got
	}

	// Stale hint: b's hint names a's frame.
	pa, _ := s.locs.get(a)
	s.locs.put(b, pa)
	before, _ := s.Stats()
	want(b)
	if p, ok := s.locs.get(b); ok {
		t.Fatalf("a hint that named another frame is still kept: %v", p)
	}
	if after, _ := s.Stats(); after.Chunks != before.Chunks {
		t.Fatalf("chunks %d after reading through a stale hint, %d before: a good chunk was dropped", after.Chunks, before.Chunks)
	}
	if ok, _ := s.HasChunk(b); !ok {
		t.Fatal("reading through a stale hint dropped the chunk")
	}

	// The read that skips the index.
	if err := db.Update(func(txn *badger.Txn) error { return txn.Delete(chunkKey(a)) }); err != nil {
		t.Fatal(err)
	}
	if got := want(a); len(got) != int(m.Chunks[0].Size) {
		t.Fatalf("%d bytes, want %d", len(got), m.Chunks[0].Size)
	}
	// Forgotten, the chunk is as the index says: gone.
	s.locs.forget(a)
	if _, err := s.Chunk(a); !errors.Is(err, nii.ErrNotFound) {
		t.Fatalf("chunk with no index entry and no hint: %v, want ErrNotFound", err)
	}
}

// TestDeletesForgetLocations: a chunk the GC deletes, or a damaged one
// dropped, is forgotten with its index entry.
func TestDeletesForgetLocations(t *testing.T) {
	s, _ := openStore(t)
	ctx := context.Background()
	chunks, _, err := s.Ingest(ctx, bytes.NewReader(randBytes(32, 1<<20))) // never published
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s.locs.get(chunks[0].Hash); !ok {
		t.Fatal("an ingested chunk's location is not kept")
	}
	if res, err := s.GC(ctx); err != nil || res.Chunks != int64(len(chunks)) {
		t.Fatalf("GC: %+v %v; want all %d chunks deleted", res, err, len(chunks))
	}
	for _, c := range chunks {
		if _, ok := s.locs.get(c.Hash); ok {
			t.Fatalf("chunk %s deleted by the GC is still remembered", c.Hash)
		}
	}

	sg := newSigner(t)
	rec := publish(t, s, sg, nii.DatasetID{Org: "greenwich", Name: "spend"}, randBytes(33, 1<<20))
	victim := mustManifest(t, s, rec).Chunks[2].Hash
	flipChunkByte(t, s, victim, 10)
	if _, err := s.Chunk(victim); !errors.Is(err, nii.ErrCorrupt) {
		t.Fatalf("damaged chunk read: %v, want ErrCorrupt", err)
	}
	if _, ok := s.locs.get(victim); ok {
		t.Fatal("a chunk dropped as damaged is still remembered")
	}
	if ok, _ := s.HasChunk(victim); ok {
		t.Fatal("the damaged chunk was not dropped")
	}
}

// BenchmarkServeRead reads every chunk of a 1 GiB ingest as the content
// server does (readChunk into a reused buffer: the pack read and the CRC),
// with the locations remembered (hint) and forgotten first (index: the
// badger lookup each read made before), in one run, alternating. Per
// chunk; the difference is the lookup's cost.
//
//	go test ./exchange -run XXX -bench ServeRead -benchtime 5x -count 3
func BenchmarkServeRead(b *testing.B) {
	s, err := NewStore(niitest.DiskDB(b), chunker.Default())
	if err != nil {
		b.Fatal(err)
	}
	chunks, _, err := s.Ingest(context.Background(), bytes.NewReader(randBytes(34, 1<<30)))
	if err != nil {
		b.Fatal(err)
	}
	hints := make([]packPtr, len(chunks))
	for i, c := range chunks {
		hints[i], _ = s.locs.get(c.Hash)
	}
	var buf []byte
	dst := func(pre, size int) []byte {
		if cap(buf) < pre+size {
			buf = make([]byte, pre+size)
		}
		return buf[:pre+size]
	}
	readAll := func(b *testing.B) {
		for _, c := range chunks {
			if _, err := s.readChunk(c.Hash, dst); err != nil {
				b.Fatal(err)
			}
		}
	}
	readAll(b) // the page cache warm for both
	for _, mode := range []string{"hint", "index", "hint", "index"} {
		b.Run(mode, func(b *testing.B) {
			for b.Loop() {
				b.StopTimer()
				for i, c := range chunks {
					if mode == "hint" {
						s.locs.put(c.Hash, hints[i])
					} else {
						s.locs.forget(c.Hash)
					}
				}
				b.StartTimer()
				readAll(b)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(chunks)), "ns/chunk")
		})
	}
}
