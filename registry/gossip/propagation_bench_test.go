package gossip

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/serf/serf"
	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/registry"
)

// BenchmarkPropagation measures how long a new advert takes to reach every
// member of a federation of N nii members on loopback, and beside it how
// long a Serf user event takes to reach N Serf agents, in one run, with the
// same memberlist LAN timings on both sides (200 ms gossip interval, fanout
// 3, 1 s probes, 30 s push/pull scaled by memberlist for N > 32).
//
//	go test ./registry/gossip -run XXX -bench Propagation -benchtime 20x -timeout 60m
//	go test ./registry/gossip -run XXX -bench 'Propagation/.*/N=256$' -benchtime 20x -timeout 30m
//
// Each federation is formed once per size (joins through random earlier
// members, then eager push/pull syncs until every member sees all N) and
// left to settle before anything is timed; both sides are formed the same
// way. Reported per size: mean, p50 and worst time from publishing to the
// last member applying the record; memberlist suspicions and failures
// declared while measuring (all false: nothing fails); how late a 200 ms
// ticker in the same process fired (p99, worst) and the process's CPU use,
// which show whether the machine kept up with N members.
func BenchmarkPropagation(b *testing.B) {
	sides := []struct {
		name  string
		start propStart
	}{{"nii", startNii}, {"serf", startSerf}}
	// At 128 members and beyond, one process on two cores cannot also
	// probe every member every second (see benchTune); 128 runs both ways
	// to show what the slower probing changes.
	sizes := []struct {
		n     int
		probe time.Duration // 0: LAN's 1 s
	}{{16, 0}, {64, 0}, {128, 0}, {128, 5 * time.Second}, {192, 5 * time.Second}, {256, 5 * time.Second}}
	for _, sz := range sizes {
		for _, side := range sides {
			// One federation serves both of the testing package's calls
			// (b.N = 1, then the full count); it is stopped before the next
			// one forms, so two never overlap.
			f := &propFed{n: int64(sz.n), want: int64(sz.n - 1), probe: sz.probe}
			name := fmt.Sprintf("%s/N=%d", side.name, sz.n)
			if sz.probe > 0 {
				name += fmt.Sprintf("/probe=%v", sz.probe)
			}
			b.Run(name, func(b *testing.B) {
				if !f.formed {
					f.form(b, side.start)
				}
				f.measure(b)
			})
			f.close()
		}
	}
}

// propFed is one federation under measurement, nii's or Serf's.
type propFed struct {
	n, want int64
	probe   time.Duration // memberlist's probe interval, if not LAN's
	prod    bool          // production settings: tune changes nothing (but may count bytes)
	count   bool          // trace arrivals and count the bytes sent (BenchmarkPropagationProduction)
	noPush  bool          // nii without the eager push, as before it
	formed  bool
	g0      int       // goroutines before the members started
	trace   propTrace // per-member arrivals and paths (production runs)
	wire    wireCount // bytes the members' transports sent
	members []propMember
	closers []func() // stop the members
	finally []func() // then what they used
	log     failureLog
	fetched func() int64 // records fetched by catch-up (nii only)

	// Set when the members run in worker processes
	// (propagation_proc_bench_test.go): the workers' CPU, and when the
	// message being timed was published (by the worker's clock, which is
	// this machine's). In a worker, onArrive and onFetch pass what its
	// members see up to the parent instead of timing it here.
	cpu      func() time.Duration
	sentAt   func() time.Time
	onArrive func(i int, key string, now int64)
	onFetch  func(i int, fromOrigin bool, recs []*nii.SignedAdvert)
	net      *memNet // nii's catch-up fetches (startNii makes it if nil)

	sent   int          // messages published so far
	target atomic.Value // string: the message being timed
	sender atomic.Int64 // the member that published it
	got    atomic.Int64 // members other than the sender that have it
	last   atomic.Int64 // when the last of them got it (unix ns)
}

// propStart prepares a federation of f.n members and returns a function
// that starts member i (not yet joined).
type propStart func(tb testing.TB, f *propFed) (add func(i int) propMember)

type propMember interface {
	addr() string
	join(addr string) error
	numMembers() int
	// send publishes a new message identified by key.
	send(tb testing.TB, key string)
}

