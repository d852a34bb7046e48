package gossip

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/registry"
)

// Gossip keeps a node in the federation: membership and failure detection
// (memberlist's SWIM), node metadata, and the spread of catalog records.
//
// New records travel as memberlist broadcasts, re-broadcast by every node
// that finds them new (epidemic spread, as serf does for user events). A
// record too large for a gossip packet travels as a notice {origin, seq};
// a node that lacks it fetches it from the sender over the catalog protocol.
// Anti-entropy rides memberlist's periodic push/pull, which here carries only
// per-origin watermarks (a few dozen bytes per origin, never the catalog); a
// node that finds a peer ahead for some origin fetches that origin's records
// from the peer in pages. The same happens when a member's metadata shows a
// catalog seq beyond the watermark held for it.
//
// memberlist stays inside this package: callers see Gossip, Peer and
// Config only.
type Gossip struct {
	cfg            Config
	log            *slog.Logger
	cat            *registry.Catalog
	fetch          Fetcher
	peers          *registry.Peers
	ml             *memberlist.Memberlist
	queue          *memberlist.TransmitLimitedQueue
	gossipInterval time.Duration
	addr           string // gossip address, fixed at Create (LocalNode's fields are written under memberlist's lock)

	inbox     chan []byte
	metaDirty chan struct{}
	members   memberQueue // member changes, applied off memberlist's lock
	catchup   chan catchupTask
	pendMu    sync.Mutex
	pending   map[nii.NodeID]*catchupState // origins with a catch-up queued or running

	ctx    context.Context
	cancel context.CancelFunc
	// dialCtx ends the transport's TCP dials and connections: at Close,
	// once the leave is sent (closingTransport).
	dialCtx    context.Context
	dialCancel context.CancelFunc
	wg         sync.WaitGroup
	once       sync.Once

	synced   chan struct{} // closed once this node has heard from a member what it holds of this node's own records
	syncOnce sync.Once

	push *pusher // sends new records on at once, besides queueing them

	rejoinTried, rejoined atomic.Int64 // reconnect's joins to failed members, and those that answered
}

// Synced is closed once this node has exchanged state with a member and
// caught up on any of its own records that member held and it did not —
// records an earlier life of this node signed, when its home was restored
// from a backup. Until then a publish could reuse a seq or a version.
func (g *Gossip) Synced() <-chan struct{} { return g.synced }

func (g *Gossip) markSynced() { g.syncOnce.Do(func() { close(g.synced) }) }

// Fetcher fetches a page of an origin's catalog records from a peer (the
// catalog protocol over libp2p; package node wires it). It returns the
// records (unverified), whether more follow, and the peer's watermark for
// origin.
type Fetcher interface {
	FetchCatalogPage(ctx context.Context, from, origin nii.NodeID, after uint64, limit int) ([]*nii.SignedAdvert, bool, uint64, error)
}

// Config configures a node's gossip.
type Config struct {
	Self       nii.NodeID
	Org        string
	Federation string // memberlist label: nodes of other federations are ignored
	Registry   bool   // a registry-only node

	BindAddr      string // e.g. 0.0.0.0
	BindPort      int    // 0 picks a free port
	AdvertiseAddr string // optional: the address others reach this node on

	// Keys is the gossip keyring (16, 24 or 32 bytes each); Keys[0] is the
	// primary. Empty: gossip is not encrypted.
	Keys [][]byte

	// Profile picks memberlist's timing defaults: "lan" (default), "wan"
	// or "local".
	Profile string
	// Timing overrides for tests; zero keeps the profile's value.
	GossipInterval   time.Duration
	ProbeInterval    time.Duration
	ProbeTimeout     time.Duration
	PushPullInterval time.Duration
	TCPTimeout       time.Duration
	SuspicionMult    int
	// ReconnectInterval is how often a member tries to rejoin a member it
	// saw fail (0: 30 s, as Serf's reconnect_interval); ReconnectTimeout
	// is how long after a failed member was last seen it stops trying (0:
	// 24 h). memberlist itself never contacts a member it has declared
	// dead once GossipToTheDeadTime (30 s on LAN) has passed, so without
	// this the two sides of a healed network partition stay apart.
	ReconnectInterval time.Duration
	ReconnectTimeout  time.Duration
	// tune, if set, adjusts memberlist's configuration last: this
	// package's benchmarks use it to run hundreds of members in one
	// process (docs/benchmarks.md).
	tune func(*memberlist.Config)
	// noPush turns the eager push off (benchmarks compare with and
	// without it in one run).
	noPush bool
	// memberWrite, if set, runs before each write to the member table
	// (tests make it slow).
	memberWrite func()

	// P2PAddrs returns the node's current libp2p addresses, for its metadata.
	P2PAddrs func() []string
	// OnPeer is told a member's libp2p addresses whenever they are learnt.
	OnPeer func(id nii.NodeID, addrs []string)
	// Revocations, if set, is where revocations gossip delivers are
	// verified and kept; OnRevocation is told of each new one.
	Revocations  RevocationStore
	OnRevocation func(jti string)

	Logger *slog.Logger
}

