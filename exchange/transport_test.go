package exchange

import (
	"testing"

	ma "github.com/multiformats/go-multiaddr"
)

// TestTCPFirstDialRanker: TCP addresses are dialled first, QUIC only
// after the fallback delay (and after every TCP dial has started), other
// transports last; every address is dialled.
func TestTCPFirstDialRanker(t *testing.T) {
	var addrs []ma.Multiaddr
	for _, s := range []string{
		"/ip4/127.0.0.1/udp/4001/quic-v1", "/ip4/10.0.0.1/udp/4001/quic-v1", "/ip4/127.0.0.1/tcp/4001",
		"/ip4/10.0.0.1/tcp/4001", "/ip4/127.0.0.1/udp/4002/webrtc-direct",
	} {
		addrs = append(addrs, ma.StringCast(s))
	}
	ranked := tcpFirstDialRanker(addrs)
	if len(ranked) != len(addrs) {
		t.Fatalf("%d addresses ranked, want %d: %v", len(ranked), len(addrs), ranked)
	}
	var lastTCP, firstQUIC, lastQUIC, firstOther = -1, -1, -1, -1
	for i, r := range ranked {
		switch addrTransport(r.Addr) {
		case TransportTCP:
			lastTCP = i
			if r.Delay >= quicFallbackDelay {
				t.Errorf("TCP %s waits %v", r.Addr, r.Delay)
			}
		case TransportQUIC:
			if firstQUIC < 0 {
				firstQUIC = i
			}
			lastQUIC = i
			if r.Delay < quicFallbackDelay {
				t.Errorf("QUIC %s dialled after %v, before the %v fallback delay", r.Addr, r.Delay, quicFallbackDelay)
			}
		default:
			if firstOther < 0 {
				firstOther = i
			}
		}
	}
	if lastTCP < 0 || firstQUIC < 0 || lastTCP > firstQUIC || firstOther < lastQUIC {
		t.Errorf("order: %v", ranked)
	}
	if ranked[0].Delay != 0 {
		t.Errorf("the first dial waits %v", ranked[0].Delay)
	}
	for _, tc := range []struct{ addr, want string }{
		{"/ip4/127.0.0.1/tcp/1", TransportTCP}, {"/ip4/127.0.0.1/udp/1/quic-v1", TransportQUIC},
		{"/ip6/::1/tcp/1/ws", TransportTCP}, {"/ip4/127.0.0.1/udp/1/webrtc-direct", TransportOther},
	} {
		if got := addrTransport(ma.StringCast(tc.addr)); got != tc.want {
			t.Errorf("addrTransport(%s) = %s, want %s", tc.addr, got, tc.want)
		}
	}
}
