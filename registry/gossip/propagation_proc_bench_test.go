package gossip

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nii-uk/nii"
)

// Members in worker processes. With NII_PROP_PROCS=W,
// BenchmarkPropagationProduction runs each federation's members in W
// child processes (the test binary re-executed as TestPropWorker), member
// i in worker i mod W, so that 256 members' probing, gossip and garbage
// collection are not one Go process's scheduler and heap. The parent
// forms and times the federation exactly as in one process (propFed's
// form and measure, through proxies of the members); the workers report
// on their stdout when each member applied a message, stamped with the
// machine's wall clock, and the parent times from the publishing worker's
// stamp. nii's catch-up fetches between workers go over loopback HTTP
// (a catalog page, CBOR), standing in for the libp2p catalog protocol as
// memNet does in one process. Serf's side runs the same way.
//
// Control lines, parent to worker (stdin): "start i", "join i addr",
// "num i", "send i key", "peer id url" and "quit" (or EOF). Worker to
// parent (stdout, each line "@@" and a kind): "r ..." the reply to the
// last command; "a i key ns" member i applied key; "p i o key ns" a
// catch-up of i fetched key (o: 1 from its origin, 0 from another
// member); "w udp tcp fetched suspicions failures drops" running totals, every
// 250 ms. The workers die with the parent (Pdeathsig) and on EOF.

const workerEnv = "NII_PROP_WORKER" // "nii" or "serf": this process is a worker

// TestPropWorker is a worker process; it does nothing unless started as
// one by BenchmarkPropagationProduction.
func TestPropWorker(t *testing.T) {
	side := os.Getenv(workerEnv)
	if side == "" {
		t.Skip("a worker process of BenchmarkPropagationProduction")
	}
	n, _ := strconv.Atoi(os.Getenv("NII_PROP_WORKER_N"))
	w := &worker{out: bufio.NewWriter(os.Stdout), members: map[int]propMember{}}
	// g0: close waits for memberlist's last probes to end, so the leak
	// check at the worker's exit sees only what really leaked.
	f := &propFed{n: int64(n), want: int64(n - 1), prod: true, count: true, g0: runtime.NumGoroutine()}
	f.onArrive = func(i int, key string, now int64) { w.emit("a %d %s %d", i, key, now) }
	f.onFetch = func(i int, fromOrigin bool, recs []*nii.SignedAdvert) {
		now := time.Now().UnixNano()
		o := 0
		if fromOrigin {
			o = 1
		}
		for _, sa := range recs {
			var a nii.Advert
			if nii.Unmarshal(sa.Body, &a) == nil {
				w.emit("p %d %d %s %d", i, o, a.Dataset.Name, now)
			}
		}
	}
	start := startSerf
	if side == "nii" {
		start = startNii
		f.net = &memNet{}
		srv, err := servePages(f.net)
		if err != nil {
			t.Fatal(err)
		}
		defer srv.Close()
		w.pageURL = srv.url
		w.remote = &remotePages{urls: map[nii.NodeID]string{}}
		f.net.remote = w.remote
	}
	add := start(t, f)
	ctx, cancel := context.WithCancel(context.Background())
	var totals sync.WaitGroup
	totals.Go(func() { w.reportTotals(ctx, f) })
	defer func() {
		cancel()
		totals.Wait()
		f.close()
	}()
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		fs := strings.Fields(in.Text())
		if len(fs) == 0 {
			continue
		}
		if fs[0] == "quit" {
			return
		}
		w.command(t, fs, add)
	}
}

type worker struct {
	mu      sync.Mutex
	out     *bufio.Writer
	members map[int]propMember
	pageURL string
	remote  *remotePages
}

func (w *worker) emit(format string, args ...any) {
	w.mu.Lock()
	defer w.mu.Unlock()
	fmt.Fprintf(w.out, "@@"+format+"\n", args...)
	w.out.Flush()
}