// arrive notes that member i has the message key.
func (f *propFed) arrive(i int, key string) {
	now := time.Now().UnixNano()
	if f.onArrive != nil {
		f.onArrive(i, key, now)
		return
	}
	f.arriveAt(i, key, now)
}

// arriveAt notes that member i had the message key at now (unix ns).
func (f *propFed) arriveAt(i int, key string, now int64) {
	if k, _ := f.target.Load().(string); k != key || int64(i) == f.sender.Load() {
		return
	}
	f.got.Add(1)
	f.trace.arrived(i, now)
	for {
		l := f.last.Load()
		if l >= now || f.last.CompareAndSwap(l, now) {
			return
		}
	}
}

func (f *propFed) close() {
	for _, cs := range [][]func(){f.closers, f.finally} {
		var wg sync.WaitGroup
		for _, c := range cs {
			wg.Go(c)
		}
		wg.Wait()
	}
	f.closers, f.finally = nil, nil
	// memberlist's Shutdown does not wait for a probe in flight, which
	// ends within a probe interval: wait for it, so that the leak check
	// after the benchmarks sees only what really leaked.
	for deadline := time.Now().Add(15 * time.Second); f.g0 > 0 && runtime.NumGoroutine() > f.g0 && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
}

// form starts the members and joins each through a random earlier member,
// in batches of 32: each batch joins, then the members so far are brought
// to agree on the membership before the next batch (one join storm of 256
// members, each join re-gossiped by every member, starves two cores and
// times joins out). memberlist's join leaves some members missing a few
// others until push/pull repairs it (every 2 minutes at N = 256), so
// members still missing someone after a few seconds sync with a random
// member (a push/pull, as memberlist's own anti-entropy does) until all
// agree. Then gossip is left to drain the joins' broadcasts.
func (f *propFed) form(tb testing.TB, start propStart) {
	n := int(f.n)
	t0 := time.Now()
	f.g0 = runtime.NumGoroutine()
	add := start(tb, f)
	rng := rand.New(rand.NewPCG(uint64(n), 1))
	syncs, retries := 0, 0
	const batch = 32
	for i := range n {
		f.members = append(f.members, add(i))
		if i == 0 {
			continue
		}
		// Through a random earlier member, not always the first, as
		// boroughs would join through different neighbours.
		through := rng.IntN(i)
		for try := 0; ; try++ {
			err := f.members[i].join(f.members[through].addr())
			if err == nil {
				break
			}
			if try == 3 {
				tb.Fatalf("N=%d: member %d could not join: %v", n, i, err)
			}
			retries++
			tb.Logf("N=%d: member %d join retried: %v", n, i, err)
		}
		if (i+1)%batch == 0 || i == n-1 {
			t, cpu := time.Now(), f.cpuTime()
			s := f.converge(tb, f.members[:i+1], rng)
			syncs += s
			tb.Logf("N=%d: %d members agree after %v (%d syncs; so far %d suspicions, %d failures, %d handoff drops; cpu %.0f%%)", n, i+1,
				time.Since(t).Round(time.Millisecond), s, f.log.suspected.Load(), f.log.failed.Load(), f.log.dropped.Load(),
				100*(f.cpuTime()-cpu).Seconds()/time.Since(t).Seconds()/float64(runtime.NumCPU()))
		}
	}
	// Let the joins' alive messages finish their retransmits: memberlist
	// puts its own broadcasts ahead of its delegates' in every packet, so
	// until they drain a new record waits for room. A running federation
	// has nothing queued.
	formed := time.Now()
	settle := 10 * time.Second
	if n > 64 {
		settle = 30 * time.Second
	}
	time.Sleep(settle)
	tb.Logf("N=%d: formed in %v (batches of %d, %d eager syncs, %d join retries); settled %v; during setup %d suspicions, %d failures, %d handoff drops",
		n, formed.Sub(t0).Round(time.Millisecond), batch, syncs, retries, settle, f.log.suspected.Load(), f.log.failed.Load(), f.log.dropped.Load())
	f.formed = true
}