// RevocationStore verifies and keeps revocations (auth.Revocations).
// Gossip spreads them like adverts: broadcast when new, and carried whole
// in push/pull (they are few and small) so a node that missed one learns
// it at its next exchange.
type RevocationStore interface {
	Add(token string) (jti string, isNew bool, err error)
	Tokens(max int) []string
}

// maxPushRevocations bounds the revocation bytes one push/pull carries.
const maxPushRevocations = 256 << 10

// Message types on the gossip channel (first byte).
const (
	msgAdvert byte = 1 // an encoded nii.SignedAdvert
	msgNotice byte = 2 // an encoded notice: fetch origin/seq from From
	msgLeave  byte = 3 // a node ID saying goodbye (memberlist does not tell delegates leave from failure)
	msgRevoke byte = 4 // a revocation token (a compact JWS)
)

type notice struct {
	From   nii.NodeID `cbor:"1,keyasint"`
	Origin nii.NodeID `cbor:"2,keyasint"`
	Seq    uint64     `cbor:"3,keyasint"`
}

// pushState is what the push/pull exchange carries: who we are and our
// per-origin watermarks. At 60 bytes an origin it stays tiny next to
// memberlist's 20 MiB cap even for thousands of nodes.
type pushState struct {
	From        nii.NodeID            `cbor:"1,keyasint"`
	Watermarks  map[nii.NodeID]uint64 `cbor:"2,keyasint"`
	Revocations []string              `cbor:"3,keyasint,omitempty"`
}

// nodeMeta is memberlist node metadata (at most 512 bytes).
type nodeMeta struct {
	ID       nii.NodeID `cbor:"1,keyasint"`
	Org      string     `cbor:"2,keyasint"`
	Addrs    []string   `cbor:"3,keyasint,omitempty"`
	Seq      uint64     `cbor:"4,keyasint"`
	Registry bool       `cbor:"5,keyasint,omitempty"`
}

type catchupTask struct {
	origin, from nii.NodeID
}

// recordRetransmitMult sets how many times each member that holds a
// catalog record sends it on: memberlist's limit, RetransmitMult ×
// ⌈log10(N+1)⌉ transmits, each to a random member. With LAN's 4 that is 4
// transmits below 10 members and 8 below 100, and a record then misses at
// least one member of 6 for 1.7 % of records, of 33 for 0.7 %, of 64 for
// 2.1 % (a simulation of memberlist's rounds: 3 random members a round,
// one transmit each); that member waits for anti-entropy, which is what
// made the worst cases of docs/benchmarks.md seconds long. At 8 none of
// 20,000 simulated records missed anyone, at any size up to 256, for
// twice the transmits of records only, which are small and few.
// (memberlist's own messages keep the profile's multiplier, at least 4.)
const recordRetransmitMult = 8

// maxInlineAdvert is the largest encoded advert sent inside a gossip
// packet; larger ones go as notices. memberlist packets are 1400 bytes.
const maxInlineAdvert = 1000

