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
	put := func(from, to int) {
		r.putAll(r.since(), to-from, func(i int) (nii.Hash, packPtr) { return hash(from + i), ptr(from + i) })
	}
	put(0, locsMax+10)
	if p, ok := r.get(hash(0)); !ok || p != ptr(0) {
		t.Fatalf("the first location, one generation back: %v %v", p, ok)
	}
	if p, ok := r.get(hash(locsMax + 9)); !ok || p != ptr(locsMax+9) {
		t.Fatalf("the newest location: %v %v", p, ok)
	}
	put(locsMax+10, 2*locsMax+10)
	if _, ok := r.get(hash(0)); ok {
		t.Fatal("a location two generations back is still kept")
	}
	if n := r.size(); n > 2*locsMax {
		t.Fatalf("%d locations kept, the bound is %d", n, 2*locsMax)
	}

	// A chunk written again is where it was written last, once.
	h := hash(locsMax + 20)
	r.putAll(r.since(), 1, func(int) (nii.Hash, packPtr) { return h, ptr(7) })
	if p, _ := r.get(h); p != ptr(7) {
		t.Fatalf("rewritten chunk at %v, want %v", p, ptr(7))
	}
	r.drop(h)
	if _, ok := r.get(h); ok {
		t.Fatal("dropped location still kept")
	}
	// A writer whose commit a delete may have overtaken records nothing;
	// a stale hint dropped is not a delete.
	e := r.since()
	r.drop(hash(1))
	r.forget(hash(2))
	fresh := hash(3 * locsMax)
	r.putAll(e, 1, func(int) (nii.Hash, packPtr) { return fresh, ptr(1) })
	if _, ok := r.get(fresh); ok {
		t.Fatal("a location recorded across a delete was kept")
	}
	e = r.since()
	r.drop(hash(4))
	r.putAll(e, 1, func(int) (nii.Hash, packPtr) { return fresh, ptr(1) })
	if _, ok := r.get(fresh); !ok {
		t.Fatal("a stale hint's drop stopped a writer's locations being kept")
	}
	// Frames without a CRC are not kept: their bytes are checked only by
	// hashing them.
	old := hash(3*locsMax + 1)
	r.putAll(r.since(), 1, func(int) (nii.Hash, packPtr) { return old, packPtr{pack: 1, size: 10, format: ptrFormatV1} })
	if _, ok := r.get(old); ok {
		t.Fatal("a frame without a CRC was kept")
	}
}

// reuse is a readChunk destination, as the content server's.
func reuse() func(pre, size int) []byte {
	var buf []byte
	return func(pre, size int) []byte {
		if cap(buf) < pre+size {
			buf = make([]byte, pre+size)
		}
		return buf[:pre+size]
	}
}

// TestServeReadsWhereItWasWritten: the content server reads a chunk just
// written from where it was written, without the index: with the chunk's
// index entry deleted behind the store's back, readChunk still returns its
// bytes, while the store check (through the index alone) reports the
// chunk missing. A hint naming the wrong frame is caught by the frame's
// checks: the read goes to the index, returns the right bytes and drops
// nothing.
func TestServeReadsWhereItWasWritten(t *testing.T) {
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
	a, b := m.Chunks[0], m.Chunks[1]
	serve := func(c nii.ChunkRef) []byte {
		t.Helper()
		got, err := s.readChunk(c.Hash, reuse())
		if err != nil || nii.HashOf(got) != c.Hash {
			t.Fatalf("chunk %s: %v", c.Hash, err)
		}
		return got
	}

	// Stale hint: b's names a's frame.
	pa, _ := s.locs.get(a.Hash)
	s.locs.putAll(s.locs.since(), 1, func(int) (nii.Hash, packPtr) { return b.Hash, pa })
	before, _ := s.Stats()
	serve(b)
	if p, ok := s.locs.get(b.Hash); ok {
		t.Fatalf("a hint that named another frame is still kept: %v", p)
	}
	if after, _ := s.Stats(); after.Chunks != before.Chunks {
		t.Fatalf("chunks %d after reading through a stale hint, %d before: a good chunk was dropped", after.Chunks, before.Chunks)
	}

	// The read that skips the index.
	if err := db.Update(func(txn *badger.Txn) error { return txn.Delete(chunkKey(a.Hash)) }); err != nil {
		t.Fatal(err)
	}
	serve(a)
	if _, err := s.Chunk(a.Hash); !errors.Is(err, nii.ErrNotFound) {
		t.Fatalf("Chunk of a chunk with no index entry: %v, want ErrNotFound (it reads through the index)", err)
	}
	rep, err := s.Verify(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Damaged) != 1 || rep.Damaged[0].Missing != 1 {
		t.Fatalf("store check: %+v, want the version missing one chunk", rep.Damaged)
	}
}

