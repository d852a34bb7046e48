package node

import (
	"bytes"
	"context"
	"github.com/dgraph-io/badger/v4"
	"net/http"
	"time"

	"github.com/nii-uk/nii"

	"github.com/nii-uk/nii/exchange"
	"github.com/nii-uk/nii/harmony"
	"github.com/nii-uk/nii/query"
	"github.com/nii-uk/nii/registry"
	"github.com/nii-uk/nii/registry/gossip"
)

// Hooks for the node_test package's benchmarks.

// CatalogForTest returns the node's federated catalog, so that a benchmark
// can apply a large generated catalog without gossiping it.
func (n *Node) CatalogForTest() *registry.Catalog { return n.catalog }

// APIHandlerForTest returns the running API server's handler (routing,
// metrics, CORS, rate limit and all), to be driven with httptest.
func (n *Node) APIHandlerForTest() http.Handler { return n.apiSrv.Handler }

// HostForTest returns the node's libp2p host, so a test can speak the
// content protocols to another node directly, as a hostile member would.
func (n *Node) HostForTest() *exchange.Host { return n.host }

// GossipForTest returns the node's gossip, so a test can spread a record
// the node would never sign in normal use.
func (n *Node) GossipForTest() *gossip.Gossip { return n.gossip }

// ForgeVersionForTest stores data as version v of d, signed by this
// node's own key whoever publishes d: what a rogue member serves as a
// "replica" of another's dataset.
func (n *Node) ForgeVersionForTest(ctx context.Context, d nii.DatasetID, v uint64, data []byte) (*exchange.VersionRecord, error) {
	chunks, size, err := n.store.Ingest(ctx, bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	sm, _, err := nii.SignManifest(&nii.Manifest{
		Dataset: d, Version: v, Publisher: n.id, Created: time.Now().UTC(), Size: size,
		Chunker: n.store.ChunkParams().String(), Chunks: chunks,
		Meta: nii.Metadata{Title: d.Name, Publisher: d.Org, Access: nii.AccessOpen, MediaType: "text/csv"},
	}, n.key)
	if err != nil {
		return nil, err
	}
	return n.store.Commit(sm)
}

// SetMergedViewsForTest makes v the node's merged views, as the merge
// wiring will.
func (n *Node) SetMergedViewsForTest(v MergedViews) { n.views = v }

// MergedViewForTest is the merged view of a merge's result.
func MergedViewForTest(m *harmony.Merged, open bool) MergedView { return mergedFromHarmony(m, open) }

// SQLWorkerForTest returns the SQL worker of a scope ("open" or "all"),
// nil if it was never used.
func (n *Node) SQLWorkerForTest(scope string) *query.Worker {
	n.sql.mu.Lock()
	defer n.sql.mu.Unlock()
	if sc := n.sql.scopes[scope]; sc != nil {
		return sc.w
	}
	return nil
}

// AdvertiseForTest announces a version this node holds as its publisher's
// advert: with ForgeVersionForTest, one node can stand in for many
// publishers in a benchmark.
func (n *Node) AdvertiseForTest(rec *exchange.VersionRecord) error { return n.advertise(rec) }

// MergedViewsForTest lists the merged views the node offers SQL.
func (n *Node) MergedViewsForTest(ctx context.Context) ([]MergedView, error) {
	if n.views == nil {
		return nil, nil
	}
	return n.views.MergedViews(ctx)
}

// APIConnsForTest returns how many connections the API holds open now.
func (n *Node) APIConnsForTest() int64 { return n.conns.open.Load() }

// CountKeysForTest counts the store's keys under prefix ("ra/": catalog
// records).
func (n *Node) CountKeysForTest(prefix string) int {
	k := 0
	n.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(prefix)})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k++
		}
		return nil
	})
	return k
}

// ReportFormKeyForTest is the key n's pages sign report forms with.
func ReportFormKeyForTest(n *Node) []byte { return n.reportFormKey() }
