package node

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/auth"
	"github.com/nii-uk/nii/exchange"
	"github.com/nii-uk/nii/node/api"
)

// Problem reports: a person's "report a problem" about a dataset, made on
// any node's dataset page (or POST /api/v1/datasets/{org}/{name}/problems),
// recorded on the node that publishes the dataset, for its officer. A node
// that does not publish the dataset relays the report to the publisher
// over the problem protocol (exchange/problemproto.go) and keeps nothing:
// if the publisher cannot be reached the person is told plainly that the
// report was not delivered (a relay keeping strangers' names and email
// addresses in a retry queue would hold personal data for another body).
//
// Reports are kept in badger under "pr/" + ID; IDs sort by the time they
// were received.

var prefixProblem = []byte("pr/")

func problemKey(id string) []byte { return []byte(string(prefixProblem) + id) }

// problemRecord is a stored report.
type problemRecord struct {
	ID       string        `cbor:"1,keyasint"`
	Dataset  nii.DatasetID `cbor:"2,keyasint"`
	Name     string        `cbor:"3,keyasint,omitempty"`
	Email    string        `cbor:"4,keyasint,omitempty"`
	Message  string        `cbor:"5,keyasint"`
	Received time.Time     `cbor:"6,keyasint"`
	Via      nii.NodeID    `cbor:"7,keyasint,omitempty"`
	Closed   time.Time     `cbor:"8,keyasint,omitzero"`
}

func (p *problemRecord) info() api.ProblemReport {
	r := api.ProblemReport{ID: p.ID, Dataset: p.Dataset.String(), Name: p.Name, Email: p.Email, Message: p.Message,
		Received: p.Received.UTC(), Via: p.Via, State: api.ProblemOpen}
	if !p.Closed.IsZero() {
		r.State, r.Closed = api.ProblemClosed, p.Closed.UTC()
	}
	return r
}

// Problem-report limits.
const (
	// maxOpenProblems is how many open reports a node keeps; past it new
	// reports are refused (unavailable) until the officer closes some.
	maxOpenProblems = 10_000
	// maxProblemBody bounds the JSON body of a submission.
	maxProblemBody = 16 << 10
	// problemRelayTimeout bounds the wait on the publisher.
	problemRelayTimeout = 10 * time.Second
	// maxProblemList bounds one listing.
	maxProblemList = 1000
)

// ProblemsConfig is the [problems] section: how long a closed report
// (which may hold a person's name and email address) is kept.
type ProblemsConfig struct {
	KeepClosed string `toml:"keep_closed,omitempty" comment:"how long a closed problem report (it may hold the reporter's name and email) is kept before it is deleted (Go duration, at least 1s; default 2160h, 90 days; forever: never deleted)"`
}

// DefaultKeepClosed is how long a closed problem report is kept: 90 days.
const DefaultKeepClosed = 90 * 24 * time.Hour

// keepClosed is the retention of closed reports; 0 is forever.
func (c ProblemsConfig) keepClosed() (time.Duration, error) {
	switch c.KeepClosed {
	case "":
		return DefaultKeepClosed, nil
	case "forever":
		return 0, nil
	}
	d, err := time.ParseDuration(c.KeepClosed)
	if err != nil || d < time.Second {
		return 0, fmt.Errorf("config: problems.keep_closed %q: want a duration of at least 1s (e.g. %v), or forever", c.KeepClosed, DefaultKeepClosed)
	}
	return d, nil
}

// ProblemQuery filters the problem reports (GET /api/v1/problems).
type ProblemQuery struct {
	Dataset string // org/name; "" for every dataset
	State   string // api.ProblemOpen, api.ProblemClosed, or "" for both
}

func newProblemID(now time.Time) string {
	var b [6]byte
	rand.Read(b[:])
	return fmt.Sprintf("%016x", now.UnixNano()) + hex.EncodeToString(b[:])
}

// publishes reports whether this node is d's publisher: it holds a
// version of d that it signed.
func (n *Node) publishes(d nii.DatasetID) bool {
	recs, err := n.store.Versions(&d)
	if err != nil {
		return false
	}
	return slices.ContainsFunc(recs, func(r *exchange.VersionRecord) bool { return r.Publisher == n.id })
}

