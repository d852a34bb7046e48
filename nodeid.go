package nii

import (
	"bytes"
	"crypto/ed25519"
	"fmt"

	"github.com/mr-tron/base58"
)

// NodeID identifies a node: the libp2p peer ID of its Ed25519 key, in its
// usual base58 text form ("12D3KooW…").
//
// An Ed25519 peer ID is an identity multihash of the protobuf-encoded public
// key, so the key can be recovered from the ID itself and any signature a node
// makes can be checked against its ID alone. The conversion is done here with
// the standard library (so that auth, which must not import libp2p, can use
// it); a test checks it against go-libp2p's own peer package.
type NodeID string

// ed25519PeerPrefix is multihash(identity, 36 bytes) followed by the libp2p
// crypto.pb PublicKey header {Type: Ed25519 (1), Data: 32 bytes}.
var ed25519PeerPrefix = []byte{0x00, 0x24, 0x08, 0x01, 0x12, 0x20}

// NodeIDFromPublicKey returns the node ID of an Ed25519 public key.
func NodeIDFromPublicKey(pub ed25519.PublicKey) NodeID {
	b := make([]byte, 0, len(ed25519PeerPrefix)+ed25519.PublicKeySize)
	b = append(b, ed25519PeerPrefix...)
	b = append(b, pub...)
	return NodeID(base58.Encode(b))
}

// PublicKey recovers the Ed25519 public key embedded in the node ID.
func (id NodeID) PublicKey() (ed25519.PublicKey, error) {
	b, err := base58.Decode(string(id))
	if err != nil {
		return nil, fmt.Errorf("%w node ID %q: not base58", ErrInvalid, id)
	}
	if len(b) != len(ed25519PeerPrefix)+ed25519.PublicKeySize || !bytes.HasPrefix(b, ed25519PeerPrefix) {
		return nil, fmt.Errorf("%w node ID %q: not an Ed25519 peer ID", ErrInvalid, id)
	}
	return ed25519.PublicKey(b[len(ed25519PeerPrefix):]), nil
}

// Validate reports whether id is a well-formed Ed25519 node ID.
func (id NodeID) Validate() error {
	_, err := id.PublicKey()
	return err
}

// String returns the ID's text form.
func (id NodeID) String() string { return string(id) }

// Short returns an abbreviated form for logs and tables.
func (id NodeID) Short() string {
	if len(id) <= 16 {
		return string(id)
	}
	return string(id[:8]) + "…" + string(id[len(id)-6:])
}
