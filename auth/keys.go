package auth

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
)

// MaxKeyFile bounds what is read from a key file.
const MaxKeyFile = 64 << 10

// JWK is an Ed25519 public key as a JSON Web Key (RFC 8037: kty OKP, crv
// Ed25519, x the raw 32-byte key, base64url).
type JWK struct {
	Kty string `json:"kty"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Kid string `json:"kid,omitempty"`
	Alg string `json:"alg,omitempty"`
	Use string `json:"use,omitempty"`
	// Name is nii's label for the issuer ("london-admin"); not a JWK
	// member other libraries read, and ignored by them.
	Name string `json:"name,omitempty"`
}

// JWKS is a JSON Web Key Set.
type JWKS struct {
	Keys []JWK `json:"keys"`
}

// KeyID returns a public key's ID: its RFC 7638 JWK thumbprint (SHA-256 of
// the canonical JWK members, base64url without padding).
func KeyID(pub ed25519.PublicKey) string {
	x := base64.RawURLEncoding.EncodeToString(pub)
	// RFC 7638 §3.2: required members only, lexicographic order, no spaces.
	sum := sha256.Sum256([]byte(`{"crv":"Ed25519","kty":"OKP","x":"` + x + `"}`))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// PublicJWK returns the JWK of pub, named name.
func PublicJWK(pub ed25519.PublicKey, name string) JWK {
	return JWK{Kty: "OKP", Crv: "Ed25519", X: base64.RawURLEncoding.EncodeToString(pub),
		Kid: KeyID(pub), Alg: "EdDSA", Use: "sig", Name: name}
}

// Key returns the Ed25519 public key a JWK holds, checking that it is one
// and that any kid it states is its thumbprint.
func (j JWK) Key() (ed25519.PublicKey, error) {
	if j.Kty != "OKP" || j.Crv != "Ed25519" {
		return nil, fmt.Errorf("jwk: kty %q crv %q: only OKP/Ed25519 issuer keys are accepted", j.Kty, j.Crv)
	}
	if j.Alg != "" && j.Alg != "EdDSA" {
		return nil, fmt.Errorf("jwk: alg %q: only EdDSA", j.Alg)
	}
	raw, err := base64.RawURLEncoding.DecodeString(j.X)
	if err != nil || len(raw) != ed25519.PublicKeySize {
		return nil, errors.New("jwk: x is not a base64url Ed25519 public key")
	}
	pub := ed25519.PublicKey(raw)
	if j.Kid != "" && j.Kid != KeyID(pub) {
		return nil, fmt.Errorf("jwk: kid %q is not the key's thumbprint %q", j.Kid, KeyID(pub))
	}
	return pub, nil
}

// ParsePublicKey reads an issuer's public key in any of the forms nii and
// other tools write: a JWK, a JWK Set holding one key, or a PEM "PUBLIC
// KEY" (PKIX, as openssl writes). It returns the key and its name, if the
// JWK gives one.
func ParsePublicKey(b []byte) (ed25519.PublicKey, string, error) {
	if len(b) > MaxKeyFile {
		return nil, "", errors.New("public key: file too large")
	}
	s := strings.TrimSpace(string(b))
	switch {
	case strings.HasPrefix(s, "{"):
		var probe struct {
			Keys []JWK `json:"keys"`
		}
		if err := json.Unmarshal([]byte(s), &probe); err == nil && probe.Keys != nil {
			if len(probe.Keys) != 1 {
				return nil, "", fmt.Errorf("public key: the key set holds %d keys; give one", len(probe.Keys))
			}
			pub, err := probe.Keys[0].Key()
			return pub, probe.Keys[0].Name, err
		}
		var j JWK
		if err := json.Unmarshal([]byte(s), &j); err != nil {
			return nil, "", fmt.Errorf("public key: not a JWK: %v", err)
		}
		pub, err := j.Key()
		return pub, j.Name, err
	case strings.HasPrefix(s, "-----BEGIN"):
		blk, _ := pem.Decode([]byte(s))
		if blk == nil {
			return nil, "", errors.New("public key: bad PEM")
		}
		if blk.Type == "PRIVATE KEY" {
			return nil, "", errors.New("public key: this is a private key; give the .pub file (never copy an issuer's private key to nodes)")
		}
		if blk.Type != "PUBLIC KEY" {
			return nil, "", fmt.Errorf("public key: PEM block %q, want PUBLIC KEY", blk.Type)
		}
		k, err := x509.ParsePKIXPublicKey(blk.Bytes)
		if err != nil {
			return nil, "", fmt.Errorf("public key: %v", err)
		}
		pub, ok := k.(ed25519.PublicKey)
		if !ok {
			return nil, "", fmt.Errorf("public key: %T; only Ed25519 issuer keys are accepted", k)
		}
		return pub, "", nil
	}
	return nil, "", errors.New("public key: neither a JWK nor a PEM public key")
}

// GenerateKey makes a new issuer key.
func GenerateKey() (ed25519.PrivateKey, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	return priv, err
}

// MarshalPrivateKey encodes an issuer key as PEM PKCS#8, as openssl does.
func MarshalPrivateKey(k ed25519.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// ParsePrivateKey decodes a PEM PKCS#8 Ed25519 private key.
func ParsePrivateKey(b []byte) (ed25519.PrivateKey, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, errors.New("issuer key: not a PEM PRIVATE KEY")
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("issuer key: %v", err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("issuer key: %T; only Ed25519", k)
	}
	return priv, nil
}

// LoadPrivateKey reads an issuer key file, refusing one that others on the
// machine can read.
func LoadPrivateKey(path string) (ed25519.PrivateKey, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("issuer key %s is readable by others (mode %v): chmod 600 it", path, fi.Mode().Perm())
	}
	if fi.Size() > MaxKeyFile {
		return nil, fmt.Errorf("issuer key %s: too large", path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParsePrivateKey(b)
}

// PublicPath is where WriteKeyPair writes the public half of the key at
// path: "london-admin.key" → "london-admin.pub", "admin" → "admin.pub".
func PublicPath(path string) string {
	if p := strings.TrimSuffix(path, ".key"); p != path {
		return p + ".pub"
	}
	return path + ".pub"
}

// KeyPair is an issuer key written to files by WriteKeyPair.
type KeyPair struct {
	Key        ed25519.PrivateKey
	Public     JWK    // the public key, as written
	Path       string // the private key: PEM PKCS#8, mode 0600
	PublicPath string // the public key: a JWK, mode 0644
}

// WriteKeyPair makes a new issuer key named name and writes it: the private
// key to path (PEM PKCS#8, mode 0600; keep it offline), the public key
// beside it as a JWK (PublicPath(path), mode 0644; give it to every node).
// It never overwrites a file: if either exists it fails and writes
// nothing, and if writing fails half way it removes what it wrote.
func WriteKeyPair(path, name string) (*KeyPair, error) {
	kp := &KeyPair{Path: path, PublicPath: PublicPath(path)}
	for _, p := range []string{kp.Path, kp.PublicPath} {
		if _, err := os.Lstat(p); err == nil {
			return nil, fmt.Errorf("%s exists: an issuer key is never overwritten (choose another name, or remove it if it is unused)", p)
		}
	}
	k, err := GenerateKey()
	if err != nil {
		return nil, err
	}
	pemb, err := MarshalPrivateKey(k)
	if err != nil {
		return nil, err
	}
	kp.Key = k
	kp.Public = PublicJWK(k.Public().(ed25519.PublicKey), name)
	jwk, err := json.MarshalIndent(kp.Public, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := writeNew(kp.Path, pemb, 0o600); err != nil {
		return nil, err
	}
	if err := writeNew(kp.PublicPath, append(jwk, '\n'), 0o644); err != nil {
		os.Remove(kp.Path)
		return nil, err
	}
	return kp, nil
}

// writeNew writes a file that must not exist yet, removing it again if the
// write fails.
func writeNew(path string, b []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
	}
	return err
}
