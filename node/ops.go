package node

import "net/http"

// opsRoutes serves what an operator's tooling expects: health, readiness,
// metrics and the OpenAPI document. Filled in by issue 6.
func (n *Node) opsRoutes(mux *http.ServeMux) {}

// frontDoor wraps the API with what every request passes through.
func (n *Node) frontDoor(h http.Handler) http.Handler { return h }