// New binds the gossip listener and starts serving. It does not join
// anyone: call Join.
func New(cfg Config, cat *registry.Catalog, peers *registry.Peers, fetch Fetcher) (*Gossip, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	g := &Gossip{
		cfg:       cfg,
		log:       cfg.Logger,
		cat:       cat,
		fetch:     fetch,
		peers:     peers,
		inbox:     make(chan []byte, 1024),
		metaDirty: make(chan struct{}, 1),
		members:   memberQueue{ready: make(chan struct{}, 1), pending: map[nii.NodeID]memberEvent{}},
		catchup:   make(chan catchupTask, 1024),
		pending:   make(map[nii.NodeID]*catchupState),
		synced:    make(chan struct{}),
	}
	g.ctx, g.cancel = context.WithCancel(context.Background())
	g.dialCtx, g.dialCancel = context.WithCancel(context.Background())

	mc, err := profileConfig(cfg.Profile)
	if err != nil {
		return nil, err
	}
	// A broadcast counts one transmit per member it is sent to, so memberlist's
	// local profile (RetransmitMult 2) sends each record to only two members
	// in a small federation, and one that misses it waits for push/pull.
	// Catalog records are worth more than that: at least LAN's 4.
	mc.RetransmitMult = max(mc.RetransmitMult, 4)
	mc.Name = string(cfg.Self)
	mc.BindAddr = cfg.BindAddr
	mc.BindPort = cfg.BindPort
	mc.AdvertisePort = cfg.BindPort
	if cfg.AdvertiseAddr != "" {
		mc.AdvertiseAddr = cfg.AdvertiseAddr
	}
	mc.Label = "nii/" + cfg.Federation
	// A node restarted on a new address (a new container IP, port 0 in
	// tests) reclaims its name once the old incarnation is declared dead,
	// rather than being refused for GossipToTheDeadTime (30 s on LAN).
	mc.DeadNodeReclaimTime = time.Second
	if len(cfg.Keys) > 0 {
		kr, err := memberlist.NewKeyring(cfg.Keys, cfg.Keys[0])
		if err != nil {
			return nil, fmt.Errorf("gossip keyring: %w", err)
		}
		mc.Keyring = kr
		mc.GossipVerifyIncoming, mc.GossipVerifyOutgoing = true, true
	}
	if cfg.GossipInterval > 0 {
		mc.GossipInterval = cfg.GossipInterval
	}
	if cfg.ProbeInterval > 0 {
		mc.ProbeInterval = cfg.ProbeInterval
	}
	if cfg.ProbeTimeout > 0 {
		mc.ProbeTimeout = cfg.ProbeTimeout
	}
	if cfg.PushPullInterval > 0 {
		mc.PushPullInterval = cfg.PushPullInterval
	}
	if cfg.TCPTimeout > 0 {
		mc.TCPTimeout = cfg.TCPTimeout
	}
	if cfg.SuspicionMult > 0 {
		mc.SuspicionMult = cfg.SuspicionMult
	}
	if cfg.tune != nil {
		cfg.tune(mc)
	}
	mc.Delegate = &delegate{g}
	mc.Events = &eventDelegate{g}
	mc.Logger = log.New(&slogWriter{g.log}, "", 0)
	var own *memberlist.NetTransport
	if mc.Transport == nil {
		if own, err = closingTransport(mc, g.dialCtx); err != nil {
			return nil, fmt.Errorf("gossip: %w", err)
		}
	}
	g.queue = &memberlist.TransmitLimitedQueue{
		NumNodes:       func() int { return g.ml.NumMembers() },
		RetransmitMult: recordRetransmitMult,
	}
	g.gossipInterval = mc.GossipInterval
	g.push = newPusher(mc.GossipNodes, time.Now())
	ml, err := memberlist.Create(mc)
	if err != nil {
		if own != nil {
			own.Shutdown()
		}
		return nil, fmt.Errorf("gossip: %w", err)
	}
	g.ml = ml
	// Read the local address now, before anything can update the local node:
	// memberlist rewrites LocalNode's fields in place on UpdateNode.
	local := ml.LocalNode()
	g.addr = net.JoinHostPort(local.Addr.String(), strconv.Itoa(int(local.Port)))
	every, giveUp := cfg.ReconnectInterval, cfg.ReconnectTimeout
	if every <= 0 {
		every = defaultReconnectInterval
	}
	if giveUp <= 0 {
		giveUp = defaultReconnectTimeout
	}
	g.wg.Add(4 + catchupWorkers)
	go g.receiveLoop()
	go g.metaLoop()
	go g.memberLoop()
	go g.reconnectLoop(every, giveUp)
	for range catchupWorkers {
		go g.catchupLoop()
	}
	return g, nil
}

var (
	_ memberlist.Delegate        = (*delegate)(nil)
	_ memberlist.EventDelegate   = (*eventDelegate)(nil)
	_ memberlist.Broadcast       = (*broadcast)(nil)
	_ memberlist.UniqueBroadcast = (*broadcast)(nil)
)

// Addr returns the gossip address others can join ("host:port").
func (g *Gossip) Addr() string { return g.addr }

// Join contacts the given members ("host:port") and joins their federation.
// It returns how many were reached.
func (g *Gossip) Join(addrs []string) (int, error) {
	if len(addrs) == 0 {
		return 0, nil
	}
	n, err := g.ml.Join(addrs)
	if err != nil && n == 0 {
		return 0, fmt.Errorf("join %v: %w", addrs, err)
	}
	return n, nil
}

// NumMembers returns the number of live members, this node included.
func (g *Gossip) NumMembers() int { return g.ml.NumMembers() }

// PushStats returns the packets this node has pushed to random members on
// top of memberlist's broadcasts (push.go) and the records it did not push
// for want of budget (they still spread by broadcast and catch-up).
func (g *Gossip) PushStats() (sent, denied int64) { return g.push.stats() }

// RejoinStats counts reconnect's joins to members seen to fail: tried,
// and of those, answered (docs/registry.md, Failure model).
func (g *Gossip) RejoinStats() (tried, joined int64) { return g.rejoinTried.Load(), g.rejoined.Load() }

// Publish spreads one of this node's new records, as Catalog.Sign returned
// it: the signed record and the advert it carries (which this node has just
// signed, so it is not verified again). It also updates the node's metadata
// with its new seq.
func (g *Gossip) Publish(sa *nii.SignedAdvert, a *nii.Advert) {
	g.spread(sa, a)
	// Let members that missed the broadcast learn of the new seq from our
	// metadata; failing that, push/pull catches them up. UpdateNode blocks
	// until the update is sent, so it runs on the meta goroutine.
	select {
	case g.metaDirty <- struct{}{}:
	default: // an update is already pending; it will carry the new seq
	}
}

// metaLoop pushes metadata updates (coalesced) off the publish path.
func (g *Gossip) metaLoop() {
	defer g.wg.Done()
	for {
		select {
		case <-g.ctx.Done():
			return
		case <-g.metaDirty:
			if err := g.ml.UpdateNode(time.Second); err != nil && g.ctx.Err() == nil {
				g.log.Debug("gossip meta update", slog.String("err", err.Error()))
			}
		}
	}
}

