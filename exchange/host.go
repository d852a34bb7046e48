package exchange

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/core/protocol"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	"github.com/libp2p/go-libp2p/p2p/net/connmgr"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	tls "github.com/libp2p/go-libp2p/p2p/security/tls"
	quic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
	msmux "github.com/multiformats/go-multistream"
	"github.com/nii-uk/nii"
)

// DefaultPort is the TCP and UDP (QUIC) port a node listens on for libp2p
// when HostConfig.Listen is empty. (memberlist's own default is 7946.)
const DefaultPort = 7948

// defaultListen is used when HostConfig.Listen is empty.
var defaultListen = []string{
	fmt.Sprintf("/ip4/0.0.0.0/tcp/%d", DefaultPort),
	fmt.Sprintf("/ip4/0.0.0.0/udp/%d/quic-v1", DefaultPort),
}

// Stream deadlines. A request/response exchange (open the stream, send the
// request, receive the whole response) must finish within requestTimeout on
// both sides; the client's context can only shorten it.
const requestTimeout = 30 * time.Second

// Connection manager watermarks: above connHighWater open connections, libp2p
// closes the least useful ones down to connLowWater (never ones younger than
// a minute). The high mark stays below the resource manager's base system
// connection limit (128), which libp2p checks at start-up.
const (
	connLowWater  = 96
	connHighWater = 128
)

// maxPeerAddrs bounds how many addresses AddPeerAddrs takes for one peer at
// a time: gossip metadata comes from other nodes.
const maxPeerAddrs = 32

// userAgent is what identify tells peers this node runs.
const userAgent = "nii"

// ErrUnreachable is wrapped when no connection to a peer could be made: no
// known address, nothing listening, a timeout while dialling; or when the
// connection a request went out on turned out closed by the peer. It is of
// kind nii.ErrUnavailable.
var ErrUnreachable = nii.Errorf(nii.ErrUnavailable, "peer unreachable")

// ErrNotSupported is wrapped when a peer does not speak the protocol asked
// for (an older or newer version, or a node that does not serve it). It is
// of kind nii.ErrUnavailable: that peer cannot serve it.
var ErrNotSupported = nii.Errorf(nii.ErrUnavailable, "protocol not supported by peer")

// errClosed is returned by a Host after Close.
var errClosed = fmt.Errorf("exchange host: %w", net.ErrClosed)

// HostConfig configures a Host.
type HostConfig struct {
	// Key is the node key: an Ed25519 libp2p private key. The host's node ID
	// is its peer ID.
	Key crypto.PrivKey
	// Listen lists multiaddrs to listen on. Empty means
	// /ip4/0.0.0.0/tcp/7948 and /ip4/0.0.0.0/udp/7948/quic-v1. Port 0 picks a
	// free port; Addrs reports the one bound.
	Listen []string
	// Logger receives the host's logs; nil discards them.
	Logger *slog.Logger
}

// Host is a node's libp2p endpoint: it listens on TCP and QUIC, dials peers
// whose addresses gossip told it, and runs nii's stream protocols. Every
// connection is authenticated and encrypted (TLS 1.3 or Noise), so each
// stream knows the remote node's ID. libp2p stays inside this type: callers
// deal in nii.NodeIDs and address strings.
type Host struct {
	host   host.Host
	id     nii.NodeID
	log    *slog.Logger
	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc

	mu        sync.Mutex
	closed    bool
	protocols map[protocol.ID]struct{}
	streams   map[network.Stream]struct{} // inbound streams being handled
	handlers  sync.WaitGroup              // one per entry in streams

	closeOnce sync.Once
	closeErr  error
	logSink   *logSink // where libp2p's own records go while the host is open

	served       atomic.Int64   // chunk bytes sent by the chunk protocol (contentproto.go)
	servedChunks atomic.Int64   // chunks sent by it
	corrupt      atomic.Int64   // chunks found corrupt while serving (contentproto.go)
	fetchedBy    transportBytes // chunk bytes received, by transport (transport.go)
	servedBy     transportBytes // chunk bytes sent, by transport
	onCorrupt    atomic.Pointer[func(CorruptChunk)]

	admit      atomic.Pointer[Admitter] // who may use this host's protocols; nil: every authenticated peer
	credential atomic.Pointer[string]   // this node's membership credential, sent with catalog requests
	strangers  atomic.Int64             // requests refused by the Admitter
}

