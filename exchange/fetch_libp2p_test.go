package exchange

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nii-uk/nii"
)

// TestRetryRoundRedialsPastBackoff: a dial that fails puts the address in
// libp2p's dial backoff (5 s and more), so a retry round that only asked
// again would fail at once; NewFetch's retry rounds dial again. The
// publisher is down at the first dial and back on the same address (same
// key, same port) before the retry.
func TestRetryRoundRedialsPastBackoff(t *testing.T) {
	s, _ := openStore(t)
	sg := newSigner(t)
	rec := publish(t, s, sg, spend, randBytes(21, 256<<10))
	key := newTestKey(t)

	first, err := NewHost(HostConfig{Key: key, Listen: []string{loopTCP}})
	if err != nil {
		t.Fatal(err)
	}
	id, addrs := first.ID(), first.Addrs()
	listen := strings.TrimSuffix(addrs[0], "/p2p/"+string(id))
	first.Close()

	client := newTestHost(t, nil, loopTCP)
	client.AddPeerAddrs(id, addrs)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, _, _, err := client.FetchManifest(ctx, id, ManifestRequest{Dataset: spend}); err == nil {
		t.Fatal("a manifest from a host that has closed")
	}

	again, err := NewHost(HostConfig{Key: key, Listen: []string{listen}})
	if err != nil {
		t.Fatalf("restarting the publisher on %s: %v", listen, err)
	}
	t.Cleanup(func() { again.Close() })
	again.ServeContent(newFakeContent(s), nil)

	// The premise: asking again at once meets the backoff.
	if _, _, _, err := client.FetchManifest(ctx, id, ManifestRequest{Dataset: spend}); err == nil || !strings.Contains(err.Error(), "backoff") {
		t.Fatalf("a plain redial within the backoff: %v (want libp2p's dial backoff; the test's premise)", err)
	}
	x, err := NewFetch(ctx, client, PullRequest{Ref: rec.Ref, Publisher: sg.id, Manifest: rec.Manifest,
		Providers: []nii.NodeID{id}, retryWait: 10 * time.Millisecond})
	if err != nil {
		t.Fatalf("a retry round did not redial past the backoff: %v", err)
	}
	if x.Hash != rec.Manifest {
		t.Fatalf("manifest %s, want %s", x.Hash, rec.Manifest)
	}
}
