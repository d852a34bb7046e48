package api

import (
	"errors"
	"net/http"

	"github.com/nii-uk/nii"
)

// APIError is the body of every error response (and the error of a pull's
// final event).
type APIError struct {
	Error string `json:"error"`
	Code  string `json:"code"` // one of the Code constants
	// Reason is the stable reason code of a refusal (auth's Reason
	// constants: no_grant, expired, ...), when the refusing check gave one.
	Reason string `json:"reason,omitempty"`
}

// Error codes: the "code" of an APIError.
const (
	CodeInvalid      = "invalid"      // 400: nii.ErrInvalid
	CodeUnauthorized = "unauthorized" // 401: nii.ErrUnauthorized (no or wrong admin token)
	CodeRefused      = "refused"      // 403: nii.ErrRefused
	CodeNotFound     = "not_found"    // 404: nii.ErrNotFound
	CodeExists       = "exists"       // 409: nii.ErrExists
	CodeAmbiguous    = "ambiguous"    // 409: nii.ErrAmbiguous
	CodeConflict     = "conflict"     // 409: nii.ErrConflict (a registry-only node asked to hold data)
	CodeRateLimited  = "rate_limited" // 429: too many requests without the admin token; of kind nii.ErrUnavailable
	CodeCorrupt      = "corrupt"      // 500: nii.ErrCorrupt
	CodeUnavailable  = "unavailable"  // 503: nii.ErrUnavailable
	CodeInternal     = "internal"     // 500: anything else; details are in the node's log
)

// errorCodes is the one table between nii's error kinds and the API's HTTP
// statuses and codes. The node answers an error with the first row whose
// kind it is of (the order is nii.Kinds'); the client's RemoteError is of
// the kind its code names.
var errorCodes = []struct {
	kind   error
	status int
	code   string
}{
	{nii.ErrInvalid, http.StatusBadRequest, CodeInvalid},
	{nii.ErrUnauthorized, http.StatusUnauthorized, CodeUnauthorized},
	{nii.ErrRefused, http.StatusForbidden, CodeRefused},
	{nii.ErrUnavailable, http.StatusServiceUnavailable, CodeUnavailable},
	{nii.ErrNotFound, http.StatusNotFound, CodeNotFound},
	{nii.ErrExists, http.StatusConflict, CodeExists},
	{nii.ErrAmbiguous, http.StatusConflict, CodeAmbiguous},
	{nii.ErrConflict, http.StatusConflict, CodeConflict},
	{nii.ErrCorrupt, http.StatusInternalServerError, CodeCorrupt},
}

// otherCodes are codes that are not a kind's own but stand for one.
var otherCodes = map[string]error{
	CodeRateLimited: nii.ErrUnavailable, // try again later
	"forbidden":     nii.ErrRefused,     // what nodes before the kinds answered a withdraw by a non-publisher with
}

// ErrorFor returns the HTTP status and error body for err, by its kind: the
// one mapping the node's handlers use.
func ErrorFor(err error) (int, APIError) {
	body := APIError{Error: err.Error(), Code: CodeInternal, Reason: nii.ReasonOf(err)}
	for _, c := range errorCodes {
		if errors.Is(err, c.kind) {
			body.Code = c.code
			return c.status, body
		}
	}
	return http.StatusInternalServerError, body
}

// StatusOf returns the HTTP status for an error code.
func StatusOf(code string) int {
	for _, c := range errorCodes {
		if c.code == code {
			return c.status
		}
	}
	if code == CodeRateLimited {
		return http.StatusTooManyRequests
	}
	return http.StatusInternalServerError
}

// KindOf returns the error kind an API error code stands for, or nil
// (internal, or a code this client does not know).
func KindOf(code string) error {
	for _, c := range errorCodes {
		if c.code == code {
			return c.kind
		}
	}
	return otherCodes[code]
}

// codeForStatus is the code a response without an APIError body (a proxy's
// page, the mux's "404 page not found") is taken to carry.
func codeForStatus(status int) string {
	switch status {
	case http.StatusTooManyRequests:
		return CodeRateLimited
	case http.StatusConflict, http.StatusInternalServerError:
		return CodeInternal // several kinds share these: say no more than we know
	}
	for _, c := range errorCodes {
		if c.status == status {
			return c.code
		}
	}
	return CodeInternal
}

// RemoteError is an error response from the API. errors.Is matches the
// kind its code stands for (nii.ErrNotFound for "not_found", ...), and
// nii.ReasonOf gives a refusal's reason.
type RemoteError struct {
	Status int // the HTTP status (200 for an error event in a stream)
	APIError
}

func (e *RemoteError) Error() string { return e.APIError.Error }

// Is reports whether target is the kind of e's code.
func (e *RemoteError) Is(target error) bool {
	k := KindOf(e.Code)
	return k != nil && k == target
}

// RefusalReason returns the refusal's reason code, for nii.ReasonOf.
func (e *RemoteError) RefusalReason() string { return e.Reason }
