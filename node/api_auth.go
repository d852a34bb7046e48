package node

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/auth"
	"github.com/nii-uk/nii/node/api"
)

// The trust endpoints:
//
//	GET    /.well-known/jwks.json        the issuer keys this node trusts (JWK Set)
//	GET    /api/v1/trust                 the same, as nii lists them
//	POST   /api/v1/trust?name=           admin; body: a JWK, JWK Set of one, or PEM public key
//	DELETE /api/v1/trust/{kid}           admin
//	GET    /api/v1/credential            this node's membership credential and whether it verifies
//	PUT    /api/v1/credential            admin; body: a membership credential (JWT)
//	GET    /api/v1/revocations           revocations held
//	POST   /api/v1/revocations           admin; body: a revocation (JWT); spread by gossip
//	POST   /api/v1/grants/inspect        body: api.InspectRequest → api.TokenReport
//	GET    /api/v1/audit?after=&limit=&order=newest&dataset=&node=&result=   admin
func (n *Node) authRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /.well-known/jwks.json", n.handleJWKS)
	mux.HandleFunc("GET /api/v1/trust", n.handleTrust)
	mux.HandleFunc("POST /api/v1/trust", n.admin(n.handleTrustAdd))
	mux.HandleFunc("DELETE /api/v1/trust/{kid}", n.admin(n.handleTrustRemove))
	mux.HandleFunc("GET /api/v1/credential", n.handleCredential)
	mux.HandleFunc("PUT /api/v1/credential", n.admin(n.handleCredentialPut))
	mux.HandleFunc("GET /api/v1/revocations", n.handleRevocations)
	mux.HandleFunc("POST /api/v1/revocations", n.admin(n.handleRevoke))
	mux.HandleFunc("POST /api/v1/grants/inspect", n.handleInspect)
	mux.HandleFunc("GET /api/v1/audit", n.admin(n.handleAudit))
}

// maxAuthBody bounds what the trust endpoints read.
const maxAuthBody = 64 << 10

func readBody(w http.ResponseWriter, r *http.Request) (string, error) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxAuthBody))
	if err != nil {
		return "", fmt.Errorf("%w request body: %v", nii.ErrInvalid, err)
	}
	return strings.TrimSpace(string(b)), nil
}

func (n *Node) handleJWKS(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "max-age=60")
	w.Header().Set("Content-Type", "application/jwk-set+json")
	json.NewEncoder(w).Encode(n.JWKS())
}

func (n *Node) handleTrust(w http.ResponseWriter, r *http.Request) {
	out := []api.TrustInfo{}
	for _, a := range n.Trust() {
		out = append(out, trustInfo(a))
	}
	writeJSON(w, http.StatusOK, out)
}

func (n *Node) handleTrustAdd(w http.ResponseWriter, r *http.Request) {
	body, err := readBody(w, r)
	if err != nil {
		writeErr(w, err)
		return
	}
	pub, name, err := auth.ParsePublicKey([]byte(body))
	if err != nil {
		writeErr(w, fmt.Errorf("%w: %v", nii.ErrInvalid, err))
		return
	}
	if q := r.URL.Query().Get("name"); q != "" {
		name = q
	}
	if len(name) > 100 {
		writeErr(w, fmt.Errorf("%w: name too long", nii.ErrInvalid))
		return
	}
	a, err := n.AddTrust(pub, name)
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, trustInfo(a))
}