// spread queues a record (or a notice for it) for broadcast.
func (g *Gossip) spread(sa *nii.SignedAdvert, a *nii.Advert) {
	b, err := nii.EncodeSignedAdvert(sa)
	if err != nil {
		return
	}
	var msg []byte
	if len(b) <= maxInlineAdvert {
		msg = append([]byte{msgAdvert}, b...)
	} else {
		nb, err := nii.Marshal(notice{From: g.cfg.Self, Origin: a.Origin, Seq: a.Seq})
		if err != nil {
			return
		}
		msg = append([]byte{msgNotice}, nb...)
	}
	g.broadcastRecord(msg)
}

// broadcastRecord spreads a record (or a notice of one) this node has
// just signed or just found new: it queues it for memberlist's gossip
// rounds, which send it on RetransmitMult × ⌈log10(N+1)⌉ times over the
// next seconds, and also sends it at once to a few random members, so
// that each hop costs a packet's flight rather than a wait for this
// node's next gossip round (up to GossipInterval, 200 ms on LAN).
func (g *Gossip) broadcastRecord(msg []byte) {
	g.queue.QueueBroadcast(&broadcast{msg: msg})
	if !g.cfg.noPush {
		g.push.send(g.ml, msg)
	}
}

// Leave announces departure and waits up to timeout for it to spread.
func (g *Gossip) Leave(timeout time.Duration) error { return g.ml.Leave(timeout) }

// Close leaves (briefly), stops memberlist and the workers, and waits for
// them (a reconnect's join under way has its dial cut: closingTransport). It
// is idempotent.
func (g *Gossip) Close() error {
	var err error
	g.once.Do(func() {
		g.cancel()
		g.sayGoodbye()
		if lerr := g.ml.Leave(500 * time.Millisecond); lerr != nil {
			g.log.Debug("gossip leave", slog.String("err", lerr.Error()))
		}
		// Only now, the leave sent: its push/pulls and pings may dial.
		g.dialCancel()
		err = g.ml.Shutdown()
		g.wg.Wait()
		g.queue.Reset()
	})
	return err
}

// sayGoodbye queues a leave notice and gives gossip a few rounds to carry
// it, so that members show this node as "left" rather than "dead".
// memberlist's own leave message reaches delegates only as NotifyLeave,
// with no way to tell a departure from a failure.
func (g *Gossip) sayGoodbye() {
	if g.ml.NumMembers() <= 1 {
		return
	}
	g.queue.QueueBroadcast(&broadcast{msg: append([]byte{msgLeave}, g.cfg.Self...)})
	interval := g.gossipInterval
	deadline := time.Now().Add(3 * interval)
	for g.queue.NumQueued() > 0 && time.Now().Before(deadline) {
		time.Sleep(interval / 4) // bounded: at most three gossip rounds
	}
}

// SpreadRevocation gossips a revocation this node has verified and kept.
func (g *Gossip) SpreadRevocation(token string) {
	g.queue.QueueBroadcast(&broadcast{msg: append([]byte{msgRevoke}, token...)})
}

// applyRevocation keeps a revocation received from gossip and, if it is
// new, passes it on (when it came by broadcast) and reports it.
func (g *Gossip) applyRevocation(token string, rebroadcast bool) {
	rs := g.cfg.Revocations
	if rs == nil {
		return
	}
	jti, isNew, err := rs.Add(token)
	if err != nil {
		g.cat.Reject(registry.RejectInvalid, "revocation: "+err.Error())
		g.log.Debug("revocation refused", slog.String("err", err.Error()))
		return
	}
	if !isNew {
		return
	}
	g.log.Info("revocation received", slog.String("revokes", jti))
	if rebroadcast {
		g.SpreadRevocation(token)
	}
	if g.cfg.OnRevocation != nil {
		g.cfg.OnRevocation(jti)
	}
}

// Stop halts gossip abruptly, without a leave message, as a crash would.
// Tests use it to simulate failures and partitions.
func (g *Gossip) Stop() error {
	var err error
	g.once.Do(func() {
		g.cancel()
		err = g.ml.Shutdown()
		g.wg.Wait()
		g.queue.Reset()
	})
	return err
}

// receiveLoop handles gossip messages off memberlist's packet goroutine.
func (g *Gossip) receiveLoop() {
	defer g.wg.Done()
	for {
		select {
		case <-g.ctx.Done():
			return
		case msg := <-g.inbox:
			g.handle(msg)
		}
	}
}

