package gossip

import (
	"context"
	"fmt"
	"log"
	"net"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/nii-uk/nii"
)

// BenchmarkPropagationProduction is BenchmarkPropagation with memberlist's
// configuration exactly as a real node runs it (gossip.Config{Profile:
// "lan"}, as node.DefaultConfig: 1 s probes, 500 ms probe timeout,
// compression on, no encryption by default), and Serf on memberlist's LAN
// defaults, at 16 and 256 members. Each repetition forms a fresh federation
// per side, alternating which side goes first:
//
//	go test ./registry/gossip -run XXX -bench PropagationProduction -benchtime 20x -timeout 90m
//	NII_PROP_SIZES=16 NII_PROP_REPS=5 go test ./registry/gossip -run XXX -bench PropagationProduction -benchtime 20x
//
// NII_PROP_SIZES takes sizes, each optionally with BenchmarkPropagation's
// slowed probing and compression off ("256:5s"); NII_PROP_NOPUSH=1 adds
// a third side, nii without its eager push (as it was before it);
// NII_PROP_SIDES=nii (or serf, nii-nopush) runs only the sides named.
// NII_PROP_PROCS=W runs each federation's members in W worker processes
// (propagation_proc_bench_test.go):
//
//	NII_PROP_PROCS=8 NII_PROP_SIZES=256 go test ./registry/gossip -run XXX -bench PropagationProduction -benchtime 10x -timeout 60m
//
// Beside the times it logs, for nii, a histogram of when each member
// applied each record and by which path (the broadcast, or a catch-up
// fetch from the origin — its metadata update arrived first — or from
// another member, after a push/pull), and for both sides the bytes their
// transports sent (counted beneath memberlist, at the socket writes).
func BenchmarkPropagationProduction(b *testing.B) {
	type size struct {
		n     int
		probe time.Duration // 0: production's
	}
	sizes := []size{{16, 0}, {256, 0}}
	if s := os.Getenv("NII_PROP_SIZES"); s != "" {
		sizes = nil
		for _, f := range strings.Split(s, ",") {
			ns, ps, slow := strings.Cut(f, ":")
			n, err := strconv.Atoi(ns)
			if err != nil {
				b.Fatalf("NII_PROP_SIZES: %v", err)
			}
			sz := size{n: n}
			if slow {
				if sz.probe, err = time.ParseDuration(ps); err != nil {
					b.Fatalf("NII_PROP_SIZES: %v", err)
				}
			}
			sizes = append(sizes, sz)
		}
	}
	reps := 3
	if s := os.Getenv("NII_PROP_REPS"); s != "" {
		var err error
		if reps, err = strconv.Atoi(s); err != nil {
			b.Fatalf("NII_PROP_REPS: %v", err)
		}
	}
	sides := []struct {
		name   string
		start  propStart
		noPush bool
	}{{"nii", startNii, false}, {"serf", startSerf, false}}
	if os.Getenv("NII_PROP_NOPUSH") != "" {
		sides = append(sides, struct {
			name   string
			start  propStart
			noPush bool
		}{"nii-nopush", startNii, true})
	}
	if s := os.Getenv("NII_PROP_SIDES"); s != "" { // e.g. "nii": only those sides
		want := strings.Split(s, ",")
		sides = slices.DeleteFunc(sides, func(sd struct {
			name   string
			start  propStart
			noPush bool
		}) bool {
			return !slices.Contains(want, sd.name)
		})
	}
	procs := 0
	if s := os.Getenv("NII_PROP_PROCS"); s != "" {
		var err error
		if procs, err = strconv.Atoi(s); err != nil || procs < 1 {
			b.Fatalf("NII_PROP_PROCS: want a number of worker processes, got %q", s)
		}
		for k := range sides {
			if sides[k].noPush {
				b.Fatal("NII_PROP_PROCS: nii-nopush runs in one process only")
			}
			sides[k].start = startProcs(sides[k].name, procs)
		}
	}
	for _, sz := range sizes {
		for rep := range reps {
			for k := range sides {
				side := sides[(k+rep)%len(sides)] // rotate who goes first
				f := &propFed{n: int64(sz.n), want: int64(sz.n - 1), prod: sz.probe == 0, count: true, noPush: side.noPush, probe: sz.probe}
				name := fmt.Sprintf("N=%d/rep=%d/%s", sz.n, rep, side.name)
				if procs > 0 {
					if sz.probe > 0 {
						b.Fatal("NII_PROP_PROCS: worker processes run production settings only")
					}
					name = fmt.Sprintf("N=%d/procs=%d/rep=%d/%s", sz.n, procs, rep, side.name)
				}
				if sz.probe > 0 {
					name = fmt.Sprintf("N=%d/probe=%v/rep=%d/%s", sz.n, sz.probe, rep, side.name)
				}
				b.Run(name, func(b *testing.B) {
					if !f.formed {
						f.form(b, side.start)
					}
					f.measure(b)
				})
				f.close()
				runtime.GC()
			}
		}
	}
}

// propTrace records, for the message being timed, when each member
// applied it and whether a catch-up fetch brought it.
type propTrace struct {
	mu      sync.Mutex
	key     string
	start   time.Time
	at      []int64 // per member: when it applied it (unix ns), 0 if not yet
	fetched []int64 // per member: when the fetch returned it (unix ns), from the origin (+) or another member (-)
	// over all messages of a run
	hist                     []time.Duration // every member's arrival
	byGossip, byMeta, byPull int
	first                    []time.Duration // when the first 90 % had it, per message
}

func (t *propTrace) begin(n int, key string, start time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.key, t.start = key, start
	t.at, t.fetched = make([]int64, n), make([]int64, n)
}

