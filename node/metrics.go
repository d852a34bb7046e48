package node

import (
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/nii-uk/nii/exchange"
	"github.com/nii-uk/nii/registry"
	"github.com/nii-uk/nii/registry/gossip"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics. Each node has its own prometheus.Registry (never the global
// one), so that several nodes in one process — tests, 'nii demo' — keep
// separate figures. Almost everything is read on scrape from the counters
// the parts already keep (a custom Collector), rather than incremented in
// parallel; only the HTTP figures are observed as requests pass.
//
// docs/operations.md lists every metric.

// metricsNamespace prefixes every nii metric.
const metricsNamespace = "nii"

// storeStatsTTL is how long a store count is reused: counting chunks walks
// every chunk key, too much for every scrape of a large store.
const storeStatsTTL = 30 * time.Second

// newMetrics builds the node's registry: Go and process collectors, the
// node collector and the HTTP request metrics.
func (n *Node) newMetrics() *prometheus.Registry {
	n.ops.parts = newNodeCollector(n)
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		n.ops.parts,
	)
	n.ops.httpRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: metricsNamespace, Subsystem: "http", Name: "requests_total",
		Help: "HTTP API requests answered, by route pattern and status code.",
	}, []string{"route", "code"})
	n.ops.httpDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: metricsNamespace, Subsystem: "http", Name: "request_duration_seconds",
		Help:    "Time to answer an HTTP API request (to the end of the body), by route pattern.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
	}, []string{"route"})
	reg.MustRegister(n.ops.httpRequests, n.ops.httpDuration)
	reg.MustRegister(n.serverCollectors()...)
	reg.MustRegister(n.memberCollectors()...)
	return reg
}

// nodeCollector reads the node's parts on every scrape. It holds the parts
// themselves, captured once the node has started, so a scrape racing Close
// never reads a Node field being cleared.
type nodeCollector struct {
	n       *Node
	db      *badger.DB
	store   *exchange.Store
	catalog *registry.Catalog
	peers   *registry.Peers
	gossip  *gossip.Gossip
	host    *exchange.Host

	statsMu sync.Mutex
	stats   exchange.Stats
	statsAt time.Time
}

func newNodeCollector(n *Node) *nodeCollector {
	return &nodeCollector{n: n, db: n.db, store: n.store, catalog: n.catalog, peers: n.peers, gossip: n.gossip, host: n.host}
}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(metricsNamespace+"_"+name, help, labels, nil)
}