func (n *Node) handleTrustRemove(w http.ResponseWriter, r *http.Request) {
	if err := n.RemoveTrust(r.PathValue("kid")); err != nil {
		writeErr(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (n *Node) credentialInfo() api.CredentialInfo {
	tok := n.Credential()
	if tok == "" {
		return api.CredentialInfo{}
	}
	ci := api.CredentialInfo{Installed: true, Token: tok}
	rep := n.verifier.Inspect(tok, nil)
	ci.Valid, ci.Reason, ci.Expires = rep.Valid, rep.Reason, rep.Expires
	ci.Org, _ = rep.Claims["org"].(string)
	ci.Name, _ = rep.Claims["name"].(string)
	ci.Issuer, _ = rep.Claims["iss"].(string)
	ci.ID, _ = rep.Claims["jti"].(string)
	if c, err := n.verifier.VerifyCredential(tok, n.id); err != nil {
		ci.Valid, ci.Reason = false, auth.ReasonOf(err)
	} else {
		ci.Valid = c.Org == n.cfg.Org
	}
	return ci
}

func (n *Node) handleCredential(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, n.credentialInfo())
}

func (n *Node) handleCredentialPut(w http.ResponseWriter, r *http.Request) {
	body, err := readBody(w, r)
	if err != nil {
		writeErr(w, err)
		return
	}
	if _, err := n.InstallCredential(body); err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, n.credentialInfo())
}

func (n *Node) handleRevocations(w http.ResponseWriter, r *http.Request) {
	out := []api.Revocation{}
	for _, rv := range n.Revocations() {
		out = append(out, revocationInfo(rv))
	}
	writeJSON(w, http.StatusOK, out)
}

func (n *Node) handleRevoke(w http.ResponseWriter, r *http.Request) {
	body, err := readBody(w, r)
	if err != nil {
		writeErr(w, err)
		return
	}
	jti, isNew, err := n.Revoke(body)
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, api.RevokeResult{Revokes: jti, New: isNew})
}

func (n *Node) handleInspect(w http.ResponseWriter, r *http.Request) {
	var body api.InspectRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxAuthBody)).Decode(&body); err != nil {
		writeErr(w, fmt.Errorf("%w request body: %v", nii.ErrInvalid, err))
		return
	}
	var req *auth.Request
	if body.Dataset != "" {
		d, err := nii.ParseDatasetID(body.Dataset)
		if err != nil {
			writeErr(w, err)
			return
		}
		// An action other than read or sync is checked, not refused: the
		// report says the grant does not allow it.
		req = &auth.Request{Dataset: d, Action: nii.Action(body.Action), Node: body.Node, Org: body.Org}
		if req.Action == "" {
			req.Action = nii.ActionRead
		}
		if req.Node == "" {
			req.Node = n.id
		}
	}
	writeJSON(w, http.StatusOK, tokenReport(n.InspectGrant(body.Token, req)))
}

func (n *Node) handleAudit(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var aq auth.AuditQuery
	var err error
	if s := q.Get("after"); s != "" {
		if aq.After, err = strconv.ParseUint(s, 10, 64); err != nil {
			writeErr(w, fmt.Errorf("%w after %q: want a record seq", nii.ErrInvalid, s))
			return
		}
	}
	if s := q.Get("limit"); s != "" {
		if aq.Limit, err = strconv.Atoi(s); err != nil || aq.Limit < 1 {
			writeErr(w, fmt.Errorf("%w limit %q: want 1 to %d", nii.ErrInvalid, s, auth.MaxAuditPage))
			return
		}
	}
	switch q.Get("order") {
	case "", "oldest":
	case "newest":
		aq.Newest = true
	default:
		writeErr(w, fmt.Errorf("%w order %q: want oldest or newest", nii.ErrInvalid, q.Get("order")))
		return
	}
	aq.Dataset, aq.Result, aq.Node = q.Get("dataset"), q.Get("result"), nii.NodeID(q.Get("node"))
	recs, next, err := n.Audit(aq)
	if err != nil {
		writeErr(w, err)
		return
	}
	page := api.AuditPage{Records: make([]api.AuditRecord, len(recs)), Next: next}
	for i, rec := range recs {
		page.Records[i] = auditRecord(rec)
	}
	writeJSON(w, http.StatusOK, page)
}

// InspectUnchecked decodes a token for display when there is no node to
// check it against ('nii grant inspect' with no daemon running): its
// claims, shown unverified, and the verdict not_checked with why.
func InspectUnchecked(token, why string) api.TokenReport {
	v := &auth.Verifier{Anchors: auth.NewAnchors()}
	r := v.Inspect(token, nil)
	r.Valid, r.Reason, r.Detail = false, auth.ReasonNotChecked, why
	return tokenReport(r)
}
