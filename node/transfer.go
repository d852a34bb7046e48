package node

import (
	"net/http"
	"net/http/pprof"
	"sync"
	"time"

	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/exchange"
	"github.com/prometheus/client_golang/prometheus"
)

// Transfer figures for operators: what pulls fetched from each provider,
// how fast pulls and publishes ran, and the Go profiler behind the admin
// token. docs/operations.md lists the metrics and says how to profile.

// maxProviderLabels bounds the provider label's values: providers are the
// federation's members, but a federation of strangers should not grow
// the exposition without bound. Providers past it count as "other".
const maxProviderLabels = 1000

// transferStats are the figures the collector reads on scrape. The zero
// value is ready.
type transferStats struct {
	mu        sync.Mutex
	providers map[nii.NodeID]*providerFigures

	pullChunks   int64   // chunks fetched by completed pulls
	pullSeconds  float64 // time spent in completed pulls that fetched something
	pullLastRate float64 // bytes/s of the last completed pull that fetched something

	publishes       int64
	publishBytes    int64
	publishSeconds  float64
	publishLastRate float64
}

type providerFigures struct {
	bytes, chunks int64
	errors        int64 // times dropped from a pull for an error or a bad chunk
}

// provider returns p's figures, making them (or, past maxProviderLabels,
// those of "other"). t.mu is held.
func (t *transferStats) provider(p nii.NodeID) *providerFigures {
	if t.providers == nil {
		t.providers = map[nii.NodeID]*providerFigures{}
	}
	if f := t.providers[p]; f != nil {
		return f
	}
	if len(t.providers) >= maxProviderLabels {
		p = "other"
		if f := t.providers[p]; f != nil {
			return f
		}
	}
	f := &providerFigures{}
	t.providers[p] = f
	return f
}

// dropped counts the providers a pull (completed or failed) dropped.
func (t *transferStats) dropped(res *exchange.PullResult) {
	if res == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, p := range res.Dropped {
		t.provider(p).errors++
	}
}

// pulled records a completed pull that was not shared with another (a
// shared pull's figures are the other's).
func (t *transferStats) pulled(res *exchange.PullResult, took time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for p, b := range res.Providers {
		if b == 0 && res.ProviderChunks[p] == 0 {
			continue
		}
		f := t.provider(p)
		f.bytes += b
		f.chunks += int64(res.ProviderChunks[p])
	}
	t.pullChunks += int64(res.FetchedChunks)
	if res.FetchedBytes > 0 && took > 0 {
		t.pullSeconds += took.Seconds()
		t.pullLastRate = float64(res.FetchedBytes) / took.Seconds()
	}
}

// published records a committed publish of size bytes.
func (t *transferStats) published(size int64, took time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.publishes++
	t.publishBytes += size
	if took > 0 {
		t.publishSeconds += took.Seconds()
		t.publishLastRate = float64(size) / took.Seconds()
	}
}

var (
	descPulledChunks    = desc("pull_fetched_chunks_total", "Chunks fetched from other nodes by completed pulls.")
	descPullSeconds     = desc("pull_seconds_total", "Time spent in completed pulls that fetched chunks: rate(nii_pull_fetched_bytes_total) / rate(nii_pull_seconds_total) is pull throughput.")
	descPullLastRate    = desc("pull_last_bytes_per_second", "Throughput of the last completed pull that fetched chunks (fetched bytes over the pull's time).")
	descProviderBytes   = desc("pull_provider_fetched_bytes_total", "Chunk bytes fetched by completed pulls, by provider node.", "provider")
	descProviderChunks  = desc("pull_provider_fetched_chunks_total", "Chunks fetched by completed pulls, by provider node.", "provider")
	descPublishes       = desc("publishes_total", "Versions published by this node since start.")
	descPublishBytes    = desc("publish_bytes_total", "Bytes of the versions published since start.")
	descPublishSeconds  = desc("publish_seconds_total", "Time spent reading, chunking, hashing and storing published versions: rate(nii_publish_bytes_total) / rate(nii_publish_seconds_total) is publish throughput.")
	descPublishLastRate = desc("publish_last_bytes_per_second", "Throughput of the last publish.")
	descP2PConns        = desc("p2p_connections", "Open libp2p connections, by transport (tcp, quic, other).", "transport")
	descProviderErrors  = desc("pull_provider_errors_total", "Times a provider was dropped from a pull (completed or failed) for an error or a bad chunk, by provider node.", "provider")
	descChunkBytes      = desc("p2p_chunk_bytes_total", "Chunk bytes the chunk protocol moved, by transport (tcp, quic, other) and direction (fetched: received by this node's pulls; served: sent to others).", "transport", "direction")
)

var transferDescs = []*prometheus.Desc{
	descPulledChunks, descPullSeconds, descPullLastRate, descProviderBytes, descProviderChunks,
	descPublishes, descPublishBytes, descPublishSeconds, descPublishLastRate, descP2PConns,
	descProviderErrors, descChunkBytes,
}

// collectTransfer sends the transfer figures.
func (c *nodeCollector) collectTransfer(ch chan<- prometheus.Metric) {
	t := &c.n.transfer
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	t.mu.Lock()
	counter(descPulledChunks, float64(t.pullChunks))
	counter(descPullSeconds, t.pullSeconds)
	gauge(descPullLastRate, t.pullLastRate)
	for p, f := range t.providers {
		counter(descProviderBytes, float64(f.bytes), string(p))
		counter(descProviderChunks, float64(f.chunks), string(p))
		counter(descProviderErrors, float64(f.errors), string(p))
	}
	counter(descPublishes, float64(t.publishes))
	counter(descPublishBytes, float64(t.publishBytes))
	counter(descPublishSeconds, t.publishSeconds)
	gauge(descPublishLastRate, t.publishLastRate)
	t.mu.Unlock()

	byTransport := map[string]int{exchange.TransportTCP: 0, exchange.TransportQUIC: 0, exchange.TransportOther: 0}
	for _, tc := range c.host.Transports() {
		byTransport[tc.Transport]++
	}
	for tr, k := range byTransport {
		gauge(descP2PConns, float64(k), tr)
	}
	for _, b := range c.host.ChunkBytesByTransport() {
		counter(descChunkBytes, float64(b.Fetched), b.Transport, "fetched")
		counter(descChunkBytes, float64(b.Served), b.Transport, "served")
	}
}

// pprofRoutes serves the Go profiler under /debug/pprof/, with the admin
// token only: a profile shows the node's internals and costs CPU while it
// runs. 'go tool pprof' and curl pass the token as a bearer token, as for
// the API's other admin routes (docs/operations.md).
func (n *Node) pprofRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /debug/pprof/{name...}", n.admin(handlePprof))
}

// handlePprof serves net/http/pprof's pages: the index, a named profile
// (heap, goroutine, allocs, block, mutex, threadcreate), or a CPU profile
// or trace for ?seconds=N.
func handlePprof(w http.ResponseWriter, r *http.Request) {
	switch r.PathValue("name") {
	case "cmdline":
		pprof.Cmdline(w, r)
	case "profile":
		pprof.Profile(w, r)
	case "symbol":
		pprof.Symbol(w, r)
	case "trace":
		pprof.Trace(w, r)
	default:
		pprof.Index(w, r)
	}
}
