package node_test

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/node"
	"github.com/nii-uk/nii/node/nodetest"
	"github.com/nii-uk/nii/registry"
	"github.com/nii-uk/nii/registry/search"
)

func publishTo(t *testing.T, n *node.Node, name, title string, meta ...nii.Metadata) {
	t.Helper()
	m := nii.Metadata{Title: title, Licence: "OGL-UK-3.0", Keywords: []string{"spend"}, Themes: []string{"finance"}}
	if len(meta) > 0 {
		m = meta[0]
	}
	data := []byte(fmt.Sprintf("Body,Date,Amount\n%s,01/06/2024,%d.00\n", n.Config().Org, len(title)))
	if _, err := n.Publish(context.Background(), bytes.NewReader(data), node.PublishRequest{Name: name, Filename: name + ".csv", Meta: m}); err != nil {
		t.Fatal(err)
	}
}

// sees reports whether n's catalog lists ds at version v from its publisher.
func sees(n *node.Node, ds string, v uint64) bool {
	d, _ := nii.ParseDatasetID(ds)
	cd, err := n.LookupDataset(d)
	return err == nil && cd.Version == v && !cd.Withdrawn && cd.Publisher != ""
}

func TestThreeNodesSeeEachOthersDatasets(t *testing.T) {
	nodes := nodetest.Federation(t, 3, nodetest.Options{})
	publishTo(t, nodes[0], "spend", "Spend over £500")
	publishTo(t, nodes[1], "spend", "Spend over £500 (org1)")
	publishTo(t, nodes[2], "air-quality", "Air quality sensor readings", nii.Metadata{Title: "Air quality sensor readings", Themes: []string{"environment"}})
	nodetest.WaitFor(t, 10*time.Second, "every node lists all three datasets", func() bool {
		for _, n := range nodes {
			if !sees(n, "org0/spend", 1) || !sees(n, "org1/spend", 1) || !sees(n, "org2/air-quality", 1) {
				return false
			}
		}
		return true
	})
	res := nodes[2].Search(search.Query{Text: "spend", Limit: 10})
	if res.Total != 2 || res.Hits[0].Meta.Title == "" || !res.Hits[0].Online {
		t.Fatalf("search spend: %+v", res)
	}
	res = nodes[0].Search(search.Query{Publisher: []string{"org2"}, Theme: []string{"environment"}})
	if res.Total != 1 || res.Hits[0].ID != "org2/air-quality" || res.Hits[0].Verified {
		t.Fatalf("filtered search: %+v", res)
	}
	if c := res.Facets["publisher"]; len(c) != 1 || c[0].Value != "org2" {
		t.Fatalf("publisher facet: %+v", res.Facets)
	}
	cd, err := nodes[1].LookupDataset(nii.DatasetID{Org: "org0", Name: "spend"})
	if err != nil {
		t.Fatal(err)
	}
	if cd.Publisher != nodes[0].ID() || cd.Manifest.IsZero() || len(cd.Providers) != 1 || !cd.Online || cd.Meta.Table == nil {
		t.Fatalf("lookup: %+v", cd)
	}
	// A new version replaces the old in every catalog.
	publishTo(t, nodes[0], "spend", "Spend over £500, Q2")
	nodetest.WaitFor(t, 10*time.Second, "version 2 reaches everyone", func() bool {
		return sees(nodes[1], "org0/spend", 2) && sees(nodes[2], "org0/spend", 2)
	})
	peers := nodes[0].PeerList()
	if len(peers) != 2 || peers[0].State != registry.PeerAlive || peers[0].Datasets != 1 {
		t.Fatalf("peers: %+v", peers)
	}
}

func TestThirtyTwoNodesConvergeAfterBurst(t *testing.T) {
	if testing.Short() {
		t.Skip("32 nodes: skipped in -short mode")
	}
	// Thirty-two full nodes (badger, libp2p, memberlist, API) share two
	// cores with the race detector and other packages' tests here, so this
	// federation gossips at a calmer pace than the small ones.
	calm := func(i int, c *node.Config) {
		c.Gossip.Timing.GossipInterval = 50 * time.Millisecond
		c.Gossip.Timing.ProbeInterval = time.Second
		c.Gossip.Timing.ProbeTimeout = 500 * time.Millisecond
		c.Gossip.Timing.PushPullInterval = 2 * time.Second
	}
	nodes := nodetest.Federation(t, 32, nodetest.Options{Configure: calm})
	start := time.Now()
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			publishTo(t, n, "spend", fmt.Sprintf("Spend %d", i))
			publishTo(t, n, "trees", fmt.Sprintf("Street trees %d", i))
		}()
	}
	wg.Wait()
	// Bounded generously: under the race detector on two cores this takes
	// 35-60 s (each record reaches each node several times, and every
	// node's CPU is shared by 32); docs/benchmarks.md has real timings.
	nodetest.WaitFor(t, 150*time.Second, "all 32 catalogs hold 64 datasets", func() bool {
		for _, n := range nodes {
			if n.Catalog().Len() != 64 {
				return false
			}
		}
		return true
	})
	t.Logf("64 adverts from 32 nodes converged everywhere %v after the burst began", time.Since(start))
}

