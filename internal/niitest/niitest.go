// Package niitest holds the two fixtures every package's tests share: a
// badger store (in memory, or on disk under a test's temporary directory)
// and a fresh Ed25519 node key. One copy of each, so that a change of
// badger options or key type happens in one place.
package niitest

import (
	"crypto/ed25519"
	"testing"

	"github.com/dgraph-io/badger/v4"
	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/internal/storeopts"
)

// MemDB opens an in-memory badger for fast unit tests (the node tests run
// the same code over on-disk badger) and closes it when the test ends.
func MemDB(tb testing.TB) *badger.DB {
	tb.Helper()
	db, err := badger.Open(badger.DefaultOptions("").WithInMemory(true).WithLogger(nil).
		WithMemTableSize(8 << 20).WithValueThreshold(256 << 10).WithBlockCacheSize(1 << 20).WithIndexCacheSize(1 << 20))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	return db
}

// OpenDB opens (or creates) an on-disk badger in dir with the options the
// node's store opens with (internal/storeopts), for tests that close and
// reopen a store. The caller closes it; Close is idempotent in badger, so
// a test may also close it early.
func OpenDB(tb testing.TB, dir string) *badger.DB {
	tb.Helper()
	db, err := badger.Open(storeopts.Badger(dir, false).WithLogger(nil))
	if err != nil {
		tb.Fatal(err)
	}
	return db
}

// DiskDB opens an on-disk badger in a fresh temporary directory and closes
// it when the test ends.
func DiskDB(tb testing.TB) *badger.DB {
	tb.Helper()
	db := OpenDB(tb, tb.TempDir())
	tb.Cleanup(func() { db.Close() })
	return db
}

// Key makes a fresh Ed25519 key and the node ID it names.
func Key(tb testing.TB) (ed25519.PrivateKey, nii.NodeID) {
	tb.Helper()
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		tb.Fatal(err) // the system's randomness failed
	}
	return priv, nii.NodeIDFromPublicKey(pub)
}
