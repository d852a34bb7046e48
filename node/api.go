package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/exchange"
)

// The local HTTP API. Read endpoints are public (catalog metadata is public
// inside the federation); anything that changes the node needs the admin
// token that the daemon writes, mode 0600, into its home at each start.
//
//	GET  /api/v1/status
//	GET  /api/v1/datasets
//	GET  /api/v1/datasets/{org}/{name}
//	GET  /api/v1/datasets/{org}/{name}/versions/{version}           version: N or "latest"
//	GET  /api/v1/datasets/{org}/{name}/versions/{version}/content   bytes, verified; errors in the Nii-Error trailer
//	POST /api/v1/datasets/{org}/{name}/versions                     admin; body = the file, metadata in the query
//
// docs/api.md documents each.

// Status is what GET /api/v1/status returns.
type Status struct {
	ID           nii.NodeID        `json:"id"`
	Org          string            `json:"org"`
	OrgName      string            `json:"org_name,omitempty"`
	Federation   string            `json:"federation"`
	RegistryOnly bool              `json:"registry_only"`
	Addresses    map[string]string `json:"addresses"`
	Uptime       string            `json:"uptime"`
	Store        exchange.Stats    `json:"store"`
	P2PAddrs     []string          `json:"p2p_addrs"`
	Members      int               `json:"members"` // live gossip members, this node included
	Catalog      CatalogStats      `json:"catalog"`
	Version      string            `json:"version"`
}

// CatalogStats summarises this node's view of the federated catalog.
type CatalogStats struct {
	Datasets int              `json:"datasets"` // searchable adverts
	Origins  int              `json:"origins"`  // nodes records came from
	Applied  int64            `json:"applied"`  // records accepted since start
	Rejected map[string]int64 `json:"rejected"` // records refused since start, by reason
}

// VersionInfo describes one stored version.
type VersionInfo struct {
	Ref string `json:"ref"` // org/name@N
	exchange.VersionRecord
	Version uint64 `json:"version"`
}

// DatasetInfo describes one dataset held and its versions, oldest first.
type DatasetInfo struct {
	ID       string        `json:"id"` // org/name
	Latest   uint64        `json:"latest"`
	Role     string        `json:"role,omitempty"` // "publisher" (this node's) or "replica" (pulled)
	Follow   *Follow       `json:"follow,omitempty"`
	Versions []VersionInfo `json:"versions"`
}

// APIError is the body of every error response.
type APIError struct {
	Error string `json:"error"`
	Code  string `json:"code"` // invalid, not_found, exists, unauthorized, conflict, unavailable, internal
}

// BuildVersion is set by the linker (-X) for release builds.
var BuildVersion = "dev"

func versionInfo(rec *exchange.VersionRecord) VersionInfo {
	return VersionInfo{Ref: rec.Ref.String(), VersionRecord: *rec, Version: rec.Ref.Version}
}

func (n *Node) startAPI() error {
	ln, err := net.Listen("tcp", n.cfg.API)
	if err != nil {
		return fmt.Errorf("api listen on %s: %w", n.cfg.API, err)
	}
	n.apiLn = ln
	if n.apiToken, err = newToken(); err != nil {
		return err
	}
	// The token first, then the address: a CLI that finds the address can
	// always find the matching token.
	if err := writeFileAtomic(filepath.Join(n.cfg.Home, TokenFile), []byte(n.apiToken+"\n"), 0o600); err != nil {
		return fmt.Errorf("write admin token: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(n.cfg.Home, APIFile), []byte("http://"+ln.Addr().String()+"\n"), 0o644); err != nil {
		return fmt.Errorf("write api address: %w", err)
	}
	n.apiSrv = &http.Server{
		Handler:           n.apiHandler(),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(n.log.Handler(), slog.LevelDebug),
	}
	srv := n.apiSrv
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("api server stopped", slog.String(LogErr, err.Error()))
		}
	}()
	return nil
}

// APIAddr returns the local API's base URL ("http://127.0.0.1:port").
func (n *Node) APIAddr() string {
	if n.apiLn == nil {
		return ""
	}
	return "http://" + n.apiLn.Addr().String()
}

// AdminToken returns the token that authorises changes through the API.
func (n *Node) AdminToken() string { return n.apiToken }

