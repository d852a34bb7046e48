//go:build linux

package gossip

import (
	"net"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/nii-uk/nii/registry"
)

// hangingListener returns a loopback address whose TCP dials hang: a
// socket listening with a backlog of 0 that never accepts, its queue
// filled, so the kernel drops further SYNs and a dial waits out its
// timeout, as a dial to a member that is down does.
func hangingListener(t *testing.T) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(sa.(*syscall.SockaddrInet4).Port))
	for range 8 {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			return addr // the queue is full: this dial hung
		}
		if err != nil {
			t.Fatalf("a dial to the full listener failed at once (%v), it did not hang: the test needs net.ipv4.tcp_abort_on_overflow=0", err)
		}
		t.Cleanup(func() { c.Close() })
	}
	t.Fatal("the listener's queue never filled: dials to it do not hang")
	return ""
}

// TestCloseCutsAReconnectShort: Close does not wait for a reconnect's join
// to a failed member that does not answer. The join's dial ends with the
// gossip, not after TCPTimeout (10 s here), as memberlist's own transport
// would make it. (Linux: the hanging listener relies on its SYN handling.)
func TestCloseCutsAReconnectShort(t *testing.T) {
	addr := hangingListener(t)
	var net memNet
	m := net.startWith(t, nil, func(c *Config) { c.ReconnectInterval = 20 * time.Millisecond })
	m.peers.Update(registry.Peer{ID: newIdent().ID, Org: "lambeth", Gossip: addr, State: registry.PeerDead, LastSeen: time.Now()})
	waitFor(t, 10*time.Second, "a reconnect's join under way", func() bool {
		tried, _ := m.gossip.RejoinStats()
		return tried > 0
	})
	start := time.Now()
	if err := m.gossip.Close(); err != nil {
		t.Fatal(err)
	}
	if took, tcp := time.Since(start), fastGossip("", nil).TCPTimeout; took >= tcp/2 {
		t.Fatalf("Close took %v with a join's dial under way: it waited for the dial (TCPTimeout %v)", took, tcp)
	}
}
