package exchange

// The problem protocol, /nii/problem/1.0.0: "a person reported a problem
// with your dataset D". A node that serves a dataset's page but did not
// publish it (the registry node, a replica) relays the report, filled in on
// its page, to the publishing node, which records it for its officer. The
// transport authenticates the relaying node; the publisher records it.
//
//	client → server  problemRequest {1: dataset, 2: name, 3: email,    ≤ 32 KiB
//	                 4: message, 5: credential (optional)}
//	server → client  status {1: ok, 2: code, 3: message}                ≤ 4 KiB
//	server → client  problemReceipt {1: id}  (if ok)                     ≤ 1 KiB
//
// The fields are bounded (ProblemReport.Validate: name ≤ 200 bytes, email
// ≤ 254, message 1 to 8,000, all valid UTF-8); a request that breaks a
// bound is answered bad_request. Each relaying peer may send
// ProblemPeerBurst reports at once and ProblemPeerRate a second after
// that; past it the answer is unavailable. docs/protocol.md has the
// details.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/nii-uk/nii"
	"golang.org/x/time/rate"
)

// problemProtocol is the protocol ID of the problem protocol.
const problemProtocol protocol.ID = "/nii/problem/1.0.0"

// Problem protocol and report limits.
const (
	maxProblemRequest = 32 << 10 // request frame: the fields and a membership credential
	maxProblemReceipt = 1 << 10
	// MaxProblemName, MaxProblemEmail and MaxProblemMessage bound a
	// report's fields, in bytes.
	MaxProblemName    = 200
	MaxProblemEmail   = 254
	MaxProblemMessage = 8000
	// ProblemPeerRate and ProblemPeerBurst are each relaying peer's limit.
	ProblemPeerRate  = 0.2 // a report every 5 s, after the burst
	ProblemPeerBurst = 10
	// maxProblemPeers bounds the per-peer limiter's map; past it, new
	// peers share one bucket.
	maxProblemPeers = 1024
)

// ProblemReport is what a person wrote about a dataset: who (optional,
// as they gave it) and what.
type ProblemReport struct {
	Dataset nii.DatasetID
	Name    string
	Email   string
	Message string
}

// Validate checks a report's bounds: the dataset is a valid ID, the
// message is not empty, no field is over its limit or invalid UTF-8, and
// name and email are one line each. Its errors wrap nii.ErrInvalid and
// say which field and why.
func (p *ProblemReport) Validate() error {
	if err := p.Dataset.Validate(); err != nil {
		return err
	}
	for _, f := range []struct {
		field, v string
		max      int
		oneLine  bool
	}{{"name", p.Name, MaxProblemName, true}, {"email", p.Email, MaxProblemEmail, true}, {"message", p.Message, MaxProblemMessage, false}} {
		if len(f.v) > f.max {
			return nii.Errorf(nii.ErrInvalid, "%s is %d bytes; at most %d are allowed", f.field, len(f.v), f.max)
		}
		if !utf8.ValidString(f.v) {
			return nii.Errorf(nii.ErrInvalid, "%s is not valid UTF-8 text", f.field)
		}
		if f.oneLine && strings.ContainsAny(f.v, "\r\n") {
			return nii.Errorf(nii.ErrInvalid, "%s must be one line", f.field)
		}
	}
	if strings.TrimSpace(p.Message) == "" {
		return nii.Errorf(nii.ErrInvalid, "message is empty: say what the problem is")
	}
	if p.Email != "" && (!strings.Contains(p.Email, "@") || strings.ContainsAny(p.Email, " \t<>")) {
		return nii.Errorf(nii.ErrInvalid, "email %q does not look like an email address (it may be left out)", p.Email)
	}
	return nil
}

// problemRequest is the wire form of a report.
type problemRequest struct {
	Dataset nii.DatasetID `cbor:"1,keyasint"`
	Name    string        `cbor:"2,keyasint,omitempty"`
	Email   string        `cbor:"3,keyasint,omitempty"`
	Message string        `cbor:"4,keyasint"`
	Cred    string        `cbor:"5,keyasint,omitempty"`
}

// problemReceipt is the publisher's answer: the ID it recorded the report
// under.
type problemReceipt struct {
	ID string `cbor:"1,keyasint"`
}

// ProblemSink records the reports a host receives (package node stores
// them). from is the authenticated relaying node. It returns the ID the
// report is recorded under; errors wrapping nii.ErrNotFound (not a dataset
// this node publishes), nii.ErrInvalid or nii.ErrUnavailable reach the
// relaying node with their text, any other as "internal error".
type ProblemSink interface {
	ReceiveProblem(from nii.NodeID, p ProblemReport) (id string, err error)
}

// peerLimiter is a token bucket per remote node, its map bounded.
type peerLimiter struct {
	mu       sync.Mutex
	m        map[nii.NodeID]*rate.Limiter
	overflow *rate.Limiter
}

