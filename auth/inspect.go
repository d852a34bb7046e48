package auth

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"time"
)

// Report is what 'nii grant inspect' shows of a token: what it claims, and
// whether this node would accept it and, if not, why.
type Report struct {
	Type    string         `json:"type,omitempty"` // the typ header
	Header  map[string]any `json:"header,omitempty"`
	Claims  map[string]any `json:"claims,omitempty"`
	Expires time.Time      `json:"expires,omitzero"`
	Valid   bool           `json:"valid"`
	Reason  string         `json:"reason,omitempty"`
	Detail  string         `json:"detail,omitempty"`
	// Request is the access checked, if one was given.
	Request *Request `json:"request,omitempty"`
}

// Inspect decodes a token for display and checks it as this verifier
// would: fully, as a grant against r if r is given, else every check that
// needs no request.
func (v *Verifier) Inspect(token string, r *Request) Report {
	token = strings.TrimSpace(token)
	rep := Report{Request: r}
	if _, err := splitHeader(token); err != nil {
		rep.Reason, rep.Detail = ReasonOf(err), err.(*Denial).Detail
		return rep
	}
	parts := strings.Split(token, ".")
	if b, err := base64.RawURLEncoding.DecodeString(parts[0]); err == nil {
		json.Unmarshal(b, &rep.Header)
	}
	if m, err := unverifiedClaims(token); err == nil {
		rep.Claims = m
		if exp, ok := m["exp"].(float64); ok {
			rep.Expires = time.Unix(int64(exp), 0).UTC()
		}
	}
	rep.Type, _ = rep.Header["typ"].(string)
	var err error
	switch {
	case rep.Type == TypeGrant && r != nil:
		_, err = v.CheckGrant(token, *r)
	case rep.Type == TypeGrant:
		_, err = v.parse(token, TypeGrant, new(GrantClaims), true)
	case rep.Type == TypeCredential:
		_, err = v.parse(token, TypeCredential, new(CredentialClaims), true)
	case rep.Type == TypeRevocation:
		_, err = v.VerifyRevocation(token)
	default:
		_, err = v.parse(token, TypeGrant, new(GrantClaims), true) // reports alg or typ
	}
	if err != nil {
		if d, ok := err.(*Denial); ok {
			rep.Reason, rep.Detail = d.Reason, d.Detail
		} else {
			rep.Reason, rep.Detail = ReasonMalformed, err.Error()
		}
		return rep
	}
	rep.Valid = true
	return rep
}

// Peek returns a token's ID and expiry without verifying anything: for a
// holder deciding whether its own grant is still worth presenting.
func Peek(token string) (jti string, exp time.Time, err error) {
	m, err := unverifiedClaims(token)
	if err != nil {
		return "", time.Time{}, err
	}
	jti, _ = m["jti"].(string)
	if e, ok := m["exp"].(float64); ok {
		exp = time.Unix(int64(e), 0).UTC()
	}
	return jti, exp, nil
}
