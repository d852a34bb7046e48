package node

import "net/http"

// openDataRoutes serves the catalog in the formats existing tools speak
// (CKAN action API, DCAT, Frictionless). Filled in by issue 6.
func (n *Node) openDataRoutes(mux *http.ServeMux) {}