func (g *Gossip) handle(msg []byte) {
	if len(msg) == 0 {
		return
	}
	switch msg[0] {
	case msgAdvert:
		sa, err := nii.DecodeSignedAdvert(msg[1:])
		if err != nil {
			g.cat.Reject(registry.RejectInvalid, "gossip message: "+err.Error())
			return
		}
		a, isNew, err := g.cat.Apply(sa)
		if err != nil {
			g.logReject(err)
			return
		}
		if isNew {
			g.broadcastRecord(msg)
			g.log.Debug("catalog record", slog.String("dataset", a.Dataset.String()), slog.Uint64("seq", a.Seq), slog.String("origin", a.Origin.Short()))
		}
	case msgLeave:
		id := nii.NodeID(msg[1:])
		if id.Validate() == nil && id != g.cfg.Self {
			g.peers.Leaving(id)
		}
	case msgRevoke:
		g.applyRevocation(string(msg[1:]), true)
	case msgNotice:
		var n notice
		if err := nii.Unmarshal(msg[1:], &n); err != nil || n.Seq == 0 || n.Origin.Validate() != nil || n.From.Validate() != nil {
			g.cat.Reject(registry.RejectInvalid, "gossip notice: undecodable")
			return
		}
		if g.cat.HasRecord(n.Origin, n.Seq) || n.From == g.cfg.Self || !g.cat.WantsOrigin(n.Origin) {
			return
		}
		// The record is fetched by the catch-up workers, never here: this
		// loop must not wait on the network, or one slow peer would hold up
		// every message behind its notice (serf's NotifyMsg does no I/O
		// either). The worker passes the notice on once the record is held.
		g.queueNotice(n.Origin, n.From, n.Seq)
	default:
		g.cat.Reject(registry.RejectInvalid, fmt.Sprintf("gossip message type %d", msg[0]))
	}
}

func (g *Gossip) logReject(err error) {
	// Replays are the normal echo of epidemic spread, and records of
	// unknown origins are counted and parked (a flood would fill the log);
	// anything else is worth an operator's attention.
	var re *registry.RejectError
	if errors.As(err, &re) && re.Reason != registry.RejectReplay && re.Reason != registry.RejectNotMember {
		g.log.Warn("catalog record rejected", slog.String("err", err.Error()))
	}
}

func isReplay(err error) bool {
	var re *registry.RejectError
	return errors.As(err, &re) && re.Reason == registry.RejectReplay
}

// queueCatchup asks a catch-up worker to fetch origin's records from a
// peer. One catch-up per origin runs at a time; a request that arrives while
// one is queued or running makes it run once more afterwards (with the
// newest peer), so a record announced mid-fetch is never left behind.
func (g *Gossip) queueCatchup(origin, from nii.NodeID) { g.queueNotice(origin, from, 0) }

// queueNotice is queueCatchup for a notice of record seq (0: none): once a
// catch-up has brought that record in, it is noticed onward, as a record
// that arrives by broadcast is broadcast onward.
func (g *Gossip) queueNotice(origin, from nii.NodeID, seq uint64) {
	// This node's own origin is caught up too: a peer ahead of it for its
	// own records holds what an earlier life of it signed (a restored home).
	if from == g.cfg.Self {
		return
	}
	g.pendMu.Lock()
	st, ok := g.pending[origin]
	if !ok {
		st = &catchupState{}
		g.pending[origin] = st
	}
	if seq > 0 && len(st.noticed) < maxNoticed {
		if st.noticed == nil {
			st.noticed = map[uint64]bool{}
		}
		st.noticed[seq] = true
	}
	if ok {
		st.again, st.from = true, from
		g.pendMu.Unlock()
		return
	}
	g.pendMu.Unlock()
	select {
	case g.catchup <- catchupTask{origin: origin, from: from}:
	default:
		// Every worker busy and the queue full: anti-entropy asks again.
		g.pendMu.Lock()
		delete(g.pending, origin)
		g.pendMu.Unlock()
	}
}

// maxNoticed bounds the notices held per origin awaiting their record; past
// it a record is still fetched, only not noticed onward (the members that
// miss the notice learn the record at their next push/pull).
const maxNoticed = 1024

type catchupState struct {
	again   bool
	from    nii.NodeID
	noticed map[uint64]bool // seqs whose notice is passed on once held
}

// catchupWorkers is how many origins are caught up at once, so that one
// peer slow to serve a page holds up only the origin it was asked for.
const catchupWorkers = 4

func (g *Gossip) catchupLoop() {
	defer g.wg.Done()
	for {
		select {
		case <-g.ctx.Done():
			return
		case t := <-g.catchup:
			for {
				if err := g.catchUp(t); err != nil && g.ctx.Err() == nil {
					g.log.Debug("catalog catch-up", slog.String("origin", t.origin.Short()), slog.String("from", t.from.Short()), slog.String("err", err.Error()))
				} else if err == nil && t.origin == g.cfg.Self {
					g.markSynced()
				}
				g.pendMu.Lock()
				st := g.pending[t.origin]
				if st == nil || !st.again || g.ctx.Err() != nil {
					delete(g.pending, t.origin)
					g.pendMu.Unlock()
					break
				}
				st.again = false
				t.from = st.from
				g.pendMu.Unlock()
			}
		}
	}
}

// applied notices a record a catch-up brought in if a notice for it is
// waiting.
func (g *Gossip) applied(a *nii.Advert) {
	g.pendMu.Lock()
	st := g.pending[a.Origin]
	ok := st != nil && st.noticed[a.Seq]
	if ok {
		delete(st.noticed, a.Seq)
	}
	g.pendMu.Unlock()
	if ok {
		nb, _ := nii.Marshal(notice{From: g.cfg.Self, Origin: a.Origin, Seq: a.Seq})
		g.broadcastRecord(append([]byte{msgNotice}, nb...))
	}
}

