package node_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/auth"
	"github.com/nii-uk/nii/exchange"
	"github.com/nii-uk/nii/node"
	"github.com/nii-uk/nii/node/nodetest"
	"github.com/nii-uk/nii/registry"
)

// A federation with a trusted admin: Greenwich publishes a restricted
// dataset; Lambeth, enrolled and granted, pulls and follows it; Southwark,
// with neither, is refused; a revocation spreads and stops Lambeth too;
// every decision is in Greenwich's audit log.
func TestGrantsEnforcedAcrossTheFederation(t *testing.T) {
	admin, _ := auth.GenerateKey()
	pub := admin.Public().(ed25519.PublicKey)
	orgs := []string{"greenwich", "lambeth", "southwark"}
	nodes := nodetest.Federation(t, 3, nodetest.Options{Configure: func(i int, cfg *node.Config) {
		cfg.Org = orgs[i]
		cfg.Trust = []node.TrustAnchor{{Name: "test-admin", Key: base64.RawURLEncoding.EncodeToString(pub)}}
	}})
	greenwich, lambeth, southwark := nodes[0], nodes[1], nodes[2]
	fed := greenwich.Config().Federation
	for _, n := range []*node.Node{greenwich, lambeth} {
		cred, _, err := auth.IssueCredential(admin, fed, n.ID(), n.Config().Org, "", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := n.InstallCredential(cred); err != nil {
			t.Fatal(err)
		}
	}
	// A credential for another node, or from an untrusted key, is refused.
	other, _, _ := auth.IssueCredential(admin, fed, greenwich.ID(), "southwark", "", time.Hour)
	if _, err := southwark.InstallCredential(other); !errors.Is(err, nii.ErrInvalid) {
		t.Fatalf("southwark installed greenwich's credential: %v", err)
	}

	v1 := randBytes(7, 3<<20)
	ref := publishData(t, greenwich, "spend-2024", v1, nii.AccessRestricted)
	publishData(t, southwark, "spend", []byte("claimed,but,unproven\n"), nii.AccessOpen)
	nodetest.WaitFor(t, 15*time.Second, "lambeth lists greenwich's dataset as verified, southwark's as not", func() bool {
		g, err1 := lambeth.LookupDataset(ref.Dataset)
		s, err2 := lambeth.LookupDataset(nii.DatasetID{Org: "southwark", Name: "spend"}, registry.AllowUnverified())
		return err1 == nil && err2 == nil && g.Verified && g.Version == 1 && !s.Verified
	})
	// lambeth has trust anchors: southwark's unproven claim is not what
	// it lists or pulls unless asked to.
	if _, err := lambeth.LookupDataset(nii.DatasetID{Org: "southwark", Name: "spend"}); !errors.Is(err, registry.ErrUnverified) {
		t.Fatalf("lambeth looks up southwark's unverified claim without being asked: %v", err)
	}

	for _, p := range lambeth.PeerList() {
		if want := p.ID == greenwich.ID(); p.Verified != want {
			t.Fatalf("lambeth's peer list: %s (%s) verified=%v", p.Org, p.ID.Short(), p.Verified)
		}
	}

	// Where anchors exist only enrolled nodes are members (members.go):
	// southwark enrols now, so that what follows tests its grants.
	scred, _, _ := auth.IssueCredential(admin, fed, southwark.ID(), "southwark", "", time.Hour)
	if _, err := southwark.InstallCredential(scred); err != nil {
		t.Fatal(err)
	}

	grant, gc, err := auth.IssueGrant(admin, auth.GrantSpec{Federation: fed, Subject: "lambeth",
		Datasets: []string{"greenwich/spend-*"}, Actions: []nii.Action{"read", "sync"}, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := lambeth.Pull(ctx, *ref, node.PullOptions{Grant: grant}); err != nil {
		t.Fatalf("lambeth with a grant: %v", err)
	}
	if !bytes.Equal(exportAll(t, lambeth, *ref), v1) {
		t.Fatal("lambeth's copy differs")
	}
	// Over HTTP, restricted content goes only to the node's own operator.
	url := lambeth.APIAddr() + "/api/v1/datasets/greenwich/spend-2024/versions/1/content"
	for _, tc := range []struct {
		token string
		code  int
	}{{"", http.StatusForbidden}, {"wrong", http.StatusForbidden}, {lambeth.AdminToken(), http.StatusOK}} {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		if tc.token != "" {
			req.Header.Set("Authorization", "Bearer "+tc.token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.code || (tc.code == http.StatusOK && !bytes.Equal(body, v1)) {
			t.Fatalf("restricted content with token %q: %d", tc.token, resp.StatusCode)
		}
	}
	if _, err := southwark.Pull(ctx, *ref, node.PullOptions{}); !errors.Is(err, nii.ErrRefused) || !strings.Contains(err.Error(), auth.ReasonNoGrant) {
		t.Fatalf("southwark without a grant: %v", err)
	}
	if _, err := southwark.Pull(ctx, *ref, node.PullOptions{Grant: grant}); !errors.Is(err, nii.ErrRefused) || !strings.Contains(err.Error(), auth.ReasonSubject) {
		t.Fatalf("southwark with lambeth's grant: %v", err)
	}

	// Follow: v2 arrives by sync while the grant is valid.
	if _, err := lambeth.StartFollowing(ref.Dataset, grant); err != nil {
		t.Fatal(err)
	}
	v2 := append(append([]byte{}, v1...), randBytes(8, 200<<10)...)
	publishData(t, greenwich, "spend-2024", v2, nii.AccessRestricted)
	nodetest.WaitFor(t, 20*time.Second, "lambeth's follow syncs v2", func() bool {
		f := followOf(t, lambeth, ref.Dataset)
		return f != nil && f.Version == 2 && f.State == node.FollowSynced
	})

	// Revoke the grant on greenwich: it spreads to every node, and
	// lambeth's next pull and its follow are refused.
	rv, _, err := auth.IssueRevocation(admin, fed, gc.ID, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, isNew, err := greenwich.Revoke(rv); err != nil || !isNew {
		t.Fatalf("revoke: %v %v", isNew, err)
	}
	nodetest.WaitFor(t, 10*time.Second, "the revocation reaches every node", func() bool {
		for _, n := range nodes {
			if len(n.Revocations()) != 1 {
				return false
			}
		}
		return true
	})
	nodetest.WaitFor(t, 10*time.Second, "lambeth's follow stops as revoked", func() bool {
		f := followOf(t, lambeth, ref.Dataset)
		return f != nil && f.State == node.FollowGrantRevoked
	})
	publishData(t, greenwich, "spend-2024", append(v2, 'x'), nii.AccessRestricted)
	waitListed(t, lambeth, "greenwich/spend-2024", 3)
	if _, err := lambeth.Pull(ctx, nii.Ref{Dataset: ref.Dataset}, node.PullOptions{Grant: grant}); !errors.Is(err, nii.ErrRefused) || !strings.Contains(err.Error(), auth.ReasonRevoked) {
		t.Fatalf("lambeth after revocation: %v", err)
	}

	// A follow whose grant has expired stops at once, in a clear state.
	expired, _, _ := auth.IssueGrant(admin, auth.GrantSpec{Federation: fed, Subject: "lambeth",
		Datasets: []string{"greenwich/*"}, Actions: []nii.Action{"sync"}, NotBefore: time.Now().Add(-2 * time.Hour), TTL: time.Hour})
	if _, err := lambeth.StartFollowing(ref.Dataset, expired); err != nil {
		t.Fatal(err)
	}
	nodetest.WaitFor(t, 10*time.Second, "the follow stops as expired", func() bool {
		f := followOf(t, lambeth, ref.Dataset)
		return f != nil && f.State == node.FollowGrantExpired && strings.Contains(f.LastError, "expired")
	})

	// Authentic grants refused as expired, and tokens no anchor signed,
	// leave their grant ID in the audit log (the latter marked unverified).
	if _, err := lambeth.Pull(ctx, nii.Ref{Dataset: ref.Dataset}, node.PullOptions{Grant: expired}); auth.ReasonOf(err) != auth.ReasonExpired && !strings.Contains(fmt.Sprint(err), auth.ReasonExpired) {
		t.Fatalf("lambeth with an expired grant: %v", err)
	}
	stranger, _ := auth.GenerateKey()
	forged, fc, _ := auth.IssueGrant(stranger, auth.GrantSpec{Federation: fed, Subject: "lambeth",
		Datasets: []string{"greenwich/*"}, Actions: []nii.Action{"read"}, TTL: time.Hour})
	if _, err := lambeth.Pull(ctx, nii.Ref{Dataset: ref.Dataset}, node.PullOptions{Grant: forged}); !strings.Contains(fmt.Sprint(err), auth.ReasonUntrusted) {
		t.Fatalf("lambeth with a grant from an untrusted key: %v", err)
	}
	expiredID, _, _ := auth.Peek(expired)

	// Greenwich's audit log holds every decision, with who and why.
	recs, _, err := greenwich.Audit(auth.AuditQuery{Dataset: "greenwich/spend-2024", Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, r := range recs {
		seen[r.Result+"/"+r.Reason+"/"+string(r.Node)] = true
		if r.Node == lambeth.ID() && r.Org != "lambeth" {
			t.Fatalf("lambeth's org not recorded: %+v", r)
		}
	}
	for _, want := range []string{
		auth.Allowed + "/" + auth.ReasonGranted + "/" + string(lambeth.ID()),
		auth.Refused + "/" + auth.ReasonNoGrant + "/" + string(southwark.ID()),
		auth.Refused + "/" + auth.ReasonSubject + "/" + string(southwark.ID()),
		auth.Refused + "/" + auth.ReasonRevoked + "/" + string(lambeth.ID()),
	} {
		if !seen[want] {
			t.Errorf("audit log lacks %s; has %v", want, seen)
		}
	}
	grantOf := map[string]auth.Record{} // reason → a refusal of lambeth's
	for _, r := range recs {
		if r.Result == auth.Allowed && r.Grant != gc.ID {
			t.Fatalf("allowed without the grant's ID recorded: %+v", r)
		}
		if r.Result == auth.Refused && r.Node == lambeth.ID() {
			grantOf[r.Reason] = r
		}
	}
	for reason, want := range map[string]struct {
		id         string
		unverified bool
	}{auth.ReasonRevoked: {gc.ID, false}, auth.ReasonExpired: {expiredID, false}, auth.ReasonUntrusted: {fc.ID, true}} {
		r, ok := grantOf[reason]
		if !ok || r.Grant != want.id || r.GrantUnverified != want.unverified {
			t.Errorf("the %s refusal records grant %q (unverified %v), want %q (unverified %v)", reason, r.Grant, r.GrantUnverified, want.id, want.unverified)
		}
	}

	// Over the API: the JWKS is public, the audit log is admin-only.
	resp, err := http.Get(greenwich.APIAddr() + "/.well-known/jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	var set auth.JWKS
	json.NewDecoder(resp.Body).Decode(&set)
	resp.Body.Close()
	if len(set.Keys) != 1 || set.Keys[0].Kid != auth.KeyID(pub) {
		t.Fatalf("jwks: %+v", set)
	}
	resp, err = http.Get(greenwich.APIAddr() + "/api/v1/audit")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("audit without the admin token: %d", resp.StatusCode)
	}
}

func followOf(t *testing.T, n *node.Node, d nii.DatasetID) *node.Follow {
	fs, err := n.Follows()
	if err != nil {
		t.Fatal(err)
	}
	for i := range fs {
		if fs[i].Dataset == d {
			return &fs[i]
		}
	}
	return nil
}

// Only the publisher serves restricted data: a replica would judge grants
// by its own trust anchors, and one extra issuer there would widen access.
// Here lambeth holds greenwich's restricted version and trusts a local
// issuer too; a grant from that issuer opens nothing, at greenwich or at
// lambeth. And a chunk read with a manifest fetched earlier still leaves a
// record in the publisher's audit log.
func TestRestrictedDataOnlyFromItsPublisher(t *testing.T) {
	admin, _ := auth.GenerateKey()
	local, _ := auth.GenerateKey()
	b64 := func(k ed25519.PrivateKey) string {
		return base64.RawURLEncoding.EncodeToString(k.Public().(ed25519.PublicKey))
	}
	orgs := []string{"greenwich", "lambeth", "southwark"}
	nodes := nodetest.Federation(t, 3, nodetest.Options{Configure: func(i int, cfg *node.Config) {
		cfg.Org = orgs[i]
		cfg.Trust = []node.TrustAnchor{{Name: "london-admin", Key: b64(admin)}}
		if i == 1 {
			cfg.Trust = append(cfg.Trust, node.TrustAnchor{Name: "lambeth-local", Key: b64(local)})
		}
	}})
	greenwich, lambeth, southwark := nodes[0], nodes[1], nodes[2]
	fed := greenwich.Config().Federation
	creds := map[nii.NodeID]string{}
	for _, n := range nodes {
		cred, _, _ := auth.IssueCredential(admin, fed, n.ID(), n.Config().Org, "", time.Hour)
		if _, err := n.InstallCredential(cred); err != nil {
			t.Fatal(err)
		}
		creds[n.ID()] = cred
	}
	data := randBytes(5, 1<<20)
	ref := publishData(t, greenwich, "spend-2024", data, nii.AccessRestricted)
	waitListed(t, lambeth, "greenwich/spend-2024", 1)
	g, _, _ := auth.IssueGrant(admin, auth.GrantSpec{Federation: fed, Subject: "lambeth", Datasets: []string{"greenwich/*"}, Actions: []nii.Action{"read"}, TTL: time.Hour})
	ctx := context.Background()
	res, err := lambeth.Pull(ctx, *ref, node.PullOptions{Grant: g})
	if err != nil {
		t.Fatal(err)
	}
	if own, ok := lambeth.Catalog().Own(ref.Dataset); ok {
		t.Fatalf("lambeth advertises a replica of restricted data: %+v", own)
	}
	lg, _, _ := auth.IssueGrant(local, auth.GrantSpec{Federation: fed, Subject: "southwark", Datasets: []string{"*/*"}, Actions: []nii.Action{"read"}, TTL: time.Hour})
	h := southwark.HostForTest()
	for _, from := range []*node.Node{greenwich, lambeth} {
		_, _, _, err := h.FetchManifest(ctx, from.ID(), exchange.ManifestRequest{Dataset: ref.Dataset, Version: 1, Grant: lg, Credential: creds[southwark.ID()]})
		if !errors.Is(err, nii.ErrRefused) {
			t.Fatalf("southwark's manifest request to %s with lambeth's local grant: %v", from.Config().Org, err)
		}
	}
	sm, err := lambeth.Store().Manifest(res.Record.Manifest)
	if err != nil {
		t.Fatal(err)
	}
	m, _, err := sm.Open()
	if err != nil {
		t.Fatal(err)
	}
	var hashes []nii.Hash
	for _, c := range m.Chunks {
		hashes = append(hashes, c.Hash)
	}
	if err := h.FetchChunks(ctx, lambeth.ID(), exchange.ChunkRequest{Manifest: res.Record.Manifest, Hashes: hashes[:1], Grant: lg, Credential: creds[southwark.ID()]},
		func(nii.Hash, []byte) error { return nil }, nil); !errors.Is(err, nii.ErrRefused) {
		t.Fatalf("southwark's chunk request to lambeth's copy: %v", err)
	}

	// Lambeth, with a second grant, reads chunks straight from greenwich
	// with no manifest request: the first such read is recorded.
	g2, g2c, _ := auth.IssueGrant(admin, auth.GrantSpec{Federation: fed, Subject: "lambeth", Datasets: []string{"greenwich/*"}, Actions: []nii.Action{"read"}, TTL: time.Hour})
	for range 3 {
		err := lambeth.HostForTest().FetchChunks(ctx, greenwich.ID(), exchange.ChunkRequest{Manifest: res.Record.Manifest, Hashes: hashes[:1], Grant: g2, Credential: creds[lambeth.ID()]},
			func(nii.Hash, []byte) error { return nil }, nil)
		if err != nil {
			t.Fatal(err)
		}
	}
	recs, _, _ := greenwich.Audit(auth.AuditQuery{Limit: 1000})
	chunkReads := 0
	for _, r := range recs {
		if r.Grant == g2c.ID && r.Result == auth.Allowed {
			chunkReads++
		}
	}
	if chunkReads != 1 {
		t.Fatalf("chunk reads with a fresh grant left %d records, want 1 (the first in the window)", chunkReads)
	}
}

// Two nodes claiming one dataset, neither verified: nii will not guess
// which publishes it (nor send either a grant).
func TestAmbiguousPublisherRefused(t *testing.T) {
	nodes := nodetest.Federation(t, 3, nodetest.Options{Configure: func(i int, cfg *node.Config) {
		cfg.Org = []string{"greenwich", "mallory", "lambeth"}[i]
	}})
	publishData(t, nodes[0], "spend", []byte("real\n"), nii.AccessOpen)
	waitListed(t, nodes[2], "greenwich/spend", 1)
	if _, err := nodes[2].Pull(context.Background(), nii.Ref{Dataset: nii.DatasetID{Org: "greenwich", Name: "spend"}}, node.PullOptions{}); err != nil {
		t.Fatalf("one unverified claim: %v", err)
	}
	// Mallory claims greenwich/spend at a higher version: its catalog signs
	// an advert for a dataset of another org.
	sa, signed, err := nodes[1].Catalog().Sign(nii.Advert{Dataset: nii.DatasetID{Org: "greenwich", Name: "spend"}, Version: 99,
		Manifest: nii.HashOf([]byte("x")), Meta: nii.Metadata{Title: "spend", Publisher: "greenwich", Access: nii.AccessOpen}})
	if err != nil {
		t.Fatal(err)
	}
	nodes[1].GossipForTest().Publish(sa, signed)
	nodetest.WaitFor(t, 15*time.Second, "lambeth sees mallory's claim", func() bool {
		for _, e := range nodes[2].Catalog().Lookup(nii.DatasetID{Org: "greenwich", Name: "spend"}) {
			if e.Advert.Origin == nodes[1].ID() {
				return true
			}
		}
		return false
	})
	_, err = nodes[2].Pull(context.Background(), nii.Ref{Dataset: nii.DatasetID{Org: "greenwich", Name: "spend"}}, node.PullOptions{})
	if !errors.Is(err, node.ErrAmbiguous) {
		t.Fatalf("pull with two unverified claims: %v", err)
	}
	// The download relay (what CKAN's and DCAT's resource URLs point at) on
	// a node that holds no copy answers the same: 409, ambiguous, and what
	// to do — not 404 or 500.
	for _, v := range []string{"1", "latest"} {
		code, _, body := fetch(t, "GET", nodes[1].APIAddr()+"/api/v1/datasets/greenwich/spend/versions/"+v+"/download", nil)
		if code != http.StatusConflict || !strings.Contains(string(body), `"ambiguous"`) || !strings.Contains(string(body), "verif") {
			t.Fatalf("download @%s with two unverified claims: %d %s", v, code, body)
		}
	}
}