func (n *Node) apiHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/status", n.handleStatus)
	mux.HandleFunc("GET /api/v1/datasets", n.handleDatasets)
	mux.HandleFunc("GET /api/v1/datasets/{org}/{name}", n.handleDataset)
	mux.HandleFunc("GET /api/v1/datasets/{org}/{name}/versions/{version}", n.handleVersion)
	mux.HandleFunc("GET /api/v1/datasets/{org}/{name}/versions/{version}/content", n.handleContent)
	mux.HandleFunc("POST /api/v1/datasets/{org}/{name}/versions", n.admin(n.handlePublish))
	mux.HandleFunc("POST /api/v1/datasets/{org}/{name}/withdraw", n.admin(n.handleWithdraw))
	mux.HandleFunc("GET /api/v1/catalog", n.handleCatalog)
	mux.HandleFunc("GET /api/v1/catalog/{org}/{name}", n.handleCatalogDataset)
	mux.HandleFunc("GET /api/v1/peers", n.handlePeers)
	mux.HandleFunc("POST /api/v1/pull", n.admin(n.handlePull))
	mux.HandleFunc("GET /api/v1/follows", n.handleFollows)
	mux.HandleFunc("POST /api/v1/follows", n.admin(n.handleFollow))
	mux.HandleFunc("DELETE /api/v1/follows/{org}/{name}", n.admin(n.handleUnfollow))
	n.authRoutes(mux)
	n.openDataRoutes(mux)
	n.opsRoutes(mux)
	return n.frontDoor(mux)
}

// admin wraps a handler that changes the node: it runs only with the
// local admin token, compared in constant time.
func (n *Node) admin(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !n.hasAdminToken(r) {
			writeError(w, http.StatusUnauthorized, "unauthorized", "this action needs the node's admin token (the nii CLI reads it from the home's "+TokenFile+")")
			return
		}
		h(w, r)
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func writeError(w http.ResponseWriter, code int, kind, msg string) {
	writeJSON(w, code, APIError{Error: msg, Code: kind})
}

// errStatus maps an error to an HTTP status and an API error code by what
// it wraps. It is the one place that mapping lives.
func errStatus(err error) (int, string) {
	switch {
	case errors.Is(err, nii.ErrInvalid):
		return http.StatusBadRequest, "invalid"
	case errors.Is(err, nii.ErrRefused):
		return http.StatusForbidden, "refused"
	case errors.Is(err, exchange.ErrNoProvider):
		return http.StatusServiceUnavailable, "unavailable"
	case errors.Is(err, nii.ErrNotFound):
		return http.StatusNotFound, "not_found"
	case errors.Is(err, nii.ErrExists):
		return http.StatusConflict, "exists"
	case errors.Is(err, ErrRegistryOnly):
		return http.StatusConflict, "conflict"
	}
	return http.StatusInternalServerError, "internal"
}

// writeErr writes err as an API error response.
func writeErr(w http.ResponseWriter, err error) {
	code, kind := errStatus(err)
	writeError(w, code, kind, err.Error())
}

func (n *Node) handleStatus(w http.ResponseWriter, r *http.Request) {
	st, err := n.Status()
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

// Status reports the node's identity, addresses and counts.
func (n *Node) Status() (*Status, error) {
	stats, err := n.store.Stats()
	if err != nil {
		return nil, err
	}
	return &Status{
		ID:           n.id,
		Org:          n.cfg.Org,
		OrgName:      n.cfg.OrgName,
		Federation:   n.cfg.Federation,
		RegistryOnly: n.cfg.RegistryOnly,
		Addresses:    map[string]string{"api": n.APIAddr(), "gossip": n.gossip.Addr()},
		P2PAddrs:     n.host.Addrs(),
		Members:      n.gossip.NumMembers(),
		Catalog: CatalogStats{
			Datasets: n.catalog.Len(), Origins: n.catalog.Origins(),
			Applied: n.catalog.Applied(), Rejected: n.catalog.Rejected(),
		},
		Uptime:  time.Since(n.startAt).Round(time.Second).String(),
		Store:   stats,
		Version: BuildVersion,
	}, nil
}

func (n *Node) handleDatasets(w http.ResponseWriter, r *http.Request) {
	ds, err := n.Datasets()
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, ds)
}

// Datasets lists what this node holds — its own datasets and replicas —
// and what it follows, with sync state.
func (n *Node) Datasets() ([]DatasetInfo, error) {
	recs, err := n.store.Versions(nil)
	if err != nil {
		return nil, err
	}
	ds := groupDatasets(recs)
	follows, err := n.Follows()
	if err != nil {
		return nil, err
	}
	byID := map[string]*Follow{}
	for i := range follows {
		byID[follows[i].Dataset.String()] = &follows[i]
	}
	for i := range ds {
		ds[i].Role = "replica"
		if len(ds[i].Versions) > 0 && ds[i].Versions[0].Publisher == n.id {
			ds[i].Role = "publisher"
		}
		if f := byID[ds[i].ID]; f != nil {
			ds[i].Follow = f
			delete(byID, ds[i].ID)
		}
	}
	for _, f := range follows {
		if byID[f.Dataset.String()] != nil {
			ds = append(ds, DatasetInfo{ID: f.Dataset.String(), Role: "replica", Follow: byID[f.Dataset.String()], Versions: []VersionInfo{}})
		}
	}
	return ds, nil
}

func groupDatasets(recs []*exchange.VersionRecord) []DatasetInfo {
	out := []DatasetInfo{}
	for _, rec := range recs {
		id := rec.Ref.Dataset.String()
		if len(out) == 0 || out[len(out)-1].ID != id {
			out = append(out, DatasetInfo{ID: id})
		}
		d := &out[len(out)-1]
		d.Versions = append(d.Versions, versionInfo(rec))
		d.Latest = max(d.Latest, rec.Ref.Version)
	}
	return out
}

func datasetFromPath(r *http.Request) (nii.DatasetID, error) {
	return nii.ParseDatasetID(r.PathValue("org") + "/" + r.PathValue("name"))
}

func refFromPath(r *http.Request) (nii.Ref, error) {
	d, err := datasetFromPath(r)
	if err != nil {
		return nii.Ref{}, err
	}
	v := r.PathValue("version")
	if v == "latest" {
		return nii.Ref{Dataset: d}, nil
	}
	return nii.ParseRef(d.String() + "@" + v)
}

func (n *Node) handleDataset(w http.ResponseWriter, r *http.Request) {
	d, err := datasetFromPath(r)
	if err != nil {
		writeErr(w, err)
		return
	}
	recs, err := n.store.Versions(&d)
	if err != nil {
		writeErr(w, err)
		return
	}
	if len(recs) == 0 {
		writeErr(w, fmt.Errorf("dataset %s: %w", d, nii.ErrNotFound))
		return
	}
	writeJSON(w, http.StatusOK, groupDatasets(recs)[0])
}

// versionFromPath looks up the stored version the request path names.
func (n *Node) versionFromPath(r *http.Request) (*exchange.VersionRecord, error) {
	ref, err := refFromPath(r)
	if err != nil {
		return nil, err
	}
	return n.store.Version(ref)
}

func (n *Node) handleVersion(w http.ResponseWriter, r *http.Request) {
	rec, err := n.versionFromPath(r)
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, versionInfo(rec))
}

