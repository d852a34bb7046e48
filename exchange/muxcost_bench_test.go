package exchange

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	libp2ptls "github.com/libp2p/go-libp2p/p2p/security/tls"
	"github.com/nii-uk/nii"
)

// What the stream muxer costs a bulk transfer (docs/benchmarks.md, "What
// yamux costs a bulk stream"): the same bytes, in the same 64 KiB writes,
// over one libp2p stream between two Hosts (TCP, nii's TLS, yamux) and
// over crypto/tls on a TCP connection with libp2p's TLS identity and no
// muxer. Both ends run in this process, so the CPU figure is both ends'.
//
//	go test ./exchange -run XXX -bench BulkStream -benchtime 4x -count 3

const bulkBytes = 256 << 20

func cpuNow(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// sendBulk writes bulkBytes to w in 64 KiB writes.
func sendBulk(w io.Writer) error {
	buf := randBytes(3, 64<<10)
	for sent := 0; sent < bulkBytes; sent += len(buf) {
		if _, err := w.Write(buf); err != nil {
			return err
		}
	}
	return nil
}

// readBulk reads r to its end in 64 KiB reads and checks the count.
func readBulk(b *testing.B, r io.Reader) {
	n, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{r}, make([]byte, 64<<10))
	if err != nil || n != bulkBytes {
		b.Fatalf("read %d bytes of %d: %v", n, bulkBytes, err)
	}
}

func reportBulk(b *testing.B, cpu time.Duration) {
	gib := float64(b.N) * bulkBytes / (1 << 30)
	b.ReportMetric(cpu.Seconds()/gib, "cpu-s/GiB")
	b.SetBytes(bulkBytes)
}

func BenchmarkBulkStream(b *testing.B) {
	b.Run("libp2p-tls-yamux", func(b *testing.B) {
		send, recv := newPullHost(b), newPullHost(b)
		const proto = protocol.ID("/nii/bench/bulk/1")
		send.setHandler(proto, 0, func(rw io.ReadWriter, _ nii.NodeID) error { return sendBulk(rw) })
		recv.AddPeerAddrs(send.ID(), send.Addrs())
		pid, err := peer.Decode(string(send.ID()))
		if err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		start := cpuNow(b)
		for range b.N {
			s, err := recv.host.NewStream(context.Background(), pid, proto)
			if err != nil {
				b.Fatal(err)
			}
			s.CloseWrite()
			readBulk(b, s)
			s.Close()
		}
		reportBulk(b, cpuNow(b)-start)
	})
	b.Run("tls-no-muxer", func(b *testing.B) { benchTLSBulk(b, false) })
	// As nii's TLS gathers a Write's records into one write (bulkwrites.go).
	b.Run("tls-no-muxer-gathered", func(b *testing.B) { benchTLSBulk(b, true) })
}

func benchTLSBulk(b *testing.B, gather bool) {
	{
		sk, _, _ := crypto.GenerateEd25519Key(nil)
		ck, _, _ := crypto.GenerateEd25519Key(nil)
		sid, _ := libp2ptls.NewIdentity(sk)
		cid, _ := libp2ptls.NewIdentity(ck)
		spid, _ := peer.IDFromPrivateKey(sk)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		defer ln.Close()
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					conf, _ := sid.ConfigForPeer("")
					if !gather {
						tc := tls.Server(c, conf)
						if sendBulk(tc) == nil {
							tc.CloseWrite()
						}
						return
					}
					rc := &recordCoalescer{Conn: c}
					tc := tls.Server(rc, conf)
					// Before any gathering, as libp2p's upgrade does: a
					// handshake flight held back would wait for its answer.
					if tc.Handshake() != nil {
						return
					}
					if sendBulk(gathered{tc, rc}) == nil {
						tc.CloseWrite()
					}
				}()
			}
		}()
		b.ResetTimer()
		start := cpuNow(b)
		for range b.N {
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			conf, _ := cid.ConfigForPeer(spid)
			tc := tls.Client(c, conf)
			readBulk(b, tc)
			tc.Close()
		}
		reportBulk(b, cpuNow(b)-start)
	}
}

// gathered writes through c with each Write's records gathered by rc.
type gathered struct {
	c  *tls.Conn
	rc *recordCoalescer
}

func (g gathered) Write(p []byte) (int, error) {
	g.rc.hold()
	n, err := g.c.Write(p)
	if ferr := g.rc.release(); err == nil {
		err = ferr
	}
	return n, err
}