// Admission is what an Admitter decides on: an authenticated remote node
// asking for something, before its request is looked at.
type Admission struct {
	Remote     nii.NodeID
	Credential string // the membership credential the request carried ("" if none)
	Protocol   string // "catalog", "manifest" or "chunks"
	// What names what was asked for, unverified: "org/name@N" for a
	// manifest ("org/name": the latest), "manifest <hash>" for chunks, the
	// origin for a catalog page.
	What string
}

// Admitter decides whether a remote node may use this host's protocols —
// whether it is a member. A nil error admits it; a refusal is answered
// "refused" with the error's text, and counted (Strangers).
type Admitter func(Admission) error

// SetAdmitter makes every protocol this host serves (catalog pages,
// manifests, chunks) ask a before anything else. nil admits every peer.
func (h *Host) SetAdmitter(a Admitter) {
	if a == nil {
		h.admit.Store(nil)
		return
	}
	h.admit.Store(&a)
}

// SetCredential sets the membership credential this host presents with
// its catalog requests ("" for none). Content requests carry their own
// (ManifestRequest.Credential).
func (h *Host) SetCredential(cred string) { h.credential.Store(&cred) }

func (h *Host) ownCredential() string {
	if c := h.credential.Load(); c != nil {
		return *c
	}
	return ""
}

// Strangers returns how many requests the Admitter refused.
func (h *Host) Strangers() int64 { return h.strangers.Load() }

// admission asks the Admitter about a; it is what every protocol handler
// calls first.
func (h *Host) admission(a Admission) error {
	f := h.admit.Load()
	if f == nil {
		return nil
	}
	if err := (*f)(a); err != nil {
		h.strangers.Add(1)
		return err
	}
	return nil
}

// refuseStranger answers a request the Admitter refused.
func refuseStranger(w io.Writer, remote nii.NodeID, what string, err error) error {
	return answer(w, &wireError{Code: codeRefused, Message: err.Error()},
		fmt.Errorf("%s request by %s: %w: %w", what, remote.Short(), nii.ErrRefused, err))
}

