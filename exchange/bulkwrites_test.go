package exchange

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	mrand "math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/sec"
	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	tls "github.com/libp2p/go-libp2p/p2p/security/tls"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	ma "github.com/multiformats/go-multiaddr"
)

// writeLog is a net.Conn that keeps every write it is given.
type writeLog struct {
	net.Conn
	mu     sync.Mutex
	writes [][]byte
	err    error
}

func (w *writeLog) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return 0, w.err
	}
	w.writes = append(w.writes, bytes.Clone(p))
	return len(p), nil
}

func (w *writeLog) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.writes)
}

func (w *writeLog) joined() []byte {
	w.mu.Lock()
	defer w.mu.Unlock()
	return bytes.Join(w.writes, nil)
}

// TestRecordCoalescer: outside a hold writes go through one for one;
// within one they are gathered, written in order when the hold ends and
// never in pieces over coalesceMax (unless one write alone is); a failed
// write is reported.
func TestRecordCoalescer(t *testing.T) {
	log := &writeLog{}
	r := &recordCoalescer{Conn: log}
	for i := range 3 {
		if _, err := r.Write([]byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if log.count() != 3 {
		t.Fatalf("%d writes outside a hold, want 3", log.count())
	}

	rng := mrand.New(mrand.NewPCG(1, 2))
	for round := range 60 {
		log := &writeLog{}
		r := &recordCoalescer{Conn: log}
		var want []byte
		bigs := map[int]bool{} // lengths of writes of coalesceMax or more
		const maxSmall = 3 * 16 << 10
		r.hold()
		for range rng.IntN(40) {
			p := make([]byte, rng.IntN(maxSmall))
			if rng.IntN(20) == 0 {
				p = make([]byte, coalesceMax+rng.IntN(1000))
				bigs[len(p)] = true
			}
			rand.Read(p)
			if n, err := r.Write(p); err != nil || n != len(p) {
				t.Fatalf("round %d: Write = %d, %v", round, n, err)
			}
			want = append(want, p...)
		}
		held := log.joined()
		if err := r.release(); err != nil {
			t.Fatal(err)
		}
		got := log.joined()
		if !bytes.Equal(got, want) {
			t.Fatalf("round %d: %d bytes written, want the %d given, in order", round, len(got), len(want))
		}
		if len(want)-len(held) > coalesceMax {
			t.Fatalf("round %d: %d bytes left for the release, more than coalesceMax", round, len(want)-len(held))
		}
		for i, w := range log.writes {
			if len(w) == 0 {
				t.Fatalf("round %d: write %d is empty", round, i)
			}
			// A write over coalesceMax is one Write given whole, never a
			// gathering that overflowed.
			if len(w) > coalesceMax && !bigs[len(w)] {
				t.Fatalf("round %d: write %d of %d bytes, over coalesceMax", round, i, len(w))
			}
		}
		// Each gathering written before the release was full to within
		// one small write; a big write adds itself and may cut one short.
		if most := len(want)/(coalesceMax-maxSmall) + 1 + 2*len(bigs); log.count() > most {
			t.Fatalf("round %d: %d writes for %d bytes, want at most %d", round, log.count(), len(want), most)
		}
	}

	broken := &writeLog{err: errors.New("connection reset")}
	r = &recordCoalescer{Conn: broken}
	r.hold()
	if _, err := r.Write(make([]byte, 100)); err != nil {
		t.Fatal(err) // gathered, not yet written
	}
	if err := r.release(); err == nil {
		t.Fatal("release hid the failed write")
	}
	if r.buf != nil {
		t.Fatal("buffer kept after the failed write")
	}

	// After a failed write nothing more goes out, gathered or not: the
	// TLS records after it would follow a gap.
	flaky := &writeLog{}
	r = &recordCoalescer{Conn: flaky}
	r.hold()
	r.Write([]byte("a"))
	flaky.err = errors.New("i/o timeout")
	if err := r.release(); err == nil {
		t.Fatal("release hid the failed write")
	}
	flaky.err = nil // the connection would take bytes again
	if _, err := r.Write([]byte("b")); err == nil {
		t.Fatal("a write after a failed one went through")
	}
	r.hold()
	r.Write([]byte("c"))
	if err := r.release(); err == nil {
		t.Fatal("a gathering after a failed write went out")
	}
	if flaky.count() != 0 {
		t.Fatalf("%d writes after the failure", flaky.count())
	}
}

// securePair runs a TLS handshake over a pipe between a dialler (nii's
// coalesced TLS, or libp2p's own) and a listener with libp2p's own TLS,
// the dialler's side of the pipe logged from the end of the handshake.
func securePair(t *testing.T, coalesce bool) (sec.SecureConn, sec.SecureConn, *writeLog) {
	t.Helper()
	k1, k2 := newTestKey(t), newTestKey(t)
	listenerID, err := peer.IDFromPrivateKey(k2)
	if err != nil {
		t.Fatal(err)
	}
	var dialer sec.SecureTransport
	if coalesce {
		dialer, err = newCoalescedTLS(tls.ID, k1, nil)
	} else {
		dialer, err = tls.New(tls.ID, k1, nil)
	}
	if err != nil {
		t.Fatal(err)
	}
	listener, err := tls.New(tls.ID, k2, nil)
	if err != nil {
		t.Fatal(err)
	}
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	log := &pipeLog{Conn: a}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	type res struct {
		c   sec.SecureConn
		err error
	}
	in := make(chan res, 1)
	go func() {
		c, err := listener.SecureInbound(ctx, b, "")
		in <- res{c, err}
	}()
	out, err := dialer.SecureOutbound(ctx, log, listenerID)
	if err != nil {
		t.Fatal(err)
	}
	r := <-in
	if r.err != nil {
		t.Fatal(r.err)
	}
	log.start()
	return out, r.c, &log.writeLog
}

// pipeLog passes writes to its pipe and, once started, counts them.
type pipeLog struct {
	net.Conn
	writeLog
	counting bool
	mu       sync.Mutex
}

func (p *pipeLog) start() { p.mu.Lock(); p.counting = true; p.mu.Unlock() }

func (p *pipeLog) Write(b []byte) (int, error) {
	p.mu.Lock()
	counting := p.counting
	p.mu.Unlock()
	if counting {
		p.writeLog.Write(b)
	}
	return p.Conn.Write(b)
}

// TestCoalescedTLSWrites: one 1 MiB Write on a coalesced TLS connection
// reaches the TCP connection in a handful of writes (libp2p's own TLS
// makes one per 16 KiB record, 64 or more) and the other side, libp2p's
// own TLS, reads the same bytes.
func TestCoalescedTLSWrites(t *testing.T) {
	msg := make([]byte, 1<<20)
	rand.Read(msg)
	for _, coalesce := range []bool{true, false} {
		out, in, log := securePair(t, coalesce)
		got := make(chan []byte, 1)
		go func() {
			b := make([]byte, len(msg))
			_, err := io.ReadFull(in, b)
			if err != nil {
				b = nil
			}
			got <- b
		}()
		if n, err := out.Write(msg); err != nil || n != len(msg) {
			t.Fatalf("Write = %d, %v", n, err)
		}
		if b := <-got; !bytes.Equal(b, msg) {
			t.Fatalf("coalesce %v: the other side read other bytes", coalesce)
		}
		// A record carries at most 16 KiB; each gathering is written once
		// the next record would overflow it, so it holds more than
		// coalesceMax less one record (and its 22 bytes of framing).
		records := len(msg) / (16 << 10)
		most := len(msg)*102/100/(coalesceMax-16<<10-22) + 1
		switch n := log.count(); {
		case coalesce && n > most:
			t.Fatalf("%d writes for 1 MiB gathered, want at most %d", n, most)
		case !coalesce && n < records:
			t.Fatalf("libp2p's TLS made %d writes for 1 MiB, fewer than its %d records: the check above proves nothing", n, records)
		}
		t.Logf("coalesce %v: %d writes", coalesce, log.count())
		if !coalesce {
			continue
		}

		// A write of one record (a window update) goes through as it is.
		small := log.count()
		go func() {
			b := make([]byte, 12)
			if _, err := io.ReadFull(in, b); err != nil {
				b = nil
			}
			got <- b
		}()
		if _, err := out.Write([]byte("window-updat")); err != nil {
			t.Fatal(err)
		}
		if b := <-got; string(b) != "window-updat" {
			t.Fatalf("read %q", b)
		}
		if n := log.count() - small; n != 1 {
			t.Fatalf("a 12-byte Write made %d writes", n)
		}

		// A full yamux frame (64 KiB, as yamux writes it) goes out in
		// exactly one write of its four sealed records.
		frame := make([]byte, 64<<10)
		rand.Read(frame)
		before := log.count()
		go func() {
			b := make([]byte, 4*len(frame))
			if _, err := io.ReadFull(in, b); err != nil {
				b = nil
			}
			got <- b
		}()
		for range 4 {
			if _, err := out.Write(frame); err != nil {
				t.Fatal(err)
			}
		}
		if b := <-got; !bytes.Equal(b, bytes.Repeat(frame, 4)) {
			t.Fatal("the other side read other bytes than the four frames")
		}
		log.mu.Lock()
		writes := log.writes[before:]
		log.mu.Unlock()
		if len(writes) != 4 {
			t.Fatalf("four full frames took %d writes, want one each", len(writes))
		}
		for _, w := range writes {
			if want := len(frame) + len(frame)/(16<<10)*22; len(w) != want {
				t.Fatalf("a full frame sealed into a write of %d bytes, want %d", len(w), want)
			}
		}
	}
}

// TestCoalescedConnCloseDuringWrites: Close while Writes are under way
// (from another goroutine, as yamux closes a session while its send loop
// writes) returns, fails the Writes after it, and leaves nothing for the
// race detector.
func TestCoalescedConnCloseDuringWrites(t *testing.T) {
	for round := range 20 {
		out, in, _ := securePair(t, true)
		go io.Copy(io.Discard, in)
		var wg sync.WaitGroup
		frame := make([]byte, 64<<10)
		for range 3 {
			wg.Go(func() {
				for {
					if _, err := out.Write(frame); err != nil {
						return
					}
				}
			})
		}
		time.Sleep(time.Duration(round) * time.Millisecond) // where the Close lands, not a wait for state
		out.Close()
		wg.Wait() // every writer saw its Write fail
		if _, err := out.Write([]byte("x")); err == nil {
			t.Fatalf("round %d: a Write after Close succeeded", round)
		}
	}
}

// TestCoalescedTLSInterop: a node and a libp2p host with libp2p's own
// TLS (as an older nii has) connect over TLS and move 8 MiB each way on
// one stream, intact: the bytes on the wire are the same protocol, only
// written in larger pieces.
func TestCoalescedTLSInterop(t *testing.T) {
	node := newTestHost(t, nil, loopTCP)
	const proto = "/nii-test/echo/1"
	node.host.SetStreamHandler(proto, func(s network.Stream) {
		defer s.Close()
		b, err := io.ReadAll(s)
		if err == nil {
			s.Write(b)
		}
	})
	stock, err := libp2p.New(
		libp2p.NoListenAddrs,
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.Security(tls.ID, tls.New),
		libp2p.Muxer(yamux.ID, yamux.DefaultTransport),
		libp2p.DisableMetrics(),
	)
	if err != nil {
		t.Fatal(err)
	}
	defer stock.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ai := peer.AddrInfo{ID: node.host.ID()}
	for _, a := range node.Addrs() {
		ai.Addrs = append(ai.Addrs, ma.StringCast(a))
	}
	if err := stock.Connect(ctx, ai); err != nil {
		t.Fatal(err)
	}
	s, err := stock.NewStream(ctx, node.host.ID(), proto)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if st := s.Conn().ConnState(); st.Security != tls.ID {
		t.Fatalf("security %q, want TLS", st.Security)
	}
	s.SetDeadline(time.Now().Add(30 * time.Second))
	msg := make([]byte, 8<<20)
	rand.Read(msg)
	errc := make(chan error, 1)
	go func() {
		_, err := s.Write(msg)
		if err == nil {
			err = s.CloseWrite()
		}
		errc <- err
	}()
	back, err := io.ReadAll(s)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(back, msg) {
		t.Fatalf("echo of %d bytes came back as %d other bytes", len(msg), len(back))
	}
}