func (w *worker) command(t *testing.T, fs []string, add func(int) propMember) {
	arg := func(k int) int {
		v, _ := strconv.Atoi(fs[k])
		return v
	}
	switch {
	case fs[0] == "start" && len(fs) == 2:
		i := arg(1)
		m := add(i)
		w.members[i] = m
		id := ""
		if nm, ok := m.(niiMember); ok {
			id = string(nm.ID)
			w.remote.set(nm.ID, w.pageURL) // its own members are served locally anyway
		}
		w.emit("r %s %s %s", m.addr(), id, w.pageURL)
	case fs[0] == "join" && len(fs) == 3:
		if err := w.members[arg(1)].join(fs[2]); err != nil {
			w.emit("r err %s", strings.ReplaceAll(err.Error(), "\n", " "))
			return
		}
		w.emit("r ok")
	case fs[0] == "num" && len(fs) == 2:
		w.emit("r %d", w.members[arg(1)].numMembers())
	case fs[0] == "send" && len(fs) == 3:
		now := time.Now().UnixNano()
		w.members[arg(1)].send(t, fs[2])
		w.emit("r %d", now)
	case fs[0] == "peer" && len(fs) == 3:
		if w.remote != nil {
			w.remote.set(nii.NodeID(fs[1]), fs[2])
		}
		// no reply: the parent sends these in bulk
	default:
		w.emit("r err bad command %q", strings.Join(fs, " "))
	}
}

// reportTotals sends the worker's running totals every 250 ms until ctx
// ends.
func (w *worker) reportTotals(ctx context.Context, f *propFed) {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			var fetched int64
			if f.net != nil {
				fetched = f.net.recs.Load()
			}
			w.emit("w %d %d %d %d %d %d", f.wire.udp.Load(), f.wire.tcp.Load(), fetched, f.log.suspected.Load(), f.log.failed.Load(), f.log.dropped.Load())
		}
	}
}

// pageServer serves catalog pages of the members of one worker to the
// others (GET /page?from=&origin=&after=&limit=).
type pageServer struct {
	url string
	srv *http.Server
	ln  net.Listener
	wg  sync.WaitGroup
}

type page struct {
	Recs [][]byte `cbor:"1,keyasint"`
	More bool     `cbor:"2,keyasint"`
	WM   uint64   `cbor:"3,keyasint"`
}

func servePages(m *memNet) (*pageServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &pageServer{url: "http://" + ln.Addr().String() + "/page", ln: ln}
	s.srv = &http.Server{Handler: http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		after, _ := strconv.ParseUint(q.Get("after"), 10, 64)
		limit, _ := strconv.Atoi(q.Get("limit"))
		m.mu.Lock()
		c := m.cats[nii.NodeID(q.Get("from"))]
		m.mu.Unlock()
		if c == nil {
			http.Error(rw, "no such member here", http.StatusNotFound)
			return
		}
		recs, more, wm, err := c.Page(nii.NodeID(q.Get("origin")), after, limit)
		if err != nil {
			http.Error(rw, err.Error(), http.StatusInternalServerError)
			return
		}
		p := page{More: more, WM: wm}
		for _, sa := range recs {
			b, err := nii.EncodeSignedAdvert(sa)
			if err != nil {
				http.Error(rw, err.Error(), http.StatusInternalServerError)
				return
			}
			p.Recs = append(p.Recs, b)
		}
		b, err := nii.Marshal(p)
		if err != nil {
			http.Error(rw, err.Error(), http.StatusInternalServerError)
			return
		}
		m.recs.Add(int64(len(recs)))
		rw.Write(b)
	})}
	s.wg.Go(func() { s.srv.Serve(ln) })
	return s, nil
}

func (s *pageServer) Close() {
	s.srv.Close()
	s.wg.Wait()
}

// remotePages fetches pages from the worker that hosts a member.
type remotePages struct {
	mu   sync.Mutex
	urls map[nii.NodeID]string
}

func (p *remotePages) set(id nii.NodeID, u string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.urls[id] = u
}