// NewHost starts a libp2p host with nii's transports, security, muxer and
// resource limits, listening on cfg.Listen. It serves no nii protocol until
// one is registered (ServeCatalog).
func NewHost(cfg HostConfig) (*Host, error) {
	if cfg.Key == nil {
		return nil, errors.New("exchange host: no node key")
	}
	if cfg.Key.Type() != crypto.Ed25519 {
		return nil, fmt.Errorf("exchange host: node key is %s, want Ed25519", cfg.Key.Type())
	}
	listen := cfg.Listen
	if len(listen) == 0 {
		listen = defaultListen
	}
	addrs := make([]ma.Multiaddr, 0, len(listen))
	for _, s := range listen {
		a, err := ma.NewMultiaddr(s)
		if err != nil {
			return nil, fmt.Errorf("exchange host: listen address %q: %w", s, err)
		}
		addrs = append(addrs, a)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// libp2p's own records go to this host's logger from here on, its
	// construction's included (libp2plog.go).
	sink := libp2pLogs.add(log.Handler())
	ok := false
	defer func() {
		if !ok {
			libp2pLogs.remove(sink)
		}
	}()

	rm, err := rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(resourceLimits()), rcmgr.WithMetricsDisabled())
	if err != nil {
		return nil, fmt.Errorf("exchange host: resource manager: %w", err)
	}
	cm, err := connmgr.NewConnManager(connLowWater, connHighWater)
	if err != nil {
		rm.Close()
		return nil, fmt.Errorf("exchange host: connection manager: %w", err)
	}
	lh, err := libp2p.New(
		libp2p.Identity(cfg.Key),
		// Listen below, one address at a time, so that every configured
		// address must bind (libp2p's own Listen succeeds if any does).
		libp2p.NoListenAddrs,
		// No SO_REUSEPORT on TCP: it only serves NAT hole punching, and with
		// it a second node on the same port would bind too and take half
		// the connections instead of failing to start.
		libp2p.Transport(tcp.NewTCPTransport, tcp.DisableReuseport()),
		libp2p.Transport(quic.NewTransport),
		libp2p.Security(tls.ID, newCoalescedTLS),
		libp2p.Security(noise.ID, noise.New),
		libp2p.Muxer(yamux.ID, yamux.DefaultTransport),
		libp2p.ResourceManager(rm),
		libp2p.ConnectionManager(cm),
		// Nodes reach each other directly, at addresses gossip carries: no
		// relays, hole punching, NAT port mapping, mDNS or DHT (none of
		// which is enabled unless asked for, except relay).
		libp2p.DisableRelay(),
		// No global Prometheus registrations; ping is not one of nii's
		// protocols.
		libp2p.DisableMetrics(),
		libp2p.Ping(false),
		libp2p.UserAgent(userAgent),
		// TCP for content where both work (transport.go).
		libp2p.SwarmOpts(swarm.WithDialRanker(tcpFirstDialRanker)),
	)
	if err != nil {
		cm.Close()
		rm.Close()
		return nil, fmt.Errorf("exchange host: %w", err)
	}
	for _, a := range addrs {
		if err := lh.Network().Listen(a); err != nil {
			lh.Close()
			return nil, fmt.Errorf("exchange host: listen on %s: %w", a, err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &Host{
		host:      lh,
		id:        nii.NodeID(lh.ID().String()),
		ctx:       ctx,
		cancel:    cancel,
		protocols: make(map[protocol.ID]struct{}),
		streams:   make(map[network.Stream]struct{}),
		logSink:   sink,
	}
	ok = true
	h.log = log
	h.log.Debug("p2p listening", slog.Any(nii.LogAddr, h.Addrs()))
	return h, nil
}

// ID returns the host's node ID.
func (h *Host) ID() nii.NodeID { return h.id }

// Addrs returns the addresses the host listens on, as multiaddr strings
// without a /p2p suffix, with ports resolved, for other nodes to dial (they
// travel in gossip metadata). A wildcard listen address (0.0.0.0) is expanded
// to the machine's interface addresses; loopback and link-local addresses are
// left out when there is anything else to offer.
func (h *Host) Addrs() []string {
	addrs, err := h.host.Network().InterfaceListenAddresses()
	if err != nil {
		addrs = h.host.Network().ListenAddresses()
	}
	var out, local []string
	for _, a := range addrs {
		if manet.IsIPLoopback(a) || manet.IsIP6LinkLocal(a) {
			local = append(local, a.String())
			continue
		}
		out = append(out, a.String())
	}
	if len(out) == 0 {
		out = local
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// AddPeerAddrs records where peer id can be dialled, typically from its
// gossip metadata. Addresses that do not parse, or that name another peer in
// a /p2p suffix, are ignored, as is an invalid ID or the host's own. The
// addresses are kept for the life of the host; later calls add to them.
func (h *Host) AddPeerAddrs(id nii.NodeID, addrs []string) {
	pid, err := peerID(id)
	if err != nil || pid == h.host.ID() {
		return
	}
	var mas []ma.Multiaddr
	for _, s := range addrs {
		if len(mas) == maxPeerAddrs {
			break
		}
		a, err := ma.NewMultiaddr(s)
		if err != nil {
			h.log.Debug("ignoring peer address", slog.String(nii.LogPeer, id.Short()), slog.String(nii.LogAddr, s), slog.String(nii.LogErr, err.Error()))
			continue
		}
		tpt, p := peer.SplitAddr(a)
		if tpt == nil || (p != "" && p != pid) {
			h.log.Debug("ignoring peer address", slog.String(nii.LogPeer, id.Short()), slog.String(nii.LogAddr, s))
			continue
		}
		mas = append(mas, tpt)
	}
	if len(mas) > 0 {
		h.host.Peerstore().AddAddrs(pid, mas, peerstore.PermanentAddrTTL)
	}
}

// Close stops the host: it stops accepting streams, resets the ones being
// handled, waits for their handlers to return (including any CatalogSource
// call in progress, which cannot be interrupted) and closes every connection
// and listener. Requests in flight fail. Close is idempotent.
func (h *Host) Close() error {
	h.closeOnce.Do(func() {
		h.mu.Lock()
		h.closed = true
		protos := make([]protocol.ID, 0, len(h.protocols))
		for p := range h.protocols {
			protos = append(protos, p)
		}
		for s := range h.streams {
			s.Reset()
		}
		h.mu.Unlock()
		for _, p := range protos {
			h.host.RemoveStreamHandler(p)
		}
		h.cancel()
		h.handlers.Wait()
		h.closeErr = h.host.Close()
		libp2pLogs.remove(h.logSink)
		h.log.Debug("p2p closed")
	})
	return h.closeErr
}

// peerID converts a node ID to a libp2p peer ID.
func peerID(id nii.NodeID) (peer.ID, error) {
	if err := id.Validate(); err != nil {
		return "", err
	}
	pid, err := peer.Decode(string(id))
	if err != nil {
		return "", fmt.Errorf("%w node ID %q: %v", nii.ErrInvalid, id, err)
	}
	return pid, nil
}

// A handlerFunc serves one inbound stream of a protocol: it reads the
// request from rw and writes the response. remote is the authenticated node
// at the other end. An error means the exchange failed; if the handler told
// the client why (an error status, see answer) the stream is closed,
// otherwise it is reset.
type handlerFunc func(rw io.ReadWriter, remote nii.NodeID) error

// setHandler serves proto with fn. Each stream gets requestTimeout and,
// when reserve > 0, that many bytes reserved from the resource manager for
// the length of the exchange (a stream that cannot get them is answered
// "unavailable"). Handlers run on goroutines libp2p starts for each stream;
// the host tracks them and Close waits for them.
func (h *Host) setHandler(proto protocol.ID, reserve int, fn handlerFunc) {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return
	}
	h.protocols[proto] = struct{}{}
	h.mu.Unlock()
	h.host.SetStreamHandler(proto, func(s network.Stream) { h.serveStream(proto, reserve, fn, s) })
}

// removeHandler stops serving proto.
func (h *Host) removeHandler(proto protocol.ID) {
	h.mu.Lock()
	delete(h.protocols, proto)
	h.mu.Unlock()
	h.host.RemoveStreamHandler(proto)
}

func (h *Host) serveStream(proto protocol.ID, reserve int, fn handlerFunc, s network.Stream) {
	if !h.track(s) {
		s.Reset()
		return
	}
	defer h.untrack(s)
	remote := nii.NodeID(s.Conn().RemotePeer().String())
	log := h.log.With(slog.String(nii.LogPeer, remote.Short()), slog.String(nii.LogProtocol, string(proto)))
	if err := s.SetDeadline(time.Now().Add(requestTimeout)); err != nil {
		log.Debug("stream deadline", slog.String(nii.LogErr, err.Error()))
		s.Reset()
		return
	}
	if reserve > 0 {
		if err := s.Scope().ReserveMemory(reserve, network.ReservationPriorityMedium); err != nil {
			log.Warn("refusing stream: over resource limits", slog.String(nii.LogErr, err.Error()))
			if writeError(s, &wireError{Code: codeUnavailable, Message: "over resource limits, try later"}) != nil {
				s.Reset()
				return
			}
			s.Close()
			return
		}
		defer s.Scope().ReleaseMemory(reserve)
	}
	start := time.Now()
	err := fn(s, remote)
	var ans *answeredError
	switch {
	case err == nil:
		s.Close()
		log.Debug("served", slog.Duration(nii.LogTook, time.Since(start)))
	case errors.As(err, &ans):
		s.Close()
		level := slog.LevelDebug // the client's problem, not ours
		if ans.code == codeInternal {
			level = slog.LevelWarn
		}
		log.Log(context.Background(), level, "answered with an error", slog.String(nii.LogCode, ans.code), slog.String(nii.LogErr, err.Error()))
	default:
		s.Reset()
		log.Debug("stream failed", slog.String(nii.LogErr, err.Error()))
	}
}

func (h *Host) track(s network.Stream) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return false
	}
	h.streams[s] = struct{}{}
	h.handlers.Add(1)
	return true
}

func (h *Host) untrack(s network.Stream) {
	h.mu.Lock()
	delete(h.streams, s)
	h.mu.Unlock()
	h.handlers.Done()
}

// request opens a stream for proto to node to and runs fn over it: fn
// writes the request and reads the response. The exchange is bounded by ctx
// and by requestTimeout, and ends when the host closes. When reserve > 0,
// that many bytes are reserved from the resource manager first. The stream
// is closed if fn succeeds or got an error status, reset otherwise.
func (h *Host) request(ctx context.Context, to nii.NodeID, proto protocol.ID, reserve int, fn func(rw io.ReadWriter) error) error {
	return h.requestWithin(ctx, to, proto, reserve, requestTimeout, fn)
}

// requestWithin is request with a deadline of timeout instead of
// requestTimeout, for exchanges whose size the client knows (a batch of
// chunks).
func (h *Host) requestWithin(ctx context.Context, to nii.NodeID, proto protocol.ID, reserve int, timeout time.Duration, fn func(rw io.ReadWriter) error) error {
	pid, err := peerID(to)
	if err != nil {
		return err
	}
	if pid == h.host.ID() {
		return fmt.Errorf("%w: %s is this node", ErrUnreachable, to.Short())
	}
	if h.ctx.Err() != nil {
		return errClosed
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	stopOnClose := context.AfterFunc(h.ctx, cancel)
	defer stopOnClose()

	s, err := h.host.NewStream(ctx, pid, proto)
	if err != nil {
		return h.openError(to, err)
	}
	if reserve > 0 {
		if err := s.Scope().ReserveMemory(reserve, network.ReservationPriorityHigh); err != nil {
			s.Reset()
			if errors.Is(err, network.ErrResourceScopeClosed) && h.ctx.Err() == nil {
				// The stream was opened on a connection the peer had
				// already closed, and closed with it (below).
				return fmt.Errorf("%w: %s: the connection closed: %w", ErrUnreachable, to.Short(), err)
			}
			return fmt.Errorf("%w: over local resource limits: %v", nii.ErrUnavailable, err)
		}
		defer s.Scope().ReleaseMemory(reserve)
	}
	deadline, _ := ctx.Deadline()
	if err := s.SetDeadline(deadline); err != nil {
		s.Reset()
		return err
	}
	stopReset := context.AfterFunc(ctx, func() { s.Reset() })
	defer stopReset()

	err = fn(s)
	var we *wireError
	switch {
	case err == nil:
		s.Close()
		return nil
	case errors.As(err, &we):
		s.Close()
		return err
	}
	s.Reset()
	if s.Conn().IsClosed() && h.ctx.Err() == nil && ctx.Err() == nil {
		// The stream was opened on a connection the peer had already
		// closed (libp2p reuses a connection until it sees it end): the
		// peer went away, as if no connection could be made.
		return fmt.Errorf("%w: %s: the connection closed: %w", ErrUnreachable, to.Short(), err)
	}
	return h.streamError(ctx, err)
}

// openError classifies an error from opening a stream: the host closing,
// the peer not speaking the protocol, local resource limits, or (anything
// else: no address, nothing listening, the context ending while dialling)
// the peer being unreachable.
func (h *Host) openError(to nii.NodeID, err error) error {
	switch {
	case h.ctx.Err() != nil:
		return errClosed
	case errors.Is(err, msmux.ErrNotSupported[protocol.ID]{}):
		return fmt.Errorf("%w: %s", ErrNotSupported, to.Short())
	case errors.Is(err, network.ErrResourceLimitExceeded):
		return fmt.Errorf("%w: over local resource limits: %w", nii.ErrUnavailable, err)
	}
	return fmt.Errorf("%w: %s: %w", ErrUnreachable, to.Short(), err)
}

// streamError classifies an error from a stream once open: the host
// closing, the context ending, or the peer not speaking the protocol (found
// out lazily, when the peer had advertised it: libp2p then skips
// negotiation, and the peer resets the stream).
func (h *Host) streamError(ctx context.Context, err error) error {
	var se *network.StreamError
	switch {
	case h.ctx.Err() != nil:
		return errClosed
	case errors.Is(err, msmux.ErrNotSupported[protocol.ID]{}),
		errors.As(err, &se) && se.Remote && se.ErrorCode == network.StreamProtocolNegotiationFailed:
		return fmt.Errorf("%w: %v", ErrNotSupported, err)
	case ctx.Err() != nil && !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrFrameTooLarge):
		return fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	return err
}

// Resource-manager limits. libp2p's defaults suit public IPFS nodes: many
// peers, each owed little. A nii node has tens to hundreds of known peers,
// any of which may pull gigabytes from it, so per-peer and per-protocol
// limits are raised and the machine-wide limit is what bounds the total.
//
// Scaling: libp2p's AutoScale takes an eighth of the machine's RAM (below
// 128 MiB of that it uses the base values alone) and adds each "per GiB"
// increase once per GiB of it. Below, "per GiB" means per GiB of that
// eighth, so 2 GiB per GiB is a quarter of RAM. docs/protocol.md has a table.
const (
	// System memory: 256 MiB plus a quarter of RAM, shared by every peer.
	// What is counted: yamux receive windows (up to 16 MiB per stream,
	// charged to the peer) and the buffers nii's protocols reserve for
	// their messages.
	limitSystemMemoryBase   = 256 << 20
	limitSystemMemoryPerGiB = 2 << 30

	// Per peer: 256 inbound streams (parallel chunk requests), 512 in
	// all, and 256 MiB of memory plus 128 MiB per GiB: room for sixteen
	// streams at yamux's full 16 MiB window. libp2p's default (64 MiB +
	// 128 MiB per GiB) would hold a 2 GiB VM's peer to six.
	limitPeerStreamsInbound  = 256
	limitPeerStreamsOutbound = 512
	limitPeerStreams         = 512
	limitPeerMemoryBase      = 256 << 20
	limitPeerMemoryPerGiB    = 128 << 20

	// Per protocol per peer (for each of nii's protocols): the same stream
	// counts, and the peer's memory base, so that the peer limit binds
	// rather than libp2p's 16 MiB default, which would allow eight
	// concurrent catalog pages.
	limitProtoPeerStreamsInbound  = 256
	limitProtoPeerStreamsOutbound = 256
	limitProtoPeerStreams         = 512
	limitProtoPeerMemory          = 256 << 20

	// Per protocol, all peers together: 2048 inbound streams (libp2p:
	// 512) plus 256 per GiB, and memory up to the system's, so that only
	// the system limit bounds a busy protocol.
	limitProtoStreamsInbound       = 2048
	limitProtoStreamsInboundPerGiB = 256
	limitProtoStreams              = 4096
	limitProtoStreamsPerGiB        = 512
	limitProtoMemoryBase           = limitSystemMemoryBase
	limitProtoMemoryPerGiB         = limitSystemMemoryPerGiB

	// Connections, streams in the system and transient scopes, file
	// descriptors and the per-stream memory cap (16 MiB, yamux's window
	// size) keep libp2p's defaults.
)

// resourceLimits returns the concrete limits for this machine.
func resourceLimits() rcmgr.ConcreteLimitConfig {
	l := limitConfig()
	return l.AutoScale()
}

// limitConfig returns nii's scaling limit configuration.
func limitConfig() rcmgr.ScalingLimitConfig {
	l := rcmgr.DefaultLimits // a copy; its maps are nil until set below
	libp2p.SetDefaultServiceLimits(&l)

	l.SystemBaseLimit.Memory = limitSystemMemoryBase
	l.SystemLimitIncrease.Memory = limitSystemMemoryPerGiB

	l.PeerBaseLimit.StreamsInbound = limitPeerStreamsInbound
	l.PeerBaseLimit.StreamsOutbound = limitPeerStreamsOutbound
	l.PeerBaseLimit.Streams = limitPeerStreams
	l.PeerBaseLimit.Memory = limitPeerMemoryBase
	l.PeerLimitIncrease.StreamsInbound = 0
	l.PeerLimitIncrease.StreamsOutbound = 0
	l.PeerLimitIncrease.Streams = 0
	l.PeerLimitIncrease.Memory = limitPeerMemoryPerGiB

	l.ProtocolPeerBaseLimit.StreamsInbound = limitProtoPeerStreamsInbound
	l.ProtocolPeerBaseLimit.StreamsOutbound = limitProtoPeerStreamsOutbound
	l.ProtocolPeerBaseLimit.Streams = limitProtoPeerStreams
	l.ProtocolPeerBaseLimit.Memory = limitProtoPeerMemory
	l.ProtocolPeerLimitIncrease = rcmgr.BaseLimitIncrease{}

	l.ProtocolBaseLimit.StreamsInbound = limitProtoStreamsInbound
	l.ProtocolBaseLimit.StreamsOutbound = limitProtoStreams
	l.ProtocolBaseLimit.Streams = limitProtoStreams
	l.ProtocolBaseLimit.Memory = limitProtoMemoryBase
	l.ProtocolLimitIncrease.StreamsInbound = limitProtoStreamsInboundPerGiB
	l.ProtocolLimitIncrease.StreamsOutbound = limitProtoStreamsPerGiB
	l.ProtocolLimitIncrease.Streams = limitProtoStreamsPerGiB
	l.ProtocolLimitIncrease.Memory = limitProtoMemoryPerGiB
	return l
}
