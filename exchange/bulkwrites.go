package exchange

// TLS over TCP with each Write's records gathered into one write.
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
// Larger yamux frames (256 KiB, against libp2p's 64 KiB) were tried on
// top and dropped: no gain measured (the publisher's CPU during a 1 GiB
// pull, five each, alternated: median 1.55 s with them, 1.45 s without;
// docs/benchmarks.md), and yamux
// queues up to 64 frames per connection outside the resource manager,
// 16 MiB at that size against 4 MiB.

import (
	"context"
	"net"
	"sync"

	pool "github.com/libp2p/go-buffer-pool"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/core/sec"
	tptu "github.com/libp2p/go-libp2p/p2p/net/upgrader"
	libp2ptls "github.com/libp2p/go-libp2p/p2p/security/tls"
)

// tlsRecordPayload is the most plaintext one TLS record carries.
const tlsRecordPayload = 16 << 10

// coalesceMax is the most a recordCoalescer gathers before it writes
// (and the go-buffer-pool class it gathers in): a yamux frame (64 KiB
// at most) seals into 65,624 bytes, so every frame goes out in one write.
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
	return coalesced(insecure, func(c net.Conn) (sec.SecureConn, error) { return t.Transport.SecureInbound(ctx, c, p) })
}

// SecureOutbound secures a dialled connection.
func (t *coalescedTLS) SecureOutbound(ctx context.Context, insecure net.Conn, p peer.ID) (sec.SecureConn, error) {
	return coalesced(insecure, func(c net.Conn) (sec.SecureConn, error) { return t.Transport.SecureOutbound(ctx, c, p) })
}

// coalesced runs secure (libp2p's handshake) over a recordCoalescer on
// insecure and returns its connection as a coalescedConn.
func coalesced(insecure net.Conn, secure func(net.Conn) (sec.SecureConn, error)) (sec.SecureConn, error) {
	rc := &recordCoalescer{Conn: insecure}
	sc, err := secure(rc)
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
func (c *coalescedConn) Write(b []byte) (n int, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(b) <= tlsRecordPayload {
		// One record once the connection is past crypto/tls's first,
		// smaller records (a window update, a request): nothing to
		// gather, and no buffer to take for it.
		return c.SecureConn.Write(b)
	}
	c.rc.hold()
	defer func() {
		if ferr := c.rc.release(); ferr != nil {
			n = 0 // what was gathered did not go out
			if err == nil {
				err = ferr
			}
		}
	}()
	return c.SecureConn.Write(b)
}

// Close closes the connection. While a Write is under way it closes the
// TCP connection under it without a close_notify alert, as crypto/tls
// does for a Close during its own Write: the alert would be gathered
// behind that Write's records and cut off with them.
func (c *coalescedConn) Close() error {
	if !c.mu.TryLock() {
		err := c.rc.Conn.Close()
		c.SecureConn.Close() // marks the TLS connection closed; the TCP one is already
		return err
	}
	defer c.mu.Unlock()
	return c.SecureConn.Close()
}

// recordCoalescer is the TCP connection under a coalescedConn's TLS.
// Outside a Write (the handshake, an alert sent by Close) it writes
// through.
//
// A failed write fails every later one. The TLS connection above took
// the gathered records as written and has moved on (its record sequence
// numbers, the rest of the Write); after a write that failed, or wrote
// part of its bytes before a deadline, nothing more may follow, or the
// peer would be sent records with a gap before them. (crypto/tls makes a
// network error on its own writes permanent in the same way.)
type recordCoalescer struct {
	net.Conn

	mu      sync.Mutex
	holding bool
	buf     []byte // from go-buffer-pool while holding
	err     error  // the first write that failed
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
	if r.err != nil {
		return 0, r.err
	}
	if !r.holding {
		return r.writeLocked(p)
	}
	if len(r.buf)+len(p) > coalesceMax {
		if err := r.flushLocked(); err != nil {
			return 0, err
		}
		if len(p) >= coalesceMax {
			return r.writeLocked(p)
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
		return r.err
	}
	b := r.buf
	r.buf = nil
	var err error
	if r.err == nil {
		_, err = r.writeLocked(b)
	}
	pool.Put(b[:cap(b)])
	if err != nil {
		return err
	}
	return r.err
}

// writeLocked writes p to the connection, keeping the error if it fails.
func (r *recordCoalescer) writeLocked(p []byte) (int, error) {
	n, err := r.Conn.Write(p)
	if err != nil {
		r.err = err
	}
	return n, err
}
