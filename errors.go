package nii

import (
	"errors"
	"fmt"
)

// Error kinds: what a caller may branch on, whichever package an error comes
// from and whichever way it travelled (a libp2p status, the local API). Every
// error nii returns that a caller could act on wraps exactly one of them;
// errors.Is(err, nii.ErrNotFound) is the test. More specific sentinels
// (exchange.ErrNoProvider, node.ErrRegistryOnly, ...) are made with Errorf so
// that they are of a kind too.
//
// The wire codes of the libp2p protocols (exchange/wire.go) and the local
// API's HTTP statuses and error codes (node/api/errors.go) are each one table
// from these kinds; a client on the far side gets the kind back.
var (
	// ErrInvalid: the request or input is malformed (a bad identifier, an
	// unknown parameter value, a body that does not decode). Fix the input.
	ErrInvalid = errors.New("invalid")
	// ErrNotFound: the thing asked for does not exist here.
	ErrNotFound = errors.New("not found")
	// ErrExists: the thing to create exists already (with other content).
	ErrExists = errors.New("already exists")
	// ErrRefused: the caller is not allowed what it asked for (no grant, a
	// grant that fails a check, not the publisher). The error says which
	// check failed; ReasonOf gives its stable reason code when it has one.
	ErrRefused = errors.New("refused")
	// ErrUnauthorized: the caller has not shown who it is (the local API's
	// admin token is missing or wrong).
	ErrUnauthorized = errors.New("unauthorized")
	// ErrUnavailable: it cannot be done now (no provider reachable, a peer
	// shutting down or over its limits, no daemon running); trying later, or
	// elsewhere, may work.
	ErrUnavailable = errors.New("unavailable")
	// ErrAmbiguous: the request names more than one thing and nii will not
	// guess (two unverified publishers claim one dataset; a CKAN name that
	// splits two ways). The error says how to be precise.
	ErrAmbiguous = errors.New("ambiguous")
	// ErrConflict: the node's role or state rules the request out (a
	// registry-only node asked to hold data, a home already in use).
	ErrConflict = errors.New("conflict")
	// ErrCorrupt: stored or received bytes do not verify against their hash
	// or signature.
	ErrCorrupt = errors.New("corrupt")
)

// Kinds lists every error kind, in the order a mapping table should test
// them: an error that wraps two kinds (a refusal inside a "no provider",
// say) is of the first listed.
var Kinds = []error{ErrInvalid, ErrUnauthorized, ErrRefused, ErrUnavailable, ErrNotFound, ErrExists, ErrAmbiguous, ErrConflict, ErrCorrupt}

// KindOf returns the kind err is of (the first of Kinds it wraps), or nil.
func KindOf(err error) error {
	if err == nil {
		return nil
	}
	for _, k := range Kinds {
		if errors.Is(err, k) {
			return k
		}
	}
	return nil
}

// Errorf returns an error of the given kind whose text is format's alone
// (the kind's own word is not added): errors.Is matches kind, and whatever
// format wraps with %w. Sentinels more specific than a kind are made with
// it:
//
//	var ErrNoProvider = nii.Errorf(nii.ErrUnavailable, "no reachable provider")
func Errorf(kind error, format string, a ...any) error {
	return &kindError{kind: kind, err: fmt.Errorf(format, a...)}
}

type kindError struct {
	kind error
	err  error
}

func (e *kindError) Error() string   { return e.err.Error() }
func (e *kindError) Unwrap() []error { return []error{e.err, e.kind} }

// ReasonOf returns the stable reason code an error carries, or "" if it
// carries none: a refusal by package auth (its Reason constants), or one
// that crossed the wire or the local API with its reason. An error carries a
// reason by having a method RefusalReason() string.
func ReasonOf(err error) string {
	var r interface{ RefusalReason() string }
	if errors.As(err, &r) {
		return r.RefusalReason()
	}
	return ""
}
