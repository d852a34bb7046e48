package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// QueryRequest is the JSON body of POST /api/v1/query. (A body that is not
// JSON is taken as the SQL text itself.)
type QueryRequest struct {
	SQL string `json:"sql"`
	// MaxRows lowers the node's row cap ([query] max_rows) for this query;
	// 0 keeps it.
	MaxRows int `json:"max_rows,omitempty"`
}

// Query result formats (POST /api/v1/query?format=…).
const (
	FormatJSON  = "json"  // QueryResult (the default)
	FormatCSV   = "csv"   // text/csv: a header line and the rows
	FormatTable = "table" // text/plain: an aligned table for a terminal
)

// Response headers of a CSV or table result.
const (
	HeaderTruncated = "Nii-Truncated" // "true" when a cap cut the rows
	HeaderNotice    = "Nii-Notice"    // which cap, in words
)

// QueryResult is a query's result in the JSON format.
type QueryResult struct {
	Columns []QueryColumn `json:"columns"`
	// Rows holds each row's values in column order: JSON strings,
	// numbers (decimals exact; decode with json.Decoder.UseNumber to keep
	// them so), booleans, null; dates "2006-01-02", datetimes RFC 3339.
	Rows      [][]any `json:"rows"`
	Truncated bool    `json:"truncated"`
	Notice    string  `json:"notice,omitempty"`
}

// QueryColumn is a column of a result or of a table.
type QueryColumn struct {
	Name    string `json:"name"`
	Type    string `json:"type"` // string, integer, number, decimal, boolean, date, datetime, time, duration, array, object, any
	Scale   int    `json:"scale,omitempty"`
	SQLType string `json:"sql_type,omitempty"`
}

// QueryTable is one table SQL can name (GET /api/v1/query/tables).
type QueryTable struct {
	Name   string `json:"name"`   // as SQL names it: FROM 'lga/spend-over-500'
	Kind   string `json:"kind"`   // "merged" (a standard's merged view) or "dataset"
	Access string `json:"access"` // "open", or "restricted" (listed only with the admin token)
	Source string `json:"source"` // what the rows are, in words
	Rows   *int64 `json:"rows,omitempty"`
	// Columns: as loaded when Loaded, else as they will be typed (a
	// dataset's profiled types are checked on its first load).
	Columns     []QueryColumn `json:"columns"`
	Loaded      bool          `json:"loaded"`
	MemoryBytes int64         `json:"memory_bytes,omitempty"`
	Notes       []string      `json:"notes,omitempty"`
}

// DefaultQueryTimeout bounds a query call: the node's own time limit
// ([query] timeout) is the real one; loading a large table first takes
// longer.
const DefaultQueryTimeout = 10 * time.Minute

// Query runs SQL on the node and writes the result to w in format (one of
// the Format constants). With the admin token (admin) it sees every table
// the node holds; without, only open ones. maxRows > 0 lowers the row cap.
// It returns the truncation notice, if a cap cut the result.
func (c *Client) Query(ctx context.Context, sql, format string, maxRows int, admin bool, w io.Writer) (notice string, err error) {
	ctx, cancel := context.WithTimeoutCause(ctx, DefaultQueryTimeout, fmt.Errorf("%w: the node did not answer the query within %v", errTimeout, DefaultQueryTimeout))
	defer cancel()
	body, _ := json.Marshal(QueryRequest{SQL: sql, MaxRows: maxRows})
	q := url.Values{}
	if format != "" {
		q.Set("format", format)
	}
	path := "/api/v1/query"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	resp, err := c.do(ctx, http.MethodPost, path, bytes.NewReader(body), admin)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(w, resp.Body); err != nil {
		return "", c.readError(ctx, "query", err)
	}
	if t, _ := strconv.ParseBool(resp.Header.Get(HeaderTruncated)); t {
		notice = resp.Header.Get(HeaderNotice)
	}
	return notice, nil
}

// QueryJSON runs SQL and decodes the JSON result (numbers as json.Number).
func (c *Client) QueryJSON(ctx context.Context, sql string, maxRows int, admin bool) (*QueryResult, error) {
	var b bytes.Buffer
	if _, err := c.Query(ctx, sql, FormatJSON, maxRows, admin, &b); err != nil {
		return nil, err
	}
	dec := json.NewDecoder(&b)
	dec.UseNumber()
	var res QueryResult
	if err := dec.Decode(&res); err != nil {
		return nil, fmt.Errorf("query: %w", err)
	}
	return &res, nil
}

// QueryTables lists the tables SQL can name: all the node holds with the
// admin token (admin), open ones without.
func (c *Client) QueryTables(ctx context.Context, admin bool) ([]QueryTable, error) {
	var out []QueryTable
	err := c.send(ctx, http.MethodGet, "/api/v1/query/tables", nil, admin, &out)
	return out, err
}
