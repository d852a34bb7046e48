package auth

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/nii-uk/nii"
)

// Reasons a token or a request is refused: stable codes, recorded in the
// audit log and shown to the refused client. They are the only reason codes
// nii records or shows: other packages use these constants, never their own
// strings.
const (
	ReasonNoGrant     = "no_grant"            // a restricted dataset and no grant presented
	ReasonTooLarge    = "too_large"           // over MaxTokenSize
	ReasonMalformed   = "malformed"           // not a compact JWS, or bad JSON/base64
	ReasonAlg         = "alg"                 // alg other than EdDSA (none, HS*, RS*, ES* …)
	ReasonType        = "wrong_type"          // a credential or revocation passed as a grant, say
	ReasonUntrusted   = "untrusted_issuer"    // signed by a key that is not a trust anchor
	ReasonSignature   = "bad_signature"       // the signature does not verify (tampered)
	ReasonIssuer      = "issuer"              // iss is not the signing key's ID
	ReasonClaims      = "claims"              // a required claim missing or invalid
	ReasonAudience    = "audience"            // aud is not this federation
	ReasonExpired     = "expired"             // past exp (beyond the leeway)
	ReasonNotYetValid = "not_yet_valid"       // before nbf or iat (beyond the leeway)
	ReasonRevoked     = "revoked"             // its jti was revoked
	ReasonDataset     = "dataset"             // no pattern matches the dataset
	ReasonAction      = "action"              // the action is not granted
	ReasonSubject     = "subject"             // sub is neither the requesting node nor its verified org
	ReasonBound       = "bound_to_other_node" // cnf names another node
	ReasonCrit        = "crit"                // a crit header: an extension nii does not implement (RFC 7515 §4.1.11)
	ReasonLifetime    = "lifetime_too_long"   // exp - nbf is longer than the node's maximum grant lifetime

	// Refusals a serving node makes before any token is looked at.
	ReasonNotServed         = "not_served"         // this node does not serve it (replicas turned off, the access could not be recorded)
	ReasonReplicaRestricted = "replica_restricted" // a restricted version asked of a replica: only its publisher serves it
	ReasonNotChecked        = "not_checked"        // no node was there to check the token against (an offline inspect)
	ReasonNotMember         = "not_member"         // the requesting node is not a member: not seen in gossip, or (with trust anchors) no membership credential that verifies
)

// Denial is why a token or request was refused. It is of kind
// nii.ErrRefused, and nii.ReasonOf gives its Reason.
type Denial struct {
	Reason string // one of the Reason constants
	Detail string // for people; never contains the token
}

func (d *Denial) Error() string {
	if d.Detail == "" {
		return "refused (" + d.Reason + ")"
	}
	return "refused (" + d.Reason + "): " + d.Detail
}

// Is makes a Denial of kind nii.ErrRefused.
func (d *Denial) Is(target error) bool { return target == nii.ErrRefused }

// RefusalReason returns d.Reason, for nii.ReasonOf.
func (d *Denial) RefusalReason() string { return d.Reason }

func deny(reason, format string, args ...any) *Denial {
	return &Denial{Reason: reason, Detail: fmt.Sprintf(format, args...)}
}

// ReasonOf returns the reason code of a refusal, or "" if err is not one.
func ReasonOf(err error) string {
	var d *Denial
	if errors.As(err, &d) {
		return d.Reason
	}
	return ""
}

// DefaultLeeway is the clock skew tolerated on exp, nbf and iat.
const DefaultLeeway = 30 * time.Second

// cacheSize bounds the verified-token cache.
const cacheSize = 4096

// Verifier checks tokens against a node's trust anchors, its federation
// and the revocations it holds. Safe for concurrent use.
type Verifier struct {
	Anchors    *Anchors
	Federation string
	// Revoked reports whether a token ID has been revoked; nil: none are.
	Revoked func(jti string) bool
	Leeway  time.Duration    // 0: DefaultLeeway
	Now     func() time.Time // nil: time.Now
	// MaxGrantLifetime refuses grants valid for longer (exp - nbf) than
	// this, whoever signed them (ReasonLifetime); 0: DefaultMaxGrantLifetime.
	MaxGrantLifetime time.Duration

	mu    sync.Mutex
	cache map[[32]byte]cached // signature-verified tokens
}

