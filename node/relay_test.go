package node_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/exchange"
	"github.com/nii-uk/nii/node"
	"github.com/nii-uk/nii/node/nodetest"
)

// TestRogueReplicaOfOlderVersionRefused: a member advertises a "replica"
// of greenwich/spend@1 whose manifest it signed itself. With the publisher
// offline, neither the download relay (what CKAN and DCAT resource URLs
// point at) nor a pull hands out the rogue's bytes: both accept only a
// manifest the publisher signed (exchange.CheckManifest).
func TestRogueReplicaOfOlderVersionRefused(t *testing.T) {
	nodes := nodetest.Federation(t, 3, nodetest.Options{Configure: func(i int, cfg *node.Config) {
		cfg.Org = []string{"greenwich", "rogue", "lambeth"}[i]
	}})
	greenwich, rogue, lambeth := nodes[0], nodes[1], nodes[2]
	d := nii.DatasetID{Org: "greenwich", Name: "spend"}
	v1, v2 := spendCSV(3000, nil), spendCSV(3100, nil)
	publishData(t, greenwich, "spend", v1, nii.AccessOpen)
	publishData(t, greenwich, "spend", v2, nii.AccessOpen)
	waitListed(t, lambeth, "greenwich/spend", 2)

	forged := []byte("date,supplier,amount\n2024-01-01,Rogue Ltd,999999.00\n")
	rec, err := rogue.ForgeVersionForTest(context.Background(), d, 1, forged)
	if err != nil {
		t.Fatal(err)
	}
	sa, a, err := rogue.Catalog().Sign(nii.Advert{Dataset: d, Version: 1, Manifest: rec.Manifest, Replica: true, Meta: rec.Meta})
	if err != nil {
		t.Fatal(err)
	}
	rogue.GossipForTest().Publish(sa, a)
	nodetest.WaitFor(t, 15*time.Second, "lambeth sees the rogue's replica advert", func() bool {
		for _, e := range lambeth.Catalog().Lookup(d) {
			if e.Advert.Origin == rogue.ID() && e.Advert.Replica && e.Advert.Version == 1 {
				return true
			}
		}
		return false
	})
	download := lambeth.APIAddr() + "/api/v1/datasets/greenwich/spend/versions/1/download"

	// With the publisher up, the relay serves the publisher's version 1.
	code, _, got := fetch(t, "GET", download, nil)
	if code != 200 || !bytes.Equal(got, v1) {
		t.Fatalf("download of @1 with the publisher online: %d, %d bytes, want the published %d", code, len(got), len(v1))
	}

	greenwich.Close()
	nodetest.WaitFor(t, 30*time.Second, "lambeth sees the publisher offline", func() bool {
		cd, err := lambeth.LookupDataset(d)
		return err == nil && !cd.Online
	})
	code, _, got = fetch(t, "GET", download, nil)
	if code == 200 || bytes.Contains(got, []byte("Rogue Ltd")) {
		t.Fatalf("download of @1 with only the rogue online: %d %q; want a refusal, never the rogue's bytes", code, got)
	}
	if code != 503 || !strings.Contains(string(got), "not the publisher's manifest") {
		t.Errorf("download refusal: %d %s; want 503 saying the manifest is not the publisher's", code, got)
	}

	_, err = lambeth.Pull(context.Background(), nii.Ref{Dataset: d, Version: 1}, node.PullOptions{})
	if !errors.Is(err, exchange.ErrNoProvider) || !errors.Is(err, exchange.ErrWrongManifest) {
		t.Fatalf("pull of @1 with only the rogue online: %v; want ErrNoProvider, the rogue's manifest refused", err)
	}
	if recs, _ := lambeth.Store().Versions(&d); len(recs) != 0 {
		t.Fatalf("the rogue's version reached the store: %+v", recs)
	}
}

