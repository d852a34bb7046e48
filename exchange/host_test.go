package exchange

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	tls "github.com/libp2p/go-libp2p/p2p/security/tls"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/nii-uk/nii"
	"go.uber.org/goleak"
)

// TestMain checks that no test leaves goroutines behind: Host.Close must
// stop everything libp2p started (it does, in v0.51, with no exceptions
// needed).
//
// It also shortens the fuzzers' minimisation. This package links libp2p, so
// a fuzzing build instruments all of it and each execution pays ~0.4 ms of
// coverage bookkeeping; Go's minimiser is quadratic in the input's length,
// so with its default 60 s budget every new interesting catalog response
// (hundreds of bytes of adverts) would stall a worker for a minute and a
// 30 s run would do almost nothing. An explicit -fuzzminimizetime wins.
func TestMain(m *testing.M) {
	flag.Parse()
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "test.fuzzminimizetime" })
	if !set {
		if err := flag.Set("test.fuzzminimizetime", "3s"); err != nil {
			panic(err)
		}
	}
	goleak.VerifyTestMain(m)
}

const (
	loopTCP  = "/ip4/127.0.0.1/tcp/0"
	loopQUIC = "/ip4/127.0.0.1/udp/0/quic-v1"
)

func newTestKey(t testing.TB) crypto.PrivKey {
	t.Helper()
	k, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newTestHost(t testing.TB, log *slog.Logger, listen ...string) *Host {
	t.Helper()
	h, err := NewHost(HostConfig{Key: newTestKey(t), Listen: listen, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// hostFetchAll pages through origin's catalog on server from client.
func hostFetchAll(t *testing.T, client, server *Host, origin nii.NodeID, limit int) ([]*nii.SignedAdvert, []int, uint64) {
	t.Helper()
	return fetchAll(t, func(after uint64) ([]*nii.SignedAdvert, bool, uint64, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return client.FetchCatalogPage(ctx, server.ID(), origin, after, limit)
	}, 0)
}

func TestHostCatalog(t *testing.T) {
	o := newCatalogOrigin(t)
	recs := o.adverts(t, 1, 120, 100)
	for _, tc := range []struct {
		name          string
		server        []string
		client        []string
		wantTransport string
	}{
		{"tcp", []string{loopTCP}, []string{loopTCP}, "/tcp/"},
		{"quic only", []string{loopQUIC}, []string{loopTCP}, "/quic-v1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			server := newTestHost(t, nil, tc.server...)
			client := newTestHost(t, nil, tc.client...)
			src := newFakeCatalog(recs...)
			server.ServeCatalog(src)
			client.AddPeerAddrs(server.ID(), server.Addrs())

			all, pages, wm := hostFetchAll(t, client, server, o.id, 50)
			sameRecords(t, all, recs)
			if wm != src.wm[o.id] {
				t.Fatalf("watermark %d, want %d", wm, src.wm[o.id])
			}
			if len(pages) != 3 || pages[0] != 50 || pages[2] != 20 {
				t.Fatalf("pages %v", pages)
			}

			conns := client.host.Network().ConnsToPeer(server.host.ID())
			if len(conns) == 0 {
				t.Fatal("no connection to the server")
			}
			for _, c := range conns {
				if !strings.Contains(c.RemoteMultiaddr().String(), tc.wantTransport) {
					t.Fatalf("connected over %s, want %s", c.RemoteMultiaddr(), tc.wantTransport)
				}
				if c.RemotePeer() != server.host.ID() {
					t.Fatal("connected to the wrong peer")
				}
			}
		})
	}
}

// Both security protocols are offered: nii's own client picks TLS, and a
// libp2p client that speaks only Noise gets a Noise connection and the
// catalog over it.
func TestHostSecurity(t *testing.T) {
	server := newTestHost(t, nil, loopTCP)
	o := newCatalogOrigin(t)
	recs := o.adverts(t, 1, 3, 0)
	server.ServeCatalog(newFakeCatalog(recs...))
	client := newTestHost(t, nil, loopTCP)
	client.AddPeerAddrs(server.ID(), server.Addrs())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, _, _, err := client.FetchCatalogPage(ctx, server.ID(), o.id, 0, 10); err != nil {
		t.Fatal(err)
	}
	conns := client.host.Network().ConnsToPeer(server.host.ID())
	if len(conns) != 1 {
		t.Fatalf("%d connections", len(conns))
	}
	if st := conns[0].ConnState(); st.Security != tls.ID || st.StreamMultiplexer != yamux.ID {
		t.Fatalf("security %q, muxer %q", st.Security, st.StreamMultiplexer)
	}

	noiseOnly, err := libp2p.New(
		libp2p.NoListenAddrs,
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.Security(noise.ID, noise.New),
		libp2p.Muxer(yamux.ID, yamux.DefaultTransport),
		libp2p.DisableMetrics(),
	)
	if err != nil {
		t.Fatal(err)
	}
	defer noiseOnly.Close()
	ai := peer.AddrInfo{ID: server.host.ID()}
	for _, a := range server.Addrs() {
		ai.Addrs = append(ai.Addrs, ma.StringCast(a))
	}
	if err := noiseOnly.Connect(ctx, ai); err != nil {
		t.Fatal(err)
	}
	s, err := noiseOnly.NewStream(ctx, server.host.ID(), catalogProtocol)
	if err != nil {
		t.Fatal(err)
	}
	if st := s.Conn().ConnState(); st.Security != noise.ID {
		t.Fatalf("security %q, want noise", st.Security)
	}
	got, more, _, err := fetchCatalog(s, o.id, 0, 10, "")
	s.Close()
	if err != nil || more {
		t.Fatalf("fetch over noise: %v (more %v)", err, more)
	}
	sameRecords(t, got, recs)
}

func TestHostRemoteID(t *testing.T) {
	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	server := newTestHost(t, log, loopTCP)
	client := newTestHost(t, nil, loopTCP)
	client.AddPeerAddrs(server.ID(), server.Addrs())

	// The generic machinery: a handler sees the authenticated remote ID.
	const echo protocol.ID = "/nii/test-echo/1.0.0"
	seen := make(chan nii.NodeID, 1)
	server.setHandler(echo, 0, func(rw io.ReadWriter, remote nii.NodeID) error {
		seen <- remote
		var req status
		if err := readMsg(rw, 100, &req); err != nil {
			return err
		}
		return writeOK(rw, &req)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := client.request(ctx, server.ID(), echo, 0, func(rw io.ReadWriter) error {
		if err := writeMsg(rw, &status{Message: "hi"}); err != nil {
			return err
		}
		var resp status
		if err := readResponse(newReader(rw), 100, &resp); err != nil {
			return err
		}
		if resp.Message != "hi" {
			t.Errorf("echo: %+v", resp)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := <-seen; got != client.ID() {
		t.Fatalf("handler saw %s, want %s", got, client.ID())
	}

	// The catalog handler: its log line names the client.
	o := newCatalogOrigin(t)
	server.ServeCatalog(newFakeCatalog(o.adverts(t, 1, 2, 0)...))
	if _, _, _, err := client.FetchCatalogPage(ctx, server.ID(), o.id, 0, 10); err != nil {
		t.Fatal(err)
	}
	want := "peer=" + client.ID().Short()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), "protocol="+string(catalogProtocol)) || !strings.Contains(logs.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("server log does not name the client (%s):\n%s", want, logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestHostErrors(t *testing.T) {
	o := newCatalogOrigin(t)
	server := newTestHost(t, nil, loopTCP)
	src := newFakeCatalog()
	src.err = ErrNotFound
	server.ServeCatalog(src)
	bare := newTestHost(t, nil, loopTCP) // serves nothing
	client := newTestHost(t, nil, loopTCP)
	client.AddPeerAddrs(server.ID(), server.Addrs())
	client.AddPeerAddrs(bare.ID(), bare.Addrs())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	_, _, _, err := client.FetchCatalogPage(ctx, server.ID(), o.id, 0, 10)
	if !errors.Is(err, ErrNotFound) || !errors.Is(err, ErrRemote) {
		t.Fatalf("error status: %v", err)
	}
	_, _, _, err = client.FetchCatalogPage(ctx, bare.ID(), o.id, 0, 10)
	if !errors.Is(err, ErrNotSupported) {
		t.Fatalf("peer without the protocol: %v", err)
	}
	// ServeCatalog(nil) stops serving.
	server.ServeCatalog(nil)
	_, _, _, err = client.FetchCatalogPage(ctx, server.ID(), o.id, 0, 10)
	if !errors.Is(err, ErrNotSupported) {
		t.Fatalf("after ServeCatalog(nil): %v", err)
	}
	for _, bad := range []nii.NodeID{"", "greenwich", client.ID()} {
		if _, _, _, err := client.FetchCatalogPage(ctx, bad, o.id, 0, 10); err == nil {
			t.Fatalf("fetch from %q: no error", bad)
		}
	}
	if _, _, _, err := client.FetchCatalogPage(ctx, server.ID(), "greenwich", 0, 10); !errors.Is(err, nii.ErrInvalid) {
		t.Fatalf("invalid origin: %v", err)
	}
}

func TestHostUnreachable(t *testing.T) {
	client := newTestHost(t, nil, loopTCP)
	o := newCatalogOrigin(t)

	// A TCP port where nothing listens.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedPort := l.Addr().(*net.TCPAddr).Port
	l.Close()

	// A TCP listener that accepts and then says nothing: the handshake
	// can only end by the deadline.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var held sync.WaitGroup
	t.Cleanup(func() { silent.Close(); held.Wait() })
	held.Go(func() {
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	})

	for _, tc := range []struct {
		name  string
		addrs []string
	}{
		{"no known address", nil},
		{"nothing listening", []string{"/ip4/127.0.0.1/tcp/" + strconv.Itoa(closedPort)}},
		{"silent listener", []string{"/ip4/127.0.0.1/tcp/" + strconv.Itoa(silent.Addr().(*net.TCPAddr).Port)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := newCatalogOrigin(t).id
			client.AddPeerAddrs(id, tc.addrs)
			const timeout = 2 * time.Second
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			start := time.Now()
			_, _, _, err := client.FetchCatalogPage(ctx, id, o.id, 0, 10)
			took := time.Since(start)
			if !errors.Is(err, ErrUnreachable) {
				t.Fatalf("err = %v, want ErrUnreachable", err)
			}
			if !strings.Contains(err.Error(), id.Short()) {
				t.Fatalf("error %q does not name the peer", err)
			}
			// No wall-clock bound: a fetch that ignored its context would
			// hang until the test binary's -timeout. One that ran into the
			// deadline says so in its error chain.
			if ctx.Err() != nil && !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("returned after the deadline without saying so: %v", err)
			}
			t.Logf("%v after %v", err, took.Round(time.Millisecond))
		})
	}
}

func TestHostClose(t *testing.T) {
	server := newTestHost(t, nil, loopTCP)
	client := newTestHost(t, nil, loopTCP)
	client.AddPeerAddrs(server.ID(), server.Addrs())
	o := newCatalogOrigin(t)

	// A handler blocked in its source holds Close until it returns.
	src := &blockingCatalog{entered: make(chan struct{}), release: make(chan struct{})}
	server.ServeCatalog(src)
	fetched := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_, _, _, err := client.FetchCatalogPage(ctx, server.ID(), o.id, 0, 10)
		fetched <- err
	}()
	<-src.entered
	closed := make(chan error, 1)
	go func() { closed <- server.Close() }()
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) while a handler was running", err)
	case <-time.After(200 * time.Millisecond):
	}
	// The client's stream was reset by Close.
	if err := <-fetched; err == nil {
		t.Fatal("fetch succeeded from a closing host")
	}
	close(src.release)
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if err := server.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}

	// A closed host neither serves nor fetches.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, _, _, err := client.FetchCatalogPage(ctx, server.ID(), o.id, 0, 10); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("fetch from a closed host: %v", err)
	}
	if _, _, _, err := server.FetchCatalogPage(ctx, client.ID(), o.id, 0, 10); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("fetch by a closed host: %v", err)
	}
	server.ServeCatalog(newFakeCatalog()) // no effect, no panic
	if err := client.Close(); err != nil {
		t.Fatal(err)
	}
	if err := client.Close(); err != nil {
		t.Fatal(err)
	}
}

type blockingCatalog struct {
	once    sync.Once
	entered chan struct{}
	release chan struct{}
}

func (b *blockingCatalog) CatalogPage(nii.NodeID, uint64, int) ([]*nii.SignedAdvert, bool, uint64, error) {
	b.once.Do(func() { close(b.entered) })
	<-b.release
	return nil, false, 0, nil
}

func TestHostAddrs(t *testing.T) {
	h := newTestHost(t, nil, loopTCP, loopQUIC)
	addrs := h.Addrs()
	if len(addrs) != 2 {
		t.Fatalf("addrs %v", addrs)
	}
	for _, s := range addrs {
		a, err := ma.NewMultiaddr(s)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(s, "/p2p/") || strings.Contains(s, "/tcp/0") || strings.Contains(s, "/udp/0/") {
			t.Fatalf("address %s: want a resolved port and no /p2p", s)
		}
		if _, err := a.ValueForProtocol(ma.P_IP4); err != nil {
			t.Fatal(err)
		}
	}

	// A wildcard address is expanded to interface addresses.
	wild := newTestHost(t, nil, "/ip4/0.0.0.0/tcp/0")
	if len(wild.Addrs()) == 0 {
		t.Fatal("no addresses for a wildcard listener")
	}
	for _, s := range wild.Addrs() {
		if strings.HasPrefix(s, "/ip4/0.0.0.0/") || strings.HasSuffix(s, "/tcp/0") {
			t.Fatalf("unresolved address %s", s)
		}
	}
	t.Logf("wildcard listener advertises %v", wild.Addrs())

	// AddPeerAddrs keeps the good addresses and drops the rest.
	other := newTestKey(t)
	otherID, _ := peer.IDFromPrivateKey(other)
	target := newCatalogOrigin(t).id
	pid, _ := peer.Decode(string(target))
	h.AddPeerAddrs(target, []string{
		"/ip4/10.0.0.1/tcp/7948",
		"/ip4/10.0.0.1/udp/7948/quic-v1/p2p/" + string(target),
		"/ip4/10.0.0.2/tcp/7948/p2p/" + otherID.String(), // someone else's
		"/p2p/" + string(target),                         // no transport
		"not a multiaddr",
		"",
	})
	got := h.host.Peerstore().Addrs(pid)
	var gs []string
	for _, a := range got {
		gs = append(gs, a.String())
	}
	if len(gs) != 2 || !strings.Contains(strings.Join(gs, " "), "/ip4/10.0.0.1/tcp/7948") || !strings.Contains(strings.Join(gs, " "), "/ip4/10.0.0.1/udp/7948/quic-v1") {
		t.Fatalf("peerstore has %v", gs)
	}
	// Invalid IDs and the host itself are ignored without fuss.
	h.AddPeerAddrs("greenwich", []string{"/ip4/10.0.0.1/tcp/1"})
	h.AddPeerAddrs(h.ID(), []string{"/ip4/10.0.0.1/tcp/1"})
	for _, a := range h.host.Peerstore().Addrs(h.host.ID()) {
		if a.String() == "/ip4/10.0.0.1/tcp/1" {
			t.Fatal("AddPeerAddrs changed the host's own addresses")
		}
	}
}

func TestNewHostErrors(t *testing.T) {
	rsa, _, err := crypto.GenerateSecp256k1Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	taken := newTestHost(t, nil, loopTCP)
	for _, tc := range []struct {
		name string
		cfg  HostConfig
	}{
		{"no key", HostConfig{Listen: []string{loopTCP}}},
		{"not ed25519", HostConfig{Key: rsa, Listen: []string{loopTCP}}},
		{"bad address", HostConfig{Key: newTestKey(t), Listen: []string{"127.0.0.1:7948"}}},
		{"port taken", HostConfig{Key: newTestKey(t), Listen: []string{loopQUIC, taken.Addrs()[0]}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, err := NewHost(tc.cfg)
			if err == nil {
				h.Close()
				t.Fatal("no error")
			}
			t.Log(err)
		})
	}
}

func TestResourceLimits(t *testing.T) {
	l := resourceLimits().ToPartialLimitConfig()
	peerLim, proto, protoPeer, sys := l.PeerDefault, l.ProtocolDefault, l.ProtocolPeerDefault, l.System
	if peerLim.StreamsInbound != limitPeerStreamsInbound || peerLim.Streams != limitPeerStreams {
		t.Errorf("peer streams %v inbound, %v in all", peerLim.StreamsInbound, peerLim.Streams)
	}
	if peerLim.Memory < limitPeerMemoryBase {
		t.Errorf("peer memory %d", peerLim.Memory)
	}
	if protoPeer.StreamsInbound != limitProtoPeerStreamsInbound || protoPeer.Memory != limitProtoPeerMemory {
		t.Errorf("protocol-peer limits %+v", protoPeer)
	}
	if proto.StreamsInbound < limitProtoStreamsInbound || proto.Memory < limitProtoMemoryBase {
		t.Errorf("protocol limits %+v", proto)
	}
	if sys.Memory < limitSystemMemoryBase || sys.Memory < peerLim.Memory {
		t.Errorf("system memory %d below the peer's %d", sys.Memory, peerLim.Memory)
	}
	if l.Stream.Memory < maxCatalogResponse {
		t.Errorf("stream memory %d cannot hold a catalog page", l.Stream.Memory)
	}
	t.Logf("system memory %d MiB, peer memory %d MiB, peer inbound streams %d, conns %d",
		sys.Memory>>20, peerLim.Memory>>20, peerLim.StreamsInbound, sys.Conns)
}
