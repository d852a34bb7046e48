package nii

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"time"

	"github.com/fxamacker/cbor/v2"
)

// ChunkRef is one entry of a manifest: a chunk's hash and length.
type ChunkRef struct {
	Hash Hash   `json:"hash" cbor:"1,keyasint"`
	Size uint32 `json:"size" cbor:"2,keyasint"`
}

// Manifest says what one version of a dataset is: its chunks in order, its
// total size and its metadata. The publishing node signs the encoded body; the
// hash of that body names the version's content.
type Manifest struct {
	Dataset   DatasetID  `json:"dataset" cbor:"1,keyasint"`
	Version   uint64     `json:"version" cbor:"2,keyasint"`
	Publisher NodeID     `json:"publisher" cbor:"3,keyasint"`
	Created   time.Time  `json:"created" cbor:"4,keyasint"`
	Size      int64      `json:"size" cbor:"5,keyasint"`
	Chunker   string     `json:"chunker" cbor:"6,keyasint"` // algorithm and bounds, e.g. "fastcdc-v1.0.0/8192/32768/131072"
	Chunks    []ChunkRef `json:"chunks" cbor:"7,keyasint"`
	Meta      Metadata   `json:"meta" cbor:"8,keyasint"`
	// Lineage is, for a merged dataset (Meta.Kind KindMerged), what the
	// version was built from. Nil for every other kind.
	Lineage *Lineage `json:"lineage,omitempty" cbor:"9,keyasint,omitempty"`
}

// Ref returns the manifest's dataset and version.
func (m *Manifest) Ref() Ref { return Ref{Dataset: m.Dataset, Version: m.Version} }

// Check verifies the manifest's internal consistency: identifiers valid, at
// least version 1, chunk sizes in range and summing to Size.
func (m *Manifest) Check() error {
	if err := m.Dataset.Validate(); err != nil {
		return err
	}
	if m.Version == 0 {
		return fmt.Errorf("%w manifest: version 0", ErrInvalid)
	}
	if err := m.Publisher.Validate(); err != nil {
		return err
	}
	var total int64
	for i, c := range m.Chunks {
		if c.Size == 0 || c.Size > MaxChunkSize {
			return fmt.Errorf("%w manifest: chunk %d has size %d", ErrInvalid, i, c.Size)
		}
		total += int64(c.Size)
	}
	if total != m.Size {
		return fmt.Errorf("%w manifest: chunks sum to %d bytes, manifest says %d", ErrInvalid, total, m.Size)
	}
	if m.Lineage != nil {
		if m.Meta.Kind != KindMerged {
			return fmt.Errorf("%w manifest: a lineage belongs to a merged dataset, not a %q one", ErrInvalid, m.Meta.Kind)
		}
		if err := m.Lineage.Check(); err != nil {
			return err
		}
	}
	return m.Meta.Validate()
}

// MaxChunkSize bounds a chunk's length everywhere (decoders, the wire, the
// store). The chunker's own maximum is lower.
const MaxChunkSize = 1 << 20

// MaxManifestSize bounds an encoded manifest: about 24 M chunk entries' worth
// would be absurd; 64 MiB holds ~1.5 M chunks, i.e. ~100 GiB at 64 KiB
// average chunks, ~50 GiB at the default 32 KiB.
const MaxManifestSize = 64 << 20

// SignedManifest is a manifest body as encoded and signed by its publisher.
// Body is kept byte for byte, so the signature and the content hash never
// depend on re-encoding.
type SignedManifest struct {
	Body []byte `json:"body" cbor:"1,keyasint"`
	Sig  []byte `json:"sig" cbor:"2,keyasint"`
}

// manifestDomain separates manifest signatures from every other signature a
// node key makes (adverts, catalog records), so one can never be replayed as
// another.
const manifestDomain = "nii/manifest/v1\x00"

