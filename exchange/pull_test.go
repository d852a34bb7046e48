package exchange

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/nii-uk/nii"
)

// evilSource serves a real store but flips a byte in every chunk.
type evilSource struct{ *Store }

func (e evilSource) Chunk(h nii.Hash) ([]byte, error) {
	b, err := e.Store.Chunk(h)
	if err != nil {
		return nil, err
	}
	b = bytes.Clone(b)
	b[len(b)/2] ^= 0x40
	return b, nil
}

func allow(AccessRequest) error { return nil }

func newPullHost(t testing.TB) *Host {
	t.Helper()
	priv, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	h, err := NewHost(HostConfig{Key: priv, Listen: []string{"/ip4/127.0.0.1/tcp/0"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// TestPullDropsCorruptingProvider: a provider that corrupts chunks never
// gets a bad byte into the store, and the pull completes from an honest one.
func TestPullDropsCorruptingProvider(t *testing.T) {
	// One publisher store, served honestly by one host and corruptly by another.
	pubStore, _ := openStore(t)
	sg := newSigner(t)
	d := nii.DatasetID{Org: "greenwich", Name: "spend"}
	data := randBytes(11, 4<<20)
	rec := publish(t, pubStore, sg, d, data)

	honest, evil, puller := newPullHost(t), newPullHost(t), newPullHost(t)
	honest.ServeContent(pubStore, allow)
	evil.ServeContent(evilSource{pubStore}, allow)
	puller.AddPeerAddrs(honest.ID(), honest.Addrs())
	puller.AddPeerAddrs(evil.ID(), evil.Addrs())

	dst, _ := openStore(t)
	res, err := Pull(context.Background(), puller, dst, PullRequest{
		Ref: rec.Ref, Manifest: rec.Manifest, Publisher: sg.id,
		Providers: []nii.NodeID{evil.ID(), honest.ID()}, InFlight: 4,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Dropped) == 0 || res.Dropped[0] != evil.ID() || res.Providers[evil.ID()] != 0 {
		t.Fatalf("the corrupting provider was not dropped: dropped %v, bytes %v", res.Dropped, res.Providers)
	}
	got := readAll(t, dst, res.Record)
	if !bytes.Equal(got, data) {
		t.Fatal("pulled content differs")
	}

	// With only the corrupting provider the pull fails and nothing is visible.
	dst2, _ := openStore(t)
	_, err = Pull(context.Background(), puller, dst2, PullRequest{Ref: rec.Ref, Manifest: rec.Manifest, Publisher: sg.id, Providers: []nii.NodeID{evil.ID()}})
	if !errors.Is(err, ErrNoProvider) {
		t.Fatalf("pull from only a corrupting provider: %v, want ErrNoProvider", err)
	}
	if _, err := dst2.Version(rec.Ref); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a failed pull left a version visible: %v", err)
	}
	if st, _ := dst2.Stats(); st.Chunks != 0 {
		t.Fatalf("a corrupting provider got %d chunks into the store", st.Chunks)
	}

	// A manifest that is not the advertised one is refused.
	_, err = Pull(context.Background(), puller, dst2, PullRequest{Ref: rec.Ref, Manifest: nii.HashOf([]byte("other")), Providers: []nii.NodeID{honest.ID()}})
	if !errors.Is(err, ErrNoProvider) {
		t.Fatalf("pull with a mismatched manifest: %v", err)
	}
}
