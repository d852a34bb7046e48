package exchange

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/exchange/chunker"
	"github.com/nii-uk/nii/internal/niitest"
)

func openStore(t *testing.T) (*Store, *badger.DB) {
	t.Helper()
	db := niitest.DiskDB(t)
	s, err := NewStore(db, chunker.Default())
	if err != nil {
		t.Fatal(err)
	}
	return s, db
}

type signer struct {
	key ed25519.PrivateKey
	id  nii.NodeID
}

func newSigner(t testing.TB) signer {
	t.Helper()
	key, id := niitest.Key(t)
	return signer{key, id}
}

func (sg signer) manifest(t *testing.T, d nii.DatasetID, v uint64, chunks []nii.ChunkRef, size int64) *nii.SignedManifest {
	t.Helper()
	sm, _, err := nii.SignManifest(&nii.Manifest{
		Dataset: d, Version: v, Publisher: sg.id, Created: time.Now().UTC(), Size: size,
		Chunker: chunker.Default().String(), Chunks: chunks, Meta: nii.Metadata{Title: "t", Access: nii.AccessOpen},
	}, sg.key)
	if err != nil {
		t.Fatal(err)
	}
	return sm
}

func randBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func publish(t *testing.T, s *Store, sg signer, d nii.DatasetID, data []byte) *VersionRecord {
	t.Helper()
	chunks, size, err := s.Ingest(context.Background(), bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	rec, err := s.Publish(d, func(v uint64) (*nii.SignedManifest, error) {
		return sg.manifest(t, d, v, chunks, size), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

func readAll(t *testing.T, s *Store, rec *VersionRecord) []byte {
	t.Helper()
	var buf bytes.Buffer
	if _, err := s.WriteTo(context.Background(), rec, &buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestStoreRoundTrip(t *testing.T) {
	s, _ := openStore(t)
	sg := newSigner(t)
	p := chunker.Default()
	for i, n := range []int{0, 1, p.Min - 1, p.Min + 1, p.Max - 1, p.Max + 1, 3 << 20} {
		d := nii.DatasetID{Org: "greenwich", Name: fmt.Sprintf("f%d", i)}
		data := randBytes(uint64(n), n)
		rec := publish(t, s, sg, d, data)
		if rec.Ref.Version != 1 || rec.Size != int64(n) {
			t.Fatalf("n=%d: record %+v", n, rec)
		}
		got, err := s.Version(nii.Ref{Dataset: d, Version: 1})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(readAll(t, s, got), data) {
			t.Fatalf("n=%d: content differs after a round trip", n)
		}
	}
}

func TestStoreVersionsAndDedup(t *testing.T) {
	s, _ := openStore(t)
	sg := newSigner(t)
	d := nii.DatasetID{Org: "greenwich", Name: "spend"}
	data := randBytes(1, 4<<20)
	publish(t, s, sg, d, data)
	before, _ := s.Stats()
	// The same content again is a new version that stores no new chunk.
	rec := publish(t, s, sg, d, data)
	after, _ := s.Stats()
	if rec.Ref.Version != 2 || after.Chunks != before.Chunks || after.Versions != 2 || after.Datasets != 1 {
		t.Fatalf("second identical publish: version %d, chunks %d -> %d, stats %+v", rec.Ref.Version, before.Chunks, after.Chunks, after)
	}
	// Versions sort numerically past one byte.
	for range 300 {
		publish(t, s, sg, d, []byte("x"))
	}
	latest, err := s.Latest(d)
	if err != nil || latest.Ref.Version != 302 {
		t.Fatalf("Latest = %+v, %v; want version 302", latest, err)
	}
	all, _ := s.Versions(&d)
	for i, r := range all {
		if r.Ref.Version != uint64(i+1) {
			t.Fatalf("Versions()[%d] is version %d", i, r.Ref.Version)
		}
	}
	// A dataset whose name extends another's does not leak into its listing.
	publish(t, s, sg, nii.DatasetID{Org: "greenwich", Name: "spend-2"}, []byte("y"))
	if all2, _ := s.Versions(&d); len(all2) != 302 {
		t.Fatalf("listing greenwich/spend returned %d versions, want 302", len(all2))
	}
}

func TestStoreCommitChecks(t *testing.T) {
	s, _ := openStore(t)
	sg := newSigner(t)
	d := nii.DatasetID{Org: "greenwich", Name: "spend"}
	// A manifest naming a chunk the store lacks is refused.
	missing := []nii.ChunkRef{{Hash: nii.HashOf([]byte("absent")), Size: 6}}
	if _, err := s.Commit(sg.manifest(t, d, 1, missing, 6)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("commit with a missing chunk: %v, want ErrNotFound", err)
	}
	if _, err := s.Latest(d); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a refused commit left a version visible: %v", err)
	}
	chunks, size, _ := s.Ingest(context.Background(), bytes.NewReader([]byte("hello")))
	sm := sg.manifest(t, d, 1, chunks, size)
	if _, err := s.Commit(sm); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Commit(sm); err != nil {
		t.Fatalf("committing the same manifest twice: %v", err)
	}
	if _, err := s.Commit(sg.manifest(t, d, 1, chunks, size)); !errors.Is(err, ErrExists) {
		t.Fatalf("a different manifest for an existing version: %v, want ErrExists", err)
	}
	// A forged signature never reaches the store.
	forged := *sm
	forged.Sig = bytes.Clone(sm.Sig)
	forged.Sig[0] ^= 1
	if _, err := s.Commit(&forged); !errors.Is(err, nii.ErrBadSignature) {
		t.Fatalf("forged manifest: %v, want ErrBadSignature", err)
	}
	// PutChunk refuses bytes that do not match their name.
	if err := s.PutChunk(nii.HashOf([]byte("a")), []byte("b")); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("PutChunk with a wrong hash: %v, want ErrCorrupt", err)
	}
	if _, err := s.Version(nii.Ref{Dataset: d, Version: 9}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown version: %v", err)
	}
}

func TestStoreDetectsCorruptChunk(t *testing.T) {
	s, _ := openStore(t)
	sg := newSigner(t)
	d := nii.DatasetID{Org: "greenwich", Name: "spend"}
	data := randBytes(3, 1<<20)
	rec := publish(t, s, sg, d, data)
	m, err := s.OpenManifest(rec)
	if err != nil {
		t.Fatal(err)
	}
	victim := m.Chunks[len(m.Chunks)/2].Hash
	flipChunkByte(t, s, victim, 10)
	var buf bytes.Buffer
	if _, err := s.WriteTo(context.Background(), rec, &buf); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("WriteTo over a corrupt chunk: %v, want ErrCorrupt", err)
	}
	if buf.Len() >= len(data) {
		t.Fatal("the corrupt chunk's bytes were written")
	}
}

// scanCounts counts chunk keys the slow way, to check the kept counts.
func scanCounts(t *testing.T, db *badger.DB) (chunks, size int64) {
	t.Helper()
	err := db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefixChunk})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			chunks++
			size += chunkItemSize(it.Item())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return chunks, size
}

func checkCounts(t *testing.T, s *Store, db *badger.DB) {
	t.Helper()
	st, err := s.Stats()
	if err != nil {
		t.Fatal(err)
	}
	chunks, size := scanCounts(t, db)
	if st.Chunks != chunks || st.ChunkBytes != size {
		t.Fatalf("Stats counts %d chunks, %d bytes; a scan finds %d, %d", st.Chunks, st.ChunkBytes, chunks, size)
	}
}

// TestChunkCountsUnderConcurrentWrites stores overlapping content from
// several ingests and chunk puts (as concurrent publishes and pulls do)
// and checks the kept counts against a scan; then that they survive a
// close and reopen, and that a write after Close discards the saved counts.
func TestChunkCountsUnderConcurrentWrites(t *testing.T) {
	dir := t.TempDir()
	db := niitest.OpenDB(t, dir)
	defer func() { db.Close() }()
	p := chunker.Params{Min: 1 << 10, Avg: 4 << 10, Max: 16 << 10}
	s, err := NewStore(db, p)
	if err != nil {
		t.Fatal(err)
	}
	// Four files sharing most of their content, each ingested twice at once.
	base := randBytes(1, 3<<20)
	var files [][]byte
	for i := range 4 {
		f := bytes.Clone(base)
		copy(f[i*(700<<10):], randBytes(uint64(10+i), 200<<10))
		files = append(files, f)
	}
	// The chunks of the base, to put directly as a pull would.
	var direct []Chunk
	c, _ := chunker.New(bytes.NewReader(base), p)
	for {
		b, err := c.Next()
		if err != nil {
			break
		}
		direct = append(direct, Chunk{Hash: nii.HashOf(b), Data: b})
	}
	errs := make(chan error, 16)
	var wg sync.WaitGroup
	for _, f := range append(files, files...) {
		wg.Go(func() {
			_, _, err := s.Ingest(context.Background(), bytes.NewReader(f))
			errs <- err
		})
	}
	for i := range 4 {
		wg.Go(func() {
			for j := i; j < len(direct); j += 2 {
				if err := s.putChunks(direct[j : j+1]); err != nil {
					errs <- err
					return
				}
			}
			errs <- s.putChunks(direct)
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	checkCounts(t, s, db)
	if st, _ := s.Stats(); st.Chunks < int64(len(direct)) {
		t.Fatalf("%d chunks counted, want at least the base's %d", st.Chunks, len(direct))
	}

	// Saved at Close, read back at open without a scan.
	want, _ := s.Stats()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := NewStore(db, p)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := s2.Stats(); got != want {
		t.Fatalf("after reopen: %+v, want %+v", got, want)
	}
	// A write (by s, closed, or any other) discards the saved counts, so a
	// reopen counts afresh.
	if err := s.PutChunk(nii.HashOf([]byte("late")), []byte("late")); err != nil {
		t.Fatal(err)
	}
	s3, err := NewStore(db, p)
	if err != nil {
		t.Fatal(err)
	}
	checkCounts(t, s3, db)
	if got, _ := s3.Stats(); got.Chunks != want.Chunks+1 {
		t.Fatalf("after a late write: %d chunks, want %d", got.Chunks, want.Chunks+1)
	}
}

// flipChunkByte flips byte i of chunk h where it lives on disk, behind the
// store's back.
func flipChunkByte(t *testing.T, s *Store, h nii.Hash, i int) {
	t.Helper()
	path, off, _, err := s.ChunkFile(h)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off+int64(i)); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, off+int64(i)); err != nil {
		t.Fatal(err)
	}
}
