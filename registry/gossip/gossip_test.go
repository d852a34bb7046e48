package gossip

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"math"
	stdnet "net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/registry"
	"github.com/nii-uk/nii/registry/registrytest"
	"github.com/nii-uk/nii/registry/search"
)

// memNet stands in for the libp2p catalog protocol in these unit tests: a
// fetch reads the serving member's catalog directly and counts the bytes a
// real transfer would carry. node/federation_test.go runs the same flows over
// real libp2p.
type memNet struct {
	mu     sync.Mutex
	cats   map[nii.NodeID]*registry.Catalog
	silent map[nii.NodeID]bool // members that never answer a fetch
	bytes  atomic.Int64
	recs   atomic.Int64 // records fetched
	// refuse makes every fetch from a member that is not silent fail at once.
	refuse atomic.Bool
	// stalled counts fetches from silent members begun.
	stalled atomic.Int64
	// remote, if set, serves fetches from members not in cats (members in
	// other worker processes, propagation_proc_bench_test.go).
	remote Fetcher
}

func (m *memNet) FetchCatalogPage(ctx context.Context, from, origin nii.NodeID, after uint64, limit int) ([]*nii.SignedAdvert, bool, uint64, error) {
	m.mu.Lock()
	c, silent := m.cats[from], m.silent[from]
	m.mu.Unlock()
	if silent {
		m.stalled.Add(1)
		<-ctx.Done() // as a peer that accepts the stream and never answers
		return nil, false, 0, ctx.Err()
	}
	if c == nil && m.remote != nil && !m.refuse.Load() {
		return m.remote.FetchCatalogPage(ctx, from, origin, after, limit)
	}
	if c == nil || m.refuse.Load() {
		return nil, false, 0, errors.New("unreachable")
	}
	recs, more, wm, err := c.Page(origin, after, limit)
	for _, r := range recs {
		m.bytes.Add(int64(len(r.Body) + len(r.Sig) + 8))
	}
	m.recs.Add(int64(len(recs)))
	return recs, more, wm, err
}

// ident and memDB are registrytest's, under the short names these tests use.
type ident = registrytest.Ident

var (
	newIdent = registrytest.NewIdent
	memDB    = registrytest.MemDB
)

type member struct {
	ident
	cat    *registry.Catalog
	peers  *registry.Peers
	gossip *Gossip
}

// fastGossip is the gossip configuration of these tests: memberlist's
// local profile, faster rounds, and LAN's 10 s TCP timeout rather than
// local's 1 s, so that a join's push/pull survives a machine busy with
// other tests (a join timed out at 1 s under the full -race suite).
func fastGossip(self nii.NodeID, keys [][]byte) Config {
	return Config{
		Self: self, Org: "greenwich", Federation: "test", BindAddr: "127.0.0.1", BindPort: 0, Keys: keys,
		Profile: "local", GossipInterval: 10 * time.Millisecond, ProbeInterval: 100 * time.Millisecond,
		ProbeTimeout: 50 * time.Millisecond, PushPullInterval: 200 * time.Millisecond, SuspicionMult: 2,
		TCPTimeout: 10 * time.Second,
	}
}

func (m *memNet) start(t testing.TB, keys [][]byte) *member {
	t.Helper()
	return m.startWith(t, keys, nil)
}

// startWith starts a member whose gossip config mod may change.
func (m *memNet) startWith(t testing.TB, keys [][]byte, mod func(*Config)) *member {
	t.Helper()
	id := newIdent()
	db := memDB(t)
	cat, err := registry.OpenCatalog(db, id.ID, id.Key, nil)
	if err != nil {
		t.Fatal(err)
	}
	peers, err := registry.OpenPeers(db)
	if err != nil {
		t.Fatal(err)
	}
	gc := fastGossip(id.ID, keys)
	if mod != nil {
		mod(&gc)
	}
	g, err := New(gc, cat, peers, m)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	m.mu.Lock()
	if m.cats == nil {
		m.cats = map[nii.NodeID]*registry.Catalog{}
	}
	m.cats[id.ID] = cat
	m.mu.Unlock()
	return &member{ident: id, cat: cat, peers: peers, gossip: g}
}

