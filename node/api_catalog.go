package node

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/exchange"
	"github.com/nii-uk/nii/registry"
)

// The federated catalog over the API:
//
//	GET  /api/v1/catalog?q=&publisher=&theme=&keyword=&licence=&format=&access=&conforms_to=&verified=&sort=&offset=&limit=
//	GET  /api/v1/catalog/{org}/{name}
//	GET  /api/v1/peers
//	POST /api/v1/datasets/{org}/{name}/withdraw      admin

// CatalogHit is one dataset in search results.
type CatalogHit struct {
	ID        string       `json:"id"` // org/name
	Version   uint64       `json:"version"`
	Manifest  nii.Hash     `json:"manifest"`
	Publisher nii.NodeID   `json:"publisher_node"`
	Verified  bool         `json:"verified"`
	Online    bool         `json:"online"`
	LastSeen  time.Time    `json:"last_seen"`
	Score     float64      `json:"score"`
	Meta      nii.Metadata `json:"meta"`
}

// CatalogResult is a page of search results with facet counts.
type CatalogResult struct {
	Total  int                              `json:"total"`
	Offset int                              `json:"offset"`
	Limit  int                              `json:"limit"`
	Hits   []CatalogHit                     `json:"hits"`
	Facets map[string][]registry.FacetCount `json:"facets"`
}

// Provider is a node that serves a version of a dataset.
type Provider struct {
	Node     nii.NodeID `json:"node"`
	Org      string     `json:"org,omitempty"`
	Version  uint64     `json:"version"`
	Replica  bool       `json:"replica"`
	Verified bool       `json:"verified"`
	Online   bool       `json:"online"`
	LastSeen time.Time  `json:"last_seen"`
}

// CatalogDataset is what the federation knows of one dataset.
type CatalogDataset struct {
	ID        string       `json:"id"`
	Version   uint64       `json:"version"`
	Manifest  nii.Hash     `json:"manifest"`
	Publisher nii.NodeID   `json:"publisher_node"`
	Verified  bool         `json:"verified"`
	Online    bool         `json:"online"`
	LastSeen  time.Time    `json:"last_seen"`
	Withdrawn bool         `json:"withdrawn,omitempty"`
	Signed    time.Time    `json:"signed"`
	Meta      nii.Metadata `json:"meta"`
	Providers []Provider   `json:"providers"`
	// Others lists other origins that advertise the same dataset ID (an
	// unverified claim beside a verified one, say).
	Others []Provider   `json:"other_claims,omitempty"`
	Local  *DatasetInfo `json:"local,omitempty"` // the versions this node holds
}

// PeerInfo is a member as 'nii peers' shows it.
type PeerInfo struct {
	registry.Peer
	Datasets int `json:"datasets"`
}

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

// Search queries the federated catalog.
func (n *Node) Search(q registry.Query) CatalogResult {
	res := n.catalog.Search(q)
	out := CatalogResult{Total: res.Total, Offset: q.Offset, Limit: q.Limit, Hits: []CatalogHit{}, Facets: res.Facets}
	for _, h := range res.Hits {
		a := h.Doc.Advert
		online, seen := n.presence(a.Origin)
		out.Hits = append(out.Hits, CatalogHit{
			ID: a.Dataset.String(), Version: a.Version, Manifest: a.Manifest, Publisher: a.Origin,
			Verified: h.Doc.Verified, Online: online, LastSeen: seen, Score: h.Score, Meta: a.Meta,
		})
	}
	return out
}

func parseQuery(r *http.Request) (registry.Query, error) {
	v := r.URL.Query()
	q := registry.Query{
		Text:       v.Get("q"),
		Publisher:  v["publisher"],
		Theme:      v["theme"],
		Keyword:    v["keyword"],
		Licence:    v["licence"],
		Format:     v["format"],
		Access:     v["access"],
		ConformsTo: v["conforms_to"],
		Sort:       v.Get("sort"),
		Limit:      20,
	}
	switch q.Sort {
	case "", "relevance", "modified", "title":
	default:
		return q, fmt.Errorf("%w sort %q: want relevance, modified or title", nii.ErrInvalid, q.Sort)
	}
	if s := v.Get("verified"); s != "" {
		b, err := strconv.ParseBool(s)
		if err != nil {
			return q, fmt.Errorf("%w verified %q: want true or false", nii.ErrInvalid, s)
		}
		q.Verified = &b
	}
	for name, dst := range map[string]*int{"offset": &q.Offset, "limit": &q.Limit} {
		if s := v.Get(name); s != "" {
			k, err := strconv.Atoi(s)
			if err != nil || k < 0 || (name == "limit" && (k == 0 || k > 1000)) {
				return q, fmt.Errorf("%w %s %q: want a whole number (limit 1 to 1000)", nii.ErrInvalid, name, s)
			}
			*dst = k
		}
	}
	if len(q.Text) > 1000 {
		return q, fmt.Errorf("%w q: longer than 1000 bytes", nii.ErrInvalid)
	}
	return q, nil
}

func (n *Node) handleCatalogDataset(w http.ResponseWriter, r *http.Request) {
	d, err := datasetFromPath(r)
	if err != nil {
		writeErr(w, err)
		return
	}
	cd, err := n.LookupDataset(d)
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
func (n *Node) LookupDataset(d nii.DatasetID) (*CatalogDataset, error) {
	var local *DatasetInfo
	if n.store != nil {
		if recs, err := n.store.Versions(&d); err == nil && len(recs) > 0 {
			local = &groupDatasets(recs)[0]
		}
	}
	src, err := n.catalog.Sources(nii.Ref{Dataset: d}, n.online)
	if errors.Is(err, registry.ErrUnlisted) {
		if local != nil {
			return &CatalogDataset{ID: d.String(), Version: local.Latest, Local: local, Providers: []Provider{}}, nil
		}
		return nil, fmt.Errorf("dataset %s: %w in the federated catalog", d, exchange.ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	pub := src.Publisher
	a := pub.Advert
	online, seen := n.presence(a.Origin)
	cd := &CatalogDataset{
		ID: d.String(), Version: a.Version, Manifest: a.Manifest, Publisher: a.Origin, Verified: pub.Verified,
		Online: online, LastSeen: seen, Withdrawn: a.Withdrawn, Signed: a.Signed, Meta: a.Meta,
		Providers: []Provider{}, Local: local,
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
func (n *Node) provider(e registry.Entry) Provider {
	on, ls := n.presence(e.Advert.Origin)
	p := Provider{Node: e.Advert.Origin, Version: e.Advert.Version, Replica: e.Advert.Replica, Verified: e.Verified, Online: on, LastSeen: ls}
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
func (n *Node) PeerList() []PeerInfo {
	counts := n.catalog.CountByOrigin()
	creds := n.catalog.Credentials()
	out := []PeerInfo{}
	for _, p := range n.peers.List() {
		// A member is verified when the credential its records carry
		// proves, against this node's anchors, the org it claims.
		if cred := creds[p.ID]; cred != "" {
			org, err := n.verifyCredential(cred, p.ID)
			p.Verified = err == nil && org == p.Org
		}
		out = append(out, PeerInfo{Peer: p, Datasets: counts[p.ID]})
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
		if errors.Is(err, ErrNotPublisher) {
			writeError(w, http.StatusForbidden, "forbidden", err.Error())
			return
		}
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"withdrawn": d.String()})
}
