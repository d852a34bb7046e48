package node

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/node/api"
	"github.com/nii-uk/nii/registry"
	"github.com/nii-uk/nii/registry/opendata"
	"github.com/nii-uk/nii/registry/search"
)

// The federated catalog over the API:
//
//	GET  /api/v1/catalog?q=&publisher=&theme=&keyword=&licence=&format=&access=&conforms_to=&verified=&sort=&offset=&limit=
//	GET  /api/v1/catalog/{org}/{name}
//	GET  /api/v1/peers
//	POST /api/v1/datasets/{org}/{name}/withdraw      admin

// presence says whether a node is up and when it was last seen.
func (n *Node) presence(id nii.NodeID) (bool, time.Time) {
	if id == n.id {
		return true, time.Now().UTC()
	}
	p, ok := n.peers.Get(id)
	if !ok {
		return false, time.Time{}
	}
	return p.Online(), p.LastSeen
}

func (n *Node) handleCatalog(w http.ResponseWriter, r *http.Request) {
	q, err := parseQuery(r)
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, n.Search(q))
}

// publicQuery applies the catalog policy's default to a query of a public
// view: on a node that requires verified publishers, only verified records
// are listed unless the query asks for unverified ones (verified=false).
func (n *Node) publicQuery(q search.Query) search.Query {
	if q.Verified == nil && n.catalog.RequireVerified() {
		t := true
		q.Verified = &t
	}
	return q
}

// claimOf returns "" if public views list e under its dataset's own name,
// else the ID that names its claim apart.
func (n *Node) claimOf(e registry.Entry) string {
	if n.catalog.Listed(e) {
		return ""
	}
	return registry.ClaimID(e.Advert.Origin)
}

// Search queries the federated catalog.
func (n *Node) Search(q search.Query) api.CatalogResult {
	q = n.publicQuery(q)
	res := n.catalog.Search(q)
	out := api.CatalogResult{Total: res.Total, Offset: q.Offset, Limit: q.Limit, Hits: []api.CatalogHit{}, Facets: facetCounts(res.Facets)}
	for _, h := range res.Hits {
		a := h.Doc.Advert
		online, seen := n.presence(a.Origin)
		out.Hits = append(out.Hits, api.CatalogHit{
			ID: a.Dataset.String(), Version: a.Version, Manifest: a.Manifest, Publisher: a.Origin,
			Verified: h.Doc.Verified, Online: online, LastSeen: seen, Score: h.Score, Meta: a.Meta,
			Claim: n.claimOf(registry.Entry{Advert: a, Verified: h.Doc.Verified}),
		})
	}
	return out
}

func parseQuery(r *http.Request) (search.Query, error) { return opendata.CatalogQuery(r.URL.Query()) }

func (n *Node) handleCatalogDataset(w http.ResponseWriter, r *http.Request) {
	d, err := datasetFromPath(r)
	if err != nil {
		writeErr(w, err)
		return
	}
	var opts []registry.SourceOption
	if v := r.URL.Query().Get("verified"); v != "" {
		// verified=false asks for the unverified claims public views keep
		// apart: the only claim is then shown even if nothing proves it.
		b, err := strconv.ParseBool(v)
		if err != nil {
			writeErr(w, fmt.Errorf("%w verified %q: want true or false", nii.ErrInvalid, v))
			return
		}
		if !b {
			opts = append(opts, registry.AllowUnverified())
		}
	}
	cd, err := n.LookupDataset(d, opts...)
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, cd)
}

// LookupDataset returns what the federation knows of a dataset: the
// publisher's newest advert, chosen by the catalog policy exactly as pull
// chooses it (so two unverified claims are ErrAmbiguous here too), the
// providers of its latest version, other claims, and the versions held
// here.
func (n *Node) LookupDataset(d nii.DatasetID, opts ...registry.SourceOption) (*api.CatalogDataset, error) {
	var local *api.DatasetInfo
	if n.store != nil {
		if recs, err := n.store.Versions(&d); err == nil && len(recs) > 0 {
			local = &groupDatasets(recs)[0]
		}
	}
	src, err := n.catalog.Sources(nii.Ref{Dataset: d}, n.online, opts...)
	if errors.Is(err, registry.ErrUnlisted) {
		if local != nil {
			return &api.CatalogDataset{ID: d.String(), Version: local.Latest, Local: local, Providers: []api.Provider{}}, nil
		}
		return nil, fmt.Errorf("dataset %s: %w in the federated catalog", d, nii.ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	pub := src.Publisher
	a := pub.Advert
	online, seen := n.presence(a.Origin)
	cd := &api.CatalogDataset{
		ID: d.String(), Version: a.Version, Manifest: a.Manifest, Publisher: a.Origin, Verified: pub.Verified,
		Online: online, LastSeen: seen, Withdrawn: a.Withdrawn, Signed: a.Signed, Meta: a.Meta,
		Providers: []api.Provider{}, Local: local,
	}
	for _, e := range src.Providers {
		cd.Providers = append(cd.Providers, n.provider(e))
	}
	for _, e := range src.Others {
		cd.Others = append(cd.Others, n.provider(e))
	}
	return cd, nil
}

// provider describes a catalog entry's origin as a provider.
func (n *Node) provider(e registry.Entry) api.Provider {
	on, ls := n.presence(e.Advert.Origin)
	p := api.Provider{Node: e.Advert.Origin, Version: e.Advert.Version, Replica: e.Advert.Replica, Verified: e.Verified, Online: on, LastSeen: ls}
	if peer, ok := n.peers.Get(e.Advert.Origin); ok {
		p.Org = peer.Org
	} else if e.Advert.Origin == n.id {
		p.Org = n.cfg.Org
	}
	return p
}

func (n *Node) handlePeers(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, n.PeerList())
}

// PeerList returns every member known, with how many datasets each
// advertises.
func (n *Node) PeerList() []api.PeerInfo {
	counts := n.catalog.CountByOrigin()
	creds := n.catalog.Credentials()
	out := []api.PeerInfo{}
	for _, p := range n.peers.List() {
		// A member is verified when the credential its records carry
		// proves, against this node's anchors, the org it claims.
		if cred := creds[p.ID]; cred != "" {
			org, err := n.verifyCredential(cred, p.ID)
			p.Verified = err == nil && org == p.Org
		}
		pi := peerInfo(p, counts[p.ID])
		if n.host != nil {
			pi.Transports = n.host.PeerTransports(p.ID)
		}
		out = append(out, pi)
	}
	return out
}

func (n *Node) handleWithdraw(w http.ResponseWriter, r *http.Request) {
	d, err := datasetFromPath(r)
	if err != nil {
		writeErr(w, err)
		return
	}
	if err := n.Withdraw(r.Context(), d); err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, api.WithdrawResult{Withdrawn: d.String()})
}
