package node

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/node/api"
	"github.com/prometheus/client_golang/prometheus"
)

// The HTTP server's own limits (config.toml's [http]): how long a client
// may take to send a request and to read an answer, how long an idle
// keep-alive connection is kept, how many connections are served at once,
// and how long SIGTERM waits for requests in flight.
//
// Every request must arrive whole (headers and body) within read_timeout
// and be answered within write_timeout, except the streams: an upload (a
// publish), a download (content, the relay) and a pull's progress. Those
// run as long as they need, but must move: each read or write of theirs
// must complete within stall_timeout (a progress deadline, set through
// http.ResponseController), so a client that stops reading or sending is
// dropped. A connection past max_conns is answered 503 at once and closed,
// rather than queued unseen.

// HTTP server defaults.
const (
	DefaultReadTimeout   = 30 * time.Second
	DefaultWriteTimeout  = 60 * time.Second
	DefaultIdleTimeout   = 60 * time.Second
	DefaultStallTimeout  = 60 * time.Second
	DefaultShutdownGrace = 10 * time.Second
	DefaultMaxConns      = 512
	readHeaderTimeout    = 10 * time.Second // at most; never more than read_timeout
)

// serverLimits are the [http] limits, parsed.
type serverLimits struct {
	read, write, idle, stall, grace time.Duration
	maxConns                        int
}

func parseDurationOr(key, s string, def, least time.Duration) (time.Duration, error) {
	if s == "" {
		return def, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < least {
		return 0, fmt.Errorf("config: http.%s %q: want a duration of at least %v (e.g. %v)", key, s, least, def)
	}
	return d, nil
}

// limits parses the server limits; empty settings take the defaults.
func (c *HTTPConfig) limits() (serverLimits, error) {
	var l serverLimits
	var err error
	if l.read, err = parseDurationOr("read_timeout", c.ReadTimeout, DefaultReadTimeout, 100*time.Millisecond); err != nil {
		return l, err
	}
	if l.write, err = parseDurationOr("write_timeout", c.WriteTimeout, DefaultWriteTimeout, 100*time.Millisecond); err != nil {
		return l, err
	}
	if l.idle, err = parseDurationOr("idle_timeout", c.IdleTimeout, DefaultIdleTimeout, 100*time.Millisecond); err != nil {
		return l, err
	}
	if l.stall, err = parseDurationOr("stall_timeout", c.StallTimeout, DefaultStallTimeout, 100*time.Millisecond); err != nil {
		return l, err
	}
	if l.grace, err = parseDurationOr("shutdown_grace", c.ShutdownGrace, DefaultShutdownGrace, 0); err != nil {
		return l, err
	}
	switch {
	case c.MaxConns == 0:
		l.maxConns = DefaultMaxConns
	case c.MaxConns < 4:
		return l, fmt.Errorf("config: http.max_conns %d: want 4 or more (0: the default, %d)", c.MaxConns, DefaultMaxConns)
	default:
		l.maxConns = c.MaxConns
	}
	return l, nil
}

// newAPIServer makes the API's server (its handler still to be set) and
// wraps ln so that at most max_conns connections are open at once.
func (n *Node) newAPIServer(ln net.Listener) (*http.Server, net.Listener) {
	l, _ := n.cfg.HTTP.limits() // validated with the config
	n.limits = l
	n.conns = newConnLimiter(ln, l.maxConns, n.log)
	base, cancel := context.WithCancel(context.Background())
	n.apiCancel = cancel
	srv := &http.Server{
		ReadHeaderTimeout: min(readHeaderTimeout, l.read),
		ReadTimeout:       l.read,
		WriteTimeout:      l.write,
		IdleTimeout:       l.idle,
		MaxHeaderBytes:    64 << 10,
		BaseContext:       func(net.Listener) context.Context { return base },
		ErrorLog:          slog.NewLogLogger(n.log.Handler(), slog.LevelDebug),
	}
	return srv, n.conns
}

// trackRequests counts the handlers running, so that shutdown can wait for
// them before it closes the store under them.
func (n *Node) trackRequests(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.requests.Add(1)
		defer n.requests.Done()
		h.ServeHTTP(w, r)
	})
}

// shutdownAPI stops the API: no new connections, idle ones closed, and
// requests in flight given the grace period to finish; then those left are
// cut off (their contexts cancelled, their connections closed) and waited
// for. Running out of grace is not an error: it is what the grace is for.
func (n *Node) shutdownAPI() {
	ctx, cancel := context.WithTimeout(context.Background(), n.limits.grace)
	defer cancel()
	if err := n.apiSrv.Shutdown(ctx); err != nil {
		n.log.Warn("requests still in flight after the shutdown grace period were cut off",
			slog.Duration(nii.LogTook, n.limits.grace), slog.String(nii.LogErr, err.Error()))
		n.apiCancel()
		n.apiSrv.Close()
	}
	n.apiCancel()
	done := make(chan struct{})
	go func() { n.requests.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(handlerExitWait):
		// A handler that ignores its context: stop waiting, say so.
		n.log.Error("an API handler did not return after its connection was closed", slog.Duration(nii.LogTook, handlerExitWait))
	}
	n.conns.wait()
}

// handlerExitWait bounds the wait for handlers once their connections are
// closed and their contexts cancelled: all of nii's return at once then.
const handlerExitWait = 5 * time.Second