// pageSize is how many records one catch-up page asks for.
const pageSize = 256

// catchUp fetches every record of t.origin after our watermark from t.from,
// page by page, then adopts the peer's watermark.
func (g *Gossip) catchUp(t catchupTask) error {
	after := g.cat.Watermark(t.origin)
	for {
		ctx, cancel := context.WithTimeout(g.ctx, 30*time.Second)
		recs, more, wm, err := g.fetch.FetchCatalogPage(ctx, t.from, t.origin, after, pageSize)
		cancel()
		if err != nil {
			return err
		}
		for _, sa := range recs {
			a, isNew, err := g.cat.Apply(sa)
			if err != nil && !errors.Is(err, registry.ErrRejected) {
				return err
			}
			if err != nil {
				g.logReject(err)
			}
			if isNew {
				g.applied(a)
			}
			if a != nil && a.Seq > after {
				after = a.Seq
			}
		}
		if !more {
			return g.cat.SetWatermark(t.origin, wm)
		}
		if len(recs) == 0 {
			return errors.New("peer said more but sent nothing")
		}
	}
}

// delegate is memberlist's view of us.
type delegate struct{ g *Gossip }

func (d *delegate) NodeMeta(limit int) []byte {
	g := d.g
	m := nodeMeta{ID: g.cfg.Self, Org: g.cfg.Org, Seq: g.cat.SelfSeq(), Registry: g.cfg.Registry}
	if g.cfg.P2PAddrs != nil {
		m.Addrs = g.cfg.P2PAddrs()
	}
	for {
		b, err := nii.Marshal(m)
		if err != nil {
			return nil
		}
		if len(b) <= limit || len(m.Addrs) == 0 {
			return b
		}
		m.Addrs = m.Addrs[:len(m.Addrs)-1]
	}
}

func (d *delegate) NotifyMsg(b []byte) {
	if len(b) == 0 || len(b) > nii.MaxAdvertSize+256 {
		return
	}
	select {
	case d.g.inbox <- append([]byte(nil), b...):
	default:
		// Full inbox: drop; anti-entropy will bring the record later.
		d.g.cat.Reject(registry.RejectOverload, "gossip inbox full")
	}
}

func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte {
	return d.g.queue.GetBroadcasts(overhead, limit)
}

func (d *delegate) LocalState(join bool) []byte {
	st := pushState{From: d.g.cfg.Self, Watermarks: d.g.cat.Watermarks()}
	if d.g.cfg.Revocations != nil {
		st.Revocations = d.g.cfg.Revocations.Tokens(maxPushRevocations)
	}
	b, _ := nii.Marshal(st)
	return b
}

func (d *delegate) MergeRemoteState(buf []byte, join bool) {
	var st pushState
	if err := nii.Unmarshal(buf, &st); err != nil || st.From.Validate() != nil {
		d.g.cat.Reject(registry.RejectInvalid, "push/pull state: undecodable")
		return
	}
	mine := d.g.cat.Watermarks()
	if st.From != d.g.cfg.Self {
		if st.Watermarks[d.g.cfg.Self] <= mine[d.g.cfg.Self] {
			d.g.markSynced() // the member holds nothing of ours we lack
		} // else: the catch-up of our own origin, queued below, marks it
	}
	for origin, wm := range st.Watermarks {
		if wm > mine[origin] && origin.Validate() == nil && d.g.cat.WantsOrigin(origin) {
			d.g.queueCatchup(origin, st.From)
		}
	}
	// A sender puts at most maxPushRevocations bytes of revocations in its
	// state; more than twice that is not an honest member's, and is cut.
	budget := 2 * maxPushRevocations
	for _, tok := range st.Revocations {
		if budget -= len(tok); budget < 0 {
			d.g.cat.Reject(registry.RejectInvalid, fmt.Sprintf("push/pull state: revocations over %d bytes", 2*maxPushRevocations))
			break
		}
		d.g.applyRevocation(tok, false)
	}
}

// eventDelegate tracks members in the peer table.
type eventDelegate struct{ g *Gossip }

func (e *eventDelegate) NotifyJoin(n *memberlist.Node)   { e.update(n, registry.PeerAlive) }
func (e *eventDelegate) NotifyUpdate(n *memberlist.Node) { e.update(n, registry.PeerAlive) }
func (e *eventDelegate) NotifyLeave(n *memberlist.Node)  { e.update(n, registry.PeerDead) }

