package node_test

import (
	"bytes"
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/node"
	"github.com/nii-uk/nii/node/nodetest"
)

// TestPprofNeedsTheAdminToken: the profiler is refused without the
// admin token (and with a wrong one), and served with it: the index, and
// a heap profile that parses as one.
func TestPprofNeedsTheAdminToken(t *testing.T) {
	n := nodetest.Start(t, nodetest.Config(t.TempDir(), "prof", nodetest.Options{}))
	c := httpClient(t)
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/heap", "/debug/pprof/goroutine?debug=1", "/debug/pprof/cmdline", "/debug/pprof/profile?seconds=1"} {
		for _, h := range []map[string]string{nil, {"Authorization": "Bearer not-the-token"}} {
			resp, b := do(t, c, n, call{path: path, header: h})
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("%s with %v: %s, want 401\n%.200s", path, h, resp.Status, b)
			}
			if bytes.Contains(b, []byte("heap profile:")) || bytes.Contains(b, []byte("goroutine profile:")) {
				t.Errorf("%s without the token leaked profile data: %.200s", path, b)
			}
		}
	}
	resp, b := do(t, c, n, call{path: "/debug/pprof/", header: admin(n)})
	if resp.StatusCode != http.StatusOK || !bytes.Contains(b, []byte("goroutine")) {
		t.Fatalf("index with the token: %s\n%.300s", resp.Status, b)
	}
	// The profile proper is gzipped protobuf; debug=1 is its text form.
	resp, b = do(t, c, n, call{path: "/debug/pprof/heap", header: admin(n)})
	if resp.StatusCode != http.StatusOK || len(b) < 2 || b[0] != 0x1f || b[1] != 0x8b {
		t.Fatalf("heap with the token: %s, not a gzipped profile\n%.100q", resp.Status, b)
	}
	resp, b = do(t, c, n, call{path: "/debug/pprof/heap?debug=1", header: admin(n)})
	if resp.StatusCode != http.StatusOK || !bytes.HasPrefix(b, []byte("heap profile:")) {
		t.Fatalf("heap?debug=1 with the token: %s\n%.300s", resp.Status, b)
	}
}

