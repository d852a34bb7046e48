package node_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/auth"
	"github.com/nii-uk/nii/exchange"
	"github.com/nii-uk/nii/node"
	"github.com/nii-uk/nii/node/nodetest"
)

// stranger is a libp2p host with a fresh key that never joined gossip: it
// knows a node's addresses, as anyone who can reach the port does.
func stranger(t *testing.T, target *node.Node) *exchange.Host {
	t.Helper()
	k, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	h, err := exchange.NewHost(exchange.HostConfig{Key: k, Listen: []string{"/ip4/127.0.0.1/tcp/0"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	h.AddPeerAddrs(target.ID(), target.P2PAddrs())
	return h
}

// refusedContent tries target's libp2p protocols from h: a catalog page of
// target's own records (which must be refused as not_member if catalog is
// set, and served otherwise), the manifest of ref and its first chunk
// (refused as not_member).
func refusedContent(t *testing.T, h *exchange.Host, target *node.Node, ref nii.Ref, manifest nii.Hash, chunk nii.Hash, who string, catalog bool) {
	t.Helper()
	ctx := context.Background()
	check := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, nii.ErrRefused) || nii.ReasonOf(err) != auth.ReasonNotMember {
			t.Errorf("%s asked for %s: %v; want refused (%s)", who, what, err, auth.ReasonNotMember)
		}
	}
	recs, _, _, err := h.FetchCatalogPage(ctx, target.ID(), target.ID(), 0, 100)
	switch {
	case catalog:
		check("catalog pages", err)
		if len(recs) != 0 {
			t.Errorf("%s got %d catalog records", who, len(recs))
		}
	case err != nil || len(recs) == 0:
		t.Errorf("%s, a member in gossip, was refused catalog pages: %v (%d records)", who, err, len(recs))
	}
	_, _, _, err = h.FetchManifest(ctx, target.ID(), exchange.ManifestRequest{Dataset: ref.Dataset, Version: ref.Version})
	check("a manifest", err)
	got := 0
	err = h.FetchChunks(ctx, target.ID(), exchange.ChunkRequest{Manifest: manifest, Hashes: []nii.Hash{chunk}},
		func(nii.Hash, []byte) error { got++; return nil }, func(nii.Hash) {})
	check("chunks", err)
	if got != 0 {
		t.Errorf("%s got %d chunks", who, got)
	}
}

// In a federation with a gossip key, a node with a fresh key that never
// joined gossip is refused catalog pages, manifests and chunks of open
// data, while members read them; the data stays reachable over the HTTP
// read API.
func TestStrangerRefusedOnLibp2p(t *testing.T) {
	key := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))
	nodes := nodetest.Federation(t, 2, nodetest.Options{GossipKeys: []string{key}})
	pub, member := nodes[0], nodes[1]
	data := randBytes(11, 300<<10)
	ref := publishData(t, pub, "spend", data, nii.AccessOpen)
	rec, err := pub.Store().Version(*ref)
	if err != nil {
		t.Fatal(err)
	}
	m, err := pub.Store().OpenManifest(rec)
	if err != nil {
		t.Fatal(err)
	}
	refusedContent(t, stranger(t, pub), pub, *ref, rec.Manifest, m.Chunks[0].Hash, "a stranger", true)

	waitListed(t, member, ref.Dataset.String(), 1)
	if _, err := member.Pull(context.Background(), *ref, node.PullOptions{}); err != nil {
		t.Fatalf("a member's pull: %v", err)
	}
	code, _, body := fetch(t, "GET", fmt.Sprintf("%s/api/v1/datasets/%s/versions/1/download", pub.APIAddr(), ref.Dataset), nil)
	if code != 200 || !bytes.Equal(body, data) {
		t.Fatalf("open data over HTTP: %d, %d bytes", code, len(body))
	}
}

// Where nodes have trust anchors, a member is an enrolled node: one in
// gossip without a membership credential gets catalog pages (it has the
// records by broadcast anyway) but is refused content, open data included;
// an enrolled one is served; the refusal is audited.
func TestUnenrolledMemberRefusedWhereAnchorsExist(t *testing.T) {
	admin, _ := auth.GenerateKey()
	anchor := base64.RawURLEncoding.EncodeToString(admin.Public().(ed25519.PublicKey))
	orgs := []string{"greenwich", "lambeth", "southwark"}
	nodes := nodetest.Federation(t, 3, nodetest.Options{Configure: func(i int, cfg *node.Config) {
		cfg.Org = orgs[i]
		cfg.Trust = []node.TrustAnchor{{Name: "admin", Key: anchor}}
	}})
	pub, enrolled, unenrolled := nodes[0], nodes[1], nodes[2]
	for _, n := range []*node.Node{pub, enrolled} {
		cred, _, err := auth.IssueCredential(admin, n.Config().Federation, n.ID(), n.Config().Org, "", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := n.InstallCredential(cred); err != nil {
			t.Fatal(err)
		}
	}
	ref := publishData(t, pub, "spend", randBytes(12, 200<<10), nii.AccessOpen)
	rec, _ := pub.Store().Version(*ref)
	m, _ := pub.Store().OpenManifest(rec)
	waitListed(t, unenrolled, ref.Dataset.String(), 1)
	waitListed(t, enrolled, ref.Dataset.String(), 1)

	refusedContent(t, unenrolled.HostForTest(), pub, *ref, rec.Manifest, m.Chunks[0].Hash, "an unenrolled member", false)
	_, err := unenrolled.Pull(context.Background(), *ref, node.PullOptions{})
	if !errors.Is(err, nii.ErrRefused) || !strings.Contains(err.Error(), auth.ReasonNotMember) {
		t.Fatalf("an unenrolled member's pull: %v; want refused (%s)", err, auth.ReasonNotMember)
	}
	if _, err := enrolled.Pull(context.Background(), *ref, node.PullOptions{}); err != nil {
		t.Fatalf("an enrolled member's pull: %v", err)
	}
	recs, _, _ := pub.Audit(auth.AuditQuery{Limit: 1000})
	audited := false
	for _, r := range recs {
		audited = audited || (r.Node == unenrolled.ID() && r.Reason == auth.ReasonNotMember && r.Result == auth.Refused)
	}
	if !audited {
		t.Fatalf("the publisher's audit log lacks the refusal of the unenrolled member: %+v", recs)
	}
}
