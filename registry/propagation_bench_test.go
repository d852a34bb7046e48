package registry

import (
	"fmt"
	"io"
	"log"
	"sort"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/serf/serf"
	"github.com/nii-uk/nii"
)

// BenchmarkPropagation measures how long a new advert takes to reach every
// member, at N = 16, 64 and 256 nii members on loopback, beside 16 Serf
// agents delivering a user event — in one run, with the same memberlist LAN
// timings (200 ms gossip interval, fanout 3) on both sides.
//
//	go test ./registry -run XXX -bench Propagation -benchtime 20x -timeout 30m
//
// Reported: mean and worst time to reach all members, and false failure
// reports (members that any node saw as not alive during the run).
func BenchmarkPropagation(b *testing.B) {
	for _, n := range []int{16, 64, 256} {
		b.Run(fmt.Sprintf("nii/N=%d", n), func(b *testing.B) { benchNii(b, n) })
	}
	b.Run("serf/N=16", func(b *testing.B) { benchSerf(b, 16) })
}

func benchDB(b *testing.B) *badger.DB {
	db, err := badger.Open(badger.DefaultOptions("").WithInMemory(true).WithLogger(nil).
		WithMemTableSize(2 << 20).WithValueThreshold(64 << 10).WithBlockCacheSize(1 << 20).WithIndexCacheSize(1 << 20).WithNumCompactors(2))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	return db
}

func benchNii(b *testing.B, n int) {
	var net memNet
	net.cats = map[nii.NodeID]*Catalog{}
	ms := make([]*member, n)
	for i := range ms {
		id := newIdent()
		db := benchDB(b)
		cat, err := OpenCatalog(db, id.id, id.key, nil)
		if err != nil {
			b.Fatal(err)
		}
		peers, _ := OpenPeers(db)
		cfg := GossipConfig{Self: id.id, Org: fmt.Sprintf("org%d", i), Federation: "bench", BindAddr: "127.0.0.1", Profile: "lan"}
		g, err := NewGossip(cfg, cat, peers, &net)
		if err != nil {
			b.Fatal(err)
		}
		// Stopped when this run ends, not when the whole benchmark does:
		// the testing package calls benchNii once with N=1 and again with
		// the full N, and two 256-member federations must not overlap.
		defer g.Stop()
		net.cats[id.id] = cat
		ms[i] = &member{ident: id, cat: cat, peers: peers, gossip: g}
		if i > 0 {
			// Join through an earlier member (not always the first), as
			// boroughs would join through different neighbours.
			if _, err := g.Join([]string{ms[(i*7919)%i].gossip.Addr()}); err != nil {
				b.Fatal(err)
			}
		}
	}
	formed := time.Now()
	waitFor(b, 10*time.Minute, "all members see each other", func() bool {
		for _, m := range ms {
			if m.gossip.NumMembers() != n {
				return false
			}
		}
		return true
	})
	b.Logf("N=%d: membership converged %v after the last join", n, time.Since(formed).Round(time.Millisecond))
	var times []time.Duration
	b.ResetTimer()
	for i := range b.N {
		start := time.Now()
		a := ms[i%n].publish(b, fmt.Sprintf("ds-%d", i), "Spend over £500", 1)
		for _, m := range ms {
			for !hasAdvert(m.cat, a) {
				if time.Since(start) > time.Minute {
					b.Fatalf("advert %d did not reach all %d members in a minute", i, n)
				}
				time.Sleep(200 * time.Microsecond)
			}
		}
		times = append(times, time.Since(start))
	}
	b.StopTimer()
	report(b, times)
	falseFailures := 0
	for _, m := range ms {
		for _, p := range m.peers.List() {
			if p.State != PeerAlive {
				falseFailures++
			}
		}
	}
	b.ReportMetric(float64(falseFailures), "false-failures")
}

func report(b *testing.B, times []time.Duration) {
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	var sum time.Duration
	for _, t := range times {
		sum += t
	}
	b.ReportMetric(float64(sum.Milliseconds())/float64(len(times)), "mean-ms")
	b.ReportMetric(float64(times[len(times)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(times[len(times)-1].Microseconds())/1000, "max-ms")
	b.ReportMetric(0, "ns/op")
}

func benchSerf(b *testing.B, n int) {
	type agent struct {
		s      *serf.Serf
		events chan serf.Event
	}
	agents := make([]agent, n)
	failures := 0
	for i := range agents {
		conf := serf.DefaultConfig()
		conf.NodeName = fmt.Sprintf("serf-%d", i)
		conf.MemberlistConfig = memberlist.DefaultLANConfig()
		conf.MemberlistConfig.BindAddr = "127.0.0.1"
		conf.MemberlistConfig.BindPort = 0
		conf.MemberlistConfig.Logger = log.New(io.Discard, "", 0)
		conf.Logger = log.New(io.Discard, "", 0)
		ch := make(chan serf.Event, 4096)
		conf.EventCh = ch
		s, err := serf.Create(conf)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { s.Shutdown() })
		agents[i] = agent{s, ch}
		if i > 0 {
			m := agents[0].s.Memberlist().LocalNode()
			if _, err := s.Join([]string{fmt.Sprintf("%s:%d", m.Addr, m.Port)}, true); err != nil {
				b.Fatal(err)
			}
		}
	}
	waitFor(b, time.Minute, "serf agents see each other", func() bool {
		for _, a := range agents {
			if a.s.NumNodes() != n {
				return false
			}
		}
		return true
	})
	var times []time.Duration
	b.ResetTimer()
	for i := range b.N {
		payload := []byte(fmt.Sprintf("advert-%d", i))
		start := time.Now()
		if err := agents[i%n].s.UserEvent("advert", payload, false); err != nil {
			b.Fatal(err)
		}
		for _, a := range agents {
			got := false
			for !got {
				select {
				case e := <-a.events:
					switch ev := e.(type) {
					case serf.UserEvent:
						got = string(ev.Payload) == string(payload)
					case serf.MemberEvent:
						if ev.Type == serf.EventMemberFailed {
							failures++
						}
					}
				case <-time.After(time.Minute):
					b.Fatalf("serf event %d did not reach all agents", i)
				}
			}
		}
		times = append(times, time.Since(start))
	}
	b.StopTimer()
	report(b, times)
	b.ReportMetric(float64(failures), "false-failures")
}