// converge waits until each of ms sees all of ms, syncing members that
// still miss someone after a few seconds. It returns the syncs done.
func (f *propFed) converge(tb testing.TB, ms []propMember, rng *rand.Rand) int {
	k := len(ms)
	syncs := 0
	deadline := time.Now().Add(5 * time.Minute)
	for wait := time.Now().Add(3 * time.Second); ; {
		var lagging []int
		for i, m := range ms {
			if m.numMembers() != k {
				lagging = append(lagging, i)
			}
		}
		if len(lagging) == 0 {
			return syncs
		}
		if time.Now().After(deadline) {
			tb.Fatalf("N=%d: %d of %d members still do not see all of them after 5 minutes", f.n, len(lagging), k)
		}
		if time.Now().Before(wait) {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		for _, i := range lagging {
			j := rng.IntN(k - 1)
			if j >= i {
				j++
			}
			if err := ms[i].join(ms[j].addr()); err != nil {
				tb.Logf("N=%d: sync %d with %d: %v", f.n, i, j, err)
			}
			syncs++
		}
		wait = time.Now().Add(time.Second)
	}
}

// measure publishes b.N messages, a second apart, from members in turn, and
// times each until every other member has it.
func (f *propFed) measure(b *testing.B) {
	susp0, failed0, dropped0 := f.log.suspected.Load(), f.log.failed.Load(), f.log.dropped.Load()
	var fetched0 int64
	if f.fetched != nil {
		fetched0 = f.fetched()
	}
	lag := startLateness(200 * time.Millisecond)
	cpu0, wall0 := f.cpuTime(), time.Now()
	udp0, tcp0 := f.wire.udp.Load(), f.wire.tcp.Load()
	var times []time.Duration
	b.ResetTimer()
	for range b.N {
		k := f.sent % int(f.n)
		key := fmt.Sprintf("ds-%d", f.sent)
		f.sent++
		f.got.Store(0)
		f.sender.Store(int64(k))
		f.target.Store(key)
		start := time.Now()
		f.trace.begin(int(f.n), key, start)
		f.members[k].send(b, key)
		if f.sentAt != nil {
			start = f.sentAt()
			f.trace.restart(start)
		}
		for f.got.Load() < f.want {
			if time.Since(start) > time.Minute {
				b.Fatalf("N=%d: %s reached %d of %d members in a minute", f.n, key, f.got.Load(), f.want)
			}
			time.Sleep(time.Millisecond)
		}
		times = append(times, time.Duration(f.last.Load()-start.UnixNano()))
		time.Sleep(time.Second)
		f.trace.end()
	}
	b.StopTimer()
	cpu := f.cpuTime() - cpu0
	wall := time.Since(wall0)
	late := lag.stop()
	b.Logf("N=%d, %d messages: %v", f.n, len(times), roundAll(times))
	report(b, times)
	b.ReportMetric(float64(f.log.suspected.Load()-susp0), "suspicions")
	b.ReportMetric(float64(f.log.failed.Load()-failed0), "false-failures")
	b.ReportMetric(float64(f.log.dropped.Load()-dropped0), "handoff-drops")
	b.ReportMetric(float64(percentile(late, 99).Microseconds())/1000, "tick-late-p99-ms")
	b.ReportMetric(float64(percentile(late, 100).Microseconds())/1000, "tick-late-max-ms")
	b.ReportMetric(100*cpu.Seconds()/(wall.Seconds()*float64(runtime.NumCPU())), "cpu-%")
	if f.fetched != nil {
		b.ReportMetric(float64(f.fetched()-fetched0)/float64(len(times)), "fetched/op")
	}
	if f.count {
		f.trace.report(b)
		perMember := func(v int64) float64 { return float64(v) / float64(f.n) / wall.Seconds() }
		b.ReportMetric(perMember(f.wire.udp.Load()-udp0), "udp-B/member/s")
		b.ReportMetric(perMember(f.wire.tcp.Load()-tcp0), "tcp-B/member/s")
		b.Logf("N=%d: process CPU %.1f s in %.1f s wall (%.0f%% of %d cores)", f.n, cpu.Seconds(), wall.Seconds(),
			100*cpu.Seconds()/(wall.Seconds()*float64(runtime.NumCPU())), runtime.NumCPU())
	}
	if la, err := os.ReadFile("/proc/loadavg"); err == nil {
		b.Logf("load average at the end: %s", strings.TrimSpace(string(la)))
	}
}

func report(b *testing.B, times []time.Duration) {
	slices.Sort(times)
	var sum time.Duration
	for _, t := range times {
		sum += t
	}
	b.ReportMetric(float64(sum.Milliseconds())/float64(len(times)), "mean-ms")
	b.ReportMetric(float64(percentile(times, 50).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(percentile(times, 100).Microseconds())/1000, "max-ms")
	b.ReportMetric(0, "ns/op")
}

// percentile returns the p-th percentile of sorted (nearest rank).
func percentile(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, (len(sorted)*p)/100)]
}

