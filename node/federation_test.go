package node_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
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
	nodetest.WaitFor(t, nodetest.Bound(nodetest.FastTiming, 3), "every node lists all three datasets", func() bool {
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
	nodetest.WaitFor(t, nodetest.Bound(nodetest.FastTiming, 3), "version 2 reaches everyone", func() bool {
		return sees(nodes[1], "org0/spend", 2) && sees(nodes[2], "org0/spend", 2)
	})
	peers := nodes[0].PeerList()
	if len(peers) != 2 || peers[0].State != registry.PeerAlive || peers[0].Datasets != 1 {
		t.Fatalf("peers: %+v", peers)
	}
}

// heavyStep, when set, says .ci/run runs the heavy federation tests in a
// step of their own without the race detector, where they mean something
// on two cores; the race step then leaves them to it.
const heavyStep = "NII_HEAVY_NORACE"

// skipHeavyUnderRace skips a heavy federation test under the race detector
// only when .ci/run's non-race step will run it (NII_HEAVY_NORACE=1).
func skipHeavyUnderRace(t *testing.T) {
	t.Helper()
	if raceEnabled && os.Getenv(heavyStep) == "1" {
		t.Skipf("%s=1: under -race 32 nodes on two cores measure the race detector, not gossip; .ci/run runs this test in its non-race step", heavyStep)
	}
}

func TestThirtyTwoNodesConvergeAfterBurst(t *testing.T) {
	if testing.Short() {
		t.Skip("32 nodes: skipped in -short mode")
	}
	skipHeavyUnderRace(t)
	// Thirty-two full nodes (badger, libp2p, memberlist, API) share two
	// cores with other packages' tests here, so this federation gossips
	// at a calmer pace than the small ones.
	calm := func(i int, c *node.Config) {
		c.Gossip.Timing.GossipInterval = 50 * time.Millisecond
		c.Gossip.Timing.ProbeInterval = time.Second
		c.Gossip.Timing.ProbeTimeout = 500 * time.Millisecond
		c.Gossip.Timing.PushPullInterval = 2 * time.Second
	}
	f := nodetest.NewFederation(t, 32, nodetest.Options{Configure: calm})
	nodes := f.Nodes
	start := time.Now()
	errs := make(chan error, 2*len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, name := range []string{"spend", "trees"} {
				data := []byte(fmt.Sprintf("Body,Date,Amount\n%s,01/06/2024,%d.00\n", n.Config().Org, i))
				_, err := n.Publish(context.Background(), bytes.NewReader(data), node.PublishRequest{Name: name, Filename: name + ".csv",
					Meta: nii.Metadata{Title: fmt.Sprintf("%s %d", name, i), Licence: "OGL-UK-3.0"}})
				if err != nil {
					errs <- fmt.Errorf("%s publish %s: %w", n.Config().Org, name, err)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		t.FailNow()
	}
	// Each of the 64 adverts must reach all 32 nodes: 2048 listings. Every
	// step of progress is one advert reaching one more node, so the
	// federation may stall for at most one bound from its gossip settings.
	total := func() int {
		c := 0
		for _, n := range nodes {
			c += n.Catalog().Len()
		}
		return c
	}
	nodetest.WaitConverge(t, f.Bound(), "all 32 catalogs hold 64 datasets", 32*64, total)
	for _, n := range nodes {
		if l := n.Catalog().Len(); l != 64 {
			t.Fatalf("%s holds %d datasets, want 64", n.Config().Org, l)
		}
	}
	t.Logf("64 adverts from 32 nodes converged everywhere %v after the burst began (stall bound %v)", time.Since(start), f.Bound())
}

func TestWithdrawPropagates(t *testing.T) {
	nodes := nodetest.Federation(t, 3, nodetest.Options{})
	publishTo(t, nodes[0], "old-spend", "Old spend")
	nodetest.WaitFor(t, nodetest.Bound(nodetest.FastTiming, 3), "the advert spreads", func() bool { return sees(nodes[2], "org0/old-spend", 1) })
	if err := nodes[1].Withdraw(context.Background(), nii.DatasetID{Org: "org0", Name: "old-spend"}); err == nil {
		t.Fatal("a node withdrew another org's dataset")
	}
	if err := nodes[0].Withdraw(context.Background(), nii.DatasetID{Org: "org0", Name: "old-spend"}); err != nil {
		t.Fatal(err)
	}
	nodetest.WaitFor(t, nodetest.Bound(nodetest.FastTiming, 3), "every node stops listing it", func() bool {
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
	f := nodetest.NewFederation(t, 3, nodetest.Options{})
	nodes := f.Nodes
	bound := f.Bound()
	publishTo(t, nodes[2], "before", "Published before the outage")
	nodetest.WaitFor(t, bound, "everyone has it", func() bool { return sees(nodes[0], "org2/before", 1) && sees(nodes[1], "org2/before", 1) })

	if err := nodes[2].Close(); err != nil {
		t.Fatal(err)
	}
	nodetest.WaitFor(t, bound, "node 2 is marked gone", func() bool {
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
	n2 := f.Restart(2)
	if !sees(n2, "org2/before", 1) {
		t.Fatal("restarted node lost its catalog")
	}
	nodetest.WaitConverge(t, bound, "the restarted node catches up", 21, func() int { return n2.Catalog().Len() })
	nodetest.WaitFor(t, bound, "the others see it back online", func() bool {
		return nodes[0].Search(search.Query{Text: "outage"}).Hits[0].Online
	})
}

// TestPartitionHeals cuts three of six nodes off (their gossip stops, as
// if their network failed), shows that each side goes on alone and that
// neither learns what the other publishes, then brings the cut side's
// gossip back on the same homes and shows that both sides learn
// everything and see each other alive.
func TestPartitionHeals(t *testing.T) {
	f := nodetest.NewFederation(t, 6, nodetest.Options{})
	nodes := f.Nodes
	bound := f.Bound()
	sideA, sideB := nodes[:3], nodes[3:]
	for _, n := range sideB {
		nodetest.StopGossip(t, n)
	}
	// The partition is real: side A declares every node of side B gone.
	nodetest.WaitFor(t, bound, "side A sees side B gone", func() bool {
		for _, a := range sideA {
			for _, b := range sideB {
				if p, ok := a.Peers().Get(b.ID()); !ok || p.Online() {
					return false
				}
			}
		}
		return true
	})
	for i, n := range nodes {
		publishTo(t, n, "split", fmt.Sprintf("Published on side %d during the partition", i/3))
	}
	nodetest.WaitFor(t, bound, "side A converges on its own", func() bool {
		for _, a := range sideA {
			for _, o := range sideA {
				if !sees(a, o.Config().Org+"/split", 1) {
					return false
				}
			}
		}
		return true
	})
	// Neither side learned the other's: side A converged on its own
	// adverts, which would have carried side B's too had any path been open.
	for _, a := range sideA {
		for _, b := range sideB {
			if sees(a, b.Config().Org+"/split", 1) {
				t.Fatalf("%s lists %s/split during the partition", a.Config().Org, b.Config().Org)
			}
			if sees(b, a.Config().Org+"/split", 1) {
				t.Fatalf("%s lists %s/split during the partition", b.Config().Org, a.Config().Org)
			}
		}
	}
	// Heal: side B's gossip comes back on the same homes (they kept
	// everything) and rejoins through side A.
	for i := range sideB {
		f.Restart(3 + i)
	}
	all := f.Nodes
	f.WaitMembers(all...)
	nodetest.WaitConverge(t, bound, "all six hold all six datasets", 36, func() int {
		c := 0
		for _, n := range all {
			c += n.Catalog().Len()
		}
		return c
	})
	for _, n := range all {
		for _, o := range all {
			if !sees(n, o.Config().Org+"/split", 1) {
				t.Fatalf("after the heal %s does not list %s/split", n.Config().Org, o.Config().Org)
			}
			if p, ok := n.Peers().Get(o.ID()); o != n && (!ok || !p.Online()) {
				t.Fatalf("after the heal %s does not see %s alive: %+v", n.Config().Org, o.Config().Org, p)
			}
		}
	}
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
	nodetest.WaitFor(t, nodetest.Bound(nodetest.FastTiming, 3), "the registry indexes it", func() bool { return sees(nodes[0], "org1/spend", 1) })
}

// The gossip's rejoin settings are durations, checked when the config is:
// too short an interval would have every node joining dead members in a
// loop, and a bad value must name its key rather than start a node with
// the default.
func TestGossipReconnectValidated(t *testing.T) {
	for _, c := range []struct {
		key, v string
		ok     bool
	}{
		{"reconnect_interval", "", true}, {"reconnect_interval", "30s", true}, {"reconnect_interval", "1s", true},
		{"reconnect_interval", "100ms", false}, {"reconnect_interval", "often", false}, {"reconnect_interval", "-5s", false},
		{"reconnect_timeout", "", true}, {"reconnect_timeout", "72h", true},
		{"reconnect_timeout", "10s", false}, {"reconnect_timeout", "a day", false},
	} {
		cfg := node.DefaultConfig(t.TempDir())
		cfg.Org = "lambeth"
		if c.key == "reconnect_interval" {
			cfg.Gossip.ReconnectInterval = c.v
		} else {
			cfg.Gossip.ReconnectTimeout = c.v
		}
		err := cfg.Validate()
		if (err == nil) != c.ok {
			t.Errorf("%s %q: %v; want ok=%v", c.key, c.v, err, c.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "gossip."+c.key) {
			t.Errorf("%s %q: %v; want the setting named", c.key, c.v, err)
		}
	}
}