var (
	descNodeInfo = desc("node_info", "Always 1; labels name this node, its org and federation, and the build.",
		"node", "org", "federation", "version")
	descGossipMembers = desc("gossip_members_alive", "Live gossip members, this node included.")
	descPeers         = desc("peers", "Members in this node's member table, by state (alive, dead, left).", "state")
	descGossipRejoins = desc("gossip_rejoins_total", "Joins tried to members seen to fail, to heal a partition, by result (joined: the member answered; failed: it did not).", "result")
	descGossipPushed  = desc("gossip_pushed_packets_total", "Packets carrying a new record pushed straight to random members, besides memberlist's broadcast.")
	descGossipDenied  = desc("gossip_push_denied_total", "New records not pushed because the push budget was spent (they still spread by broadcast).")

	descCatalogDatasets = desc("catalog_datasets", "Searchable (not withdrawn) adverts in the federated catalog.")
	descCatalogOrigins  = desc("catalog_origins", "Nodes the federated catalog holds records from.")
	descCatalogApplied  = desc("catalog_records_applied_total", "Catalog records received and accepted since start.")
	descCatalogRejected = desc("catalog_records_rejected_total", "Catalog records received and refused since start, by reason.", "reason")
	descCatalogGCs      = desc("catalog_heap_collections_total", "Garbage collections run because the catalog grew by a step of records (registry/heap.go: keeps a fast-growing catalog's heap from fragmenting).")

	descPullsStarted   = desc("pulls_started_total", "Pulls from other nodes started (by the API or by a follow).")
	descPullsCompleted = desc("pulls_completed_total", "Pulls that fetched and verified a whole version.")
	descPullsFailed    = desc("pulls_failed_total", "Pulls that ended in an error.")
	descPulledBytes    = desc("pull_fetched_bytes_total", "Chunk bytes fetched from other nodes by completed pulls.")
	descPullDelta      = desc("pull_delta_chunks_total", "Chunks completed pulls assembled from byte ranges and an older version's bytes (delta sync) instead of fetching them whole.")
	descPullReused     = desc("pull_reused_bytes_total", "Bytes of delta-assembled chunks taken from an older version held here rather than fetched.")
	descServedBytes    = desc("served_bytes_total", "Chunk bytes served to other nodes.")
	descServedChunks   = desc("served_chunks_total", "Chunks served to other nodes.")

	descStoreChunks     = desc("store_chunks", "Chunks in the store (counted at most every 30 s).")
	descStoreChunkBytes = desc("store_chunk_bytes", "Bytes of chunk data in the store (counted at most every 30 s).")
	descStoreVersions   = desc("store_versions", "Dataset versions held (counted at most every 30 s).")
	descStoreDatasets   = desc("store_datasets", "Datasets held, own and replicas (counted at most every 30 s).")
	descStoreDiskBytes  = desc("store_disk_bytes", "The store's size on disk by part (lsm, vlog), as badger estimates it.", "part")
	descHintsHeld       = desc("store_location_hints", "Locations of recently written chunks the store remembers, so that serving them to peers skips the index lookup (docs/storage.md).")
	descHintReads       = desc("store_location_hint_reads_total", "Chunk reads by the content server, by what the remembered locations gave: hit (read from it), stale (failed its checks; read through the index), miss (none; read through the index).", "result")
	descPackWrites      = desc("store_pack_written_bytes_total", "Bytes written to chunk pack files, by path: direct (O_DIRECT: a pull's large writes) or page_cache (publishes, small writes, file systems refusing O_DIRECT, [store] buffered_writes).", "path")

	descFollows        = desc("follows", "Followed datasets, by sync state.", "state")
	descGrantDecisions = desc("grant_decisions_total", "Access decisions on restricted content, by result and reason.", "result", "reason")
	descRateClients    = desc("http_rate_limit_clients", "Client addresses the API's rate limiter is tracking.")

	descDiskFree      = desc("disk_free_bytes", "Free bytes on the device holding the home (what the node may use).")
	descDiskFloor     = desc("disk_floor_bytes", "Bytes kept free on that device ([store] min_free): writes below it are refused.")
	descDiskLow       = desc("disk_low", "1 when the device is below the floor (publishes and pulls refused).")
	descStoreReadOnly = desc("store_read_only", "1 when the store was opened read-only (the disk was below the floor at start).")
	descSpaceRefused  = desc("store_writes_refused_for_space_total", "Publishes, pulls and chunk writes refused for want of space.")
	descCorruptServed = desc("store_corrupt_chunks_served_total", "Chunks found corrupt while serving them to a peer (answered missing, never sent).")
	descDamaged       = desc("store_damaged_versions", "Versions whose copy here is damaged and not yet repaired.")
	descVerifies      = desc("store_verify_runs_total", "Store checks completed (at start, on schedule, asked).")
	descRepaired      = desc("store_repaired_versions_total", "Damaged versions re-fetched from other providers and verified.")
	descVlogTruncated = desc("store_vlog_truncations_total", "Value-log files badger cut short on open at a failed checksum (since start).")
	descGCRuns        = desc("store_gc_runs_total", "Garbage collections completed.")
	descGCChunks      = desc("store_gc_chunks_total", "Chunks deleted by garbage collection: named by no version.")
	descGCBytes       = desc("store_gc_bytes_total", "Bytes of the chunks deleted by garbage collection.")
)

var followStates = []string{FollowSynced, FollowSyncing, FollowWaiting, FollowRefused, FollowWithdrawn}

var peerStates = []string{registry.PeerAlive, registry.PeerDead, registry.PeerLeft}

