// Package auth is nii's trust machinery: issuer (federation admin) keys,
// access grants, membership credentials, revocations and the audit log.
//
// Every token is a compact JWS signed with Ed25519 (alg "EdDSA", RFC 8037)
// by an issuer key that a node trusts (a trust anchor). Tokens carry a
// "typ" header naming what they are, so one kind can never be passed off as
// another:
//
//	nii-grant+jwt       an access grant: sub (an org or a node ID) may do
//	                    actions (read, sync) on datasets matching patterns
//	nii-member+jwt      a membership credential: node sub belongs to org
//	nii-revocation+jwt  a revocation: the token with ID "revokes" is void
//
// The key ID ("kid" header) is the key's RFC 7638 JWK thumbprint, and "iss"
// is that same key ID, so any standard JOSE library can mint tokens nii
// accepts and verify the tokens nii mints, given the issuer's public JWK
// (served by every node at /.well-known/jwks.json).
//
// Verification is deny by default: a Verifier refuses any token that fails
// one check and says which, as a *Denial carrying a stable reason code that
// the audit log records. The package imports neither libp2p nor memberlist:
// the node wires it into the exchange (who may read what) and the registry
// (whose org claims are verified).
package auth