// ReportProblem takes a person's report on d: recorded here if this node
// publishes d, else relayed to the publishing node (found in the
// federated catalog) and recorded there. Nothing is kept on a relaying
// node; a publisher that cannot be reached is an error wrapping
// nii.ErrUnavailable that says the report was not delivered.
func (n *Node) ReportProblem(ctx context.Context, d nii.DatasetID, s api.ProblemSubmission) (*api.ProblemReceipt, error) {
	p := exchange.ProblemReport{Dataset: d, Name: strings.TrimSpace(s.Name), Email: strings.TrimSpace(s.Email), Message: strings.TrimSpace(s.Message)}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if n.publishes(d) {
		id, err := n.recordProblem("", p)
		if err != nil {
			return nil, err
		}
		return &api.ProblemReceipt{ID: id, Dataset: d.String(), Publisher: n.id}, nil
	}
	cd, err := n.LookupDataset(d)
	if err != nil {
		return nil, err
	}
	if cd.Publisher == "" || cd.Publisher == n.id {
		return nil, nii.Errorf(nii.ErrNotFound, "no publisher of %s is known to this node", d)
	}
	ctx, cancel := context.WithTimeout(ctx, problemRelayTimeout)
	defer cancel()
	id, err := n.host.SendProblem(ctx, cd.Publisher, p)
	if err != nil {
		who := cd.Meta.PublisherName
		if who == "" {
			who = cd.Meta.Publisher
		}
		n.log.Info("problem report not delivered", slog.String(nii.LogDataset, d.String()),
			slog.String(nii.LogPeer, cd.Publisher.Short()), slog.String(nii.LogErr, err.Error()))
		if errors.Is(err, exchange.ErrRemote) {
			return nil, err // the publisher's own answer (bad request, rate limit, …)
		}
		return nil, nii.Errorf(nii.ErrUnavailable, "the publisher's node (%s, %s) cannot be reached now, so your report was NOT delivered and was not kept: please try again later", who, cd.Publisher.Short())
	}
	return &api.ProblemReceipt{ID: id, Dataset: d.String(), Publisher: cd.Publisher, Relayed: true}, nil
}

// ReceiveProblem records a report relayed by node from (the problem
// protocol's sink): only for a dataset this node publishes.
func (n *Node) ReceiveProblem(from nii.NodeID, p exchange.ProblemReport) (string, error) {
	if !n.publishes(p.Dataset) {
		return "", nii.Errorf(nii.ErrNotFound, "%s is not published by this node", p.Dataset)
	}
	return n.recordProblem(from, p)
}

// recordProblem stores a validated report, via the relaying node ("" if
// it was made here).
func (n *Node) recordProblem(via nii.NodeID, p exchange.ProblemReport) (string, error) {
	n.problemMu.Lock()
	defer n.problemMu.Unlock()
	all, err := listRecords[problemRecord](n.db, prefixProblem)
	if err != nil {
		return "", err
	}
	open := 0
	for _, r := range all {
		if r.Closed.IsZero() {
			open++
		}
	}
	if open >= maxOpenProblems {
		return "", nii.Errorf(nii.ErrUnavailable, "the publisher holds %d open problem reports, its limit: try again later", open)
	}
	now := time.Now().UTC()
	rec := problemRecord{ID: newProblemID(now), Dataset: p.Dataset, Name: p.Name, Email: p.Email, Message: p.Message, Received: now, Via: via}
	if err := n.putRecord(problemKey(rec.ID), &rec); err != nil {
		return "", err
	}
	n.log.Info("problem reported", slog.String(nii.LogDataset, p.Dataset.String()), slog.String("problem", rec.ID), slog.String("via", string(via)))
	return rec.ID, nil
}

// Problems lists the reports matching q, newest first (at most 1,000).
func (n *Node) Problems(q ProblemQuery) ([]api.ProblemReport, error) {
	if q.State != "" && q.State != api.ProblemOpen && q.State != api.ProblemClosed {
		return nil, nii.Errorf(nii.ErrInvalid, "state %q: want open or closed", q.State)
	}
	all, err := listRecords[problemRecord](n.db, prefixProblem)
	if err != nil {
		return nil, err
	}
	out := []api.ProblemReport{}
	for i := len(all) - 1; i >= 0 && len(out) < maxProblemList; i-- {
		r := all[i].info()
		if (q.Dataset == "" || r.Dataset == q.Dataset) && (q.State == "" || r.State == q.State) {
			out = append(out, r)
		}
	}
	return out, nil
}

