package exchange

import (
	"io"
	"slices"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/p2p/net/swarm"

	"github.com/libp2p/go-libp2p/core/network"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/nii-uk/nii"
)

// Transport names, as Transports and the metrics give them.
const (
	TransportTCP   = "tcp"
	TransportQUIC  = "quic"
	TransportOther = "other"
)

// TransportConn is one open libp2p connection and its transport.
type TransportConn struct {
	Peer      nii.NodeID
	Transport string // TransportTCP, TransportQUIC or TransportOther
}

// Transports lists the host's open connections with their transports.
func (h *Host) Transports() []TransportConn {
	var out []TransportConn
	for _, c := range h.host.Network().Conns() {
		out = append(out, TransportConn{Peer: nii.NodeID(c.RemotePeer().String()), Transport: connTransport(c)})
	}
	return out
}

// PeerTransports names the transports of the open connections to id,
// sorted ("tcp", "quic"); nil if there are none.
func (h *Host) PeerTransports(id nii.NodeID) []string {
	pid, err := peerID(id)
	if err != nil {
		return nil
	}
	var out []string
	for _, c := range h.host.Network().ConnsToPeer(pid) {
		out = append(out, connTransport(c))
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// ChunkBytes is what the chunk protocol moved over one transport since
// the host started: chunk bytes received (fetched) and sent (served).
type ChunkBytes struct {
	Transport       string
	Fetched, Served int64
}

// ChunkBytesByTransport reports, for each transport (TransportTCP,
// TransportQUIC, TransportOther, in that order), the chunk bytes this
// host fetched and served over it: which transport bulk transfer
// actually used.
func (h *Host) ChunkBytesByTransport() []ChunkBytes {
	out := make([]ChunkBytes, len(transportNames))
	for i, name := range transportNames {
		out[i] = ChunkBytes{Transport: name, Fetched: h.fetchedBy[i].Load(), Served: h.servedBy[i].Load()}
	}
	return out
}

// transportNames index transportBytes.
var transportNames = [...]string{TransportTCP, TransportQUIC, TransportOther}

// transportBytes counts bytes by transport, indexed as transportNames.
type transportBytes [len(transportNames)]atomic.Int64

func (t *transportBytes) add(transport string, n int64) {
	i := slices.Index(transportNames[:], transport)
	if i < 0 {
		i = len(transportNames) - 1
	}
	t[i].Add(n)
}

// streamTransport names the transport of the libp2p stream under rw
// (TransportOther if rw is not one).
func streamTransport(rw io.ReadWriter) string {
	if s, ok := rw.(interface{ Conn() network.Conn }); ok && s.Conn() != nil {
		return connTransport(s.Conn())
	}
	return TransportOther
}

// connTransport names a connection's transport from its remote address.
func connTransport(c network.Conn) string {
	return addrTransport(c.RemoteMultiaddr())
}

func addrTransport(a ma.Multiaddr) string {
	if a == nil {
		return TransportOther
	}
	var t string
	ma.ForEach(a, func(c ma.Component) bool {
		switch c.Protocol().Code {
		case ma.P_QUIC_V1, ma.P_QUIC:
			t = TransportQUIC
			return false
		case ma.P_TCP:
			t = TransportTCP
		}
		return true
	})
	if t == "" {
		return TransportOther
	}
	return t
}

// quicFallbackDelay is how long a dial waits for TCP before it also tries
// QUIC: on a LAN or loopback TCP connects in well under it, and where TCP
// is blocked (a UDP-only path) QUIC still connects, this much later.
const quicFallbackDelay = 250 * time.Millisecond

// tcpFirstDialRanker orders a dial's addresses TCP first, then QUIC after
// quicFallbackDelay, then anything else, each group in libp2p's default
// order and delays. libp2p's default dials QUIC first, so two nii nodes
// moved content over QUIC; measured with two real daemons on loopback
// (docs/benchmarks.md, "Transport"), a 1 GiB pull over TCP+TLS+yamux ran
// at about twice QUIC's speed with less than half the CPU. QUIC stays
// enabled and listening: peers that reach this node over it, or that it
// reaches only over it, keep working.
func tcpFirstDialRanker(addrs []ma.Multiaddr) []network.AddrDelay {
	var tcpAddrs, quicAddrs, rest []ma.Multiaddr
	for _, a := range addrs {
		switch addrTransport(a) {
		case TransportTCP:
			tcpAddrs = append(tcpAddrs, a)
		case TransportQUIC:
			quicAddrs = append(quicAddrs, a)
		default:
			rest = append(rest, a)
		}
	}
	out := swarm.DefaultDialRanker(tcpAddrs)
	offset := time.Duration(0)
	if len(out) > 0 {
		offset = out[len(out)-1].Delay + quicFallbackDelay
	}
	for _, group := range [][]ma.Multiaddr{quicAddrs, rest} {
		ranked := swarm.DefaultDialRanker(group)
		var last time.Duration
		for _, r := range ranked {
			r.Delay += offset
			last = r.Delay
			out = append(out, r)
		}
		if len(ranked) > 0 {
			offset = last + quicFallbackDelay
		}
	}
	return out
}
