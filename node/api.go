package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/exchange"
	"github.com/nii-uk/nii/node/api"
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

// BuildVersion is set by the linker (-X) for release builds.
var BuildVersion = "dev"

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
	n.startExportSocket()
	srv, limited := n.newAPIServer(ln)
	srv.Handler = n.trackRequests(n.apiHandler())
	n.apiSrv = srv
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if err := srv.Serve(limited); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("api server stopped", slog.String(nii.LogErr, err.Error()))
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
	mux.Handle("GET /api/v1/catalog/{org}/{name}", n.negotiated(http.HandlerFunc(n.handleCatalogDataset)))
	mux.HandleFunc("GET /api/v1/peers", n.handlePeers)
	mux.HandleFunc("POST /api/v1/pull", n.admin(n.handlePull))
	mux.HandleFunc("GET /api/v1/follows", n.handleFollows)
	mux.HandleFunc("POST /api/v1/follows", n.admin(n.handleFollow))
	mux.HandleFunc("DELETE /api/v1/follows/{org}/{name}", n.admin(n.handleUnfollow))
	n.queryRoutes(mux)
	n.authRoutes(mux)
	n.harmonyRoutes(mux)
	n.openDataRoutes(mux)
	n.opsRoutes(mux)
	n.storeRoutes(mux)
	n.problemRoutes(mux)
	return n.frontDoor(mux)
}

// admin wraps a handler that changes the node: it runs only with the
// local admin token, compared in constant time.
func (n *Node) admin(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !n.hasAdminToken(r) {
			writeErr(w, nii.Errorf(nii.ErrUnauthorized, "this action needs the node's admin token (the nii CLI reads it from the home's %s)", TokenFile))
			return
		}
		if err := n.writable(); err != nil && r.Method != http.MethodGet && r.Pattern != storeVerifyRoute {
			writeErr(w, err) // a read-only node changes nothing
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

// writeError writes an error response with an explicit status and code.
func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, api.APIError{Error: msg, Code: code})
}

// writeErr writes err as an API error response, its status and code by its
// kind.
func writeErr(w http.ResponseWriter, err error) {
	status, body := api.ErrorFor(err)
	writeJSON(w, status, body)
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
func (n *Node) Status() (*api.Status, error) {
	stats, err := n.store.Stats()
	if err != nil {
		return nil, err
	}
	return &api.Status{
		ID:           n.id,
		Org:          n.cfg.Org,
		OrgName:      n.cfg.OrgName,
		Federation:   n.cfg.Federation,
		RegistryOnly: n.cfg.RegistryOnly,
		Addresses:    map[string]string{"api": n.APIAddr(), "gossip": n.gossip.Addr()},
		P2PAddrs:     dialable(n.host.Addrs(), n.id),
		Members:      n.gossip.NumMembers(),
		Catalog: api.CatalogStats{
			Datasets: n.catalog.Len(), Origins: n.catalog.Origins(),
			Applied: n.catalog.Applied(), Rejected: n.catalog.Rejected(),
		},
		History:  n.history(),
		Uptime:   time.Since(n.startAt).Round(time.Second).String(),
		Store:    storeStats(stats),
		Disk:     n.diskState(),
		Version:  BuildVersion,
		Security: n.security(),
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
func (n *Node) Datasets() ([]api.DatasetInfo, error) {
	recs, err := n.store.Versions(nil)
	if err != nil {
		return nil, err
	}
	ds := groupDatasets(recs)
	follows, err := n.Follows()
	if err != nil {
		return nil, err
	}
	byID := map[string]*api.Follow{}
	for i := range follows {
		byID[follows[i].Dataset.String()] = n.followInfo(&follows[i])
	}
	for i := range ds {
		ds[i].Role = api.RoleReplica
		if len(ds[i].Versions) > 0 && ds[i].Versions[0].Publisher == n.id {
			ds[i].Role = api.RolePublisher
		}
		if f := byID[ds[i].ID]; f != nil {
			ds[i].Follow = f
			delete(byID, ds[i].ID)
		}
	}
	for _, f := range follows {
		if fi := byID[f.Dataset.String()]; fi != nil {
			ds = append(ds, api.DatasetInfo{ID: f.Dataset.String(), Role: api.RoleReplica, Follow: fi, Versions: []api.VersionInfo{}})
		}
	}
	n.markDamaged(ds)
	return ds, nil
}

func groupDatasets(recs []*exchange.VersionRecord) []api.DatasetInfo {
	out := []api.DatasetInfo{}
	for _, rec := range recs {
		id := rec.Ref.Dataset.String()
		if len(out) == 0 || out[len(out)-1].ID != id {
			out = append(out, api.DatasetInfo{ID: id})
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
	ds := groupDatasets(recs)
	n.markDamaged(ds)
	writeJSON(w, http.StatusOK, ds[0])
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
const TrailerError = api.TrailerError

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
		writeErr(w, nii.Errorf(nii.ErrRefused, "%s is restricted: its content is served over this API only with the node's admin token (other members pull it with a grant)", rec.Ref))
		return
	}
	h := w.Header()
	h.Set("Trailer", TrailerError)
	h.Set("Content-Type", rec.Meta.MediaType)
	h.Set(api.HeaderRef, rec.Ref.String())
	h.Set(api.HeaderSize, strconv.FormatInt(rec.Size, 10))
	h.Set(api.HeaderManifest, rec.Manifest.String())
	setDisposition(h, rec.Ref, rec.Meta)
	w.WriteHeader(http.StatusOK)
	if _, err := n.store.WriteTo(r.Context(), rec, n.streaming(w)); err != nil {
		n.log.Error("export failed", slog.String(nii.LogDataset, rec.Ref.String()), slog.String(nii.LogErr, err.Error()))
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
	o, err := api.ParsePublishQuery(r.URL.Query())
	if err != nil {
		writeErr(w, err)
		return
	}
	req := PublishRequest{Name: d.Name, Filename: o.Filename, Meta: o.Meta, Size: o.Size}
	rec, err := n.Publish(r.Context(), n.uploading(w, r), req)
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, versionInfo(rec))
}

// dialable gives each libp2p address its /p2p/<node ID>, so that it can be
// dialled as printed (a multiaddr without it names no peer).
func dialable(addrs []string, id nii.NodeID) []string {
	out := make([]string, 0, len(addrs))
	for _, a := range addrs {
		if !strings.Contains(a, "/p2p/") {
			a += "/p2p/" + string(id)
		}
		out = append(out, a)
	}
	return out
}
