package nii

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"time"
)

// Advert is a signed catalog record: "dataset D is at version N with
// manifest M and this metadata", or, as a tombstone, "D is withdrawn". Adverts
// are what gossip spreads; every node keeps the newest advert per (origin,
// dataset) and that set is the federated catalog.
//
// Seq is the origin's own counter: every record a node signs gets the next
// number, so "what have you got from origin O after seq S?" is the whole
// anti-entropy question (Syncthing's delta index idea).
type Advert struct {
	Origin    NodeID    `json:"origin" cbor:"1,keyasint"`
	Seq       uint64    `json:"seq" cbor:"2,keyasint"`
	Dataset   DatasetID `json:"dataset" cbor:"3,keyasint"`
	Version   uint64    `json:"version" cbor:"4,keyasint,omitempty"`
	Manifest  Hash      `json:"manifest" cbor:"5,keyasint,omitempty"`
	Withdrawn bool      `json:"withdrawn,omitempty" cbor:"6,keyasint,omitempty"`
	// Replica is true when the origin serves the version but did not
	// publish it. A replica record that is also Withdrawn says the origin
	// no longer serves the dataset (its copy was found damaged): it is
	// never a claim to publish.
	Replica bool      `json:"replica,omitempty" cbor:"7,keyasint,omitempty"`
	Meta    Metadata  `json:"meta" cbor:"8,keyasint"`
	Signed  time.Time `json:"signed" cbor:"9,keyasint"`
	// Credential is the origin's membership credential (a JWT binding its
	// org to its node ID), carried so any node can verify the org claim.
	Credential string `json:"credential,omitempty" cbor:"10,keyasint,omitempty"`
}

// MaxAdvertSize bounds an encoded signed advert.
const MaxAdvertSize = 64 << 10

// SignedAdvert is an advert body as encoded and signed by its origin.
type SignedAdvert struct {
	Body []byte `json:"body" cbor:"1,keyasint"`
	Sig  []byte `json:"sig" cbor:"2,keyasint"`
}

const advertDomain = "nii/advert/v1\x00"

// Check verifies an advert's internal consistency.
func (a *Advert) Check() error {
	if err := a.Origin.Validate(); err != nil {
		return err
	}
	if a.Seq == 0 {
		return fmt.Errorf("%w advert: seq 0", ErrInvalid)
	}
	if err := a.Dataset.Validate(); err != nil {
		return err
	}
	if !a.Withdrawn {
		if a.Version == 0 || a.Manifest.IsZero() {
			return fmt.Errorf("%w advert for %s: no version or manifest", ErrInvalid, a.Dataset)
		}
		if a.Meta.Publisher != a.Dataset.Org {
			return fmt.Errorf("%w advert for %s: metadata names publisher %q", ErrInvalid, a.Dataset, a.Meta.Publisher)
		}
	}
	if len(a.Credential) > 8<<10 {
		return fmt.Errorf("%w advert: credential over 8 KiB", ErrInvalid)
	}
	return a.Meta.Validate()
}

// SignAdvert checks and encodes a and signs it with the origin's key.
func SignAdvert(a *Advert, key ed25519.PrivateKey) (*SignedAdvert, error) {
	if NodeIDFromPublicKey(key.Public().(ed25519.PublicKey)) != a.Origin {
		return nil, errors.New("sign advert: key does not match the advert's origin")
	}
	if err := a.Check(); err != nil {
		return nil, err
	}
	body, err := Marshal(a)
	if err != nil {
		return nil, err
	}
	if len(body) > MaxAdvertSize-128 {
		return nil, fmt.Errorf("%w advert for %s: %d bytes is over the limit", ErrInvalid, a.Dataset, len(body))
	}
	return &SignedAdvert{Body: body, Sig: ed25519.Sign(key, append([]byte(advertDomain), body...))}, nil
}

// Open decodes and verifies a signed advert: it must decode, be consistent,
// and carry a valid signature by its origin.
func (s *SignedAdvert) Open() (*Advert, error) {
	if len(s.Body) > MaxAdvertSize {
		return nil, fmt.Errorf("%w advert: %d bytes is over the limit", ErrInvalid, len(s.Body))
	}
	var a Advert
	if err := Unmarshal(s.Body, &a); err != nil {
		return nil, fmt.Errorf("%w advert: %v", ErrInvalid, err)
	}
	if err := a.Check(); err != nil {
		return nil, err
	}
	pub, err := a.Origin.PublicKey()
	if err != nil {
		return nil, err
	}
	if len(s.Sig) != ed25519.SignatureSize || !ed25519.Verify(pub, append([]byte(advertDomain), s.Body...), s.Sig) {
		return nil, fmt.Errorf("advert %s seq %d from %s: %w", a.Dataset, a.Seq, a.Origin.Short(), ErrBadSignature)
	}
	return &a, nil
}

// EncodeSignedAdvert encodes s for storage or the wire.
func EncodeSignedAdvert(s *SignedAdvert) ([]byte, error) { return Marshal(s) }

// DecodeSignedAdvert decodes (but does not verify) a signed advert.
func DecodeSignedAdvert(b []byte) (*SignedAdvert, error) {
	if len(b) > MaxAdvertSize+128 {
		return nil, fmt.Errorf("%w advert: %d bytes is over the limit", ErrInvalid, len(b))
	}
	var s SignedAdvert
	if err := Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("%w signed advert: %v", ErrInvalid, err)
	}
	return &s, nil
}
