package exchange

import (
	"slices"

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