// cached is a token whose signature, issuer and claims decoding passed;
// time, audience-independent request checks and revocation are rechecked
// on every use.
type cached struct {
	gen    uint64 // anchors generation it was verified under
	claims any
	err    error // a failure that does not change while the anchors do not (bad signature, untrusted key …)
}

func (v *Verifier) now() time.Time {
	if v.Now != nil {
		return v.Now()
	}
	return time.Now()
}

func (v *Verifier) leeway() time.Duration {
	if v.Leeway > 0 {
		return v.Leeway
	}
	return DefaultLeeway
}

// header is the JOSE header nii reads before any verification.
type header struct {
	Alg string `json:"alg"`
	Typ string `json:"typ"`
	Kid string `json:"kid"`
	// Crit lists header extensions the recipient must understand (RFC 7515
	// §4.1.11). nii implements none, so a token that has it at all — even
	// an empty list, which the RFC forbids — is refused.
	Crit json.RawMessage `json:"crit"`
}

// splitHeader decodes a compact JWS's header without trusting it.
func splitHeader(token string) (header, error) {
	var h header
	if len(token) > MaxTokenSize {
		return h, deny(ReasonTooLarge, "token is %d bytes; the limit is %d", len(token), MaxTokenSize)
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return h, deny(ReasonMalformed, "not a compact JWS (header.payload.signature)")
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		return h, deny(ReasonMalformed, "header is not base64url")
	}
	if err := json.Unmarshal(b, &h); err != nil {
		return h, deny(ReasonMalformed, "header is not JSON")
	}
	if h.Crit != nil {
		return h, deny(ReasonCrit, "crit header %s: nii implements no JWS extension, so it cannot honour one marked critical", trim(string(h.Crit), 64))
	}
	return h, nil
}

// unverifiedClaims decodes a token's payload without verifying anything.
func unverifiedClaims(token string) (map[string]any, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, deny(ReasonMalformed, "not a compact JWS")
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, deny(ReasonMalformed, "payload is not base64url")
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, deny(ReasonMalformed, "payload is not a JSON object")
	}
	return m, nil
}

// parse verifies a token of type typ into claims (a pointer to one of the
// *Claims types) and returns its registered claims. Every check that does
// not depend on a request is made here, in this order: size, form, alg,
// typ, trusted key, signature, issuer, required claims, audience, time,
// revocation. A token refused by the checks after the signature's (time,
// audience, revocation) is authentic: its claims are returned with the
// refusal. Before that, the claims are nil.
func (v *Verifier) parse(token, typ string, claims jwt.Claims, checkRevoked bool) (any, error) {
	h, err := splitHeader(token)
	if err != nil {
		return nil, err
	}
	if h.Alg != "EdDSA" {
		return nil, deny(ReasonAlg, "alg %q: only EdDSA (Ed25519) is accepted", h.Alg)
	}
	if h.Typ != typ {
		return nil, deny(ReasonType, "typ %q: want %q", h.Typ, typ)
	}
	key := sha256.Sum256([]byte(typ + "\x00" + token))
	gen := v.Anchors.generation()
	v.mu.Lock()
	c, hit := v.cache[key]
	v.mu.Unlock()
	var out any
	if hit && c.gen == gen {
		if c.err != nil {
			return nil, c.err
		}
		out = c.claims
	} else {
		claims, err := v.verifySignature(token, h, claims)
		v.remember(key, cached{gen: gen, claims: claims, err: err})
		if err != nil {
			return nil, err
		}
		out = claims
	}
	// From here on the token is authentic: a refusal returns its claims
	// too, so that the audit log can name the grant it refused.
	rc := registeredOf(out.(jwt.Claims))
	if err := v.checkTime(rc); err != nil {
		return out, err
	}
	if !containsAud(rc.Audience, v.Federation) {
		return out, deny(ReasonAudience, "aud %v: this node's federation is %q", []string(rc.Audience), v.Federation)
	}
	if checkRevoked && v.Revoked != nil && v.Revoked(rc.ID) {
		return out, deny(ReasonRevoked, "token %s was revoked by an issuer", rc.ID)
	}
	return out, nil
}

