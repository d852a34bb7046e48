package gossip

import (
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/nii-uk/nii"
)

// A new record reaches members at once, without waiting for a gossip
// round: with memberlist's gossip rounds, probes (which carry queued
// broadcasts too) and push/pull all switched off and every fetch refused,
// only the push on publish and on receipt can deliver it. Four members: the
// publisher's fanout of 3 covers the other three, so nothing is left to
// chance.
func TestRecordsPushedBeforeGossipRounds(t *testing.T) {
	var net memNet
	slow := func(c *Config) {
		c.tune = func(mc *memberlist.Config) { // zero: memberlist schedules none of them
			mc.GossipInterval, mc.ProbeInterval, mc.PushPullInterval = 0, 0, 0
		}
	}
	var ms []*member
	for range 4 {
		ms = append(ms, net.startWith(t, nil, slow))
	}
	// Joins through every earlier member: state syncs both ways, so each
	// knows every other when they return (gossip cannot tell them).
	for i, m := range ms[1:] {
		var addrs []string
		for _, p := range ms[:i+1] {
			addrs = append(addrs, p.gossip.Addr())
		}
		if k, err := m.gossip.Join(addrs); err != nil || k != len(addrs) {
			t.Fatalf("join through %d members: %d joined, %v", len(addrs), k, err)
		}
	}
	waitFor(t, 10*time.Second, "4 members", func() bool {
		for _, m := range ms {
			if m.gossip.NumMembers() != 4 {
				return false
			}
		}
		return true
	})
	net.refuse.Store(true)
	var ads []*nii.Advert
	for i, m := range ms {
		ads = append(ads, m.publish(t, fmt.Sprintf("set-%d", i), "Set", 1))
	}
	waitFor(t, 10*time.Second, "every record reaches every member", func() bool {
		for _, m := range ms {
			for _, a := range ads {
				if !hasAdvert(m.cat, a) {
					return false
				}
			}
		}
		return true
	})
	if n := net.recs.Load(); n != 0 {
		t.Fatalf("%d records came by fetch, not push", n)
	}
}

// The push budget bounds the packets pushing adds, whatever the publish
// rate: pushBurst at once, then pushRate a second; records beyond it are
// only queued.
func TestPushBudget(t *testing.T) {
	t0 := time.Now()
	p := newPusher(3, t0)
	for i := range 10 {
		p.add(fmt.Sprintf("m%d", i), fmt.Sprintf("127.0.0.1:%d", 7000+i))
	}
	picked := 0
	for range 100 {
		if as := p.pick(t0); len(as) > 0 {
			if len(as) != 3 {
				t.Fatalf("picked %d members, want 3", len(as))
			}
			seen := map[string]bool{}
			for _, a := range as {
				if seen[a.Name] {
					t.Fatalf("member %s picked twice in %v", a.Name, as)
				}
				seen[a.Name] = true
			}
			picked++
		}
	}
	if picked != pushBurst/3 {
		t.Fatalf("%d records pushed at once, want %d", picked, pushBurst/3)
	}
	// One second later: pushRate more packets.
	again := 0
	for range 100 {
		if len(p.pick(t0.Add(time.Second))) > 0 {
			again++
		}
	}
	if again != pushRate/3 {
		t.Fatalf("%d records pushed a second later, want %d", again, pushRate/3)
	}
	sent, denied := p.stats()
	if sent != int64(3*(picked+again)) || denied != int64(200-picked-again) {
		t.Fatalf("stats: %d sent, %d denied", sent, denied)
	}
	// Removing members keeps the rest pickable, each once.
	for i := range 8 {
		p.remove(fmt.Sprintf("m%d", i))
	}
	as := p.pick(t0.Add(time.Hour))
	if len(as) != 2 || as[0].Name == as[1].Name {
		t.Fatalf("after removals picked %v, want m8 and m9", as)
	}
	for _, a := range as {
		if a.Name != "m8" && a.Name != "m9" || a.Addr != fmt.Sprintf("127.0.0.1:%d", 7000+int(a.Name[1]-'0')) {
			t.Fatalf("after removals picked %v", a)
		}
	}
}