func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting until %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (m *member) publish(t testing.TB, name, title string, version uint64, description ...string) *nii.Advert {
	t.Helper()
	sa, a, err := m.cat.Sign(nii.Advert{Dataset: nii.DatasetID{Org: "greenwich", Name: name}, Version: version,
		Manifest: nii.HashOf([]byte(name + title)), Meta: nii.Metadata{Title: title, Publisher: "greenwich",
			Access: nii.AccessOpen, Description: strings.Join(description, "")}})
	if err != nil {
		t.Fatal(err)
	}
	m.gossip.Publish(sa, a)
	return a
}

func hasAdvert(c *registry.Catalog, a *nii.Advert) bool {
	for _, e := range c.Lookup(a.Dataset) {
		if e.Advert.Origin == a.Origin && e.Advert.Seq == a.Seq {
			return true
		}
	}
	return false
}

func TestGossipSpreadsAndLateJoinerCatchesUp(t *testing.T) {
	var net memNet
	ms := []*member{net.start(t, nil), net.start(t, nil), net.start(t, nil)}
	for _, m := range ms[1:] {
		if _, err := m.gossip.Join([]string{ms[0].gossip.Addr()}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, "3 members", func() bool { return ms[2].gossip.NumMembers() == 3 })
	a := ms[1].publish(t, "spend", "Spend over £500", 1)
	waitFor(t, 5*time.Second, "the advert reaches every member", func() bool {
		return hasAdvert(ms[0].cat, a) && hasAdvert(ms[2].cat, a)
	})
	// Large adverts travel as notices and are fetched.
	big := ms[2].publish(t, "planning", "Planning applications", 1, strings.Repeat("A long description. ", 60))
	waitFor(t, 5*time.Second, "the large advert reaches every member", func() bool {
		return hasAdvert(ms[0].cat, big) && hasAdvert(ms[1].cat, big)
	})
	// A member that joins later learns everything through anti-entropy.
	late := net.start(t, nil)
	if _, err := late.gossip.Join([]string{ms[1].gossip.Addr()}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the late joiner catches up", func() bool {
		return hasAdvert(late.cat, a) && hasAdvert(late.cat, big) &&
			late.cat.Watermark(ms[1].ID) == ms[1].cat.SelfSeq() && late.cat.Watermark(ms[2].ID) == ms[2].cat.SelfSeq()
	})
	if p, ok := late.peers.Get(ms[0].ID); !ok || p.State != registry.PeerAlive || p.Org != "greenwich" {
		t.Fatalf("peer table: %+v %v", p, ok)
	}
}

func TestGossipRejectsForgedBroadcast(t *testing.T) {
	var net memNet
	a, b := net.start(t, nil), net.start(t, nil)
	if _, err := b.gossip.Join([]string{a.gossip.Addr()}); err != nil {
		t.Fatal(err)
	}
	victim, mallory := newIdent(), newIdent()
	forged := *victim.Advert(t, 1, "spend", 1, "Forged")
	forged.Sig = mallory.Advert(t, 1, "spend", 1, "Forged").Sig
	enc, _ := nii.EncodeSignedAdvert(&forged)
	b.gossip.queue.QueueBroadcast(&broadcast{msg: append([]byte{msgAdvert}, enc...)})
	waitFor(t, 5*time.Second, "the forged advert is refused", func() bool { return a.cat.Rejected()[registry.RejectBadSignature] >= 1 })
	if res := a.cat.Search(search.Query{Text: "forged"}); res.Total != 0 {
		t.Fatal("a forged advert was listed")
	}
}

func TestGossipWrongKeyCannotJoin(t *testing.T) {
	var net memNet
	k1, k2 := []byte("0123456789abcdef0123456789abcdef"), []byte("fedcba9876543210fedcba9876543210")
	a := net.start(t, [][]byte{k1})
	stranger := net.start(t, [][]byte{k2})
	if n, err := stranger.gossip.Join([]string{a.gossip.Addr()}); err == nil && n > 0 {
		t.Fatalf("a node with the wrong gossip key joined (%d reached)", n)
	}
	plain := net.start(t, nil)
	if n, err := plain.gossip.Join([]string{a.gossip.Addr()}); err == nil && n > 0 {
		t.Fatalf("a node with no gossip key joined an encrypted federation (%d reached)", n)
	}
	// Rotation, step 1: a node that holds the new key k2 besides the
	// federation's primary k1 still joins (docs/registry.md).
	friend := net.start(t, [][]byte{k1, k2})
	if _, err := friend.gossip.Join([]string{a.gossip.Addr()}); err != nil {
		t.Fatalf("a node holding the federation's key in its keyring could not join: %v", err)
	}
	waitFor(t, 5*time.Second, "the member with the key is admitted", func() bool { return a.gossip.NumMembers() == 2 })
	// The strangers never were.
	for _, p := range a.peers.List() {
		if p.ID == stranger.ID || p.ID == plain.ID {
			t.Fatalf("a node without the key got into the member table: %+v", p)
		}
	}
}

