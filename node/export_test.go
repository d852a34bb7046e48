package node

import (
	"net/http"

	"github.com/nii-uk/nii/registry"
)

// Hooks for the node_test package's benchmarks.

// CatalogForTest returns the node's federated catalog, so that a benchmark
// can apply a large generated catalog without gossiping it.
func (n *Node) CatalogForTest() *registry.Catalog { return n.catalog }

// APIHandlerForTest returns the running API server's handler (routing,
// metrics, CORS, rate limit and all), to be driven with httptest.
func (n *Node) APIHandlerForTest() http.Handler { return n.apiSrv.Handler }
