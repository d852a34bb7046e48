// Package nodetest starts whole nii federations inside one test process:
// real nodes (badger, libp2p, memberlist, the HTTP API) on loopback with
// port 0, temporary homes, and gossip timings shortened so that tests
// converge in well under a second (as serf's testConfig does).
package nodetest

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"math/bits"
	"path/filepath"
	"testing"
	"time"

	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/exchange"
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

// Init initialises a node home from cfg (nodetest's Config or one derived
// from it) without starting the node, and returns the home.
func Init(t testing.TB, cfg node.Config) string {
	t.Helper()
	if _, err := node.Init(cfg); err != nil {
		t.Fatal(err)
	}
	return cfg.Home
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

// Fed is a running test federation: its nodes and the configs they were
// started with, so that a test can stop, restart or cut off one of them.
type Fed struct {
	t       testing.TB
	Nodes   []*node.Node
	Configs []node.Config
}

// NewFederation starts n nodes, orgs org0…org(n-1) under one temporary
// directory, each joined through an earlier member, and waits until every
// node sees all n members.
func NewFederation(t testing.TB, n int, o Options) *Fed {
	t.Helper()
	dir := t.TempDir()
	f := &Fed{t: t, Nodes: make([]*node.Node, n), Configs: make([]node.Config, n)}
	for i := range n {
		cfg := Config(dir, fmt.Sprintf("org%d", i), o)
		if o.Configure != nil {
			o.Configure(i, &cfg)
		}
		f.Configs[i] = cfg
		f.Nodes[i] = Start(t, cfg)
		if i > 0 {
			Join(t, f.Nodes[i], f.Nodes[:i]...)
		}
	}
	f.WaitMembers(f.Nodes...)
	return f
}

// Federation is NewFederation's nodes, for tests that need no restarts.
func Federation(t testing.TB, n int, o Options) []*node.Node {
	t.Helper()
	return NewFederation(t, n, o).Nodes
}

// Timing is the gossip timing node i runs with: its config's overrides
// (the harness always sets them).
func (f *Fed) Timing(i int) node.GossipTiming { return f.Configs[i].Gossip.Timing }

// Bound is how long a change takes at most to reach every node of f (see
// Bound), by the slowest node's timing.
func (f *Fed) Bound() time.Duration {
	var b time.Duration
	for i := range f.Configs {
		b = max(b, Bound(f.Timing(i), len(f.Nodes)))
	}
	return b
}

// WaitMembers waits until each of nodes counts every node of f as a member.
func (f *Fed) WaitMembers(nodes ...*node.Node) {
	f.t.Helper()
	want := len(f.Nodes)
	// Joining is one TCP push/pull each, then gossip spreads the news.
	WaitFor(f.t, f.Bound()+time.Duration(want)*f.Timing(0).TCPTimeout/4, fmt.Sprintf("every node sees all %d members", want), func() bool {
		for _, nd := range nodes {
			if st, err := nd.Status(); err != nil || st.Members != want {
				return false
			}
		}
		return true
	})
}

// Restart closes node i (Close is idempotent, so it may be closed already)
// and starts it again on the same home, joining through the first other
// node, and returns it. f.Nodes[i] is the new node.
func (f *Fed) Restart(i int) *node.Node {
	f.t.Helper()
	if err := f.Nodes[i].Close(); err != nil {
		f.t.Fatalf("close node %d: %v", i, err)
	}
	cfg := f.Configs[i]
	cfg.Gossip.Join = nil
	for j, nd := range f.Nodes {
		if j != i {
			cfg.Gossip.Join = []string{nd.GossipAddr()}
			break
		}
	}
	f.Nodes[i] = Restart(f.t, cfg)
	return f.Nodes[i]
}

// Join joins n to the federation through the given members, trying each in
// turn a few times (on a loaded machine one member's TCP accept can time
// out), and fails the test if none admits it.
func Join(t testing.TB, n *node.Node, through ...*node.Node) {
	t.Helper()
	if len(through) == 0 {
		t.Fatal("nodetest.Join: no member to join through")
	}
	var err error
	for attempt := range 5 {
		peer := through[len(through)-1-attempt%len(through)]
		var k int
		if k, err = n.Join(peer.GossipAddr()); err == nil && k > 0 {
			return
		} else if err == nil {
			err = fmt.Errorf("joined no member")
		}
		time.Sleep(time.Duration(attempt+1) * 100 * time.Millisecond) // backoff between join attempts, not a wait for a condition
	}
	t.Fatalf("%s join: %v", n.Config().Org, err)
}

// StopGossip cuts n off from gossip as if its network failed (its libp2p
// host and API stay up), failing the test if the stop fails.
func StopGossip(t testing.TB, n *node.Node) {
	t.Helper()
	if err := n.StopGossip(); err != nil {
		t.Fatalf("%s stop gossip: %v", n.Config().Org, err)
	}
}

// Publish publishes data as n's dataset name (a CSV file name.csv, titled
// meta's title, OGL-UK-3.0 if meta names no licence) and fails the test on
// an error.
func Publish(t testing.TB, n *node.Node, name string, data []byte, meta nii.Metadata) *exchange.VersionRecord {
	t.Helper()
	if meta.Licence == "" {
		meta.Licence = "OGL-UK-3.0"
	}
	rec, err := n.Publish(context.Background(), bytes.NewReader(data), node.PublishRequest{Name: name, Filename: name + ".csv", Meta: meta})
	if err != nil {
		t.Fatalf("%s publish %s: %v", n.Config().Org, name, err)
	}
	return rec
}

// Listed reports whether n's catalog lists ds at version v (or later) from
// its publisher, not withdrawn.
func Listed(n *node.Node, ds nii.DatasetID, v uint64) bool {
	cd, err := n.LookupDataset(ds)
	return err == nil && cd.Version >= v && !cd.Withdrawn && cd.Publisher != ""
}

// WaitListed waits until every one of nodes lists ds at version v, within
// the federation bound of their number under timing.
func WaitListed(t testing.TB, timing node.GossipTiming, ds nii.DatasetID, v uint64, nodes ...*node.Node) {
	t.Helper()
	WaitFor(t, Bound(timing, len(nodes)+1), fmt.Sprintf("%d nodes list %s@%d", len(nodes), ds, v), func() bool {
		for _, n := range nodes {
			if !Listed(n, ds, v) {
				return false
			}
		}
		return true
	})
}

// PublishAndWaitListed publishes on f's node i and waits until every node
// of f lists the new version.
func (f *Fed) PublishAndWaitListed(i int, name string, data []byte, meta nii.Metadata) *exchange.VersionRecord {
	f.t.Helper()
	rec := Publish(f.t, f.Nodes[i], name, data, meta)
	WaitListed(f.t, f.Timing(i), rec.Ref.Dataset, rec.Ref.Version, f.Nodes...)
	return rec
}

// Bound is how long one change (an advert, a withdrawal, a member's
// state) may take to reach all n members under timing, derived from the
// settings rather than guessed: the anti-entropy backstop alone, as if every
// broadcast of it were lost. Each push/pull round (PushPullInterval,
// scaled as memberlist scales it past 32 members) at least doubles the
// members that know; push-pull epidemics finish in about log2(n)+ln(n)
// rounds with high probability, and we allow three times log2(n)+1 rounds
// (which covers that with room for a busy machine's late timers), plus one
// TCP timeout for a catch-up fetch that meets a dead peer and memberlist's
// longest suspicion period (SuspicionMaxTimeoutMult × SuspicionMult ×
// log10(n) probe intervals) for a member declared suspect on a loaded
// machine, or really gone.
func Bound(tm node.GossipTiming, n int) time.Duration {
	if tm.PushPullInterval <= 0 {
		tm = FastTiming
	}
	n = max(n, 2)
	rounds := 3 * (bits.Len(uint(n-1)) + 1)
	pp := tm.PushPullInterval
	if n > 32 { // memberlist's pushPullScale
		pp *= time.Duration(math.Ceil(math.Log2(float64(n))-math.Log2(32))) + 1
	}
	suspicion := time.Duration(float64(suspicionMaxMult*tm.SuspicionMult) * max(1, math.Log10(float64(n))) * float64(tm.ProbeInterval))
	return time.Duration(rounds)*pp + tm.TCPTimeout + suspicion
}

// suspicionMaxMult is memberlist's default SuspicionMaxTimeoutMult, which
// nii keeps.
const suspicionMaxMult = 6

// WaitConverge waits until count() reaches want, failing if it stops
// rising for longer than stall (a Bound: every step of progress is one
// change spreading). A busy machine slows convergence but does
// not stop it; a federation that stops converging fails within one bound.
func WaitConverge(t testing.TB, stall time.Duration, what string, want int, count func() int) {
	t.Helper()
	best, since := count(), time.Now()
	for best < want {
		time.Sleep(5 * time.Millisecond) // polling interval
		c := count()
		switch {
		case c > best:
			best, since = c, time.Now()
		case time.Since(since) > stall:
			t.Fatalf("waiting until %s: stuck at %d of %d for %v (the bound from the gossip settings)", what, best, want, stall)
		}
	}
}

// WaitFor polls cond until it holds or the deadline passes, then fails the
// test saying what was awaited. It polls every 5 ms at first and backs off
// to every 40 ms, so that a cond asking a node's HTTP API stays well under
// the node's per-address rate limit (node.DefaultRate, 50 a second, after
// a burst of 100) however long the wait: polling at 5 ms throughout spent
// the burst in half a second and the API answered 429.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for interval := 5 * time.Millisecond; ; interval = min(2*interval, pollMax) {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting until %s", timeout, what)
		}
		time.Sleep(interval) // polling interval
	}
}

// pollMax is WaitFor's longest interval: 25 polls a second, half the
// API's default rate.
const pollMax = 40 * time.Millisecond