// Describe implements prometheus.Collector.
func (c *nodeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		descNodeInfo, descGossipMembers, descPeers, descGossipPushed, descGossipDenied, descGossipRejoins,
		descCatalogDatasets, descCatalogOrigins, descCatalogApplied, descCatalogRejected, descCatalogGCs,
		descPullsStarted, descPullsCompleted, descPullsFailed, descPulledBytes, descPullDelta, descPullReused, descServedBytes, descServedChunks,
		descStoreChunks, descStoreChunkBytes, descStoreVersions, descStoreDatasets, descStoreDiskBytes, descPackWrites, descHintsHeld, descHintReads,
		descFollows, descGrantDecisions, descRateClients,
		descDiskFree, descDiskFloor, descDiskLow, descStoreReadOnly, descSpaceRefused, descCorruptServed,
		descDamaged, descVerifies, descRepaired, descVlogTruncated, descGCRuns, descGCChunks, descGCBytes,
	} {
		ch <- d
	}
	for _, d := range transferDescs {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *nodeCollector) Collect(ch chan<- prometheus.Metric) {
	n := c.n
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	gauge(descNodeInfo, 1, string(n.id), n.cfg.Org, n.cfg.Federation, BuildVersion)

	gauge(descGossipMembers, float64(c.gossip.NumMembers()))
	pushed, denied := c.gossip.PushStats()
	counter(descGossipPushed, float64(pushed))
	counter(descGossipDenied, float64(denied))
	tried, joined := c.gossip.RejoinStats()
	counter(descGossipRejoins, float64(joined), "joined")
	counter(descGossipRejoins, float64(tried-joined), "failed")
	byState := map[string]int{}
	for _, p := range c.peers.List() {
		byState[p.State]++
	}
	for _, s := range peerStates {
		gauge(descPeers, float64(byState[s]), s)
	}

	gauge(descCatalogDatasets, float64(c.catalog.Len()))
	gauge(descCatalogOrigins, float64(c.catalog.Origins()))
	counter(descCatalogApplied, float64(c.catalog.Applied()))
	counter(descCatalogGCs, float64(c.catalog.Collections()))
	for reason, k := range c.catalog.Rejected() {
		counter(descCatalogRejected, float64(k), reason)
	}

	counter(descPullsStarted, float64(n.ops.pullsStarted.Load()))
	counter(descPullsCompleted, float64(n.ops.pullsCompleted.Load()))
	counter(descPullsFailed, float64(n.ops.pullsFailed.Load()))
	counter(descPulledBytes, float64(n.pulledBytes.Load()))
	counter(descPullDelta, float64(n.pulledDelta.Load()))
	counter(descPullReused, float64(n.pulledReused.Load()))
	counter(descServedBytes, float64(c.host.ServedBytes()))
	counter(descServedChunks, float64(c.host.ServedChunks()))

	if st, ok := c.storeStats(); ok {
		gauge(descStoreChunks, float64(st.Chunks))
		gauge(descStoreChunkBytes, float64(st.ChunkBytes))
		gauge(descStoreVersions, float64(st.Versions))
		gauge(descStoreDatasets, float64(st.Datasets))
	}
	direct, cached := c.store.PackWrites()
	counter(descPackWrites, float64(direct), "direct")
	counter(descPackWrites, float64(cached), "page_cache")
	hints := c.store.LocationHints()
	gauge(descHintsHeld, float64(hints.Held))
	counter(descHintReads, float64(hints.Hits), "hit")
	counter(descHintReads, float64(hints.Stale), "stale")
	counter(descHintReads, float64(hints.Misses), "miss")
	if !c.db.IsClosed() {
		lsm, vlog := c.db.Size()
		gauge(descStoreDiskBytes, float64(lsm), "lsm")
		gauge(descStoreDiskBytes, float64(vlog), "vlog")
	}

	if !n.cfg.RegistryOnly && !c.db.IsClosed() {
		if fs, err := n.Follows(); err == nil {
			counts := map[string]int{}
			for _, f := range fs {
				counts[f.State]++
			}
			for _, s := range followStates {
				gauge(descFollows, float64(counts[s]), s)
			}
		}
	}

	for k, v := range n.accessDecisionCounts() {
		counter(descGrantDecisions, float64(v), k[0], k[1])
	}
	if l := n.ops.limiter; l != nil {
		gauge(descRateClients, float64(l.clients()))
	}

	b := func(v bool) float64 {
		if v {
			return 1
		}
		return 0
	}
	d := n.diskState()
	gauge(descDiskFree, float64(d.Free))
	gauge(descDiskFloor, float64(d.Floor))
	gauge(descDiskLow, b(d.Low))
	gauge(descStoreReadOnly, b(d.ReadOnly))
	counter(descSpaceRefused, float64(d.Refused))
	counter(descCorruptServed, float64(c.host.CorruptChunks()))
	gauge(descDamaged, float64(len(c.store.Damaged())))
	u := &n.upkeep
	counter(descVerifies, float64(u.verifies.Load()))
	counter(descRepaired, float64(u.repaired.Load()))
	counter(descVlogTruncated, float64(u.truncations.Load()))
	counter(descGCRuns, float64(u.gcs.Load()))
	counter(descGCChunks, float64(u.gcChunks.Load()))
	counter(descGCBytes, float64(u.gcBytes.Load()))
	c.collectTransfer(ch)
}