func (p *remotePages) FetchCatalogPage(ctx context.Context, from, origin nii.NodeID, after uint64, limit int) ([]*nii.SignedAdvert, bool, uint64, error) {
	p.mu.Lock()
	u := p.urls[from]
	p.mu.Unlock()
	if u == "" {
		return nil, false, 0, errors.New("unreachable")
	}
	q := url.Values{"from": {string(from)}, "origin": {string(origin)}, "after": {strconv.FormatUint(after, 10)}, "limit": {strconv.Itoa(limit)}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u+"?"+q.Encode(), nil)
	if err != nil {
		return nil, false, 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, false, 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, false, 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, false, 0, fmt.Errorf("page: %s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	var pg page
	if err := nii.Unmarshal(body, &pg); err != nil {
		return nil, false, 0, err
	}
	recs := make([]*nii.SignedAdvert, 0, len(pg.Recs))
	for _, b := range pg.Recs {
		sa, err := nii.DecodeSignedAdvert(b)
		if err != nil {
			return nil, false, 0, err
		}
		recs = append(recs, sa)
	}
	return recs, pg.More, pg.WM, nil
}

// procs is the parent's side: W worker processes hosting one federation.
type procs struct {
	f       *propFed
	workers []*workerProc
	sentAt  atomic.Int64
}

type workerProc struct {
	cmd   *exec.Cmd
	in    io.WriteCloser
	mu    sync.Mutex // one command at a time
	reply chan string
	done  chan struct{} // the reader has seen the worker's stdout end
	// running totals, latest report
	udp, tcp, fetched, susp, failed, dropped atomic.Int64
}

// startProcs returns a propStart that runs side ("nii" or "serf") in w
// worker processes.
func startProcs(side string, w int) propStart {
	return func(tb testing.TB, f *propFed) func(int) propMember {
		p := &procs{f: f}
		for range w {
			wp, err := p.spawn(side)
			if err != nil {
				p.stop()
				tb.Fatalf("worker: %v", err)
			}
			p.workers = append(p.workers, wp)
			f.closers = append(f.closers, func() { wp.stop() })
		}
		f.cpu = p.cpu
		f.sentAt = func() time.Time { return time.Unix(0, p.sentAt.Load()) }
		f.fetched = func() int64 { return p.sum(func(wp *workerProc) int64 { return wp.fetched.Load() }) }
		return func(i int) propMember {
			wp := p.workers[i%len(p.workers)]
			r, err := wp.call("start %d", i)
			if err != nil {
				tb.Fatalf("worker: start %d: %v", i, err)
			}
			fs := strings.Fields(r)
			m := &procMember{p: p, wp: wp, i: i, gaddr: fs[0]}
			if len(fs) == 3 { // nii: tell every worker where the new member's pages are
				for _, o := range p.workers {
					o.send("peer %s %s", fs[1], fs[2])
				}
			}
			return m
		}
	}
}

func (p *procs) spawn(side string) (*workerProc, error) {
	cmd := exec.Command(os.Args[0], "-test.run", "^TestPropWorker$", "-test.bench", "^$", "-test.timeout", "0")
	cmd.Env = append(os.Environ(), workerEnv+"="+side, "NII_PROP_WORKER_N="+strconv.Itoa(int(p.f.n)))
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	wp := &workerProc{cmd: cmd, in: in, reply: make(chan string, 1), done: make(chan struct{})}
	go wp.read(p, out)
	return wp, nil
}

// read handles the worker's lines until its stdout ends.
func (wp *workerProc) read(p *procs, out io.Reader) {
	defer close(wp.done)
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "@@")
		if !ok {
			continue // the test framework's own output
		}
		kind, rest, _ := strings.Cut(line, " ")
		fs := strings.Fields(rest)
		num := func(k int) int64 {
			v, _ := strconv.ParseInt(fs[k], 10, 64)
			return v
		}
		switch {
		case kind == "r":
			wp.reply <- rest
		case kind == "a" && len(fs) == 3:
			p.f.arriveAt(int(num(0)), fs[1], num(2))
		case kind == "p" && len(fs) == 4:
			p.f.trace.fetchedAt(int(num(0)), fs[1] == "1", fs[2], num(3))
		case kind == "w" && len(fs) == 6:
			wp.udp.Store(num(0))
			wp.tcp.Store(num(1))
			wp.fetched.Store(num(2))
			wp.susp.Store(num(3))
			wp.failed.Store(num(4))
			wp.dropped.Store(num(5))
			p.f.wire.udp.Store(p.sum(func(w *workerProc) int64 { return w.udp.Load() }))
			p.f.wire.tcp.Store(p.sum(func(w *workerProc) int64 { return w.tcp.Load() }))
			p.f.log.suspected.Store(p.sum(func(w *workerProc) int64 { return w.susp.Load() }))
			p.f.log.failed.Store(p.sum(func(w *workerProc) int64 { return w.failed.Load() }))
			p.f.log.dropped.Store(p.sum(func(w *workerProc) int64 { return w.dropped.Load() }))
		}
	}
}

