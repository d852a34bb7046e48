package node

import (
	"crypto/subtle"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// HTTPConfig tunes the HTTP API's front door (config.toml's [http]).
type HTTPConfig struct {
	// Rate and Burst size each client address's token bucket for requests
	// without the admin token. Rate 0 turns the limit off.
	Rate  float64 `toml:"rate" comment:"requests per second each client address may make without the admin token (0: no limit)"`
	Burst int     `toml:"burst" comment:"requests a client may make at once before the rate applies"`
	// TrustedProxies are reverse proxies (addresses or CIDR prefixes) whose
	// X-Forwarded-For is believed when finding a client's address.
	TrustedProxies []string `toml:"trusted_proxies,omitempty" comment:"reverse proxies (IPs or CIDRs) whose X-Forwarded-For names the client"`

	// The server's own limits (httpserver.go); empty or 0 takes the
	// default.
	ReadTimeout   string `toml:"read_timeout,omitempty" comment:"a request (headers and body) must arrive within this (default 30s; uploads instead must keep moving, see stall_timeout)"`
	WriteTimeout  string `toml:"write_timeout,omitempty" comment:"an answer must be written within this (default 60s; downloads and pull progress instead must keep moving)"`
	IdleTimeout   string `toml:"idle_timeout,omitempty" comment:"an idle keep-alive connection is closed after this (default 60s)"`
	StallTimeout  string `toml:"stall_timeout,omitempty" comment:"an upload, download or pull-progress stream is dropped if one read or write takes longer (default 60s)"`
	MaxConns      int    `toml:"max_conns,omitempty" comment:"connections served at once; more are answered 503 (default 512)"`
	ShutdownGrace string `toml:"shutdown_grace,omitempty" comment:"on SIGTERM, requests in flight get this long to finish before they are cut off (default 10s)"`
}

// Rate-limit defaults: generous for a dashboard or a script, a wall for a
// crawler loop.
const (
	DefaultRate  = 50
	DefaultBurst = 100
)

// DefaultHTTP returns the [http] defaults.
func DefaultHTTP() HTTPConfig { return HTTPConfig{Rate: DefaultRate, Burst: DefaultBurst} }

// Validate checks the [http] settings.
func (c *HTTPConfig) Validate() error {
	if c.Rate < 0 || math.IsNaN(c.Rate) || math.IsInf(c.Rate, 0) {
		return fmt.Errorf("config: http.rate %v: want requests per second, 0 or more", c.Rate)
	}
	if c.Rate > 0 && c.Burst < 1 {
		return fmt.Errorf("config: http.burst %d: want 1 or more when http.rate is set", c.Burst)
	}
	if _, err := c.trustedProxies(); err != nil {
		return err
	}
	if _, err := c.limits(); err != nil {
		return err
	}
	return nil
}

func (c *HTTPConfig) trustedProxies() ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range c.TrustedProxies {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return nil, fmt.Errorf("config: http.trusted_proxies %q: want an IP address or a CIDR prefix", s)
			}
			p = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// Limits on the limiter's own memory: at most maxRateClients addresses are
// tracked; a bucket idle long enough to have refilled is dropped (a fresh
// one is the same), swept at most every rateSweepEvery.
const (
	maxRateClients = 10000
	rateSweepEvery = 10 * time.Second
)

// ipLimiter is a token bucket per client address. Its map is bounded: idle
// entries are evicted, and once it is full of active clients, new
// addresses share one overflow bucket rather than growing it (or evicting
// an active client, which would reset that client's bucket).
type ipLimiter struct {
	rate    rate.Limit
	burst   int
	idle    time.Duration // a bucket refills in this long
	proxies []netip.Prefix
	max     int
	now     func() time.Time

	mu        sync.Mutex
	m         map[netip.Addr]*rateEntry
	overflow  *rate.Limiter
	lastSweep time.Time
}

type rateEntry struct {
	lim  *rate.Limiter
	seen time.Time
}

func newIPLimiter(c HTTPConfig) *ipLimiter {
	if c.Rate <= 0 {
		return nil
	}
	proxies, _ := c.trustedProxies() // validated with the config
	idle := time.Duration(float64(c.Burst) / c.Rate * float64(time.Second))
	return &ipLimiter{
		rate:     rate.Limit(c.Rate),
		burst:    c.Burst,
		idle:     max(idle, time.Second),
		proxies:  proxies,
		max:      maxRateClients,
		now:      time.Now,
		m:        map[netip.Addr]*rateEntry{},
		overflow: rate.NewLimiter(rate.Limit(c.Rate), c.Burst),
	}
}

// reserve takes a token for addr and returns 0, or how long until one is
// due (the request is refused and no token taken).
func (l *ipLimiter) reserve(addr netip.Addr) time.Duration {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if since := now.Sub(l.lastSweep); since >= rateSweepEvery || (len(l.m) >= l.max && since >= time.Second) {
		l.sweep(now)
	}
	var lim *rate.Limiter
	if e, ok := l.m[addr]; ok {
		e.seen = now
		lim = e.lim
	} else if len(l.m) < l.max {
		lim = rate.NewLimiter(l.rate, l.burst)
		l.m[addr] = &rateEntry{lim: lim, seen: now}
	} else {
		lim = l.overflow
	}
	r := lim.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return d
	}
	return 0
}