// restart moves the start of the message being timed to when it was
// published (the worker's clock), which is known only after the send.
func (t *propTrace) restart(start time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.start = start
}

func (t *propTrace) arrived(i int, now int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.at != nil && t.at[i] == 0 {
		t.at[i] = now
	}
}

// fetchedBy notes that member i's catch-up from peer from fetched recs.
func (t *propTrace) fetchedBy(i int, fromOrigin bool, recs []*nii.SignedAdvert) {
	now := time.Now().UnixNano()
	for _, sa := range recs {
		var a nii.Advert
		if nii.Unmarshal(sa.Body, &a) == nil {
			t.fetchedAt(i, fromOrigin, a.Dataset.Name, now)
		}
	}
}

// fetchedAt notes that member i's catch-up fetched key at now (unix ns).
func (t *propTrace) fetchedAt(i int, fromOrigin bool, key string, now int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.at == nil || key != t.key {
		return
	}
	if !fromOrigin {
		now = -now
	}
	t.fetched[i] = now
}

func (t *propTrace) end() {
	t.mu.Lock()
	defer t.mu.Unlock()
	var ms []time.Duration
	for i, at := range t.at {
		if at == 0 {
			continue // the sender
		}
		ms = append(ms, time.Duration(max(1, at-t.start.UnixNano())))
		switch fe := t.fetched[i]; {
		case fe > 0 && fe <= at:
			t.byMeta++
		case fe < 0 && -fe <= at:
			t.byPull++
		default:
			t.byGossip++
		}
	}
	slices.Sort(ms)
	t.hist = append(t.hist, ms...)
	if len(ms) > 0 {
		t.first = append(t.first, ms[(len(ms)*9)/10])
	}
	t.at = nil
}

// histBounds are the histogram's upper bounds.
var histBounds = []time.Duration{100, 200, 300, 400, 500, 600, 800, 1000, 1500, 2000, 5000, 30000, 1 << 40}

func (t *propTrace) report(b *testing.B) {
	t.mu.Lock()
	defer t.mu.Unlock()
	counts := make([]int, len(histBounds))
	for _, d := range t.hist {
		for k, ub := range histBounds {
			if d <= ub*time.Millisecond {
				counts[k]++
				break
			}
		}
	}
	var sb strings.Builder
	lo := time.Duration(0)
	for k, ub := range histBounds {
		if counts[k] > 0 {
			if ub == 1<<40 {
				fmt.Fprintf(&sb, " >%dms:%d", lo, counts[k])
			} else {
				fmt.Fprintf(&sb, " %d-%dms:%d", lo, ub, counts[k])
			}
		}
		lo = ub
	}
	slices.Sort(t.first)
	b.Logf("arrivals (all members, all messages, %d):%s", len(t.hist), sb.String())
	b.Logf("90th member by: p50 %v, max %v", percentile(t.first, 50).Round(time.Millisecond), percentile(t.first, 100).Round(time.Millisecond))
	if t.byMeta+t.byPull > 0 || strings.HasPrefix(b.Name(), "BenchmarkPropagationProduction") && !strings.Contains(b.Name(), "serf") {
		b.Logf("paths: %d by broadcast, %d by fetch from the origin (metadata first), %d by fetch from another member (push/pull)", t.byGossip, t.byMeta, t.byPull)
	}
	t.hist, t.first, t.byGossip, t.byMeta, t.byPull = nil, nil, 0, 0, 0
}

// traceFetcher is member i's catch-up path, noting what it fetched.
type traceFetcher struct {
	net *memNet
	f   *propFed
	i   int
}

func (t *traceFetcher) FetchCatalogPage(ctx context.Context, from, origin nii.NodeID, after uint64, limit int) ([]*nii.SignedAdvert, bool, uint64, error) {
	recs, more, wm, err := t.net.FetchCatalogPage(ctx, from, origin, after, limit)
	switch {
	case err != nil || !t.f.count:
	case t.f.onFetch != nil:
		t.f.onFetch(t.i, from == origin, recs)
	default:
		t.f.trace.fetchedBy(t.i, from == origin, recs)
	}
	return recs, more, wm, err
}

// wireCount counts the bytes memberlist hands its sockets: UDP packets
// (gossip, probes, anything sent best-effort) and what TCP connections this
// member dials write (push/pull, its half of it).
type wireCount struct{ udp, tcp atomic.Int64 }

// install gives c a NetTransport, as memberlist would make itself, that
// counts what it sends.
func (w *wireCount) install(c *memberlist.Config, logger *log.Logger) {
	nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{BindAddrs: []string{c.BindAddr}, BindPort: c.BindPort, Logger: logger})
	if err != nil {
		panic(err) // New would fail the same way binding its own
	}
	c.Transport = &countingTransport{NetTransport: nt, w: w}
}

type countingTransport struct {
	*memberlist.NetTransport
	w *wireCount
}

func (t *countingTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	t.w.udp.Add(int64(len(b)))
	return t.NetTransport.WriteTo(b, addr)
}

func (t *countingTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	t.w.udp.Add(int64(len(b)))
	return t.NetTransport.WriteToAddress(b, a)
}

func (t *countingTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	c, err := t.NetTransport.DialTimeout(addr, timeout)
	if err != nil {
		return nil, err
	}
	return &countingConn{c, t.w}, nil
}

func (t *countingTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	c, err := t.NetTransport.DialAddressTimeout(a, timeout)
	if err != nil {
		return nil, err
	}
	return &countingConn{c, t.w}, nil
}

type countingConn struct {
	net.Conn
	w *wireCount
}

func (c *countingConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.w.tcp.Add(int64(n))
	return n, err
}
