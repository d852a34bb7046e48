package exchange

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/exchange/chunker"
)

func openStore(t *testing.T) (*Store, *badger.DB) {
	t.Helper()
	db, err := badger.Open(badger.DefaultOptions(t.TempDir()).WithLogger(nil).WithValueThreshold(1 << 10))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
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

func newSigner() signer {
	pub, priv, _ := ed25519.GenerateKey(nil)
	return signer{priv, nii.NodeIDFromPublicKey(pub)}
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
	sg := newSigner()
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
	sg := newSigner()
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
	sg := newSigner()
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
	s, db := openStore(t)
	sg := newSigner()
	d := nii.DatasetID{Org: "greenwich", Name: "spend"}
	data := randBytes(3, 1<<20)
	rec := publish(t, s, sg, d, data)
	m, err := s.OpenManifest(rec)
	if err != nil {
		t.Fatal(err)
	}
	victim := m.Chunks[len(m.Chunks)/2].Hash
	err = db.Update(func(txn *badger.Txn) error {
		item, err := txn.Get(chunkKey(victim))
		if err != nil {
			return err
		}
		b, _ := item.ValueCopy(nil)
		b[10] ^= 0xff
		return txn.Set(chunkKey(victim), b)
	})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := s.WriteTo(context.Background(), rec, &buf); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("WriteTo over a corrupt chunk: %v, want ErrCorrupt", err)
	}
	if buf.Len() >= len(data) {
		t.Fatal("the corrupt chunk's bytes were written")
	}
}
