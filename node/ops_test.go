package node_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/node"
	"github.com/nii-uk/nii/node/api"
	"github.com/nii-uk/nii/node/nodetest"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// httpClient returns a client whose idle connections are closed when the
// test ends (goleak checks for their goroutines).
func httpClient(t *testing.T) *http.Client {
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

type call struct {
	method, path string
	header       map[string]string
	body         io.Reader
}

func do(t *testing.T, c *http.Client, n *node.Node, k call) (*http.Response, []byte) {
	t.Helper()
	if k.method == "" {
		k.method = http.MethodGet
	}
	req, err := http.NewRequest(k.method, n.APIAddr()+k.path, k.body)
	if err != nil {
		t.Fatal(err)
	}
	for h, v := range k.header {
		req.Header.Set(h, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

func admin(n *node.Node) map[string]string {
	return map[string]string{"Authorization": "Bearer " + n.AdminToken()}
}

// scrape fetches and parses a node's /metrics.
func scrape(t *testing.T, c *http.Client, n *node.Node) map[string]*dto.MetricFamily {
	t.Helper()
	resp, b := do(t, c, n, call{path: "/metrics"})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %s\n%s", resp.Status, b)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("parse /metrics: %v\n%s", err, b)
	}
	return mfs
}

// value returns the value of metric name with exactly the given labels
// (name=value pairs), or -1 if there is none.
func value(mfs map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	mf := mfs[name]
	if mf == nil {
		return -1
	}
next:
	for _, m := range mf.Metric {
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, lp := range m.Label {
				if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		case m.Untyped != nil:
			return m.Untyped.GetValue()
		}
	}
	return -1
}

func TestOpsMetricsFollowTheNode(t *testing.T) {
	nodes := nodetest.Federation(t, 2, nodetest.Options{})
	pub, puller := nodes[0], nodes[1]
	c := httpClient(t)

	before := scrape(t, c, pub)
	for name, want := range map[string]float64{
		"nii_catalog_datasets": 0, "nii_gossip_members_alive": 2, "nii_served_bytes_total": 0,
		"nii_served_chunks_total": 0, "nii_pulls_started_total": 0,
	} {
		if got := value(before, name); got != want {
			t.Errorf("before: %s = %v, want %v", name, got, want)
		}
	}
	if got := value(before, "nii_peers", "state", "alive"); got != 1 {
		t.Errorf("nii_peers{state=alive} = %v, want 1", got)
	}
	if got := value(before, "nii_node_info", "node", string(pub.ID()), "org", "org0"); got != 1 {
		t.Errorf("nii_node_info = %v", got)
	}
	for _, name := range []string{"go_goroutines", "nii_store_chunks", "nii_store_disk_bytes", "nii_follows", "nii_catalog_records_applied_total"} {
		if mfs := before[name]; mfs == nil {
			t.Errorf("no metric %s", name)
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	// Publishing raises the catalog gauge.
	data := randBytes(7, 3<<20)
	publishData(t, pub, "spend", data, nii.AccessOpen)
	publishData(t, pub, "secret", []byte("restricted"), nii.AccessRestricted)
	if got := value(scrape(t, c, pub), "nii_catalog_datasets"); got != 2 {
		t.Fatalf("after publishing: nii_catalog_datasets = %v, want 2", got)
	}

	// A pull through the API: the publisher serves bytes and chunks, the
	// puller counts a completed pull and the bytes it fetched.
	waitListed(t, puller, "org0/spend", 1)
	waitListed(t, puller, "org0/secret", 1)

	// The new records were pushed to the one other member at once, within
	// the budget (registry/gossip/push.go): counted, none held back.
	for deadline := time.Now().Add(nodetest.Bound(nodetest.FastTiming, 2)); ; {
		m := scrape(t, c, pub)
		if value(m, "nii_gossip_pushed_packets_total") >= 2 {
			if got := value(m, "nii_gossip_push_denied_total"); got != 0 {
				t.Errorf("nii_gossip_push_denied_total = %v after two records, want 0", got)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("nii_gossip_pushed_packets_total = %v after two new records, want >= 2", value(m, "nii_gossip_pushed_packets_total"))
		}
		time.Sleep(40 * time.Millisecond) // polling interval, under the API rate limit
	}
	// No member has failed: the reconnect has nothing to try.
	rm := scrape(t, c, pub)
	if joined, failed := value(rm, "nii_gossip_rejoins_total", "result", "joined"), value(rm, "nii_gossip_rejoins_total", "result", "failed"); joined != 0 || failed != 0 {
		t.Errorf("nii_gossip_rejoins_total: joined %v, failed %v with no member failed, want both exported and 0", joined, failed)
	}
	resp, b := do(t, c, puller, call{method: "POST", path: "/api/v1/pull", header: admin(puller), body: strings.NewReader(`{"ref":"org0/spend"}`)})
	if resp.StatusCode != http.StatusOK || !bytes.Contains(b, []byte(`"result"`)) {
		t.Fatalf("pull: %s %s", resp.Status, b)
	}
	if _, err := puller.Pull(context.Background(), nii.Ref{Dataset: nii.DatasetID{Org: "org0", Name: "secret"}}, node.PullOptions{}); err == nil {
		t.Fatal("pulled a restricted dataset without a grant")
	}
	after := scrape(t, c, pub)
	if got := value(after, "nii_served_bytes_total"); got != float64(len(data)) {
		t.Errorf("publisher: nii_served_bytes_total = %v, want %d", got, len(data))
	}
	if got := value(after, "nii_served_chunks_total"); got < 1 {
		t.Errorf("publisher: nii_served_chunks_total = %v", got)
	}
	// A publish writes its packs through the page cache; a pull's large
	// writes may go direct (where the file system takes O_DIRECT): every
	// byte is counted on one path or the other.
	if d, c := value(after, "nii_store_pack_written_bytes_total", "path", "direct"), value(after, "nii_store_pack_written_bytes_total", "path", "page_cache"); d != 0 || c < float64(len(data)) {
		t.Errorf("publisher: pack writes direct %v, page_cache %v, want 0 and at least %d", d, c, len(data))
	}
	// Every chunk served had just been published: each was read from
	// where it was written, none through the index.
	if hit, stale, miss := value(after, "nii_store_location_hint_reads_total", "result", "hit"), value(after, "nii_store_location_hint_reads_total", "result", "stale"), value(after, "nii_store_location_hint_reads_total", "result", "miss"); hit != value(after, "nii_served_chunks_total") || stale != 0 || miss != 0 {
		t.Errorf("publisher: location hint reads hit %v, stale %v, miss %v; want a hit for each of the %v chunks served", hit, stale, miss, value(after, "nii_served_chunks_total"))
	}
	if got := value(after, "nii_store_location_hints"); got < 1 {
		t.Errorf("publisher: nii_store_location_hints = %v after a publish", got)
	}
	pm := scrape(t, c, puller)
	for name, want := range map[string]float64{
		"nii_pulls_started_total": 2, "nii_pulls_completed_total": 1, "nii_pulls_failed_total": 1,
		"nii_pull_fetched_bytes_total": float64(len(data)),
	} {
		if got := value(pm, name); got != want {
			t.Errorf("puller: %s = %v, want %v", name, got, want)
		}
	}
	// The puller's first scrape came after the pull, so its store count is fresh.
	st, err := puller.Status()
	if err != nil {
		t.Fatal(err)
	}
	if got := value(pm, "nii_store_chunks"); got != float64(st.Store.Chunks) || got < 1 {
		t.Errorf("puller: nii_store_chunks = %v, status says %d", got, st.Store.Chunks)
	}
	if d, c := value(pm, "nii_store_pack_written_bytes_total", "path", "direct"), value(pm, "nii_store_pack_written_bytes_total", "path", "page_cache"); d+c < float64(len(data)) {
		t.Errorf("puller: pack writes direct %v + page_cache %v, want at least the %d bytes pulled", d, c, len(data))
	}
	if got := value(pm, "nii_catalog_records_applied_total"); got < 2 {
		t.Errorf("puller: nii_catalog_records_applied_total = %v", got)
	}

	// HTTP requests are counted by route pattern and code, and timed.
	do(t, c, pub, call{path: "/api/v1/status"})
	do(t, c, pub, call{path: "/api/v1/datasets/org0/nope"})
	do(t, c, pub, call{path: "/no/such/thing"})
	m := scrape(t, c, pub)
	for _, tc := range []struct {
		route, code string
		min         float64
	}{
		{"GET /api/v1/status", "200", 1},
		{"GET /api/v1/datasets/{org}/{name}", "404", 1},
		{"unmatched", "404", 1},
		{"GET /metrics", "200", 3},
	} {
		if got := value(m, "nii_http_requests_total", "route", tc.route, "code", tc.code); got < tc.min {
			t.Errorf("nii_http_requests_total{route=%q,code=%q} = %v, want ≥ %v", tc.route, tc.code, got, tc.min)
		}
	}
	if got := value(m, "nii_http_request_duration_seconds", "route", "GET /api/v1/status"); got < 1 {
		t.Errorf("request duration histogram count = %v", got)
	}
	if got := value(pm, "nii_http_requests_total", "route", "POST /api/v1/pull", "code", "200"); got != 1 {
		t.Errorf("puller: pull requests = %v", got)
	}
}

// TestOpsMetricNamesFollowConventions lints the node's own metrics with
// Prometheus's promlint (names, units, _total on counters, HELP text).
func TestOpsMetricNamesFollowConventions(t *testing.T) {
	n := nodetest.Start(t, nodetest.Config(t.TempDir(), "lint", nodetest.Options{}))
	c := httpClient(t)
	do(t, c, n, call{path: "/api/v1/status"})
	_, b := do(t, c, n, call{path: "/metrics"})
	problems, err := promlint.New(bytes.NewReader(b)).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, "nii_") {
			t.Errorf("%s: %s", p.Metric, p.Text)
		}
	}
	mfs := scrape(t, c, n)
	for name, mf := range mfs {
		if strings.HasPrefix(name, "nii_") && mf.GetHelp() == "" {
			t.Errorf("%s has no HELP", name)
		}
	}
}

func TestOpsHealthAndReadiness(t *testing.T) {
	dir := t.TempDir()
	c := httpClient(t)
	first := nodetest.Start(t, nodetest.Config(dir, "first", nodetest.Options{}))

	resp, b := do(t, c, first, call{path: "/healthz"})
	if resp.StatusCode != http.StatusOK || string(b) != "ok\n" {
		t.Fatalf("healthz: %s %q", resp.Status, b)
	}
	// No join addresses: the first member is ready alone.
	resp, b = do(t, c, first, call{path: "/readyz"})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("readyz of a first member: %s %s", resp.Status, b)
	}

	// A node told to join a member that is not there is up but not ready,
	// and says why.
	cfg := nodetest.Config(dir, "second", nodetest.Options{})
	cfg.Gossip.Join = []string{"127.0.0.1:1"}
	second := nodetest.Start(t, cfg)
	resp, b = do(t, c, second, call{path: "/readyz"})
	var rd api.Readiness
	if err := json.Unmarshal(b, &rd); err != nil {
		t.Fatalf("readyz body: %v: %s", err, b)
	}
	if resp.StatusCode != http.StatusServiceUnavailable || rd.Ready || !strings.Contains(rd.Reason, "gossip") || rd.Checks["store"] != "open" {
		t.Fatalf("readyz before joining: %s %+v", resp.Status, rd)
	}
	if resp, _ := do(t, c, second, call{path: "/healthz"}); resp.StatusCode != http.StatusOK {
		t.Fatalf("healthz while not ready: %s", resp.Status)
	}
	nodetest.Join(t, second, first)
	nodetest.WaitFor(t, 10*time.Second, "the second node is ready", func() bool {
		resp, _ := do(t, c, second, call{path: "/readyz"})
		return resp.StatusCode == http.StatusOK
	})
}

func TestOpsRateLimit(t *testing.T) {
	dir := t.TempDir()
	cfg := nodetest.Config(dir, "limited", nodetest.Options{})
	cfg.HTTP = node.HTTPConfig{Rate: 0.01, Burst: 3} // one request per 100 s after a burst of 3
	n := nodetest.Start(t, cfg)
	c := httpClient(t)

	for i := range 3 {
		if resp, b := do(t, c, n, call{path: "/api/v1/status"}); resp.StatusCode != http.StatusOK {
			t.Fatalf("request %d within the burst: %s %s", i, resp.Status, b)
		}
	}
	resp, b := do(t, c, n, call{path: "/api/v1/catalog", header: map[string]string{"Origin": "https://dash.example"}})
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("beyond the burst: %s %s", resp.Status, b)
	}
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || s < 1 || s > 100 {
		t.Fatalf("Retry-After %q", resp.Header.Get("Retry-After"))
	}
	var e api.APIError
	if err := json.Unmarshal(b, &e); err != nil || e.Code != "rate_limited" || e.Error == "" {
		t.Fatalf("429 body: %s", b)
	}
	if resp.Header.Get("Access-Control-Allow-Origin") != "*" {
		t.Fatalf("a dashboard cannot read the 429: %v", resp.Header)
	}
	// A wrong token is not the admin token: still limited.
	if resp, _ := do(t, c, n, call{path: "/api/v1/status", header: map[string]string{"Authorization": "Bearer nope"}}); resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("wrong token: %s", resp.Status)
	}
	// The admin token, and the probes, are exempt.
	for _, k := range []call{
		{path: "/api/v1/status", header: admin(n)},
		{path: "/api/v1/datasets", header: admin(n)},
		{path: "/healthz"}, {path: "/readyz"}, {path: "/metrics"},
	} {
		if resp, b := do(t, c, n, k); resp.StatusCode != http.StatusOK {
			t.Fatalf("%s (exempt): %s %s", k.path, resp.Status, b)
		}
	}
	m := scrape(t, c, n)
	if got := value(m, "nii_http_requests_total", "route", "GET /api/v1/status", "code", "429"); got != 1 {
		t.Errorf("429s on the status route = %v, want 1", got)
	}
	if got := value(m, "nii_http_rate_limit_clients"); got != 1 {
		t.Errorf("nii_http_rate_limit_clients = %v, want 1", got)
	}

	// Behind a trusted proxy, each forwarded client has its own bucket;
	// from anyone else X-Forwarded-For is ignored.
	cfg = nodetest.Config(dir, "proxied", nodetest.Options{})
	cfg.HTTP = node.HTTPConfig{Rate: 0.01, Burst: 1, TrustedProxies: []string{"127.0.0.0/8"}}
	p := nodetest.Start(t, cfg)
	xff := func(a string) map[string]string { return map[string]string{"X-Forwarded-For": "198.51.100.9, " + a} }
	for i, tc := range []struct {
		from string
		want int
	}{{"203.0.113.7", 200}, {"203.0.113.7", 429}, {"203.0.113.8", 200}} {
		if resp, _ := do(t, c, p, call{path: "/api/v1/status", header: xff(tc.from)}); resp.StatusCode != tc.want {
			t.Fatalf("proxied request %d from %s: %s, want %d", i, tc.from, resp.Status, tc.want)
		}
	}
	cfg = nodetest.Config(dir, "direct", nodetest.Options{})
	cfg.HTTP = node.HTTPConfig{Rate: 0.01, Burst: 1}
	d := nodetest.Start(t, cfg)
	for i, tc := range []struct {
		from string
		want int
	}{{"203.0.113.7", 200}, {"203.0.113.8", 429}} {
		if resp, _ := do(t, c, d, call{path: "/api/v1/status", header: xff(tc.from)}); resp.StatusCode != tc.want {
			t.Fatalf("request %d claiming to be from %s: %s, want %d (X-Forwarded-For from an untrusted peer must be ignored)", i, tc.from, resp.Status, tc.want)
		}
	}
}

func TestOpsCORS(t *testing.T) {
	n := nodetest.Start(t, nodetest.Config(t.TempDir(), "cors", nodetest.Options{}))
	c := httpClient(t)
	origin := "https://dashboard.example"
	preflight := func(path, method, headers string) *http.Response {
		h := map[string]string{"Origin": origin, "Access-Control-Request-Method": method}
		if headers != "" {
			h["Access-Control-Request-Headers"] = headers
		}
		resp, _ := do(t, c, n, call{method: http.MethodOptions, path: path, header: h})
		return resp
	}

	resp := preflight("/api/v1/catalog?q=spend", "GET", "accept")
	h := resp.Header
	if resp.StatusCode != http.StatusNoContent || h.Get("Access-Control-Allow-Origin") != "*" ||
		!strings.Contains(h.Get("Access-Control-Allow-Methods"), "GET") || h.Get("Access-Control-Allow-Credentials") != "" {
		t.Fatalf("read preflight: %s %v", resp.Status, h)
	}
	if strings.Contains(strings.ToLower(h.Get("Access-Control-Allow-Headers")), "authorization") {
		t.Fatalf("preflight allows Authorization: %v", h)
	}
	for _, m := range []string{"POST", "DELETE", "PUT"} {
		if resp := preflight("/api/v1/pull", m, "authorization, content-type"); resp.Header.Get("Access-Control-Allow-Origin") != "" ||
			resp.Header.Get("Access-Control-Allow-Methods") != "" {
			t.Fatalf("%s preflight allowed: %v", m, resp.Header)
		}
	}

	resp, _ = do(t, c, n, call{path: "/api/v1/status", header: map[string]string{"Origin": origin}})
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Access-Control-Allow-Origin") != "*" ||
		resp.Header.Get("Access-Control-Allow-Credentials") != "" || !strings.Contains(resp.Header.Get("Access-Control-Expose-Headers"), "Nii-Size") {
		t.Fatalf("cross-origin read: %s %v", resp.Status, resp.Header)
	}
	resp, _ = do(t, c, n, call{method: "POST", path: "/api/v1/pull", header: map[string]string{"Origin": origin}, body: strings.NewReader("{}")})
	if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("cross-origin admin request: %s %v", resp.Status, resp.Header)
	}
	// Same-origin and non-browser requests get no CORS headers.
	if resp, _ := do(t, c, n, call{path: "/api/v1/status"}); resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("CORS header without Origin: %v", resp.Header)
	}
}