// TestTransferMetricsFollowAPull: after a pull, the puller's per-provider
// byte and chunk counters and its throughput figures match what the pull
// fetched (the bytes of the version, every chunk, all from the one
// provider), the publisher's publish counters match what it published,
// and both count their libp2p connection by transport.
func TestTransferMetricsFollowAPull(t *testing.T) {
	nodes := nodetest.Federation(t, 2, nodetest.Options{})
	pub, puller := nodes[0], nodes[1]
	c := httpClient(t)

	before := scrape(t, c, puller)
	if got := value(before, "nii_pull_provider_fetched_bytes_total", "provider", string(pub.ID())); got != -1 {
		t.Fatalf("before any pull: a provider counter exists (%v)", got)
	}
	data := randBytes(11, 5<<20)
	ref := publishData(t, pub, "spend", data, nii.AccessOpen)
	pm := scrape(t, c, pub)
	if got := value(pm, "nii_publishes_total"); got != 1 {
		t.Errorf("publisher: nii_publishes_total = %v, want 1", got)
	}
	if got := value(pm, "nii_publish_bytes_total"); got != float64(len(data)) {
		t.Errorf("publisher: nii_publish_bytes_total = %v, want %d", got, len(data))
	}
	if got := value(pm, "nii_publish_seconds_total"); got <= 0 {
		t.Errorf("publisher: nii_publish_seconds_total = %v", got)
	}

	waitListed(t, puller, "org0/spend", 1)
	res, err := puller.Pull(context.Background(), *ref, node.PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// What the pull fetched: every chunk of the version (random bytes:
	// no chunk repeats; the puller held none), counted as they arrived.
	fetched, chunks := res.FetchedBytes, res.FetchedChunks
	if res.HeldChunks != 0 || fetched != int64(len(data)) || chunks != res.Record.Chunks {
		t.Fatalf("the pull fetched %d bytes in %d chunks, held %d; the version is %d bytes", fetched, chunks, res.HeldChunks, len(data))
	}
	m := scrape(t, c, puller)
	for _, k := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"nii_pull_provider_fetched_bytes_total", []string{"provider", string(pub.ID())}, float64(fetched)},
		{"nii_pull_provider_fetched_chunks_total", []string{"provider", string(pub.ID())}, float64(chunks)},
		{"nii_pull_fetched_chunks_total", nil, float64(chunks)},
		{"nii_pull_fetched_bytes_total", nil, float64(fetched)},
	} {
		if got := value(m, k.name, k.labels...); got != k.want {
			t.Errorf("puller: %s%v = %v, want %v", k.name, k.labels, got, k.want)
		}
	}
	secs := value(m, "nii_pull_seconds_total")
	rate := value(m, "nii_pull_last_bytes_per_second")
	if secs <= 0 || rate <= 0 {
		t.Fatalf("puller: nii_pull_seconds_total = %v, nii_pull_last_bytes_per_second = %v", secs, rate)
	}
	// One pull: its rate is its bytes over its time.
	if want := float64(fetched) / secs; rate < want*0.999 || rate > want*1.001 {
		t.Errorf("puller: last rate %v, bytes/seconds %v", rate, want)
	}

	// Pulling it again fetches nothing: no counter moves.
	if _, err := puller.Pull(context.Background(), *ref, node.PullOptions{}); err != nil {
		t.Fatal(err)
	}
	again := scrape(t, c, puller)
	if got := value(again, "nii_pull_provider_fetched_bytes_total", "provider", string(pub.ID())); got != float64(fetched) {
		t.Errorf("after a pull that fetched nothing: provider bytes = %v, want %d", got, fetched)
	}
	if got := value(again, "nii_pull_seconds_total"); got != secs {
		t.Errorf("after a pull that fetched nothing: nii_pull_seconds_total %v, was %v", got, secs)
	}

	// The connection the chunks came over is counted by its transport,
	// and 'nii peers' (the peer list) names it.
	conns := 0.0
	for _, tr := range []string{"tcp", "quic", "other"} {
		v := value(again, "nii_p2p_connections", "transport", tr)
		if v < 0 {
			t.Errorf("no nii_p2p_connections{transport=%q}", tr)
		}
		conns += max(v, 0)
	}
	if conns < 1 {
		t.Errorf("puller: %v libp2p connections counted, want at least the one to the publisher", conns)
	}
	var found bool
	var peerTransports []string
	for _, p := range puller.PeerList() {
		if p.ID == pub.ID() {
			found = true
			peerTransports = p.Transports
			if len(p.Transports) == 0 || !slices.ContainsFunc(p.Transports, func(s string) bool { return s == "tcp" || s == "quic" }) {
				t.Errorf("peer list: the publisher's transports are %v, want tcp or quic", p.Transports)
			}
		}
	}
	if !found {
		t.Errorf("the publisher is not in the puller's peer list")
	}
	// Which transport the chunks crossed: all of them under one, the same
	// on both ends, and that one a transport of the open connection.
	pm = scrape(t, c, pub)
	var fetchedOver, servedOver []string
	for _, tr := range []string{"tcp", "quic", "other"} {
		f := value(again, "nii_p2p_chunk_bytes_total", "transport", tr, "direction", "fetched")
		sv := value(pm, "nii_p2p_chunk_bytes_total", "transport", tr, "direction", "served")
		if f < 0 || sv < 0 {
			t.Errorf("no nii_p2p_chunk_bytes_total{transport=%q} fetched (%v) or served (%v)", tr, f, sv)
		}
		if f == float64(fetched) {
			fetchedOver = append(fetchedOver, tr)
		} else if f != 0 {
			t.Errorf("puller: %v chunk bytes fetched over %s, want all (%d) or none", f, tr, fetched)
		}
		if sv == float64(fetched) {
			servedOver = append(servedOver, tr)
		} else if sv != 0 {
			t.Errorf("publisher: %v chunk bytes served over %s, want all (%d) or none", sv, tr, fetched)
		}
	}
	if len(fetchedOver) != 1 || !slices.Equal(fetchedOver, servedOver) || !slices.Contains(peerTransports, fetchedOver[0]) {
		t.Errorf("chunks fetched over %v, served over %v; the connection's transports %v", fetchedOver, servedOver, peerTransports)
	}
	if got := value(again, "nii_pull_delta_chunks_total"); got != 0 {
		t.Errorf("after a first pull: nii_pull_delta_chunks_total = %v, want 0 (no older version held)", got)
	}

	// Version 2 edits 1 KiB in the middle: the puller, holding version 1,
	// assembles the touched chunk from byte ranges (delta sync), and the
	// counters say so.
	v2 := bytes.Clone(data)
	copy(v2[len(v2)/2:], randBytes(12, 1<<10))
	ref2 := publishData(t, pub, "spend", v2, nii.AccessOpen)
	waitListed(t, puller, "org0/spend", ref2.Version)
	res2, err := puller.Pull(context.Background(), *ref2, node.PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res2.DeltaChunks == 0 || res2.ReusedBytes == 0 || res2.FetchedBytes >= 32<<10 {
		t.Errorf("pull of a 1 KiB edit: %d delta chunks, %d bytes reused, %d fetched; want a delta fetching under one average chunk", res2.DeltaChunks, res2.ReusedBytes, res2.FetchedBytes)
	}
	m2 := scrape(t, c, puller)
	if got := value(m2, "nii_pull_delta_chunks_total"); got != float64(res2.DeltaChunks) {
		t.Errorf("nii_pull_delta_chunks_total = %v, want %d", got, res2.DeltaChunks)
	}
	if got := value(m2, "nii_pull_reused_bytes_total"); got != float64(res2.ReusedBytes) {
		t.Errorf("nii_pull_reused_bytes_total = %v, want %d", got, res2.ReusedBytes)
	}
	if t.Failed() {
		_, b := do(t, c, puller, call{path: "/metrics"})
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "nii_pull") || strings.HasPrefix(l, "nii_p2p") {
				t.Log(l)
			}
		}
	}
}