// TrailerError carries an error that happened after a content response
// started: the client must treat the body as failed if it is set.
const TrailerError = "Nii-Error"

func (n *Node) handleContent(w http.ResponseWriter, r *http.Request) {
	rec, err := n.versionFromPath(r)
	if err != nil {
		writeErr(w, err)
		return
	}
	// Restricted data leaves a node over HTTP only to its own operator:
	// other readers (a dashboard, a harvester, the relay) need a grant and
	// the libp2p protocols, which check it.
	if rec.Meta.Access == nii.AccessRestricted && !n.hasAdminToken(r) {
		writeError(w, http.StatusForbidden, "refused", fmt.Sprintf("%s is restricted: its content is served over this API only with the node's admin token (other members pull it with a grant)", rec.Ref))
		return
	}
	h := w.Header()
	h.Set("Trailer", TrailerError)
	h.Set("Content-Type", rec.Meta.MediaType)
	h.Set("Nii-Ref", rec.Ref.String())
	h.Set("Nii-Size", strconv.FormatInt(rec.Size, 10))
	h.Set("Nii-Manifest", rec.Manifest.String())
	w.WriteHeader(http.StatusOK)
	if _, err := n.store.WriteTo(r.Context(), rec, w); err != nil {
		n.log.Error("export failed", slog.String(LogDataset, rec.Ref.String()), slog.String(LogErr, err.Error()))
		h.Set(TrailerError, err.Error())
	}
}

func (n *Node) handlePublish(w http.ResponseWriter, r *http.Request) {
	d, err := datasetFromPath(r)
	if err != nil {
		writeErr(w, err)
		return
	}
	if d.Org != n.cfg.Org {
		writeErr(w, fmt.Errorf("%w dataset %s: this node publishes for org %q only", nii.ErrInvalid, d, n.cfg.Org))
		return
	}
	q := r.URL.Query()
	access, err := nii.ParseAccess(q.Get("access"))
	if err != nil && q.Get("access") != "" {
		writeErr(w, err)
		return
	}
	if q.Get("access") == "" {
		access = ""
	}
	req := PublishRequest{
		Name:     d.Name,
		Filename: filepath.Base(q.Get("filename")),
		Meta: nii.Metadata{
			Title:       q.Get("title"),
			Description: q.Get("description"),
			Licence:     q.Get("licence"),
			Keywords:    q["keyword"],
			Themes:      q["theme"],
			Access:      access,
			ConformsTo:  q.Get("conforms_to"),
			MediaType:   q.Get("media_type"),
		},
	}
	if req.Filename == "." || req.Filename == string(os.PathSeparator) {
		req.Filename = ""
	}
	rec, err := n.Publish(r.Context(), r.Body, req)
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, versionInfo(rec))
}