// storeStats returns the store's counts, recounted at most every
// storeStatsTTL; false if they cannot be had (a store closing).
func (c *nodeCollector) storeStats() (exchange.Stats, bool) {
	c.statsMu.Lock()
	defer c.statsMu.Unlock()
	if !c.statsAt.IsZero() && time.Since(c.statsAt) < storeStatsTTL {
		return c.stats, true
	}
	if c.db.IsClosed() {
		return exchange.Stats{}, false
	}
	st, err := c.store.Stats()
	if err != nil {
		return exchange.Stats{}, false
	}
	c.stats, c.statsAt = st, time.Now()
	return st, true
}

// maxRouteLabels bounds the route label's values: patterns are a fixed
// set, but a guard costs nothing.
const maxRouteLabels = 200

// routeLabel names a request's route for the HTTP metrics: the ServeMux
// pattern it matched, "unmatched" (404/405), "redirect" (the mux's path
// cleaning, whose "pattern" is the client's path), or "preflight".
func (n *Node) routeLabel(r *http.Request, code int) string {
	p := r.Pattern
	switch {
	case p == "":
		return "unmatched"
	case code == http.StatusMovedPermanently || code == http.StatusTemporaryRedirect || code == http.StatusPermanentRedirect:
		return "redirect"
	}
	n.ops.routesMu.Lock()
	defer n.ops.routesMu.Unlock()
	if n.ops.routes == nil {
		n.ops.routes = map[string]bool{}
	}
	if !n.ops.routes[p] {
		if len(n.ops.routes) >= maxRouteLabels {
			return "other"
		}
		n.ops.routes[p] = true
	}
	return p
}

// instrument counts and times every API request by route and status.
// mux, if not nil, names the route of a request refused before it reached
// the mux (a 429), if that route has been served before.
func (n *Node) instrument(mux *http.ServeMux, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		h.ServeHTTP(sw, r)
		code := sw.code
		if code == 0 {
			code = http.StatusOK
		}
		var route string
		switch {
		case isPreflight(r):
			route = "preflight"
		case r.Pattern == "" && code == http.StatusTooManyRequests:
			route = "rate_limited"
			if mux != nil {
				// Only a pattern already seen served: for a path that needs
				// cleaning the mux returns the client's path instead.
				if _, p := mux.Handler(r); n.knownRoute(p) {
					route = p
				}
			}
		default:
			route = n.routeLabel(r, code)
		}
		n.ops.httpRequests.WithLabelValues(route, strconv.Itoa(code)).Inc()
		n.ops.httpDuration.WithLabelValues(route).Observe(time.Since(start).Seconds())
	})
}

func (n *Node) knownRoute(p string) bool {
	n.ops.routesMu.Lock()
	defer n.ops.routesMu.Unlock()
	return n.ops.routes[p]
}

// statusWriter records the status code a handler sends. It keeps Flush
// (the pull endpoint streams NDJSON) and Unwrap (for
// http.ResponseController).
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 && code >= 200 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Flush() {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	http.NewResponseController(w.ResponseWriter).Flush()
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
