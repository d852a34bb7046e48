package registrytest

import (
	"crypto/ed25519"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/internal/niitest"
)

// MemDB opens an in-memory badger and closes it when the test ends: the
// one in internal/niitest, named here so registry's tests keep one import.
func MemDB(tb testing.TB) *badger.DB { return niitest.MemDB(tb) }

// Ident is a node identity for tests: a fresh Ed25519 key and its node ID.
type Ident struct {
	ID  nii.NodeID
	Key ed25519.PrivateKey
}

// NewIdent makes a fresh identity.
func NewIdent() Ident {
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		panic(err) // the system's randomness failed
	}
	return Ident{nii.NodeIDFromPublicKey(pub), priv}
}

// Advert signs record seq of this origin: greenwich/name at version, titled
// title, open, keyword "spend".
func (o Ident) Advert(tb testing.TB, seq uint64, name string, version uint64, title string) *nii.SignedAdvert {
	tb.Helper()
	a := &nii.Advert{
		Origin: o.ID, Seq: seq, Dataset: nii.DatasetID{Org: "greenwich", Name: name}, Version: version,
		Manifest: nii.HashOf([]byte(name + title)), Signed: time.Now().UTC(),
		Meta: nii.Metadata{Title: title, Publisher: "greenwich", Access: nii.AccessOpen, Keywords: []string{"spend"}},
	}
	sa, err := nii.SignAdvert(a, o.Key)
	if err != nil {
		tb.Fatal(err)
	}
	return sa
}

// Tombstone signs record seq of this origin withdrawing greenwich/name.
func (o Ident) Tombstone(tb testing.TB, seq uint64, name string) *nii.SignedAdvert {
	tb.Helper()
	sa, err := nii.SignAdvert(&nii.Advert{Origin: o.ID, Seq: seq, Dataset: nii.DatasetID{Org: "greenwich", Name: name},
		Withdrawn: true, Signed: time.Now().UTC(), Meta: nii.Metadata{Publisher: "greenwich"}}, o.Key)
	if err != nil {
		tb.Fatal(err)
	}
	return sa
}