// FuzzGossipMessage feeds arbitrary bytes to each decoder of what another
// member sends: a gossip message (the first byte its type), the push/pull
// state, and a member's metadata (as memberlist delivers it on join or
// update). It also signs the bytes as an advert body with a key the
// member accepts signatures from, so that mutated bodies get past the
// signature check into the catalog and its index, which a mutated signed
// advert never would.
func FuzzGossipMessage(f *testing.F) {
	var net memNet
	m := net.start(f, nil)
	id := newIdent()
	// The catalog takes records of members only: make the fuzzed origin one,
	// or every advert the fuzzer builds stops at the membership check and
	// the catalog's decoding and apply are never reached.
	m.peers.Update(registry.Peer{ID: id.ID, Org: "greenwich", State: registry.PeerAlive})
	sa := id.Advert(f, 1, "spend", 1, "Spend")
	enc, _ := nii.EncodeSignedAdvert(sa)
	// Prove it: the seed advert, handled as a message, lands in the catalog.
	if a, err := sa.Open(); err != nil {
		f.Fatal(err)
	} else if m.gossip.handle(append([]byte{msgAdvert}, enc...)); !hasAdvert(m.cat, a) {
		f.Fatal("a member's signed advert handled as a gossip message did not reach the catalog: the fuzz target would miss it")
	}
	m.gossip.queue.Reset()
	nb, _ := nii.Marshal(notice{From: id.ID, Origin: id.ID, Seq: 1})
	ps, _ := nii.Marshal(pushState{From: id.ID, Watermarks: map[nii.NodeID]uint64{id.ID: 3}, Revocations: []string{"a.b.c"}})
	meta, _ := nii.Marshal(nodeMeta{ID: id.ID, Org: "o", Addrs: []string{"/ip4/127.0.0.1/tcp/1"}, Seq: 2})
	f.Add(append([]byte{msgAdvert}, enc...))
	f.Add(append([]byte{msgNotice}, nb...))
	f.Add(append([]byte{msgLeave}, id.ID...))
	f.Add(append([]byte{msgRevoke}, "a.b.c"...))
	f.Add(sa.Body)
	f.Add(ps)
	f.Add(meta)
	f.Add([]byte{})
	f.Add([]byte{9, 9, 9})
	d := &delegate{m.gossip}
	e := &eventDelegate{m.gossip}
	f.Fuzz(func(t *testing.T, b []byte) {
		m.gossip.handle(b)
		d.MergeRemoteState(b, false)
		node := &memberlist.Node{Name: string(id.ID), Addr: stdnet.IPv4(127, 0, 0, 1), Port: 7946, Meta: b}
		e.NotifyJoin(node)
		e.NotifyUpdate(node)
		signed := &nii.SignedAdvert{Body: b, Sig: ed25519.Sign(id.Key, append([]byte("nii/advert/v1\x00"), b...))}
		if enc, err := nii.EncodeSignedAdvert(signed); err == nil {
			m.gossip.handle(append([]byte{msgAdvert}, enc...))
		}
		// Nothing takes broadcasts from a lone member: keep the queue empty.
		m.gossip.queue.Reset()
	})
}

// A member that shuts down cleanly is shown as left; one that stops
// answering is shown as dead. memberlist tells delegates neither apart, so
// this checks nii's own goodbye.
func TestGossipLeftVersusDead(t *testing.T) {
	var net memNet
	a, _, crasher := leaveAndCrash(t, &net)
	if p, _ := a.peers.Get(crasher.ID); p.Online() || p.LastSeen.IsZero() {
		t.Fatalf("dead peer: %+v", p)
	}
}