func TestWithdrawPropagates(t *testing.T) {
	nodes := nodetest.Federation(t, 3, nodetest.Options{})
	publishTo(t, nodes[0], "old-spend", "Old spend")
	nodetest.WaitFor(t, 10*time.Second, "the advert spreads", func() bool { return sees(nodes[2], "org0/old-spend", 1) })
	if err := nodes[1].Withdraw(context.Background(), nii.DatasetID{Org: "org0", Name: "old-spend"}); err == nil {
		t.Fatal("a node withdrew another org's dataset")
	}
	if err := nodes[0].Withdraw(context.Background(), nii.DatasetID{Org: "org0", Name: "old-spend"}); err != nil {
		t.Fatal(err)
	}
	nodetest.WaitFor(t, 10*time.Second, "every node stops listing it", func() bool {
		for _, n := range nodes {
			if n.Search(search.Query{Text: "old"}).Total != 0 {
				return false
			}
		}
		return true
	})
	cd, err := nodes[2].LookupDataset(nii.DatasetID{Org: "org0", Name: "old-spend"})
	if err != nil || !cd.Withdrawn {
		t.Fatalf("lookup after withdraw: %+v %v", cd, err)
	}
}

func TestStoppedNodeCatchesUpOnRestart(t *testing.T) {
	dir := t.TempDir()
	var nodes []*node.Node
	var cfgs []node.Config
	for i := range 3 {
		cfg := nodetest.Config(dir, fmt.Sprintf("org%d", i), nodetest.Options{})
		cfgs = append(cfgs, cfg)
		nodes = append(nodes, nodetest.Start(t, cfg))
		if i > 0 {
			nodes[i].Join(nodes[0].GossipAddr())
		}
	}
	publishTo(t, nodes[2], "before", "Published before the outage")
	nodetest.WaitFor(t, 10*time.Second, "everyone has it", func() bool { return sees(nodes[0], "org2/before", 1) && sees(nodes[1], "org2/before", 1) })

	nodes[2].Close()
	nodetest.WaitFor(t, 10*time.Second, "node 2 is marked gone", func() bool {
		p, ok := nodes[0].Peers().Get(nodes[2].ID())
		return ok && !p.Online()
	})
	// Its dataset stays listed, as offline.
	res := nodes[0].Search(search.Query{Text: "outage"})
	if res.Total != 1 || res.Hits[0].Online {
		t.Fatalf("while node 2 is down: %+v", res)
	}
	for i := range 20 {
		publishTo(t, nodes[i%2], fmt.Sprintf("during-%d", i), "Published during the outage")
	}
	// Restart node 2 on the same home: its catalog is still there at once,
	// and it catches up on what it missed.
	cfgs[2].Gossip.Join = []string{nodes[0].GossipAddr()}
	n2 := nodetest.Restart(t, cfgs[2])
	if !sees(n2, "org2/before", 1) {
		t.Fatal("restarted node lost its catalog")
	}
	nodetest.WaitFor(t, 15*time.Second, "the restarted node catches up", func() bool { return n2.Catalog().Len() == 21 })
	nodetest.WaitFor(t, 10*time.Second, "the others see it back online", func() bool {
		return nodes[0].Search(search.Query{Text: "outage"}).Hits[0].Online
	})
}

func TestPartitionHeals(t *testing.T) {
	dir := t.TempDir()
	var nodes []*node.Node
	var cfgs []node.Config
	for i := range 6 {
		cfg := nodetest.Config(dir, fmt.Sprintf("org%d", i), nodetest.Options{})
		cfgs = append(cfgs, cfg)
		nodes = append(nodes, nodetest.Start(t, cfg))
		if i > 0 {
			nodes[i].Join(nodes[0].GossipAddr())
		}
	}
	nodetest.WaitFor(t, 10*time.Second, "6 members", func() bool { st, _ := nodes[5].Status(); return st.Members == 6 })
	// Cut nodes 3–5 off: their gossip stops as if the network failed.
	for _, n := range nodes[3:] {
		n.StopGossip()
	}
	for i, n := range nodes {
		publishTo(t, n, "split", fmt.Sprintf("Published on side %d during the partition", i/3))
	}
	nodetest.WaitFor(t, 10*time.Second, "side A converges on its own", func() bool {
		return nodes[1].Catalog().Len() >= 3 && nodes[2].Catalog().Len() >= 3
	})
	// Heal: the cut nodes come back (their homes kept everything) and rejoin.
	var healed []*node.Node
	for i, n := range nodes[3:] {
		n.Close()
		cfg := cfgs[3+i]
		cfg.Gossip.Join = []string{nodes[0].GossipAddr()}
		healed = append(healed, nodetest.Restart(t, cfg))
	}
	all := append(append([]*node.Node{}, nodes[:3]...), healed...)
	nodetest.WaitFor(t, 20*time.Second, "all six hold all six datasets", func() bool {
		for _, n := range all {
			if n.Catalog().Len() != 6 {
				return false
			}
		}
		return true
	})
}

func TestWrongGossipKeyCannotJoin(t *testing.T) {
	key := "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
	other := "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA="
	nodes := nodetest.Federation(t, 2, nodetest.Options{GossipKeys: []string{key}})
	stranger := nodetest.Start(t, nodetest.Config(t.TempDir(), "stranger", nodetest.Options{GossipKeys: []string{other}}))
	if k, err := stranger.Join(nodes[0].GossipAddr()); err == nil && k > 0 {
		t.Fatal("a node with the wrong gossip key joined")
	}
	if st, _ := nodes[0].Status(); st.Members != 2 {
		t.Fatalf("members = %d after a stranger tried to join, want 2", st.Members)
	}
}

func TestRegistryOnlyNodeIndexesButHoldsNoData(t *testing.T) {
	nodes := nodetest.Federation(t, 2, nodetest.Options{Configure: func(i int, c *node.Config) { c.RegistryOnly = i == 0 }})
	if _, err := nodes[0].Publish(context.Background(), bytes.NewReader([]byte("a,b\n")), node.PublishRequest{Name: "x"}); err == nil {
		t.Fatal("a registry-only node accepted a publish")
	}
	publishTo(t, nodes[1], "spend", "Spend")
	nodetest.WaitFor(t, 10*time.Second, "the registry indexes it", func() bool { return sees(nodes[0], "org1/spend", 1) })
}