// TestLostConflictKeepsTheIndexedLocation: two pull writers store the same
// chunk and the second loses the conflict (it finds the chunk held and
// records nothing). The hint names the frame the index does, not the
// loser's dead copy, so damage to the indexed frame is caught by the next
// read and the chunk dropped.
func TestLostConflictKeepsTheIndexedLocation(t *testing.T) {
	s, _ := openStore(t)
	data := randBytes(42, 40<<10)
	c := Chunk{Hash: nii.HashOf(data), Data: data}
	w1, w2 := s.newSyncedWriterDelay(0), s.newSyncedWriterDelay(0)
	defer w1.close()
	defer w2.close()
	var gs []*writtenGroup
	for _, w := range []*syncedWriter{w1, w2} {
		g, err := w.write([]Chunk{c})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.packs.sync(g.p); err != nil {
			t.Fatal(err)
		}
		gs = append(gs, g)
	}
	if gs[0].ptrs[0] == gs[1].ptrs[0] {
		t.Fatal("both writers wrote the same frame")
	}
	for i, w := range []*syncedWriter{w1, w2} {
		n, size, err := w.commit(gs[i])
		s.packs.done(gs[i].p)
		s.counts.end(n, size)
		if err != nil {
			t.Fatal(err)
		}
		if i == 1 && n != 0 {
			t.Fatalf("the second writer recorded %d chunks; it should have lost the conflict", n)
		}
	}
	if p, ok := s.locs.get(c.Hash); !ok || p != gs[0].ptrs[0] {
		t.Fatalf("hint %v (%v) after the lost conflict; want the indexed frame %v, not the dead copy %v", p, ok, gs[0].ptrs[0], gs[1].ptrs[0])
	}
	flipChunkByte(t, s, c.Hash, 100)
	if _, err := s.readChunk(c.Hash, reuse()); !errors.Is(err, nii.ErrCorrupt) {
		t.Fatalf("serving the chunk whose indexed frame is damaged: %v, want ErrCorrupt", err)
	}
	if ok, _ := s.HasChunk(c.Hash); ok {
		t.Fatal("the damaged chunk was not dropped")
	}
}

// TestDeletesForgetLocations: a chunk the GC deletes, one the repair
// deletes, or a damaged one dropped, is forgotten with its index entry.
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
	m := mustManifest(t, s, rec)
	gone := m.Chunks[1].Hash
	if err := s.deleteChunks([]nii.Hash{gone}); err != nil { // the repair's delete
		t.Fatal(err)
	}
	if _, ok := s.locs.get(gone); ok {
		t.Fatal("a chunk the repair deleted is still remembered")
	}
	victim := m.Chunks[2].Hash
	flipChunkByte(t, s, victim, 10)
	if _, err := s.readChunk(victim, reuse()); !errors.Is(err, nii.ErrCorrupt) {
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
	dst := reuse()
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
				if mode == "hint" {
					s.locs.putAll(s.locs.since(), len(chunks), func(i int) (nii.Hash, packPtr) { return chunks[i].Hash, hints[i] })
				} else {
					for _, c := range chunks {
						s.locs.drop(c.Hash)
					}
				}
				b.StartTimer()
				readAll(b)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(chunks)), "ns/chunk")
		})
	}
}
