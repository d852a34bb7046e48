package api

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"time"

	"github.com/nii-uk/nii"
)

// ProblemSubmission is the body of POST /api/v1/datasets/{org}/{name}/problems:
// a person's report of a problem with a dataset, for its publisher.
type ProblemSubmission struct {
	Name    string `json:"name,omitempty"`  // optional, at most 200 bytes
	Email   string `json:"email,omitempty"` // optional, at most 254 bytes
	Message string `json:"message"`         // required, at most 8,000 bytes
}

// ProblemReceipt is the answer to a submission: where the report was
// recorded. Relayed is true when this node passed it to the publishing
// node over the federation (the publisher's ID is Publisher).
type ProblemReceipt struct {
	ID        string     `json:"id"`
	Dataset   string     `json:"dataset"`
	Publisher nii.NodeID `json:"publisher_node"`
	Relayed   bool       `json:"relayed"`
}

// Problem report states.
const (
	ProblemOpen   = "open"
	ProblemClosed = "closed"
)

// ProblemReport is a report as the publishing node's officer sees it
// (GET /api/v1/problems).
type ProblemReport struct {
	ID       string    `json:"id"`
	Dataset  string    `json:"dataset"`
	Name     string    `json:"name,omitempty"`
	Email    string    `json:"email,omitempty"`
	Message  string    `json:"message"`
	Received time.Time `json:"received"`
	// Via is the node that relayed the report from its page (its
	// authenticated libp2p identity); empty when it was made on this node.
	Via    nii.NodeID `json:"via,omitempty"`
	State  string     `json:"state"` // ProblemOpen or ProblemClosed
	Closed time.Time  `json:"closed,omitzero"`
}

// ProblemList is what GET /api/v1/problems returns, newest first.
type ProblemList struct {
	Problems []ProblemReport `json:"problems"`
}

// ReportProblem submits a report on dataset d (public; rate-limited).
func (c *Client) ReportProblem(ctx context.Context, d nii.DatasetID, p ProblemSubmission) (*ProblemReceipt, error) {
	b, _ := json.Marshal(p)
	var out ProblemReceipt
	return &out, c.send(ctx, http.MethodPost, "/api/v1/datasets/"+d.String()+"/problems", b, false, &out)
}

// Problems lists this node's problem reports; q holds GET
// /api/v1/problems's parameters (dataset, state).
func (c *Client) Problems(ctx context.Context, q url.Values) (*ProblemList, error) {
	var out ProblemList
	return &out, c.send(ctx, http.MethodGet, "/api/v1/problems?"+q.Encode(), nil, true, &out)
}

// CloseProblem marks report id closed.
func (c *Client) CloseProblem(ctx context.Context, id string) (*ProblemReport, error) {
	var out ProblemReport
	return &out, c.send(ctx, http.MethodPost, "/api/v1/problems/"+url.PathEscape(id)+"/close", nil, true, &out)
}