func roundAll(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(time.Millisecond)
	}
	return out
}

// cpuTime is the CPU time the members have used: this process's, or
// their worker processes'.
func (f *propFed) cpuTime() time.Duration {
	if f.cpu != nil {
		return f.cpu()
	}
	return cpuTime()
}

// cpuTime is the CPU time (user and system) this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// lateness records how late a ticker with memberlist's gossip interval
// fires: on a machine that keeps up, well under a millisecond; when N
// members want more CPU than there is, gossip rounds slip by as much.
type lateness struct {
	cancel context.CancelFunc
	done   chan []time.Duration
}

func startLateness(every time.Duration) *lateness {
	ctx, cancel := context.WithCancel(context.Background())
	l := &lateness{cancel: cancel, done: make(chan []time.Duration, 1)}
	go func() {
		var late []time.Duration
		t := time.NewTicker(every)
		defer t.Stop()
		next := time.Now().Add(every)
		for {
			select {
			case <-ctx.Done():
				slices.Sort(late)
				l.done <- late
				return
			case <-t.C:
				now := time.Now()
				late = append(late, max(0, now.Sub(next)))
				for !next.After(now) { // a dropped tick is lateness too
					next = next.Add(every)
				}
			}
		}
	}()
	return l
}

func (l *lateness) stop() []time.Duration {
	l.cancel()
	return <-l.done
}

// failureLog counts memberlist's reports of members it suspects ("Suspect
// X has failed, no acks received") and declares failed ("Marking X as
// failed"), from nii's slog and Serf's log.Logger alike.
//
// It also counts the messages memberlist dropped because a member's
// handoff queue (HandoffQueueDepth, 1024: the alive messages, and the
// suspect, dead and user messages, records among them) was full: "handler
// queue full, dropping message".
type failureLog struct{ suspected, failed, dropped atomic.Int64 }

func (l *failureLog) note(s string) {
	switch {
	case strings.Contains(s, "handler queue full"):
		l.dropped.Add(1)
	case strings.Contains(s, "memberlist: Suspect ") && strings.Contains(s, "has failed"):
		l.suspected.Add(1)
	case strings.Contains(s, "memberlist: Marking ") && strings.Contains(s, "as failed"):
		l.failed.Add(1)
	}
}

func (l *failureLog) Write(p []byte) (int, error) { l.note(string(p)); return len(p), nil }

func (l *failureLog) Enabled(context.Context, slog.Level) bool { return true }
func (l *failureLog) Handle(_ context.Context, r slog.Record) error {
	l.note(r.Message)
	return nil
}
func (l *failureLog) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *failureLog) WithGroup(string) slog.Handler      { return l }

// tune is what both sides change in memberlist's LAN configuration so
// that hundreds of members fit in one process on two cores; none of it
// changes how a broadcast spreads (docs/benchmarks.md).
//
// Compression off: memberlist packs messages into a packet by their
// uncompressed size and compresses the packet afterwards, so compression
// changes only the bytes on the wire, but each compression allocates and
// clears LZW tables of about 80 KiB. One node pays that a few times a
// second; 256 in one process spent over a quarter of the CPU on it.
//
// Probing every f.probe instead of every second, with WAN's 3 s probe
// timeout: one failure-detection round costs each member a ping and an ack,
// and 256 members in one process starved by other work miss 500 ms acks,
// suspect each other, refute, and the refutations cost more than the
// probes. Broadcasts ride pings too, so slower probing can only slow
// propagation, never speed it; failure detection is 5 times slower.
func (f *propFed) tune(c *memberlist.Config) {
	if f.count {
		f.wire.install(c, log.New(&f.log, "", 0))
	}
	if f.prod {
		return
	}
	c.EnableCompression = false
	if f.probe > 0 {
		c.ProbeInterval = f.probe
		c.ProbeTimeout = 3 * time.Second
	}
}

