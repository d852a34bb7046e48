package node

import "net/http"

// authRoutes serves trust anchors, credentials, revocations and the audit
// log. Filled in by issue 5.
func (n *Node) authRoutes(mux *http.ServeMux) {}