// streaming gives a handler that streams (a download, an export, a pull's
// progress) a progress deadline in place of the server's write timeout:
// every write must complete within stall_timeout, however long the whole
// answer takes. It returns the writer to write through.
func (n *Node) streaming(w http.ResponseWriter) io.Writer {
	rc := http.NewResponseController(w)
	rc.SetWriteDeadline(time.Time{}) // no deadline until the first write
	return &progressWriter{w: w, rc: rc, stall: n.limits.stall}
}

// progressWriter extends the write deadline before each write.
type progressWriter struct {
	w     http.ResponseWriter
	rc    *http.ResponseController
	stall time.Duration
	set   time.Time // when the deadline was last moved
}

func (p *progressWriter) Write(b []byte) (int, error) {
	// Moving a deadline is cheap but not free; once per stall/8 keeps it
	// within an eighth of the configured stall.
	if now := time.Now(); now.Sub(p.set) > p.stall/8 {
		p.rc.SetWriteDeadline(now.Add(p.stall))
		p.set = now
	}
	return p.w.Write(b)
}

// Flush flushes the response (the pull's NDJSON lines).
func (p *progressWriter) Flush() {
	if now := time.Now(); now.Sub(p.set) > p.stall/8 {
		p.rc.SetWriteDeadline(now.Add(p.stall))
		p.set = now
	}
	p.rc.Flush()
}

// uploading gives a handler that reads a large body (a publish) a progress
// deadline in place of the server's read timeout: each read must complete
// within stall_timeout. It returns the body to read.
func (n *Node) uploading(w http.ResponseWriter, r *http.Request) io.Reader {
	rc := http.NewResponseController(w)
	return &progressReader{r: r.Body, rc: rc, stall: n.limits.stall}
}

type progressReader struct {
	r     io.Reader
	rc    *http.ResponseController
	stall time.Duration
	set   time.Time
}

func (p *progressReader) Read(b []byte) (int, error) {
	if now := time.Now(); now.Sub(p.set) > p.stall/8 {
		p.rc.SetReadDeadline(now.Add(p.stall))
		// A long upload also outlasts the write timeout set when it began:
		// the answer is written after the last byte is read.
		p.rc.SetWriteDeadline(now.Add(p.stall))
		p.set = now
	}
	return p.r.Read(b)
}

// connLimiter is a listener that serves at most max connections at once. A
// connection over the limit is answered "503 Service Unavailable" and
// closed at once (by a bounded number of goroutines; past that it is just
// closed), so that a client learns why instead of waiting unseen in the
// accept queue.
type connLimiter struct {
	net.Listener
	log     *slog.Logger
	sem     chan struct{}
	refusal chan struct{} // bounds the goroutines answering refused connections
	wg      sync.WaitGroup
	open    atomic.Int64
	refused atomic.Int64
}

// maxRefusing bounds the refused connections being answered at once.
const maxRefusing = 32

func newConnLimiter(ln net.Listener, max int, log *slog.Logger) *connLimiter {
	return &connLimiter{Listener: ln, log: log, sem: make(chan struct{}, max), refusal: make(chan struct{}, maxRefusing)}
}

func (l *connLimiter) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		select {
		case l.sem <- struct{}{}:
			l.open.Add(1)
			return &limitedConn{Conn: c, l: l}, nil
		default:
		}
		if k := l.refused.Add(1); k&(k-1) == 0 { // the 1st, 2nd, 4th, 8th … refusal
			l.log.Warn("API connections refused: http.max_conns are open", slog.Int("max_conns", cap(l.sem)), slog.Int64(nii.LogCount, k))
		}
		select {
		case l.refusal <- struct{}{}:
			l.wg.Add(1)
			go l.refuse(c)
		default:
			c.Close()
		}
	}
}

// busyResponse is what a connection over the limit is told.
var busyResponse = func() string {
	body := `{"error":"too many connections to this node's API (http.max_conns); try again shortly","code":"` + api.CodeUnavailable + `"}` + "\n"
	return fmt.Sprintf("HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
}()

// refuse answers a connection over the limit and closes it: write the
// 503, stop sending, and read (and drop) what the client sent for a moment,
// so that closing does not reset the connection before the client reads
// the answer.
func (l *connLimiter) refuse(c net.Conn) {
	defer l.wg.Done()
	defer func() { <-l.refusal }()
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := io.WriteString(c, busyResponse); err != nil {
		return
	}
	if tc, ok := c.(interface{ CloseWrite() error }); ok {
		tc.CloseWrite()
	}
	io.Copy(io.Discard, io.LimitReader(c, 64<<10))
}

// wait waits for the refusals being answered (each at most a second).
func (l *connLimiter) wait() { l.wg.Wait() }

type limitedConn struct {
	net.Conn
	l    *connLimiter
	once sync.Once
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.l.open.Add(-1)
		<-c.l.sem
	})
	return err
}

// Metrics of the connection limit.
func (n *Node) serverCollectors() []prometheus.Collector {
	l := n.conns
	if l == nil {
		return nil
	}
	return []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: metricsNamespace, Subsystem: "http", Name: "connections",
			Help: "Connections to the HTTP API open now (at most http.max_conns).",
		}, func() float64 { return float64(l.open.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: metricsNamespace, Subsystem: "http", Name: "connections_refused_total",
			Help: "Connections to the HTTP API answered 503 and closed because http.max_conns were open.",
		}, func() float64 { return float64(l.refused.Load()) }),
	}
}