func (p *procs) sum(v func(*workerProc) int64) int64 {
	var s int64
	for _, wp := range p.workers {
		s += v(wp)
	}
	return s
}

// cpu is the workers' CPU time so far (user and system, from /proc).
func (p *procs) cpu() time.Duration {
	var ticks int64
	for _, wp := range p.workers {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", wp.cmd.Process.Pid))
		if err != nil {
			continue
		}
		// Fields after the command name (which may hold spaces, in
		// parentheses): utime and stime are the 14th and 15th fields.
		s := string(b)
		fs := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(fs) > 12 {
			u, _ := strconv.ParseInt(fs[11], 10, 64)
			k, _ := strconv.ParseInt(fs[12], 10, 64)
			ticks += u + k
		}
	}
	return time.Duration(ticks) * time.Second / 100 // USER_HZ
}

// send writes a command that has no reply.
func (wp *workerProc) send(format string, args ...any) {
	wp.mu.Lock()
	defer wp.mu.Unlock()
	fmt.Fprintf(wp.in, format+"\n", args...)
}

// call sends a command and waits for its reply.
func (wp *workerProc) call(format string, args ...any) (string, error) {
	wp.mu.Lock()
	defer wp.mu.Unlock()
	if _, err := fmt.Fprintf(wp.in, format+"\n", args...); err != nil {
		return "", err
	}
	select {
	case r := <-wp.reply:
		if msg, ok := strings.CutPrefix(r, "err "); ok {
			return "", errors.New(msg)
		}
		return r, nil
	case <-wp.done:
		return "", errors.New("the worker exited")
	case <-time.After(2 * time.Minute):
		return "", errors.New("no reply in 2 minutes")
	}
}

// stop asks the worker to close its members and exit, and kills it if it
// has not within a minute.
func (wp *workerProc) stop() {
	wp.mu.Lock()
	fmt.Fprintf(wp.in, "quit\n")
	wp.in.Close()
	wp.mu.Unlock()
	select {
	case <-wp.done:
	case <-time.After(time.Minute):
		wp.cmd.Process.Kill()
		<-wp.done
	}
	wp.cmd.Wait()
}

func (p *procs) stop() {
	for _, wp := range p.workers {
		wp.stop()
	}
}

// procMember is a member in a worker process.
type procMember struct {
	p     *procs
	wp    *workerProc
	i     int
	gaddr string
}

func (m *procMember) addr() string { return m.gaddr }
func (m *procMember) join(addr string) error {
	_, err := m.wp.call("join %d %s", m.i, addr)
	return err
}
func (m *procMember) numMembers() int {
	r, err := m.wp.call("num %d", m.i)
	if err != nil {
		return -1
	}
	n, _ := strconv.Atoi(r)
	return n
}
func (m *procMember) send(tb testing.TB, key string) {
	r, err := m.wp.call("send %d %s", m.i, key)
	if err != nil {
		tb.Fatalf("send from member %d: %v", m.i, err)
	}
	ns, _ := strconv.ParseInt(r, 10, 64)
	m.p.sentAt.Store(ns)
}
