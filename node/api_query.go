package node

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/node/api"
	"github.com/nii-uk/nii/query"
)

// The SQL endpoints (docs/api.md, "SQL"):
//
//	POST /api/v1/query          body {"sql": …, "max_rows": N} or the SQL text; ?format=json|csv|table
//	GET  /api/v1/query/tables   what can be queried
//
// Both are public reads of open data, rate-limited like every request
// without the admin token; with the token they see everything the node
// holds. [query] admin_only = true makes both need the token.

func (n *Node) queryRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /api/v1/query", n.handleQuery)
	mux.HandleFunc("GET /api/v1/query/tables", n.handleQueryTables)
}

// queryBodySlack is what a JSON body may add around the SQL text.
const queryBodySlack = 4 << 10

func (n *Node) handleQuery(w http.ResponseWriter, r *http.Request) {
	admin := n.hasAdminToken(r)
	limits := n.sql.cfg
	body, err := io.ReadAll(io.LimitReader(r.Body, int64(limits.MaxSQLBytes)*6+queryBodySlack+1))
	if err != nil {
		writeErr(w, fmt.Errorf("%w query: reading the body: %v", nii.ErrInvalid, err))
		return
	}
	if len(body) > limits.MaxSQLBytes*6+queryBodySlack {
		writeErr(w, fmt.Errorf("%w: the query is longer than the %d bytes SQL may have", query.ErrRefused, limits.MaxSQLBytes))
		return
	}
	req := api.QueryRequest{}
	if t := bytes.TrimSpace(body); len(t) > 0 && t[0] == '{' {
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			writeErr(w, fmt.Errorf("%w query: body: %v (want {\"sql\": \"SELECT …\"} or the SQL text)", nii.ErrInvalid, err))
			return
		}
	} else {
		req.SQL = string(body)
	}
	if s := r.URL.Query().Get("max_rows"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil {
			writeErr(w, fmt.Errorf("%w query: max_rows %q: want a number", nii.ErrInvalid, s))
			return
		}
		req.MaxRows = v
	}
	if req.MaxRows < 0 || req.MaxRows > limits.MaxRows {
		writeErr(w, fmt.Errorf("%w query: max_rows %d: want 1 to %d, this node's row cap (the operator sets it: [query] max_rows)", nii.ErrInvalid, req.MaxRows, limits.MaxRows))
		return
	}
	format := r.URL.Query().Get("format")
	if format == "" && strings.Contains(r.Header.Get("Accept"), "text/csv") {
		format = api.FormatCSV
	}
	switch format {
	case "", api.FormatJSON, api.FormatCSV, api.FormatTable:
	default:
		writeErr(w, fmt.Errorf("%w query: format %q: want json, csv or table", nii.ErrInvalid, format))
		return
	}
	res, err := n.sql.Query(r.Context(), req.SQL, admin)
	if err != nil {
		writeErr(w, err)
		return
	}
	if req.MaxRows > 0 && len(res.Rows) > req.MaxRows {
		res.Rows = res.Rows[:req.MaxRows]
		res.Truncated = true
		res.Notice = fmt.Sprintf("truncated: only the first %d rows, as max_rows asked", req.MaxRows)
	}
	if res.Truncated {
		w.Header().Set(api.HeaderTruncated, "true")
		w.Header().Set(api.HeaderNotice, res.Notice)
	}
	switch format {
	case api.FormatCSV:
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		res.WriteCSV(w)
	case api.FormatTable:
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		res.WriteTable(w)
	default:
		w.Header().Set("Content-Type", "application/json")
		res.WriteDocument(w)
	}
}

func (n *Node) handleQueryTables(w http.ResponseWriter, r *http.Request) {
	ts, err := n.sql.Tables(r.Context(), n.hasAdminToken(r))
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, ts)
}