// verifySignature makes the checks whose outcome depends only on the token
// and the anchors: trusted key, signature, issuer, required claims.
func (v *Verifier) verifySignature(token string, h header, claims jwt.Claims) (jwt.Claims, error) {
	kid := h.Kid
	if kid == "" { // no kid: the issuer claim names the key
		if m, err := unverifiedClaims(token); err == nil {
			kid, _ = m["iss"].(string)
		}
	}
	anchor, ok := v.Anchors.Get(kid)
	if !ok {
		return nil, deny(ReasonUntrusted, "issuer key %q is not a trust anchor of this node", trim(kid, 64))
	}
	p := jwt.NewParser(jwt.WithValidMethods([]string{"EdDSA"}), jwt.WithoutClaimsValidation())
	if _, err := p.ParseWithClaims(token, claims, func(*jwt.Token) (any, error) { return anchor.Key, nil }); err != nil {
		if errors.Is(err, jwt.ErrTokenSignatureInvalid) {
			return nil, deny(ReasonSignature, "signature does not verify against issuer %s", anchor.KID)
		}
		return nil, deny(ReasonMalformed, "%v", err)
	}
	rc := registeredOf(claims)
	if rc.Issuer != anchor.KID {
		return nil, deny(ReasonIssuer, "iss %q is not the signing key %s", trim(rc.Issuer, 64), anchor.KID)
	}
	if rc.ID == "" || len(rc.ID) > 128 {
		return nil, deny(ReasonClaims, "jti missing or too long")
	}
	if rc.ExpiresAt == nil {
		return nil, deny(ReasonClaims, "exp missing: nii accepts no token without an expiry")
	}
	return claims, nil
}

// remember caches a verification outcome, evicting an arbitrary entry
// when full.
func (v *Verifier) remember(key [32]byte, c cached) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.cache == nil {
		v.cache = make(map[[32]byte]cached)
	}
	if len(v.cache) >= cacheSize {
		for k := range v.cache {
			delete(v.cache, k)
			break
		}
	}
	v.cache[key] = c
}

func (v *Verifier) checkTime(rc *jwt.RegisteredClaims) error {
	now, lw := v.now(), v.leeway()
	if rc.ExpiresAt != nil && !now.Before(rc.ExpiresAt.Add(lw)) {
		return deny(ReasonExpired, "expired at %s", rc.ExpiresAt.UTC().Format(time.RFC3339))
	}
	if rc.NotBefore != nil && now.Add(lw).Before(rc.NotBefore.Time) {
		return deny(ReasonNotYetValid, "not valid before %s", rc.NotBefore.UTC().Format(time.RFC3339))
	}
	if rc.IssuedAt != nil && now.Add(lw).Before(rc.IssuedAt.Time) {
		return deny(ReasonNotYetValid, "issued in the future (%s)", rc.IssuedAt.UTC().Format(time.RFC3339))
	}
	return nil
}

func containsAud(aud jwt.ClaimStrings, fed string) bool {
	for _, a := range aud {
		if a == fed {
			return true
		}
	}
	return false
}

func registeredOf(c jwt.Claims) *jwt.RegisteredClaims {
	switch c := c.(type) {
	case *GrantClaims:
		return &c.RegisteredClaims
	case *CredentialClaims:
		return &c.RegisteredClaims
	case *RevocationClaims:
		return &c.RegisteredClaims
	}
	panic(fmt.Sprintf("auth: unexpected claims %T", c))
}

