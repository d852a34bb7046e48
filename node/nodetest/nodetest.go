// Package nodetest starts whole nii federations inside one test process:
// real nodes (badger, libp2p, memberlist, the HTTP API) on loopback with
// port 0, temporary homes, and gossip timings shortened so that tests
// converge in well under a second (as serf's testConfig does).
package nodetest

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/nii-uk/nii/node"
)

// Options shape a test federation.
type Options struct {
	Federation string   // default "test"
	GossipKeys []string // base64; empty: unencrypted
	// Configure, if set, may change each node's config before it starts.
	Configure func(i int, cfg *node.Config)
}

// FastTiming is the gossip timing tests use: 20 ms gossip and 500 ms
// push/pull anti-entropy, so federations converge in well under a second,
// with probe timeouts loose enough that 32 nodes under the race detector on
// two cores are not falsely declared dead.
var FastTiming = node.GossipTiming{
	GossipInterval:   20 * time.Millisecond,
	ProbeInterval:    400 * time.Millisecond,
	ProbeTimeout:     200 * time.Millisecond,
	PushPullInterval: 500 * time.Millisecond,
	TCPTimeout:       5 * time.Second,
	SuspicionMult:    4,
}

// Config returns a loopback, port-0 config for a node of org under dir.
func Config(dir, org string, o Options) node.Config {
	cfg := node.DefaultConfig(filepath.Join(dir, org))
	cfg.Org = org
	cfg.OrgName = "Test borough " + org
	cfg.Federation = o.Federation
	if cfg.Federation == "" {
		cfg.Federation = "test"
	}
	cfg.API = "127.0.0.1:0"
	cfg.Gossip.Listen = "127.0.0.1:0"
	cfg.Gossip.Profile = "local"
	cfg.Gossip.Keys = o.GossipKeys
	cfg.Gossip.Timing = FastTiming
	cfg.P2P.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
	cfg.LowMemory = true
	return cfg
}

// Start initialises and starts one node, closing it when the test ends.
func Start(t testing.TB, cfg node.Config) *node.Node {
	t.Helper()
	if _, err := node.Init(cfg); err != nil {
		t.Fatal(err)
	}
	return Restart(t, cfg)
}

// Restart starts a node on an existing home.
func Restart(t testing.TB, cfg node.Config) *node.Node {
	t.Helper()
	n, err := node.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// Federation starts n nodes, orgs org0…org(n-1), each joined through the
// first, and waits until every node sees all n members.
func Federation(t testing.TB, n int, o Options) []*node.Node {
	t.Helper()
	dir := t.TempDir()
	nodes := make([]*node.Node, n)
	for i := range n {
		cfg := Config(dir, fmt.Sprintf("org%d", i), o)
		if o.Configure != nil {
			o.Configure(i, &cfg)
		}
		nodes[i] = Start(t, cfg)
		if i > 0 {
			// Join through a few earlier members, retrying: on a loaded
			// machine one member's TCP accept can time out.
			var err error
			for attempt := range 5 {
				peer := nodes[(i-1-attempt+i)%i]
				if _, err = nodes[i].Join(peer.GossipAddr()); err == nil {
					break
				}
				time.Sleep(time.Duration(attempt+1) * 100 * time.Millisecond)
			}
			if err != nil {
				t.Fatalf("node %d join: %v", i, err)
			}
		}
	}
	WaitFor(t, 60*time.Second, "all members see each other", func() bool {
		for _, nd := range nodes {
			if st, err := nd.Status(); err != nil || st.Members != n {
				return false
			}
		}
		return true
	})
	return nodes
}

// WaitFor polls cond every few milliseconds until it holds or the deadline
// passes, then fails the test saying what was awaited.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting until %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