// Canonical CBOR (RFC 8949 core deterministic encoding) for everything nii
// signs, and a decoder with limits for everything it reads.
var (
	encMode cbor.EncMode
	decMode cbor.DecMode
)

func init() {
	var err error
	opts := cbor.CoreDetEncOptions()
	opts.Time = cbor.TimeRFC3339Nano
	if encMode, err = opts.EncMode(); err != nil {
		panic(err)
	}
	if decMode, err = (cbor.DecOptions{
		MaxArrayElements:  1 << 24,
		MaxMapPairs:       1 << 16,
		MaxNestedLevels:   16,
		DupMapKey:         cbor.DupMapKeyEnforcedAPF,
		IndefLength:       cbor.IndefLengthForbidden,
		ExtraReturnErrors: cbor.ExtraDecErrorUnknownField,
	}).DecMode(); err != nil {
		panic(err)
	}
}

// Marshal encodes v as canonical CBOR, the encoding of every signed record.
func Marshal(v any) ([]byte, error) { return encMode.Marshal(v) }

// Unmarshal decodes canonical CBOR with nii's limits, refusing unknown
// fields, duplicate keys and indefinite lengths.
func Unmarshal(b []byte, v any) error { return decMode.Unmarshal(b, v) }

// SignManifest checks and encodes m and signs it with the publisher's key.
// m.Publisher must be the key's node ID.
func SignManifest(m *Manifest, key ed25519.PrivateKey) (*SignedManifest, Hash, error) {
	if NodeIDFromPublicKey(key.Public().(ed25519.PublicKey)) != m.Publisher {
		return nil, Hash{}, errors.New("sign manifest: key does not match the manifest's publisher")
	}
	if err := m.Check(); err != nil {
		return nil, Hash{}, err
	}
	body, err := Marshal(m)
	if err != nil {
		return nil, Hash{}, fmt.Errorf("encode manifest: %w", err)
	}
	sig := ed25519.Sign(key, append([]byte(manifestDomain), body...))
	return &SignedManifest{Body: body, Sig: sig}, HashOf(body), nil
}

// ErrBadSignature is wrapped when a signature does not verify.
var ErrBadSignature = errors.New("signature does not verify")

// Open decodes and verifies a signed manifest: the body must decode, be
// consistent, and carry a valid signature by the node it names as publisher.
// It returns the manifest and its content hash.
func (s *SignedManifest) Open() (*Manifest, Hash, error) {
	if len(s.Body) > MaxManifestSize {
		return nil, Hash{}, fmt.Errorf("%w manifest: %d bytes is over the %d limit", ErrInvalid, len(s.Body), MaxManifestSize)
	}
	var m Manifest
	if err := Unmarshal(s.Body, &m); err != nil {
		return nil, Hash{}, fmt.Errorf("%w manifest: %v", ErrInvalid, err)
	}
	if err := m.Check(); err != nil {
		return nil, Hash{}, err
	}
	pub, err := m.Publisher.PublicKey()
	if err != nil {
		return nil, Hash{}, err
	}
	if len(s.Sig) != ed25519.SignatureSize || !ed25519.Verify(pub, append([]byte(manifestDomain), s.Body...), s.Sig) {
		return nil, Hash{}, fmt.Errorf("manifest for %s: %w", m.Ref(), ErrBadSignature)
	}
	return &m, HashOf(s.Body), nil
}

// EncodeSignedManifest encodes s for storage or the wire.
func EncodeSignedManifest(s *SignedManifest) ([]byte, error) { return Marshal(s) }

// DecodeSignedManifest decodes (but does not verify) a stored or received
// signed manifest; call Open to verify it.
func DecodeSignedManifest(b []byte) (*SignedManifest, error) {
	if len(b) > MaxManifestSize+256 {
		return nil, fmt.Errorf("%w manifest: %d bytes is over the limit", ErrInvalid, len(b))
	}
	var s SignedManifest
	if err := Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("%w signed manifest: %v", ErrInvalid, err)
	}
	return &s, nil
}
