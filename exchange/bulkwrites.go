package exchange

// Bulk data over TCP in larger pieces: TLS records gathered into larger
// writes, and yamux frames of up to 256 KiB.
//
// crypto/tls hands every record it seals (at most 16 KiB of payload) to
// its connection in a write call of its own, so each 64 KiB yamux frame
// of a pull became five write(2)s: 72,808 on the publisher for a 1 GiB
// pull (perf stat, syscalls:sys_enter_write), 0.43 of its 1.5
// CPU-seconds in ksys_write, since on loopback each write also runs the
// receiving side's TCP in the sender's context. Writes of 64 KiB cost
// about a quarter less CPU per GiB than writes of 16 KiB (both ends of a
// loopback TCP connection; docs/benchmarks.md, "Gathered TLS records").
//
// coalescedTLS is libp2p's own TLS transport, with the handshake,
// certificates and peer checks unchanged; only between the TLS
// connection and the TCP one sits a recordCoalescer. While one Write of
// the secure connection runs, the records it produces are gathered and
// go out in one write when that Write returns (or sooner, once
// coalesceMax bytes are gathered): the same bytes in the same order,
// nothing held back after a Write returns, so no latency is added.
//
// yamux cuts a stream's writes into frames of at most MaxMessageSize,
// 64 KiB by default, each a Write of the TLS connection (and so of the
// TCP one). bulkYamux allows 256 KiB (still within the receive window a
// stream starts with, and the receiver takes any frame its window
// allows, as libp2p's yamux did before): a quarter of the frames, Writes
// and window accounting for the same bytes.

import (
	"context"
	"net"
	"sync"

	pool "github.com/libp2p/go-buffer-pool"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/core/sec"
	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	tptu "github.com/libp2p/go-libp2p/p2p/net/upgrader"
	libp2ptls "github.com/libp2p/go-libp2p/p2p/security/tls"
	goyamux "github.com/libp2p/go-yamux/v5"
)

// bulkYamux is libp2p's yamux (its 16 MiB windows, no stream limit but
// the resource manager's) with frames of up to 256 KiB.
func bulkYamux() *yamux.Transport {
	c := *(*goyamux.Config)(yamux.DefaultTransport)
	c.MaxMessageSize = 256 << 10
	return (*yamux.Transport)(&c)
}

// coalesceMax is the most a recordCoalescer gathers before it writes:
// a few yamux frames (64 KiB each) at most. Past 64 KiB a larger write
// saves little more.
const coalesceMax = 256 << 10

// coalescedTLS is libp2p's TLS security transport whose connections
// gather their records into larger writes.
type coalescedTLS struct{ *libp2ptls.Transport }

var _ sec.SecureTransport = (*coalescedTLS)(nil)

// newCoalescedTLS is libp2p's tls.New (libp2p.Security calls it with the
// same arguments), wrapped.
func newCoalescedTLS(id protocol.ID, key crypto.PrivKey, muxers []tptu.StreamMuxer) (*coalescedTLS, error) {
	t, err := libp2ptls.New(id, key, muxers)
	if err != nil {
		return nil, err
	}
	return &coalescedTLS{t}, nil
}

// SecureInbound secures an accepted connection.
func (t *coalescedTLS) SecureInbound(ctx context.Context, insecure net.Conn, p peer.ID) (sec.SecureConn, error) {
	rc := &recordCoalescer{Conn: insecure}
	sc, err := t.Transport.SecureInbound(ctx, rc, p)
	if err != nil {
		return nil, err
	}
	return &coalescedConn{SecureConn: sc, rc: rc}, nil
}

// SecureOutbound secures a dialled connection.
func (t *coalescedTLS) SecureOutbound(ctx context.Context, insecure net.Conn, p peer.ID) (sec.SecureConn, error) {
	rc := &recordCoalescer{Conn: insecure}
	sc, err := t.Transport.SecureOutbound(ctx, rc, p)
	if err != nil {
		return nil, err
	}
	return &coalescedConn{SecureConn: sc, rc: rc}, nil
}

// coalescedConn is a TLS connection whose Writes each reach the network
// in as few writes as coalesceMax allows.
type coalescedConn struct {
	sec.SecureConn
	rc *recordCoalescer
	mu sync.Mutex // one Write at a time, so a Write's records are its own
}

// Write seals b and writes its records, gathered.
func (c *coalescedConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rc.hold()
	n, err := c.SecureConn.Write(b)
	if ferr := c.rc.release(); err == nil {
		err = ferr
	}
	return n, err
}

// recordCoalescer is the TCP connection under a coalescedConn's TLS.
// Outside a Write (the handshake, an alert sent by Close) it writes
// through.
type recordCoalescer struct {
	net.Conn

	mu      sync.Mutex
	holding bool
	buf     []byte // from go-buffer-pool while holding
}

func (r *recordCoalescer) hold() {
	r.mu.Lock()
	r.holding = true
	r.mu.Unlock()
}

// release writes what was gathered and goes back to writing through.
func (r *recordCoalescer) release() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.holding = false
	return r.flushLocked()
}

// Write gathers p while holding (writing first what is gathered if p
// would take it past coalesceMax) and writes p through otherwise.
func (r *recordCoalescer) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.holding {
		return r.Conn.Write(p)
	}
	if len(r.buf)+len(p) > coalesceMax {
		if err := r.flushLocked(); err != nil {
			return 0, err
		}
		if len(p) >= coalesceMax {
			return r.Conn.Write(p)
		}
	}
	if r.buf == nil {
		r.buf = pool.Get(coalesceMax)[:0]
	}
	r.buf = append(r.buf, p...)
	return len(p), nil
}

// flushLocked writes what is gathered and returns the buffer to the pool.
func (r *recordCoalescer) flushLocked() error {
	if r.buf == nil {
		return nil
	}
	b := r.buf
	r.buf = nil
	_, err := r.Conn.Write(b)
	pool.Put(b[:cap(b)])
	return err
}
