package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nii-uk/nii"
)

// The export socket: how 'nii export -o FILE' (and 'nii pull -o FILE')
// write a file without the bytes crossing the HTTP API.
//
// The daemon listens on a Unix socket in its home (ExportSocket, mode
// 0600, SOCK_SEQPACKET, Linux only). A client creates the file it wants
// written (empty, opened for writing), sends one message — an
// ExportRequest as JSON, at most MaxExportMessage bytes, with the file's
// descriptor attached (SCM_RIGHTS) — and reads one message back, an
// ExportResult as JSON (after progress messages, for a pull). The daemon
// checks the admin token before it touches the descriptor, reads the
// version's chunks, verifies each against the signed manifest and
// pwrites it at its offset; it never opens a path the client names. The
// client then fsyncs (unless asked not to: nii export --no-fsync) and
// renames the file (node.FillFileAtomic), or removes it if the result
// carries an error. Closing the connection early cancels the export.
//
// Where there is no socket (another platform, a daemon from before it, a
// home path too long for a socket address, or a client running as a user
// the socket does not admit) ExportTo returns ErrNoFastPath and the caller
// uses Content, the portable HTTP path: same bytes, same checks.
//
// A request is at most MaxExportMessage bytes (a pull's carries its
// grant; POST /api/v1/pull takes 64 KiB too), an answer at most
// MaxExportAnswer: where a pull's summary would be longer, the daemon
// leaves the version's table and description out of it and says so
// (ExportResult.MetaTrimmed), and PullTo reads them over HTTP. Daemons
// before pulls through the socket took requests of at most 4 KiB.
const (
	ExportSocket     = "export.sock"
	MaxExportMessage = 64 << 10
	MaxExportAnswer  = 128 << 10
)

// ErrNoFastPath says the export socket is not available: use Content.
var ErrNoFastPath = errors.New("the export socket is not available")

// ExportRequest asks the daemon to write a version into the descriptor
// sent with it.
type ExportRequest struct {
	Token string `json:"token"` // the node's admin token
	Ref   string `json:"ref"`   // ORG/NAME@N, or ORG/NAME for the latest
	// NoFsync says the client will rename the file without fsyncing it
	// (nii export --no-fsync): the daemon then leaves write-back to the
	// kernel instead of starting it as it writes. Sent only when true, so
	// a daemon from before it still reads every other request.
	NoFsync bool `json:"no_fsync,omitempty"`
	// Pull, if set, has the daemon pull the version first ('nii pull -o
	// FILE'), as POST /api/v1/pull would, writing each chunk into the
	// file as it arrives (node.Node.PullInto). The daemon then sends
	// progress before its answer: messages with only Progress set, the
	// first at once, then at most one per PullProgressEvery, and the last
	// before the answer. A daemon from before it refuses the request as
	// having an unknown field, and the client pulls over the HTTP API
	// instead.
	Pull *ExportPull `json:"pull,omitempty"`
}

// ExportPull is what a pull through the export socket asks for besides
// the version: PullRequest's other fields.
type ExportPull struct {
	Grant           string `json:"grant,omitempty"`
	AllowUnverified bool   `json:"allow_unverified,omitempty"`
}

// ExportResult is the daemon's answer: what it wrote, or why it did not.
// For a pull, Pulled reports the pull as POST /api/v1/pull does; the
// messages before the answer carry only Progress.
type ExportResult struct {
	Ref      string        `json:"ref,omitempty"`
	Size     int64         `json:"size"`
	Manifest nii.Hash      `json:"manifest,omitzero"`
	Pulled   *PullSummary  `json:"pulled,omitempty"`
	Progress *PullProgress `json:"progress,omitempty"`
	Error    *APIError     `json:"error,omitempty"`
	// MetaTrimmed says Pulled.Version.Meta lacks its table and
	// description, left out to keep the answer within MaxExportAnswer.
	MetaTrimmed bool `json:"meta_trimmed,omitempty"`
}

// MarshalAnswer encodes an answer within MaxExportAnswer, leaving out
// the pulled version's table and description if that is what it takes.
func MarshalAnswer(res *ExportResult) ([]byte, error) {
	b, err := json.Marshal(res)
	if err != nil || len(b) <= MaxExportAnswer || res.Pulled == nil {
		return b, err
	}
	cp, sum := *res, *res.Pulled
	sum.Version.Meta.Table, sum.Version.Meta.Description = nil, ""
	cp.Pulled, cp.MetaTrimmed = &sum, true
	if b, err = json.Marshal(&cp); err == nil && len(b) > MaxExportAnswer {
		err = fmt.Errorf("an export answer of %d bytes: at most %d", len(b), MaxExportAnswer)
	}
	return b, err
}

// PullProgress is a pull's progress: bytes stored of the total to fetch.
type PullProgress struct {
	Done  int64 `json:"done"`
	Total int64 `json:"total"`
}

// PullProgressEvery is the most often a pull's progress is sent.
const PullProgressEvery = 100 * time.Millisecond

// ParseExportRequest decodes one request message strictly: one JSON
// object, known fields only, a token and a valid reference.
func ParseExportRequest(b []byte) (ExportRequest, nii.Ref, error) {
	var req ExportRequest
	if len(b) > MaxExportMessage {
		return req, nii.Ref{}, nii.Errorf(nii.ErrInvalid, "export request of %d bytes: at most %d", len(b), MaxExportMessage)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return req, nii.Ref{}, fmt.Errorf("%w: export request: %v", nii.ErrInvalid, err)
	}
	if dec.More() {
		return req, nii.Ref{}, nii.Errorf(nii.ErrInvalid, "export request: data after the JSON object")
	}
	if req.Token == "" {
		return req, nii.Ref{}, nii.Errorf(nii.ErrUnauthorized, "export request without the admin token")
	}
	ref, err := nii.ParseRef(req.Ref)
	if err != nil {
		return req, nii.Ref{}, fmt.Errorf("%w: export request: %v", nii.ErrInvalid, err)
	}
	return req, ref, nil
}