// TestConcurrentPullsFetchOnce: pulls of one version started together on
// one node fetch each chunk from the provider once between them.
func TestConcurrentPullsFetchOnce(t *testing.T) {
	nodes := nodetest.Federation(t, 2, nodetest.Options{Configure: func(i int, c *node.Config) { c.Replica.Disable = true }})
	data := randBytes(13, 8<<20)
	ref := publishData(t, nodes[0], "shared", data, nii.AccessOpen)
	waitListed(t, nodes[1], "org0/shared", 1)
	sm, err := nodes[0].Store().Manifest(mustVersion(t, nodes[0], *ref).Manifest)
	if err != nil {
		t.Fatal(err)
	}
	m, _, err := sm.Open()
	if err != nil {
		t.Fatal(err)
	}
	distinct := map[nii.Hash]bool{}
	for _, c := range m.Chunks {
		distinct[c.Hash] = true
	}
	before := nodes[0].HostForTest().ServedChunks()
	const pulls = 4
	var wg sync.WaitGroup
	errs := make([]error, pulls)
	start := make(chan struct{})
	for i := range pulls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, errs[i] = nodes[1].Pull(context.Background(), *ref, node.PullOptions{})
		}()
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("pull %d: %v", i, err)
		}
	}
	if !bytes.Equal(exportAll(t, nodes[1], *ref), data) {
		t.Fatal("pulled content differs")
	}
	if served := nodes[0].HostForTest().ServedChunks() - before; served != int64(len(distinct)) {
		t.Fatalf("%d concurrent pulls made the publisher send %d chunks, want %d (each once)", pulls, served, len(distinct))
	}
}

// TestShowReportsAmbiguityAsPullDoes: with two unverified claims, 'nii
// show' (LookupDataset) and the download relay refuse exactly as pull does.
func TestShowReportsAmbiguityAsPullDoes(t *testing.T) {
	nodes := nodetest.Federation(t, 3, nodetest.Options{Configure: func(i int, cfg *node.Config) {
		cfg.Org = []string{"greenwich", "mallory", "lambeth"}[i]
	}})
	d := nii.DatasetID{Org: "greenwich", Name: "spend"}
	publishData(t, nodes[0], "spend", []byte("real\n"), nii.AccessOpen)
	waitListed(t, nodes[2], "greenwich/spend", 1)
	if cd, err := nodes[2].LookupDataset(d); err != nil || cd.Publisher != nodes[0].ID() {
		t.Fatalf("one claim: %+v %v", cd, err)
	}
	sa, a, err := nodes[1].Catalog().Sign(nii.Advert{Dataset: d, Version: 99, Manifest: nii.HashOf([]byte("x")),
		Meta: nii.Metadata{Title: "spend", Publisher: "greenwich", Access: nii.AccessOpen}})
	if err != nil {
		t.Fatal(err)
	}
	nodes[1].GossipForTest().Publish(sa, a)
	nodetest.WaitFor(t, 15*time.Second, "lambeth sees mallory's claim", func() bool {
		return len(nodes[2].Catalog().Lookup(d)) == 2
	})
	_, pullErr := nodes[2].Pull(context.Background(), nii.Ref{Dataset: d}, node.PullOptions{})
	_, showErr := nodes[2].LookupDataset(d)
	if !errors.Is(pullErr, node.ErrAmbiguous) || !errors.Is(showErr, node.ErrAmbiguous) || pullErr.Error() != showErr.Error() {
		t.Fatalf("pull: %v\nshow: %v\nwant the same ambiguity from both", pullErr, showErr)
	}
	code, _, body := fetch(t, "GET", nodes[2].APIAddr()+"/api/v1/datasets/greenwich/spend/versions/1/download", nil)
	if code == 200 || !strings.Contains(string(body), "ambiguous publisher") {
		t.Fatalf("download with two unverified claims: %d %s", code, body)
	}
}

func mustVersion(t *testing.T, n *node.Node, ref nii.Ref) *exchange.VersionRecord {
	t.Helper()
	rec, err := n.Store().Version(ref)
	if err != nil {
		t.Fatal(err)
	}
	return rec
}