func trim(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// Request is an access request a grant is checked against.
type Request struct {
	Dataset nii.DatasetID
	Action  nii.Action // nii.ActionRead or nii.ActionSync
	Node    nii.NodeID // the authenticated requesting node
	Org     string     // the requesting node's verified org; "" if unproven
}

// CheckGrant verifies a grant and that it allows r. It returns the
// grant's claims, or a *Denial saying which check failed. A refused grant
// whose signature verified (expired, not yet valid, wrong audience,
// revoked, or not allowing r) comes back with its claims, so the caller
// can record which grant it refused; an unverifiable one with nil.
func (v *Verifier) CheckGrant(token string, r Request) (*GrantClaims, error) {
	if token == "" {
		return nil, deny(ReasonNoGrant, "%s is restricted: present a grant (--grant)", r.Dataset)
	}
	out, err := v.parse(token, TypeGrant, new(GrantClaims), true)
	if out == nil {
		return nil, err
	}
	g := out.(*GrantClaims)
	if err != nil {
		return g, err
	}
	if max := v.maxGrantLifetime(); g.NotBefore != nil && g.ExpiresAt != nil && g.ExpiresAt.Sub(g.NotBefore.Time) > max {
		return g, deny(ReasonLifetime, "the grant is valid for %v, longer than this node's maximum grant lifetime of %v (auth.max_grant_lifetime): ask its issuer for a shorter one",
			g.ExpiresAt.Sub(g.NotBefore.Time).Round(time.Hour), max)
	}
	if len(g.Datasets) == 0 || len(g.Datasets) > MaxPatterns {
		return g, deny(ReasonClaims, "datasets: want 1 to %d patterns", MaxPatterns)
	}
	if !nii.MatchDataset(g.Datasets, r.Dataset) {
		return g, deny(ReasonDataset, "%s matches none of the grant's patterns %v", r.Dataset, g.Datasets)
	}
	if !slices.Contains(g.Actions, r.Action) {
		return g, deny(ReasonAction, "action %q is not granted (grant allows %v)", r.Action, g.Actions)
	}
	if g.Cnf != nil && g.Cnf.Node != r.Node {
		return g, deny(ReasonBound, "the grant is bound to node %s, not %s", g.Cnf.Node.Short(), r.Node.Short())
	}
	if g.Subject != string(r.Node) && (r.Org == "" || g.Subject != r.Org) {
		if r.Org == "" {
			return g, deny(ReasonSubject, "the grant is for %q; node %s has no verified org (install a membership credential: nii enrol)", g.Subject, r.Node.Short())
		}
		return g, deny(ReasonSubject, "the grant is for %q, not node %s of %s", g.Subject, r.Node.Short(), r.Org)
	}
	return g, nil
}

// DefaultMaxGrantLifetime is the longest a grant may be valid for, unless
// the node's operator sets another maximum.
const DefaultMaxGrantLifetime = 365 * 24 * time.Hour

func (v *Verifier) maxGrantLifetime() time.Duration {
	if v.MaxGrantLifetime > 0 {
		return v.MaxGrantLifetime
	}
	return DefaultMaxGrantLifetime
}

// VerifyCredential verifies a membership credential for node and returns
// its claims (the org it proves).
func (v *Verifier) VerifyCredential(token string, node nii.NodeID) (*CredentialClaims, error) {
	out, err := v.parse(token, TypeCredential, new(CredentialClaims), true)
	if out == nil {
		return nil, err
	}
	c := out.(*CredentialClaims)
	if err != nil {
		return c, err
	}
	if c.Subject != string(node) {
		return c, deny(ReasonSubject, "the credential is for node %s, not %s", trim(c.Subject, 60), node.Short())
	}
	if nii.CheckSlug("org", c.Org) != nil {
		return c, deny(ReasonClaims, "org %q is not a valid org slug", trim(c.Org, 60))
	}
	return c, nil
}

// VerifyRevocation verifies a revocation.
func (v *Verifier) VerifyRevocation(token string) (*RevocationClaims, error) {
	out, err := v.parse(token, TypeRevocation, new(RevocationClaims), false)
	if out == nil {
		return nil, err
	}
	if err != nil {
		return out.(*RevocationClaims), err
	}
	r := out.(*RevocationClaims)
	if r.Revokes == "" || len(r.Revokes) > 128 {
		return r, deny(ReasonClaims, "revokes: want the ID of a grant or credential")
	}
	return r, nil
}
