package node

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/registry"
	"github.com/nii-uk/nii/registry/opendata"
	"github.com/nii-uk/nii/registry/search"
)

// The federated catalog in the formats existing tools speak (CKAN, DCAT,
// Data Packages), on every node, registry-only ones included, public and
// read-only. registry/opendata handles the requests over a small catalog
// interface; this file adapts the node's catalog, member table and store to
// it and mounts the handler. The download relay behind the formats'
// resource links is the node's own (relay.go). docs/opendata.md documents
// each route.
func (n *Node) openDataRoutes(mux *http.ServeMux) {
	od := opendata.NewHandler(odCatalog{n}, opendata.Config{
		Federation: n.cfg.Federation, Org: n.cfg.Org, OrgName: n.cfg.OrgName,
		Version: BuildVersion, Error: writeErr,
	})
	mux.Handle("/api/3/action/{action}", od)
	mux.Handle("GET /api/3", od)
	mux.Handle("GET /catalog", n.negotiated(od))
	mux.Handle("GET /catalog.jsonld", od)
	mux.Handle("GET /catalog.ttl", od)
	mux.Handle("GET /api/v1/datasets/{org}/{name}/dcat", od)
	mux.Handle("GET /api/v1/datasets/{org}/{name}/dcat.jsonld", od)
	mux.Handle("GET /api/v1/datasets/{org}/{name}/dcat.ttl", od)
	mux.Handle("GET /api/v1/datasets/{org}/{name}/datapackage.json", od)
	mux.Handle("GET /api/v1/datasets/{org}/{name}/versions/{version}/datapackage.json", od)
	mux.HandleFunc("GET /api/v1/datasets/{org}/{name}/versions/{version}/download", n.handleDownload)
}

// odCatalog is the node as registry/opendata's Catalog.
type odCatalog struct{ n *Node }

var _ opendata.Catalog = odCatalog{}

func (c odCatalog) Search(q search.Query) search.Result {
	return c.n.catalog.Search(c.n.publicQuery(q))
}

func (c odCatalog) Published(d nii.DatasetID) (*nii.Advert, bool, error) {
	e, err := c.n.publishedEntry(d)
	if err != nil {
		return nil, false, err
	}
	return e.Advert, e.Verified, nil
}

func (c odCatalog) Claims(d nii.DatasetID) []opendata.Claim {
	var out []opendata.Claim
	for _, e := range c.n.catalog.Lookup(d) {
		if !e.Advert.Withdrawn && !e.Advert.Replica {
			out = append(out, opendata.Claim{Advert: e.Advert, Verified: e.Verified, ID: c.n.claimOf(e)})
		}
	}
	return out
}

func (c odCatalog) PackageByUUID(id string) (nii.DatasetID, bool) { return c.n.catalog.ByAlias(id) }
func (c odCatalog) ListedThemes() map[string]int                  { return c.n.catalog.ListedThemes() }
func (c odCatalog) ListedKeywords() map[string]int                { return c.n.catalog.ListedKeywords() }

func (c odCatalog) ListedNames(offset, limit int) ([]string, int) {
	return c.n.catalog.ListedNames(offset, limit)
}

func (c odCatalog) ListedOrgs() []opendata.OrgCount {
	ls := c.n.catalog.ListedOrgs()
	out := make([]opendata.OrgCount, len(ls))
	for i, o := range ls {
		out[i] = opendata.OrgCount{Org: o.Org, Datasets: o.Datasets, Issued: o.Issued}
	}
	return out
}

func (c odCatalog) ClaimOf(a *nii.Advert, verified bool) string {
	return c.n.claimOf(registry.Entry{Advert: a, Verified: verified})
}

func (c odCatalog) OrgName(org string) string { return c.n.catalog.OrgName(org) }

func (c odCatalog) Online(id nii.NodeID) bool {
	online, _ := c.n.presence(id)
	return online
}

func (c odCatalog) Holds(r nii.Ref) bool {
	held, _ := c.n.store.HasVersion(r)
	return held
}

func (c odCatalog) Stored(r nii.Ref) (*nii.Advert, error) {
	rec, err := c.n.store.Version(r)
	if err != nil {
		return nil, err
	}
	return &nii.Advert{Origin: rec.Publisher, Dataset: r.Dataset, Version: rec.Ref.Version, Manifest: rec.Manifest, Meta: rec.Meta}, nil
}

// publishedEntry returns the publisher's live catalog entry of d (the
// catalog policy's choice among claims). Errors wrap nii.ErrNotFound
// (no claim, or withdrawn) or nii.ErrAmbiguous.
func (n *Node) publishedEntry(d nii.DatasetID) (registry.Entry, error) {
	e, err := n.publisher(d)
	switch {
	case errors.Is(err, registry.ErrUnverified):
		// Public views do not list a claim nothing proves; it is there to
		// be asked for.
		return registry.Entry{}, fmt.Errorf("dataset %s: %w among verified publishers; only an unverified claim names it (search with verified=false to see it)", d, nii.ErrNotFound)
	case err != nil && !errors.Is(err, nii.ErrAmbiguous), err == nil && e.Advert.Withdrawn:
		return registry.Entry{}, fmt.Errorf("dataset %s: %w in the federated catalog", d, nii.ErrNotFound)
	case err != nil:
		return registry.Entry{}, err
	}
	return e, nil
}

// published returns the publisher's live advert of d, if the catalog has
// one (and one claim to choose).
func (n *Node) published(d nii.DatasetID) (registry.Entry, bool) {
	e, err := n.publishedEntry(d)
	return e, err == nil
}
