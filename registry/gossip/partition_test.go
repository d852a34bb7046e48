package gossip

import (
	"fmt"
	"io"
	"log"
	stdnet "net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/nii-uk/nii/registry"
)

// partition cuts gossip between two groups of members, as a failed network
// link would, while every member keeps running: packets across the cut are
// dropped and connections across it refused. Members are named by their
// gossip address; those not in side are on side 0.
type partition struct {
	mu   sync.Mutex
	side map[string]int
	cut  bool
}

func (p *partition) blocked(from, to string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cut && p.side[from] != p.side[to]
}

func (p *partition) set(cut bool) {
	p.mu.Lock()
	p.cut = cut
	p.mu.Unlock()
}

// cutTransport is memberlist's own UDP/TCP transport with the partition
// applied to what this member sends. Every member of a test uses one, so
// filtering the sending side is enough to cut both directions.
type cutTransport struct {
	*memberlist.NetTransport
	p    *partition
	self string
}

func (t *cutTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	if t.p.blocked(t.self, a.Addr) {
		return time.Now(), nil // lost on the way, as a UDP packet is
	}
	return t.NetTransport.WriteToAddress(b, a)
}

func (t *cutTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	return t.WriteToAddress(b, memberlist.Address{Addr: addr})
}

func (t *cutTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (stdnet.Conn, error) {
	if t.p.blocked(t.self, a.Addr) {
		return nil, fmt.Errorf("dial tcp %s: connect: no route to host (partitioned by the test)", a.Addr)
	}
	return t.NetTransport.DialAddressTimeout(a, timeout)
}

func (t *cutTransport) DialTimeout(addr string, timeout time.Duration) (stdnet.Conn, error) {
	return t.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

// toTheDead is memberlist's GossipToTheDeadTime in the partition test.
const toTheDead = 100 * time.Millisecond

// startCut starts a member whose gossip goes through p, on side.
func (m *memNet) startCut(t *testing.T, p *partition, side int, reconnect time.Duration) *member {
	t.Helper()
	return m.startWith(t, nil, func(c *Config) {
		c.ReconnectInterval = reconnect
		c.tune = func(mc *memberlist.Config) {
			nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{
				BindAddrs: []string{"127.0.0.1"}, Logger: log.New(io.Discard, "", 0),
			})
			if err != nil {
				t.Fatal(err)
			}
			self := stdnet.JoinHostPort("127.0.0.1", strconv.Itoa(nt.GetAutoBindPort()))
			p.mu.Lock()
			if p.side == nil {
				p.side = map[string]int{}
			}
			p.side[self] = side
			p.mu.Unlock()
			mc.Transport = &cutTransport{NetTransport: nt, p: p, self: self}
			// memberlist keeps gossiping to members it declared dead for
			// GossipToTheDeadTime (15 s in the local profile), which heals a
			// short partition on its own; this test is about the long ones.
			mc.GossipToTheDeadTime = toTheDead
		}
	})
}

// TestPartitionHealsWithoutRestart cuts a running federation of four in
// two, shows each side declare the other failed and publish on its own,
// then restores the network without restarting anyone: the members must
// find each other again (reconnect: memberlist alone never contacts a
// member it declared dead once GossipToTheDeadTime is over), see each
// other alive in the member table, and learn what the other side published
// during the partition.
func TestPartitionHealsWithoutRestart(t *testing.T) {
	var net memNet
	var p partition
	reconnect := 100 * time.Millisecond
	var ms []*member
	for i := range 4 {
		ms = append(ms, net.startCut(t, &p, i/2, reconnect))
	}
	for _, m := range ms[1:] {
		if _, err := m.gossip.Join([]string{ms[0].gossip.Addr()}); err != nil {
			t.Fatal(err)
		}
	}
	all := func(n int) func() bool {
		return func() bool {
			for _, m := range ms {
				if m.gossip.NumMembers() != n {
					return false
				}
			}
			return true
		}
	}
	waitFor(t, 10*time.Second, "4 members seen by all", all(4))

	p.set(true)
	state := func(m, o *member) string { pr, _ := m.peers.Get(o.ID); return pr.State }
	waitFor(t, 10*time.Second, "each side sees the other dead", func() bool {
		for i, m := range ms {
			for j, o := range ms {
				if i/2 != j/2 && state(m, o) != registry.PeerDead {
					return false
				}
			}
		}
		return all(2)()
	})
	a := ms[0].publish(t, "during-the-cut-a", "Spend", 1)
	b := ms[3].publish(t, "during-the-cut-b", "Spend", 1)
	waitFor(t, 10*time.Second, "each side spreads its own record", func() bool {
		return hasAdvert(ms[1].cat, a) && hasAdvert(ms[2].cat, b)
	})
	// Long enough past GossipToTheDeadTime that memberlist no longer
	// gossips across the cut by itself: one more full failure round.
	gone := time.Now()
	waitFor(t, 10*time.Second, "memberlist stops gossiping to the dead", func() bool {
		return time.Since(gone) > 10*toTheDead && all(2)()
	})

	p.set(false)
	waitFor(t, 20*time.Second, "the two sides are one federation again", all(4))
	waitFor(t, 20*time.Second, "every member sees every other alive and holds both records", func() bool {
		for _, m := range ms {
			for _, o := range ms {
				if m != o && state(m, o) != registry.PeerAlive {
					return false
				}
			}
			if !hasAdvert(m.cat, a) || !hasAdvert(m.cat, b) {
				return false
			}
		}
		return true
	})
	var tried, joined int64
	for _, m := range ms {
		t1, j1 := m.gossip.RejoinStats()
		tried, joined = tried+t1, joined+j1
	}
	if joined == 0 || tried < joined {
		t.Errorf("RejoinStats over the members: %d tried, %d joined; the heal was a rejoin, so want joined > 0", tried, joined)
	}
}

// A member that said goodbye is not reconnected to, and one last seen
// before the reconnect timeout is given up on: reconnect picks only
// members failed recently.
func TestReconnectPicksOnlyRecentFailures(t *testing.T) {
	var net memNet
	a, _, crasher := leaveAndCrash(t, &net)
	// With one failed and one live member (a itself), every call tries.
	if id, ok := a.gossip.reconnect(time.Hour); !ok || id != crasher.ID {
		t.Fatalf("reconnect tried %q (%v), want the crasher %s", id, ok, crasher.ID)
	}
	if id, ok := a.gossip.reconnect(0); ok {
		t.Fatalf("reconnect tried %s, last seen before the timeout", id)
	}
}