// benchDB is a catalog store for one of many members in one process:
// badger in memory, as in the other tests, without compaction (a member's
// catalog here holds a few hundred small records) or caches, whose
// background tickers would otherwise cost 256 times over.
func benchDB(tb testing.TB) *badger.DB {
	db, err := badger.Open(badger.DefaultOptions("").WithInMemory(true).WithLogger(nil).
		WithMemTableSize(2 << 20).WithValueThreshold(64 << 10).WithCompression(options.None).
		WithBlockCacheSize(0).WithIndexCacheSize(0).WithNumCompactors(0))
	if err != nil {
		tb.Fatal(err)
	}
	return db
}

type niiMember struct {
	*member
}

func (m niiMember) addr() string { return m.gossip.Addr() }
func (m niiMember) join(addr string) error {
	_, err := m.gossip.Join([]string{addr})
	return err
}
func (m niiMember) numMembers() int { return m.gossip.NumMembers() }
func (m niiMember) send(tb testing.TB, key string) {
	m.publish(tb, key, "Spend over £500", 1)
}

// startNii starts nii members (registry level: memberlist gossip, badger
// catalogs in memory, signatures verified on receipt, catch-up through
// memNet) with the LAN profile.
func startNii(tb testing.TB, f *propFed) func(int) propMember {
	if f.net == nil {
		f.net = &memNet{}
	}
	net := f.net
	net.mu.Lock()
	if net.cats == nil {
		net.cats = map[nii.NodeID]*registry.Catalog{}
	}
	net.mu.Unlock()
	f.fetched = net.recs.Load
	logger := slog.New(&f.log)
	return func(i int) propMember {
		id := newIdent()
		db := benchDB(tb)
		f.finally = append(f.finally, func() { db.Close() })
		cat, err := registry.OpenCatalog(db, id.ID, id.Key, nil)
		if err != nil {
			tb.Fatal(err)
		}
		cat.OnChange(func(a *nii.Advert) { f.arrive(i, a.Dataset.Name) })
		peers, _ := registry.OpenPeers(db)
		cfg := Config{Self: id.ID, Org: fmt.Sprintf("org%d", i), Federation: "bench", BindAddr: "127.0.0.1", Profile: "lan", Logger: logger, tune: f.tune, noPush: f.noPush}
		g, err := New(cfg, cat, peers, &traceFetcher{net, f, i})
		if err != nil {
			tb.Fatal(err)
		}
		// Stopped, not closed: a goodbye from each of 256 members would
		// take longer than the measurement.
		f.closers = append(f.closers, func() { g.Stop() })
		net.mu.Lock()
		net.cats[id.ID] = cat
		net.mu.Unlock()
		return niiMember{&member{ident: id, cat: cat, peers: peers, gossip: g}}
	}
}

type serfMember struct {
	s *serf.Serf
}

func (m serfMember) addr() string {
	l := m.s.Memberlist().LocalNode()
	return fmt.Sprintf("%s:%d", l.Addr, l.Port)
}
func (m serfMember) join(addr string) error {
	_, err := m.s.Join([]string{addr}, true)
	return err
}
func (m serfMember) numMembers() int { return m.s.Memberlist().NumMembers() }
func (m serfMember) send(tb testing.TB, key string) {
	if err := m.s.UserEvent("advert", []byte(key), false); err != nil {
		tb.Fatal(err)
	}
}

// startSerf starts Serf agents with memberlist's LAN timings.
func startSerf(tb testing.TB, f *propFed) func(int) propMember {
	stop := make(chan struct{})
	f.finally = append(f.finally, func() { close(stop) })
	return func(i int) propMember {
		conf := serf.DefaultConfig()
		conf.NodeName = fmt.Sprintf("serf-%d", i)
		conf.MemberlistConfig = memberlist.DefaultLANConfig()
		conf.MemberlistConfig.BindAddr = "127.0.0.1"
		conf.MemberlistConfig.BindPort = 0
		conf.MemberlistConfig.Logger = log.New(&f.log, "", 0)
		f.tune(conf.MemberlistConfig)
		conf.Logger = log.New(io.Discard, "", 0)
		ch := make(chan serf.Event, 4096)
		conf.EventCh = ch
		go func() {
			for {
				select {
				case <-stop:
					return
				case e := <-ch:
					if ev, ok := e.(serf.UserEvent); ok {
						f.arrive(i, string(ev.Payload))
					}
				}
			}
		}()
		s, err := serf.Create(conf)
		if err != nil {
			tb.Fatal(err)
		}
		f.closers = append(f.closers, func() { s.Shutdown() })
		return serfMember{s}
	}
}