// update reads what it needs of n (memberlist rewrites the node in place
// later), keeps the push list, and leaves the rest — a write to the member
// table in badger, the catch-up the metadata may call for — to memberLoop.
// memberlist calls its event delegate with its node lock held, on the
// goroutine that also handles every alive, suspect and dead message and
// hands records to NotifyMsg: a badger commit here (which waits its turn behind whatever the store is
// writing, a pull's chunks say) held up the member's gossip, probes and
// records for as long, once per member event, and a join or a false
// failure makes one event per member at every member.
func (e *eventDelegate) update(n *memberlist.Node, state string) {
	g := e.g
	var m nodeMeta
	if err := nii.Unmarshal(n.Meta, &m); err != nil || m.ID != nii.NodeID(n.Name) || m.ID.Validate() != nil {
		g.log.Warn("member with bad metadata ignored", slog.String("name", n.Name))
		return
	}
	if m.ID == g.cfg.Self {
		return
	}
	addr := n.Address()
	if state == registry.PeerAlive {
		g.push.add(n.Name, addr)
	} else {
		g.push.remove(n.Name)
	}
	g.members.put(memberEvent{meta: m, addr: addr, state: state})
}

// memberEvent is a member's change, as memberlist reported it.
type memberEvent struct {
	meta  nodeMeta
	addr  string
	state string
}

// memberQueue holds member changes for memberLoop, the newest per member
// (the member table keeps only the latest state anyway), in arrival order.
type memberQueue struct {
	ready   chan struct{} // signalled when pending is not empty
	mu      sync.Mutex
	pending map[nii.NodeID]memberEvent
	order   []nii.NodeID
}

func (q *memberQueue) put(ev memberEvent) {
	q.mu.Lock()
	if _, ok := q.pending[ev.meta.ID]; !ok {
		q.order = append(q.order, ev.meta.ID)
	}
	q.pending[ev.meta.ID] = ev
	q.mu.Unlock()
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

func (q *memberQueue) take() []memberEvent {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := make([]memberEvent, 0, len(q.order))
	for _, id := range q.order {
		out = append(out, q.pending[id])
	}
	clear(q.pending)
	q.order = q.order[:0]
	return out
}

// memberLoop applies member changes off memberlist's lock.
func (g *Gossip) memberLoop() {
	defer g.wg.Done()
	for {
		select {
		case <-g.ctx.Done():
			return
		case <-g.members.ready:
			for _, ev := range g.members.take() {
				g.applyMember(ev)
			}
		}
	}
}

// applyMember records a member's change in the member table and acts on
// its metadata.
func (g *Gossip) applyMember(ev memberEvent) {
	m, state := ev.meta, ev.state
	if g.cfg.memberWrite != nil {
		g.cfg.memberWrite()
	}
	g.peers.Update(registry.Peer{
		ID:       m.ID,
		Org:      m.Org,
		Addrs:    m.Addrs,
		Gossip:   ev.addr,
		Registry: m.Registry,
		State:    state,
		Seq:      m.Seq,
	})
	if state == registry.PeerAlive {
		if g.cfg.OnPeer != nil && len(m.Addrs) > 0 {
			g.cfg.OnPeer(m.ID, m.Addrs)
		}
		// Records that arrived before the member did (parked) count now.
		if k := g.cat.Release(m.ID); k > 0 {
			g.log.Debug("parked catalog records applied", slog.String("origin", m.ID.Short()), slog.Int("count", k))
		}
		if m.Seq > g.cat.Watermark(m.ID) {
			g.queueCatchup(m.ID, m.ID)
		}
	}
}

// Reconnect defaults, as Serf's.
const (
	defaultReconnectInterval = 30 * time.Second
	defaultReconnectTimeout  = 24 * time.Hour
)

// reconnectLoop tries, every interval, to rejoin one member seen to fail
// (reconnect), until the gossip closes.
func (g *Gossip) reconnectLoop(every, giveUp time.Duration) {
	defer g.wg.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-g.ctx.Done():
			return
		case <-t.C:
			g.reconnect(giveUp)
		}
	}
}

// reconnect picks at random one member the member table shows as failed
// (dead, not left: one that said goodbye rejoins by itself when it comes
// back), that memberlist does not list as a member now and that was last
// seen within giveUp, and joins it. As in Serf, it tries at all only with
// probability failed/alive, so that a federation makes about one attempt
// per interval at a member that is really down rather than one per
// member; across a partition, where as many are failed as alive, every
// member tries. The member table is kept in badger, so a restarted node
// also finds members it knew when its configured join addresses are down.
// It returns the member it tried, if any.
func (g *Gossip) reconnect(giveUp time.Duration) (nii.NodeID, bool) {
	live := map[string]bool{}
	for _, m := range g.ml.Members() {
		live[m.Name] = true
	}
	now := time.Now()
	var failed []registry.Peer
	for _, p := range g.peers.List() {
		if p.State == registry.PeerDead && p.Gossip != "" && p.ID != g.cfg.Self && !live[string(p.ID)] && now.Sub(p.LastSeen) <= giveUp {
			failed = append(failed, p)
		}
	}
	if len(failed) == 0 || rand.Float64() > float64(len(failed))/float64(len(live)) {
		return "", false
	}
	p := failed[rand.IntN(len(failed))]
	g.rejoinTried.Add(1)
	if k, err := g.ml.Join([]string{p.Gossip}); err != nil || k == 0 {
		g.log.Debug("reconnect to a failed member", slog.String(nii.LogPeer, p.ID.Short()), slog.String(nii.LogAddr, p.Gossip), slog.Any(nii.LogErr, err))
	} else {
		g.rejoined.Add(1)
		g.log.Info("reconnected to a member seen to fail", slog.String(nii.LogPeer, p.ID.Short()), slog.String(nii.LogOrg, p.Org), slog.Int(nii.LogMembers, g.ml.NumMembers()))
	}
	return p.ID, true
}

