package exchange

import (
	"context"
	"testing"
	"time"

	"github.com/nii-uk/nii"

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

// TestChunkBytesCountedByTransport: a pull between two real hosts counts
// its chunk bytes, on both ends, under the transport the streams crossed
// (TCP when the server listens on TCP only, QUIC when only on QUIC), and
// under no other.
func TestChunkBytesCountedByTransport(t *testing.T) {
	data := randBytes(31, 1<<20)
	for _, tc := range []struct{ listen, want string }{{loopTCP, TransportTCP}, {loopQUIC, TransportQUIC}} {
		t.Run(tc.want, func(t *testing.T) {
			pub := openStoreWith(t, smallChunks)
			sg := newSigner(t)
			rec := publishAccess(t, pub, sg, spend, data, nii.AccessOpen)
			server := newTestHost(t, nil, tc.listen)
			client := newTestHost(t, nil, loopTCP, loopQUIC)
			server.ServeContent(pub, nil)
			client.AddPeerAddrs(server.ID(), server.Addrs())
			dst := openStoreWith(t, smallChunks)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			res, err := Pull(ctx, client, dst, PullRequest{Ref: rec.Ref, Publisher: sg.id, Manifest: rec.Manifest, Providers: []nii.NodeID{server.ID()}})
			if err != nil {
				t.Fatal(err)
			}
			if res.FetchedBytes != int64(len(data)) {
				t.Fatalf("fetched %d bytes, want %d", res.FetchedBytes, len(data))
			}
			for side, h := range map[string]*Host{"client": client, "server": server} {
				for _, b := range h.ChunkBytesByTransport() {
					n := b.Fetched
					if side == "server" {
						n = b.Served
					}
					want := int64(0)
					if b.Transport == tc.want {
						want = int64(len(data))
					}
					if n != want || (side == "client" && b.Served != 0) || (side == "server" && b.Fetched != 0) {
						t.Errorf("%s over %s: fetched %d, served %d; want %d one way, 0 the other", side, b.Transport, b.Fetched, b.Served, want)
					}
				}
			}
		})
	}
}