func (l *peerLimiter) allow(id nii.NodeID) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.m == nil {
		l.m = map[nii.NodeID]*rate.Limiter{}
		l.overflow = rate.NewLimiter(ProblemPeerRate, ProblemPeerBurst)
	}
	lim := l.m[id]
	if lim == nil {
		if len(l.m) >= maxProblemPeers {
			lim = l.overflow
		} else {
			lim = rate.NewLimiter(ProblemPeerRate, ProblemPeerBurst)
			l.m[id] = lim
		}
	}
	return lim.Allow()
}

// ServeProblems serves the problem protocol into sink, for every peer the
// Admitter admits, each within its rate limit. A nil sink stops serving it.
func (h *Host) ServeProblems(sink ProblemSink) {
	if sink == nil {
		h.removeHandler(problemProtocol)
		return
	}
	lim := &peerLimiter{}
	h.setHandler(problemProtocol, maxProblemRequest, func(rw io.ReadWriter, remote nii.NodeID) error {
		return serveProblem(rw, remote, sink, h.admission, lim.allow)
	})
}

// SendProblem relays p to node to, the dataset's publisher, and returns
// the ID the publisher recorded it under. The exchange is bounded by ctx
// and a 30 s deadline. Errors wrap ErrUnreachable (no connection to to:
// it is offline), ErrNotSupported (to does not take reports), ErrRemote
// with the kind of the publisher's answer (nii.ErrNotFound,
// nii.ErrInvalid, nii.ErrUnavailable when over its rate limit, ...),
// ErrMalformed, or the context's error.
func (h *Host) SendProblem(ctx context.Context, to nii.NodeID, p ProblemReport) (string, error) {
	if err := p.Validate(); err != nil {
		return "", err
	}
	var id string
	err := h.request(ctx, to, problemProtocol, maxProblemReceipt, func(rw io.ReadWriter) error {
		var err error
		id, err = sendProblem(rw, p, h.ownCredential())
		return err
	})
	if err != nil {
		return "", fmt.Errorf("report a problem with %s to %s: %w", p.Dataset, to.Short(), err)
	}
	return id, nil
}

// DecodeProblemRequest decodes and checks one problem request frame (its
// length prefix included), as a server reads it: the report and the
// credential it carried. Its errors wrap ErrFrameTooLarge, ErrMalformed or
// nii.ErrInvalid.
func DecodeProblemRequest(r io.Reader) (ProblemReport, string, error) {
	var req problemRequest
	if err := readMsg(r, maxProblemRequest, &req); err != nil {
		return ProblemReport{}, "", err
	}
	p := ProblemReport{Dataset: req.Dataset, Name: req.Name, Email: req.Email, Message: req.Message}
	if err := p.Validate(); err != nil {
		return ProblemReport{}, "", err
	}
	return p, req.Cred, nil
}

// serveProblem answers one problem request read from rw.
func serveProblem(rw io.ReadWriter, remote nii.NodeID, sink ProblemSink, admit func(Admission) error, allow func(nii.NodeID) bool) error {
	var req problemRequest
	if err := readMsg(rw, maxProblemRequest, &req); err != nil {
		err = fmt.Errorf("problem report from %s: %w", remote.Short(), err)
		if errors.Is(err, ErrMalformed) || errors.Is(err, ErrFrameTooLarge) {
			return answer(rw, badRequest("%v", err), err)
		}
		return err
	}
	p := ProblemReport{Dataset: req.Dataset, Name: req.Name, Email: req.Email, Message: req.Message}
	if admit != nil {
		if err := admit(Admission{Remote: remote, Credential: req.Cred, Protocol: "problem", What: p.Dataset.String()}); err != nil {
			return refuseStranger(rw, remote, "problem", err)
		}
	}
	if !allow(remote) {
		return answer(rw, &wireError{Code: codeUnavailable, Message: "too many problem reports from your node: try again in a minute"},
			fmt.Errorf("problem report from %s: over its rate limit", remote.Short()))
	}
	if err := p.Validate(); err != nil {
		return answer(rw, badRequest("%v", err), fmt.Errorf("problem report from %s: %w", remote.Short(), err))
	}
	id, err := sink.ReceiveProblem(remote, p)
	if err != nil {
		return answer(rw, toWireError(err), fmt.Errorf("problem report from %s on %s: %w", remote.Short(), p.Dataset, err))
	}
	return writeOK(rw, &problemReceipt{ID: id})
}

// sendProblem writes one problem request to rw and reads the receipt.
func sendProblem(rw io.ReadWriter, p ProblemReport, cred string) (string, error) {
	if err := writeMsg(rw, &problemRequest{Dataset: p.Dataset, Name: p.Name, Email: p.Email, Message: p.Message, Cred: cred}); err != nil {
		return "", fmt.Errorf("send problem report: %w", err)
	}
	if cw, ok := rw.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	var rc problemReceipt
	if err := readResponse(newReader(rw), maxProblemReceipt, &rc); err != nil {
		return "", err
	}
	if rc.ID == "" || len(rc.ID) > 64 {
		return "", fmt.Errorf("%w: problem receipt with an ID of %d bytes", ErrMalformed, len(rc.ID))
	}
	return rc.ID, nil
}
