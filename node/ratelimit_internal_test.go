package node

import (
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestIPLimiterStaysBounded(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	l := newIPLimiter(HTTPConfig{Rate: 1, Burst: 2}) // refills in 2 s
	l.now = func() time.Time { return now }
	l.max = 3
	addr := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}) }

	for i := range 3 {
		if d := l.reserve(addr(i)); d != 0 {
			t.Fatalf("client %d refused: %v", i, d)
		}
	}
	// The table is full of active clients: newcomers share the overflow
	// bucket (burst 2) and nobody is evicted.
	if l.reserve(addr(10)) != 0 || l.reserve(addr(11)) != 0 {
		t.Fatal("overflow bucket refused within its burst")
	}
	if d := l.reserve(addr(12)); d <= 0 || d > time.Second {
		t.Fatalf("overflow bucket beyond its burst: delay %v", d)
	}
	if l.clients() != 3 {
		t.Fatalf("%d clients tracked, want 3", l.clients())
	}
	// An active client kept its own bucket: one token left of two.
	if l.reserve(addr(0)) != 0 {
		t.Fatal("client 0 lost its bucket")
	}
	if l.reserve(addr(0)) == 0 {
		t.Fatal("client 0 got a third token at once")
	}

	// Idle buckets (refilled by now) are swept; the table takes newcomers.
	now = now.Add(rateSweepEvery)
	if l.reserve(addr(20)) != 0 {
		t.Fatal("newcomer refused after the sweep")
	}
	if l.clients() != 1 {
		t.Fatalf("%d clients tracked after the sweep, want 1", l.clients())
	}
}

func TestIPLimiterClientAddr(t *testing.T) {
	l := newIPLimiter(HTTPConfig{Rate: 1, Burst: 1, TrustedProxies: []string{"10.0.0.1", "fd00::/8"}})
	for _, tc := range []struct {
		remote, xff, want string
	}{
		{"203.0.113.5:4000", "", "203.0.113.5"},
		{"203.0.113.5:4000", "198.51.100.1", "203.0.113.5"},        // untrusted peer: header ignored
		{"10.0.0.1:4000", "198.51.100.1", "198.51.100.1"},          // trusted proxy
		{"10.0.0.1:4000", "6.6.6.6, 198.51.100.1", "198.51.100.1"}, // the rightmost untrusted hop, not what the client wrote
		{"10.0.0.1:4000", "198.51.100.1, fd00::1", "198.51.100.1"}, // through two trusted proxies
		{"10.0.0.1:4000", "bogus", "10.0.0.1"},                     // unparsable: the proxy itself
		{"[2001:db8:1:2:3:4:5:6]:4000", "", "2001:db8:1:2::"},      // IPv6 keyed by /64
		{"[::ffff:203.0.113.5]:4000", "", "203.0.113.5"},           // v4-mapped
	} {
		r, _ := http.NewRequest("GET", "/", nil)
		r.RemoteAddr = tc.remote
		if tc.xff != "" {
			r.Header.Set("X-Forwarded-For", tc.xff)
		}
		if got := l.clientAddr(r).String(); got != tc.want {
			t.Errorf("remote %s, X-Forwarded-For %q: %s, want %s", tc.remote, tc.xff, got, tc.want)
		}
	}
}

func TestHTTPConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		c    HTTPConfig
		want string // "" valid
	}{
		{DefaultHTTP(), ""},
		{HTTPConfig{Rate: 0}, ""}, // no limit
		{HTTPConfig{Rate: -1, Burst: 1}, "http.rate"},
		{HTTPConfig{Rate: 5, Burst: 0}, "http.burst"},
		{HTTPConfig{Rate: 5, Burst: 5, TrustedProxies: []string{"10.0.0.0/8", "::1"}}, ""},
		{HTTPConfig{Rate: 5, Burst: 5, TrustedProxies: []string{"proxy.local"}}, "http.trusted_proxies"},
	} {
		err := tc.c.Validate()
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%+v: %v, want %q", tc.c, err, tc.want)
		}
	}
}

func TestP2PInFlightConfig(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64 // -1: invalid
	}{
		{"", 0}, // the engine's default
		{"32MiB", 32 << 20},
		{"1 MiB", 1 << 20},
		{"512KiB", -1}, // below one chunk of the largest size
		{"lots", -1},
	} {
		got, err := P2PConfig{InFlight: tc.in}.parseInFlight()
		if (tc.want < 0) != (err != nil) || (err == nil && got != tc.want) {
			t.Errorf("in_flight %q: %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
}