// leaveAndCrash starts three members; of the two that joined a, one
// leaves cleanly and one stops as a crash would. It returns once a shows
// the leaver left and the crasher dead.
func leaveAndCrash(t *testing.T, net *memNet) (a, leaver, crasher *member) {
	t.Helper()
	a, leaver, crasher = net.start(t, nil), net.start(t, nil), net.start(t, nil)
	for _, m := range []*member{leaver, crasher} {
		if _, err := m.gossip.Join([]string{a.gossip.Addr()}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, "3 members", func() bool { return a.gossip.NumMembers() == 3 })
	if err := leaver.gossip.Close(); err != nil {
		t.Fatal(err)
	}
	if err := crasher.gossip.Stop(); err != nil {
		t.Fatal(err)
	}
	state := func(id nii.NodeID) string { p, _ := a.peers.Get(id); return p.State }
	waitFor(t, 10*time.Second, "the leaver is left and the crasher dead", func() bool {
		return state(leaver.ID) == registry.PeerLeft && state(crasher.ID) == registry.PeerDead
	})
	return a, leaver, crasher
}

// Broadcasts alone reach every member, without anti-entropy's help: with
// push/pull pushed out of the test's reach, a burst of records from one
// member must reach all of a small federation within seconds. (memberlist's
// local profile sends each broadcast to only two members, and LAN's to four,
// which misses someone for one record in sixty; nii raises that.)
func TestBroadcastsReachEveryMemberWithoutPushPull(t *testing.T) {
	var net memNet
	// Nor through any other catch-up: a member's metadata carries its new
	// seq, and a member that sees it ahead fetches the records. With every
	// fetch refused, only broadcasts can carry them.
	net.refuse.Store(true)
	var ms []*member
	for range 6 {
		cfg := func(c *Config) { c.PushPullInterval = time.Hour }
		ms = append(ms, net.startWith(t, nil, cfg))
	}
	// Each joins through every member before it: a join is a state sync
	// with each address given, both ways, so every member knows every
	// other once the joins return, whatever the machine's load (gossip of
	// the joins alone missed a member within 10 s on a busy CI machine).
	for i, m := range ms[1:] {
		var addrs []string
		for _, p := range ms[:i+1] {
			addrs = append(addrs, p.gossip.Addr())
		}
		if k, err := m.gossip.Join(addrs); err != nil || k != len(addrs) {
			t.Fatalf("join through %d members: %d joined, %v", len(addrs), k, err)
		}
	}
	waitFor(t, 10*time.Second, "6 members", func() bool {
		for _, m := range ms {
			if m.gossip.NumMembers() != 6 {
				return false
			}
		}
		return true
	})
	var ads []*nii.Advert
	for i := range 10 {
		ads = append(ads, ms[i%6].publish(t, fmt.Sprintf("set-%d", i), "Set", 1))
	}
	waitFor(t, spreadBound(fastGossip("", nil), 6, 10), "every record reaches every member", func() bool {
		for _, m := range ms {
			for _, a := range ads {
				if !hasAdvert(m.cat, a) {
					return false
				}
			}
		}
		return true
	})
	if n := net.recs.Load(); n != 0 {
		t.Fatalf("%d records came by fetch, not broadcast", n)
	}
}

// spreadBound is how long a burst of k small records broadcast by one of n
// members may take to reach them all, from the gossip settings: every
// member that holds a record sends it RetransmitMult·⌈log10(n+1)⌉ times
// (memberlist's retransmit limit), to GossipNodes members each gossip
// interval, so k records leave its queue within ⌈k·limit/GossipNodes⌉
// intervals, and a record crosses at most n-1 members. A factor of ten
// covers a loaded machine running -race, where gossip rounds slip.
func spreadBound(cfg Config, n, k int) time.Duration {
	mc := memberlist.DefaultLocalConfig() // the profile fastGossip uses
	limit := recordRetransmitMult * int(math.Ceil(math.Log10(float64(n+1))))
	rounds := (k*limit + mc.GossipNodes - 1) / mc.GossipNodes
	return 10 * time.Duration((n-1)*rounds) * cfg.GossipInterval
}

// A member that never answers a record fetch holds up nothing but its own
// records: the others' still reach every member by broadcast within the
// usual bound. Before gossip handed notices to the catch-up workers, each
// notice from such a peer stalled a member's receive loop for ten seconds,
// and every message queued behind it.
func TestSilentPeerDoesNotDelayGossip(t *testing.T) {
	net := memNet{silent: map[nii.NodeID]bool{}}
	// Broadcasts only: push/pull and the other catch-ups are shut off
	// (every fetch from a member that answers is refused), so the records
	// can arrive only through the receive loop the silent peer would block.
	net.refuse.Store(true)
	noPushPull := func(c *Config) { c.PushPullInterval = time.Hour }
	ms := []*member{net.startWith(t, nil, noPushPull), net.startWith(t, nil, noPushPull), net.startWith(t, nil, noPushPull)}
	silent := net.startWith(t, nil, noPushPull)
	net.mu.Lock()
	net.silent[silent.ID] = true
	net.mu.Unlock()
	all := append(ms[1:], silent)
	for _, m := range all {
		if _, err := m.gossip.Join([]string{ms[0].gossip.Addr()}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, "4 members", func() bool {
		for _, m := range append(all, ms[0]) {
			if m.gossip.NumMembers() != 4 {
				return false
			}
		}
		return true
	})
	// The silent peer notices records of its own, many more than one
	// member's fetches could wait out.
	for seq := range uint64(20) {
		nb, _ := nii.Marshal(notice{From: silent.ID, Origin: silent.ID, Seq: seq + 1})
		silent.gossip.queue.QueueBroadcast(&broadcast{msg: append([]byte{msgNotice}, nb...)})
	}
	// Each member asks it for one (one fetch per origin runs at a time).
	waitFor(t, 10*time.Second, "every member asks the silent peer", func() bool { return net.stalled.Load() >= int64(len(ms)) })
	const k = 10
	var ads []*nii.Advert
	for i := range k {
		ads = append(ads, ms[i%len(ms)].publish(t, fmt.Sprintf("set-%d", i), "Set", 1))
	}
	bound := spreadBound(fastGossip("", nil), len(all)+1, k)
	waitFor(t, bound, "every record reaches every member despite the silent peer", func() bool {
		for _, m := range append(ms, silent) {
			for _, a := range ads {
				if !hasAdvert(m.cat, a) {
					return false
				}
			}
		}
		return true
	})
}

// A member-table write that takes long (badger busy with a pull's chunks)
// must not hold up memberlist: memberlist calls its event delegate with
// its node lock held, so a write made there would stall the join, the
// member count, probes and gossip until it ended. Here the table's writes
// block until the test lets them go; the join still completes, the
// member still counts its members and still receives and passes on a
// record, and the table catches up once writes go through.
func TestSlowMemberTableDoesNotStallMemberlist(t *testing.T) {
	var net memNet
	release := make(chan struct{})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	a, b := net.start(t, nil), net.start(t, nil)
	slow := net.startWith(t, nil, func(c *Config) { c.memberWrite = func() { <-release } })
	t.Cleanup(unblock) // before slow closes (cleanups run last first): its member loop waits in memberWrite
	if _, err := b.gossip.Join([]string{a.gossip.Addr()}); err != nil {
		t.Fatal(err)
	}
	joined := make(chan error, 1)
	go func() {
		_, err := slow.gossip.Join([]string{a.gossip.Addr()})
		joined <- err
	}()
	select {
	case err := <-joined:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		unblock()
		<-joined
		t.Fatal("the join did not return while the member table was slow")
	}
	counted := make(chan int, 1)
	go func() { counted <- slow.gossip.NumMembers() }()
	select {
	case <-counted:
	case <-time.After(10 * time.Second):
		unblock()
		<-counted
		t.Fatal("NumMembers did not return while the member table was slow")
	}
	waitFor(t, 10*time.Second, "3 members seen by all", func() bool {
		return a.gossip.NumMembers() == 3 && b.gossip.NumMembers() == 3 && slow.gossip.NumMembers() == 3
	})
	ad := a.publish(t, "slow-table", "Spend", 1)
	waitFor(t, 10*time.Second, "the record reaches the member whose table is slow", func() bool { return hasAdvert(slow.cat, ad) })
	if _, ok := slow.peers.Get(a.ID); ok {
		t.Fatal("a member-table write went through while writes were held")
	}
	unblock()
	waitFor(t, 10*time.Second, "the member table catches up", func() bool {
		pa, okA := slow.peers.Get(a.ID)
		pb, okB := slow.peers.Get(b.ID)
		return okA && okB && pa.State == registry.PeerAlive && pb.State == registry.PeerAlive
	})
}
