package auth

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/nii-uk/nii"
)

// Token types (the JWS "typ" header).
const (
	TypeGrant      = "nii-grant+jwt"
	TypeCredential = "nii-member+jwt"
	TypeRevocation = "nii-revocation+jwt"
)

// Actions a grant may allow: nii.ActionRead and nii.ActionSync. These names
// remain for code written before Action moved to package nii.
const (
	// Deprecated: use nii.ActionRead.
	ActionRead = nii.ActionRead
	// Deprecated: use nii.ActionSync.
	ActionSync = nii.ActionSync
)

// Limits on what is accepted.
const (
	MaxTokenSize = 8 << 10 // bytes of a compact JWS
	MaxPatterns  = 64
	MaxTTL       = 5 * 365 * 24 * time.Hour
)

// Confirmation binds a grant to one node (RFC 7800's "cnf" claim, with a
// member naming the node's libp2p peer ID): only that node may use it.
type Confirmation struct {
	Node nii.NodeID `json:"nii_node"`
}

// GrantClaims are an access grant's claims.
type GrantClaims struct {
	jwt.RegisteredClaims
	Datasets []string      `json:"datasets"`
	Actions  []nii.Action  `json:"actions"`
	Cnf      *Confirmation `json:"cnf,omitempty"`
}

// CredentialClaims are a membership credential's claims: sub is the node
// ID, Org the org it publishes for.
type CredentialClaims struct {
	jwt.RegisteredClaims
	Org  string `json:"org"`
	Name string `json:"name,omitempty"`
}

// RevocationClaims are a revocation's claims: Revokes is the jti of the
// grant or credential it voids.
type RevocationClaims struct {
	jwt.RegisteredClaims
	Revokes string `json:"revokes"`
}

// GrantSpec describes a grant to issue.
type GrantSpec struct {
	Federation string
	Subject    string       // an org slug or a node ID
	Datasets   []string     // patterns: "greenwich/spend-*"
	Actions    []nii.Action // read, sync
	Node       nii.NodeID   // if set, bind the grant to this node (cnf)
	NotBefore  time.Time    // zero: now
	TTL        time.Duration
}

func checkActions(as []nii.Action) error {
	if len(as) == 0 {
		return fmt.Errorf("%w: a grant needs at least one action (read, sync)", nii.ErrInvalid)
	}
	for _, a := range as {
		if !a.Valid() {
			return fmt.Errorf("%w action %q: want read or sync", nii.ErrInvalid, a)
		}
	}
	return nil
}

// checkSubject validates a grant subject: an org slug or a node ID.
func checkSubject(s string) error {
	if strings.HasPrefix(s, "12D3KooW") {
		return nii.NodeID(s).Validate()
	}
	return nii.CheckSlug("subject org", s)
}

// NewID returns a random token ID (128 bits, hex).
func NewID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func sign(key ed25519.PrivateKey, typ string, claims jwt.Claims) (string, error) {
	t := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims)
	t.Header["typ"] = typ
	t.Header["kid"] = KeyID(key.Public().(ed25519.PublicKey))
	return t.SignedString(key)
}

func registered(key ed25519.PrivateKey, fed, sub string, nbf time.Time, ttl time.Duration) (jwt.RegisteredClaims, error) {
	if fed == "" {
		return jwt.RegisteredClaims{}, fmt.Errorf("%w: the federation (aud) is required", nii.ErrInvalid)
	}
	if ttl <= 0 || ttl > MaxTTL {
		return jwt.RegisteredClaims{}, fmt.Errorf("%w ttl %v: want more than 0 and at most %v", nii.ErrInvalid, ttl, MaxTTL)
	}
	now := time.Now().Truncate(time.Second)
	if nbf.IsZero() {
		nbf = now
	}
	return jwt.RegisteredClaims{
		Issuer:    KeyID(key.Public().(ed25519.PublicKey)),
		Subject:   sub,
		Audience:  jwt.ClaimStrings{fed},
		IssuedAt:  jwt.NewNumericDate(now),
		NotBefore: jwt.NewNumericDate(nbf.Truncate(time.Second)),
		ExpiresAt: jwt.NewNumericDate(nbf.Add(ttl).Truncate(time.Second)),
		ID:        NewID(),
	}, nil
}

// IssueGrant signs a grant with an issuer key.
func IssueGrant(key ed25519.PrivateKey, s GrantSpec) (string, *GrantClaims, error) {
	if err := checkSubject(s.Subject); err != nil {
		return "", nil, fmt.Errorf("grant subject (--to): %w", err)
	}
	if len(s.Datasets) == 0 || len(s.Datasets) > MaxPatterns {
		return "", nil, fmt.Errorf("%w: a grant needs 1 to %d dataset patterns", nii.ErrInvalid, MaxPatterns)
	}
	for _, p := range s.Datasets {
		if err := nii.CheckPattern(p); err != nil {
			return "", nil, err
		}
	}
	if err := checkActions(s.Actions); err != nil {
		return "", nil, err
	}
	if s.TTL > DefaultMaxGrantLifetime {
		return "", nil, fmt.Errorf("%w ttl %v: a grant may be valid for at most %v (nodes refuse longer ones by default, reason %s); issue a shorter one and renew it",
			nii.ErrInvalid, s.TTL, DefaultMaxGrantLifetime, ReasonLifetime)
	}
	rc, err := registered(key, s.Federation, s.Subject, s.NotBefore, s.TTL)
	if err != nil {
		return "", nil, err
	}
	c := &GrantClaims{RegisteredClaims: rc, Datasets: s.Datasets, Actions: s.Actions}
	if s.Node != "" {
		if err := s.Node.Validate(); err != nil {
			return "", nil, fmt.Errorf("grant binding (--node): %w", err)
		}
		c.Cnf = &Confirmation{Node: s.Node}
	}
	tok, err := sign(key, TypeGrant, c)
	return tok, c, err
}

// IssueCredential signs a membership credential binding node to org.
func IssueCredential(key ed25519.PrivateKey, federation string, node nii.NodeID, org, name string, ttl time.Duration) (string, *CredentialClaims, error) {
	if err := node.Validate(); err != nil {
		return "", nil, fmt.Errorf("credential node: %w", err)
	}
	if err := nii.CheckSlug("org", org); err != nil {
		return "", nil, err
	}
	if len(name) > 200 {
		return "", nil, fmt.Errorf("%w: display name too long", nii.ErrInvalid)
	}
	rc, err := registered(key, federation, string(node), time.Time{}, ttl)
	if err != nil {
		return "", nil, err
	}
	c := &CredentialClaims{RegisteredClaims: rc, Org: org, Name: name}
	tok, err := sign(key, TypeCredential, c)
	return tok, c, err
}

// IssueRevocation signs a revocation of the grant or credential with ID
// jti. ttl is how long nodes must keep it: at least as long as what it
// revokes could still be valid.
func IssueRevocation(key ed25519.PrivateKey, federation, jti string, ttl time.Duration) (string, *RevocationClaims, error) {
	if jti == "" || len(jti) > 128 {
		return "", nil, fmt.Errorf("%w: the token ID to revoke must be 1 to 128 characters", nii.ErrInvalid)
	}
	rc, err := registered(key, federation, "", time.Time{}, ttl)
	if err != nil {
		return "", nil, err
	}
	c := &RevocationClaims{RegisteredClaims: rc, Revokes: jti}
	tok, err := sign(key, TypeRevocation, c)
	return tok, c, err
}

var errNoKey = errors.New("no key")