// broadcast is one queued gossip message. Each is unique (a record, a
// notice or a revocation is never superseded in the queue: the catalog
// sorts out newer and older), and says so: memberlist otherwise scans its
// whole queue, under the queue's lock, for messages each new one
// invalidates.
type broadcast struct{ msg []byte }

func (b *broadcast) Invalidates(memberlist.Broadcast) bool { return false }
func (b *broadcast) Message() []byte                       { return b.msg }
func (b *broadcast) Finished()                             {}
func (b *broadcast) UniqueBroadcast()                      {}

// slogWriter turns memberlist's log lines into debug-level slog records
// (warnings and errors keep their level).
type slogWriter struct{ log *slog.Logger }

func (w *slogWriter) Write(p []byte) (int, error) {
	s := string(p)
	for len(s) > 0 && s[len(s)-1] == '\n' {
		s = s[:len(s)-1]
	}
	switch {
	case strings.Contains(s, "[ERR]"):
		w.log.Error("memberlist: " + s)
	case strings.Contains(s, "[WARN]"):
		w.log.Warn("memberlist: " + s)
	default:
		w.log.Debug("memberlist: " + s)
	}
	return len(p), nil
}

var _ io.Writer = (*slogWriter)(nil)

// profileConfig is memberlist's configuration for a timing profile.
func profileConfig(profile string) (*memberlist.Config, error) {
	switch profile {
	case "", "lan":
		return memberlist.DefaultLANConfig(), nil
	case "wan":
		return memberlist.DefaultWANConfig(), nil
	case "local":
		return memberlist.DefaultLocalConfig(), nil
	}
	return nil, fmt.Errorf("gossip profile %q: want lan, wan or local", profile)
}

// Timing is what of a timing profile bounds how long the federation
// takes to notice things.
type Timing struct {
	// GossipToTheDead is how long memberlist goes on gossiping to a
	// member it declared dead: a partition shorter than that heals
	// without the reconnect.
	GossipToTheDead time.Duration
	// Probe is the failure detector's probe interval.
	Probe time.Duration
	// PushPull is the anti-entropy interval: a record whose broadcast a
	// member missed reaches it at the next push/pull at the latest.
	PushPull time.Duration
}

// ProfileTiming returns a timing profile's Timing ("" is lan).
func ProfileTiming(profile string) (Timing, error) {
	mc, err := profileConfig(profile)
	if err != nil {
		return Timing{}, err
	}
	return Timing{GossipToTheDead: mc.GossipToTheDeadTime, Probe: mc.ProbeInterval, PushPull: mc.PushPullInterval}, nil
}

// closingTransport gives mc memberlist's own UDP/TCP transport, made as
// memberlist makes it (a port picked when mc.BindPort is 0, retried while
// the UDP half of a picked port is taken), but whose TCP dials and
// connections end when ctx does: a reconnect's join to a member that is
// down waits up to TCPTimeout for its dial, and Close, which ends ctx,
// would wait with it.
func closingTransport(mc *memberlist.Config, ctx context.Context) (*memberlist.NetTransport, error) {
	tries := 1
	if mc.BindPort == 0 {
		tries = 10
	}
	var nt *memberlist.NetTransport
	var err error
	for range tries {
		nt, err = memberlist.NewNetTransport(&memberlist.NetTransportConfig{
			BindAddrs: []string{mc.BindAddr}, BindPort: mc.BindPort, Logger: mc.Logger, MetricLabels: mc.MetricLabels,
		})
		if err == nil {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("transport: %w", err)
	}
	if mc.BindPort == 0 {
		mc.BindPort = nt.GetAutoBindPort()
		mc.AdvertisePort = mc.BindPort
	}
	mc.Transport = &ctxTransport{NetTransport: nt, ctx: ctx}
	return nt, nil
}

// ctxTransport is a NetTransport whose TCP connections end with ctx: a
// dial under way, and a connection open (a member that accepted but does
// not answer would otherwise hold a push/pull until its read deadline).
type ctxTransport struct {
	*memberlist.NetTransport
	ctx context.Context
}

var _ memberlist.NodeAwareTransport = (*ctxTransport)(nil)

func (t *ctxTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout}
	conn, err := d.DialContext(t.ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return &ctxConn{Conn: conn, stop: context.AfterFunc(t.ctx, func() { conn.Close() })}, nil
}

// ctxConn is a connection closed when its transport's ctx ends.
type ctxConn struct {
	net.Conn
	stop func() bool
}

func (c *ctxConn) Close() error {
	c.stop()
	return c.Conn.Close()
}

func (t *ctxTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	return t.DialTimeout(a.Addr, timeout)
}
