package node

import (
	_ "embed"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"

	"github.com/nii-uk/nii/node/api"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// The operator's endpoints and the API's front door:
//
//	GET /healthz        the process is up: 200 "ok"
//	GET /readyz         200 when the store is open and gossip has joined; 503 and the reason otherwise
//	GET /metrics        Prometheus text exposition
//	GET /openapi.json   the OpenAPI 3.1 description of the whole API
//	GET /debug/pprof/   the Go profiler, admin only (transfer.go)
//
// Every request passes the front door: metrics, CORS for public reads, and
// a per-address rate limit for requests without the admin token.
// docs/operations.md says how to run it.

// opsState is what the ops endpoints and the front door keep per node.
type opsState struct {
	reg          *prometheus.Registry
	httpRequests *prometheus.CounterVec
	httpDuration *prometheus.HistogramVec
	limiter      *ipLimiter     // nil: no limit
	parts        *nodeCollector // the node's parts, captured at start

	routesMu sync.Mutex
	routes   map[string]bool // route labels in use

	joined atomic.Bool // a configured join reached a member

	pullsStarted, pullsCompleted, pullsFailed atomic.Int64
}

// opsRoutes serves what an operator's tooling expects: health, readiness,
// metrics and the OpenAPI document.
func (n *Node) opsRoutes(mux *http.ServeMux) {
	n.ops.reg = n.newMetrics()
	n.ops.limiter = newIPLimiter(n.cfg.HTTP)
	mux.HandleFunc("GET /healthz", handleHealthz)
	mux.HandleFunc("GET /readyz", n.handleReadyz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(n.ops.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /openapi.json", handleOpenAPI)
	n.pprofRoutes(mux)
}

// frontDoor wraps the API with what every request passes through, outside
// in: metrics, CORS, the rate limit.
func (n *Node) frontDoor(h http.Handler) http.Handler {
	mux, _ := h.(*http.ServeMux)
	return n.instrument(mux, cors(n.rateLimit(n.withPages(h))))
}

func handleHealthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Write([]byte("ok\n"))
}

func (n *Node) handleReadyz(w http.ResponseWriter, r *http.Request) {
	rd := n.Readiness()
	code := http.StatusOK
	if !rd.Ready {
		code = http.StatusServiceUnavailable
	}
	writeJSON(w, code, rd)
}

// Readiness says whether the node can serve the federation: its store is
// open and, if it was given members to join, it has joined one of them (a
// node with none is the federation's first member, ready alone).
func (n *Node) Readiness() api.Readiness {
	rd := api.Readiness{Ready: true, Checks: map[string]string{}}
	fail := func(check, reason string) {
		rd.Checks[check] = reason
		if rd.Ready {
			rd.Ready, rd.Reason = false, check+": "+reason
		}
	}
	parts := n.ops.parts
	if parts == nil || parts.db.IsClosed() {
		fail("store", "closed")
	} else {
		rd.Checks["store"] = "open"
	}
	switch d := n.diskState(); {
	case n.disk == nil:
	case d.ReadOnly:
		fail("disk", fmt.Sprintf("read-only: started with %d MB free, below the %d MB floor ([store] min_free); free space and restart", d.Free>>20, d.Floor>>20))
	case d.Low:
		fail("disk", fmt.Sprintf("low: %d MB free, below the %d MB floor ([store] min_free): publishes and pulls are refused", d.Free>>20, d.Floor>>20))
	default:
		rd.Checks["disk"] = fmt.Sprintf("%d MB free, floor %d MB", d.Free>>20, d.Floor>>20)
	}
	switch {
	case parts == nil:
		fail("gossip", "not started")
	case len(n.cfg.Gossip.Join) == 0:
		rd.Checks["gossip"] = fmt.Sprintf("no join addresses: a first member, ready alone (%d live members)", parts.gossip.NumMembers())
	case n.ops.joined.Load() || parts.gossip.NumMembers() > 1:
		rd.Checks["gossip"] = fmt.Sprintf("joined, %d members", parts.gossip.NumMembers())
	default:
		fail("gossip", fmt.Sprintf("not joined yet: no member reached of %v", n.cfg.Gossip.Join))
	}
	return rd
}

//go:embed openapi.json
var openAPIDoc []byte

func handleOpenAPI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Write(openAPIDoc)
}