// CloseProblem marks report id closed (closing a closed one changes
// nothing) and records the officer's action in the audit log.
func (n *Node) CloseProblem(id string) (*api.ProblemReport, error) {
	if id == "" || len(id) > 64 || strings.ContainsAny(id, "/\x00") {
		return nil, nii.Errorf(nii.ErrInvalid, "problem report ID %q", id)
	}
	n.problemMu.Lock()
	defer n.problemMu.Unlock()
	var rec problemRecord
	err := n.db.View(func(txn *badger.Txn) error {
		it, err := txn.Get(problemKey(id))
		if err != nil {
			return err
		}
		return it.Value(func(b []byte) error { return nii.Unmarshal(b, &rec) })
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, nii.Errorf(nii.ErrNotFound, "no problem report %s on this node", id)
	}
	if err != nil {
		return nil, err
	}
	if rec.Closed.IsZero() {
		rec.Closed = time.Now().UTC()
		keep, _ := n.cfg.Problems.keepClosed() // validated
		if err := n.closeRecord(problemKey(id), &rec, keep); err != nil {
			return nil, err
		}
		n.auditOfficer(rec.Dataset.String(), "close-problem", "problem report "+id+" closed")
	}
	info := rec.info()
	return &info, nil
}

// closeRecord stores a closed report that badger deletes keep after now
// (badger's TTL: an expired entry is never read again and compaction
// drops it), or keeps for good if keep is 0. An open report is never
// deleted: the officer has not seen to it.
func (n *Node) closeRecord(key []byte, rec *problemRecord, keep time.Duration) error {
	b, err := nii.Marshal(rec)
	if err != nil {
		return err
	}
	return n.db.Update(func(txn *badger.Txn) error {
		if _, err := txn.Get(key); err != nil {
			return err
		}
		e := badger.NewEntry(key, b)
		if keep > 0 {
			e = e.WithTTL(keep)
		}
		return txn.SetEntry(e)
	})
}

// auditOfficer records an action of this node's officer (through the
// admin token or the officer's pages) in the audit log: the node itself
// as the actor, reason "officer".
func (n *Node) auditOfficer(dataset, action, detail string) {
	rec := auth.Record{Time: time.Now().UTC(), Node: n.id, Org: n.cfg.Org, Dataset: dataset, Action: nii.Action(action),
		Result: auth.Allowed, Reason: "officer", Detail: detail}
	if _, err := n.audit.Append(rec); err != nil {
		n.log.Warn("audit officer action", slog.String(nii.LogErr, err.Error()))
	}
}

func (n *Node) problemRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /api/v1/datasets/{org}/{name}/problems", n.handleReportProblem)
	mux.HandleFunc("GET /api/v1/problems", n.admin(n.handleProblems))
	mux.HandleFunc("POST /api/v1/problems/{id}/close", n.admin(n.handleCloseProblem))
}

func (n *Node) handleReportProblem(w http.ResponseWriter, r *http.Request) {
	d, err := datasetFromPath(r)
	if err != nil {
		writeErr(w, err)
		return
	}
	var s api.ProblemSubmission
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxProblemBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeErr(w, nii.Errorf(nii.ErrInvalid, "the report is over %d bytes: the message may be at most %d", maxProblemBody, exchange.MaxProblemMessage))
			return
		}
		writeErr(w, nii.Errorf(nii.ErrInvalid, "problem report: want JSON {\"message\": …, \"name\": …, \"email\": …}: %v", err))
		return
	}
	rc, err := n.ReportProblem(r.Context(), d, s)
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, rc)
}

func (n *Node) handleProblems(w http.ResponseWriter, r *http.Request) {
	ps, err := n.Problems(ProblemQuery{Dataset: r.URL.Query().Get("dataset"), State: r.URL.Query().Get("state")})
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, api.ProblemList{Problems: ps})
}

func (n *Node) handleCloseProblem(w http.ResponseWriter, r *http.Request) {
	p, err := n.CloseProblem(r.PathValue("id"))
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, p)
}