// sweep drops buckets idle long enough to have refilled.
func (l *ipLimiter) sweep(now time.Time) {
	l.lastSweep = now
	for a, e := range l.m {
		if now.Sub(e.seen) >= l.idle {
			delete(l.m, a)
		}
	}
}

func (l *ipLimiter) clients() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.m)
}

// clientAddr finds the address a request's bucket is keyed by: the
// connection's peer, or — when that peer is a trusted proxy — the nearest
// untrusted address in X-Forwarded-For. IPv6 clients are keyed by their
// /64, the block one subscriber usually holds.
func (l *ipLimiter) clientAddr(r *http.Request) netip.Addr {
	addr := remoteAddr(r.RemoteAddr)
	if l.trusted(addr) {
		hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
		for i := len(hops) - 1; i >= 0; i-- {
			a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
			if err != nil {
				break
			}
			addr = a.Unmap()
			if !l.trusted(addr) {
				break
			}
		}
	}
	if addr.Is6() {
		p, _ := addr.Prefix(64)
		return p.Addr()
	}
	return addr
}

func (l *ipLimiter) trusted(a netip.Addr) bool {
	for _, p := range l.proxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func remoteAddr(s string) netip.Addr {
	host, _, err := net.SplitHostPort(s)
	if err != nil {
		host = s
	}
	a, _ := netip.ParseAddr(host)
	return a.Unmap()
}

// rateExempt are the paths tooling polls: never limited.
var rateExempt = map[string]bool{"/healthz": true, "/readyz": true, "/metrics": true}

// hasAdminToken reports whether r carries the node's admin token,
// compared in constant time. It is the one check the API makes of it.
func (n *Node) hasAdminToken(r *http.Request) bool {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && subtle.ConstantTimeCompare([]byte(tok), []byte(n.apiToken)) == 1
}

// rateLimit refuses requests beyond a client's rate with 429 and
// Retry-After. Requests with the admin token and the ops probes are
// exempt; everything else — public reads, and attempts at admin endpoints
// without the right token — is limited.
func (n *Node) rateLimit(h http.Handler) http.Handler {
	l := n.ops.limiter
	if l == nil {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rateExempt[r.URL.Path] || n.hasAdminToken(r) {
			h.ServeHTTP(w, r)
			return
		}
		if d := l.reserve(l.clientAddr(r)); d > 0 {
			secs := int(math.Ceil(d.Seconds()))
			w.Header().Set("Retry-After", strconv.Itoa(secs))
			writeError(w, http.StatusTooManyRequests, "rate_limited",
				fmt.Sprintf("too many requests from this address: retry in %d s (the limit is %g requests/s, bursts of %d)", secs, float64(l.rate), l.burst))
			return
		}
		h.ServeHTTP(w, r)
	})
}
