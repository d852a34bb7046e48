package node

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/auth"
	"github.com/nii-uk/nii/exchange"
	"github.com/pelletier/go-toml/v2"
)

// How a node uses package auth: its trust anchors come from config.toml,
// its membership credential from credential.jwt in the home, revocations
// and the audit log live in the store. Every access decision on content
// this node serves goes through authorize and into the audit log.

// anchors decodes the configured trust anchors.
func (c *Config) anchors() ([]auth.Anchor, error) {
	var out []auth.Anchor
	for i, t := range c.Trust {
		raw, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(t.Key, "="))
		if err != nil || len(raw) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("config: trust[%d].key: want an Ed25519 public key, base64url (use 'nii trust add FILE')", i)
		}
		kid := auth.KeyID(raw)
		if t.KID != "" && t.KID != kid {
			return nil, fmt.Errorf("config: trust[%d]: kid %s is not the key's ID %s", i, t.KID, kid)
		}
		out = append(out, auth.Anchor{KID: kid, Name: t.Name, Key: raw})
	}
	return out, nil
}

// startAuth opens the auth state: anchors, verifier, revocations, audit log
// and this node's credential. It runs before the catalog opens, which
// verifies credentials with it.
func (n *Node) startAuth() error {
	as, err := n.cfg.anchors()
	if err != nil {
		return err
	}
	n.anchors = auth.NewAnchors(as...)
	maxLife, _ := n.cfg.Grants.maxLifetime() // validated
	n.verifier = &auth.Verifier{Anchors: n.anchors, Federation: n.cfg.Federation, MaxGrantLifetime: maxLife}
	if n.revocations, err = auth.OpenRevocations(n.db, n.verifier); err != nil {
		return fmt.Errorf("open revocations: %w", err)
	}
	n.verifier.Revoked = n.revocations.Revoked
	if n.audit, err = auth.OpenAuditLog(n.db); err != nil {
		return err
	}
	b, err := os.ReadFile(filepath.Join(n.cfg.Home, CredFile))
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fmt.Errorf("read credential: %w", err)
	default:
		n.credential = strings.TrimSpace(string(b))
		if _, err := n.verifier.VerifyCredential(n.credential, n.id); err != nil {
			// Peers judge it against their own anchors; say so, carry on.
			n.log.Warn("this node's membership credential does not verify here", slog.String(nii.LogErr, err.Error()))
		}
	}
	return nil
}

// verifyCredential checks a membership credential for the registry: the
// org it proves for node, if it is signed by a trust anchor of this node,
// for this federation, unexpired, unrevoked and issued to that node.
func (n *Node) verifyCredential(cred string, node nii.NodeID) (string, error) {
	c, err := n.verifier.VerifyCredential(cred, node)
	if err != nil {
		return "", err
	}
	return c.Org, nil
}

// authorize decides whether a remote node may read a version this node
// serves, and records the decision. Open datasets are served to any
// member; restricted ones only by their publisher, and only with a grant
// that passes every check (auth.Verifier.CheckGrant). Every manifest
// request is recorded; chunk requests are checked the same way but, since
// a pull makes one per 64 chunks, an allowed one is recorded only when it
// is the first from that node for that version and grant in
// chunkAuditWindow (so reading a version with a manifest fetched earlier
// or elsewhere still leaves a record). A restricted read whose record
// cannot be written is refused.
func (n *Node) authorize(r exchange.AccessRequest) error {
	m := r.Manifest
	rec := auth.Record{Node: r.Remote, Dataset: m.Ref().String(), Action: r.Action}
	if r.Credential != "" {
		if c, err := n.verifier.VerifyCredential(r.Credential, r.Remote); err == nil {
			rec.Org = c.Org
		}
	}
	err := n.decide(r, &rec)
	if err != nil {
		rec.Result, rec.Detail = auth.Refused, err.Error()
		if reason := auth.ReasonOf(err); reason != "" {
			rec.Reason = reason
		} else if rec.Reason == "" {
			rec.Reason = auth.ReasonNotServed
		}
	} else {
		rec.Result = auth.Allowed
		if r.Chunks {
			rec.Detail = "chunks"
		}
	}
	if err != nil || !r.Chunks || n.firstChunkRead(rec) {
		if _, aerr := n.audit.Append(rec); aerr != nil {
			n.log.Error("audit log write failed", slog.String(nii.LogErr, aerr.Error()))
			if err == nil && m.Meta.Access == nii.AccessRestricted {
				return fmt.Errorf("%w: %s: this node cannot record the access, so it refuses it", nii.ErrRefused, m.Ref())
			}
		}
	}
	if err != nil {
		n.log.Info("access refused", slog.String(nii.LogPeer, r.Remote.Short()), slog.String(nii.LogOrg, rec.Org),
			slog.String(nii.LogDataset, rec.Dataset), slog.String(nii.LogAction, string(r.Action)), slog.String(nii.LogReason, rec.Reason))
	}
	return err
}

// chunkAuditWindow is how long one allowed chunk read of a version by a
// node (with one grant) stands for the rest.
const chunkAuditWindow = 10 * time.Minute

// firstChunkRead reports whether an allowed chunk request is the first of
// its (node, version, grant) in chunkAuditWindow, and notes it.
func (n *Node) firstChunkRead(rec auth.Record) bool {
	key := string(rec.Node) + " " + rec.Dataset + " " + rec.Grant
	now := time.Now()
	n.chunkMu.Lock()
	defer n.chunkMu.Unlock()
	if n.chunkReads == nil {
		n.chunkReads = make(map[string]time.Time)
	}
	if at, ok := n.chunkReads[key]; ok && now.Sub(at) < chunkAuditWindow {
		return false
	}
	if len(n.chunkReads) >= 4096 {
		for k, at := range n.chunkReads {
			if now.Sub(at) >= chunkAuditWindow {
				delete(n.chunkReads, k)
			}
		}
		if len(n.chunkReads) >= 4096 {
			clear(n.chunkReads) // bounded: at worst, some extra records
		}
	}
	n.chunkReads[key] = now
	return true
}

func (n *Node) decide(r exchange.AccessRequest, rec *auth.Record) error {
	m := r.Manifest
	if !n.cfg.Replica.serve() && m.Publisher != n.id {
		return fmt.Errorf("%w: this node does not serve replicas", nii.ErrRefused)
	}
	if m.Meta.Access == nii.AccessRestricted && m.Publisher != n.id {
		// The publisher's trust anchors and revocations decide who reads its
		// restricted data; a replica's may differ (an extra issuer would
		// widen access), so replicas never serve it.
		rec.Reason = auth.ReasonReplicaRestricted
		return fmt.Errorf("%w: %s is restricted: only its publisher serves it", nii.ErrRefused, m.Ref())
	}
	if m.Meta.Access != nii.AccessRestricted {
		rec.Reason = auth.ReasonOpen
		return nil
	}
	g, err := n.verifier.CheckGrant(r.Grant, auth.Request{Dataset: m.Dataset, Action: r.Action, Node: r.Remote, Org: rec.Org})
	rec.SetGrant(r.Grant, g)
	if err != nil {
		return err
	}
	rec.Reason = auth.ReasonGranted
	return nil
}

// Trust returns the issuer keys this node trusts.
func (n *Node) Trust() []auth.Anchor { return n.anchors.List() }

// AddTrust makes this node trust an issuer key, now and after restarts
// (it is written to config.toml).
func (n *Node) AddTrust(pub ed25519.PublicKey, name string) (auth.Anchor, error) {
	n.trustMu.Lock()
	defer n.trustMu.Unlock()
	if err := TrustIssuer(n.cfg.Home, pub, name); err != nil {
		return auth.Anchor{}, err
	}
	a := n.anchors.Add(pub, name)
	n.trustChanged()
	return a, nil
}

// RemoveTrust stops trusting an issuer key, now and after restarts. It
// removes the key from config.toml even if the running node had already
// dropped it, so a leaked key can always be removed.
func (n *Node) RemoveTrust(kid string) error {
	n.trustMu.Lock()
	defer n.trustMu.Unlock()
	found, err := UntrustIssuer(n.cfg.Home, kid)
	if err != nil {
		return err
	}
	if inMemory := n.anchors.Remove(kid); !found && !inMemory {
		return fmt.Errorf("issuer key %s: %w among this node's trust anchors", kid, nii.ErrNotFound)
	}
	n.trustChanged()
	return nil
}

// TrustIssuer adds an issuer key to home's config.toml, or renames it if
// it is there already: a key is listed once, however often it is added
// (copies an older 'nii trust add' left are folded into one). A running
// node does it through AddTrust, which also trusts the key at once; with no
// daemon running, 'nii trust add' calls it directly, and the node reads the
// key at its next start.
func TrustIssuer(home string, pub ed25519.PublicKey, name string) error {
	return EditConfig(home, func(c *Config) error { return addAnchor(c, pub, name) })
}

// UntrustIssuer removes the issuer key with ID kid from home's
// config.toml, reporting whether it was there. RemoveTrust uses it, and
// 'nii trust remove' when no daemon runs.
func UntrustIssuer(home, kid string) (bool, error) {
	found := false
	err := EditConfig(home, func(c *Config) error {
		var err error
		found, err = removeAnchor(c, kid)
		return err
	})
	return found, err
}

func addAnchor(c *Config, pub ed25519.PublicKey, name string) error {
	kid := auth.KeyID(pub)
	key := base64.RawURLEncoding.EncodeToString(pub)
	out, found := c.Trust[:0], false
	for _, t := range c.Trust {
		if t.KID == kid || strings.TrimRight(t.Key, "=") == key {
			if found {
				continue // a copy: drop it
			}
			found = true
			t.Name, t.Key, t.KID = name, key, kid
		}
		out = append(out, t)
	}
	if !found {
		out = append(out, TrustAnchor{Name: name, Key: key, KID: kid})
	}
	c.Trust = out
	return nil
}

func removeAnchor(c *Config, kid string) (bool, error) {
	as, err := c.anchors()
	if err != nil {
		return false, err
	}
	// Every copy goes: an older 'nii trust add' may have listed it twice.
	found := false
	out := c.Trust[:0]
	for i, a := range as {
		if a.KID == kid {
			found = true
			continue
		}
		out = append(out, c.Trust[i])
	}
	c.Trust = out
	return found, nil
}

// EditConfig changes home's config.toml through f, atomically. The daemon
// uses it for 'nii trust'; with no daemon running the CLI calls it
// directly.
func EditConfig(home string, f func(*Config) error) error {
	cfg, err := LoadConfig(home)
	if err != nil {
		return err
	}
	if err := f(&cfg); err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	b, err := toml.Marshal(cfg)
	if err != nil {
		return err
	}
	header := "# nii node configuration. See docs/operations.md.\n"
	return writeFileAtomic(filepath.Join(home, ConfigFile), append([]byte(header), b...), 0o600)
}

// trustChanged re-judges what depends on the anchors: org claims in the
// catalog. (Grants are checked at each use.)
func (n *Node) trustChanged() {
	if n.catalog != nil {
		// A node with trust anchors lists and takes data only from
		// publishers a credential proves (registry/policy.go).
		n.catalog.SetRequireVerified(n.anchors.Len() > 0)
		if k := n.catalog.Reverify(); k > 0 {
			n.log.Info("catalog org claims re-verified", slog.Int(nii.LogCount, k))
		}
	}
}

// Credential returns this node's membership credential ("" if none).
func (n *Node) Credential() string {
	n.credMu.Lock()
	defer n.credMu.Unlock()
	return n.credential
}

// InstallCredential verifies a membership credential for this node against
// its own anchors, keeps it in the home and re-advertises this node's
// datasets carrying it, so peers show them verified.
func (n *Node) InstallCredential(token string) (*auth.CredentialClaims, error) {
	token = strings.TrimSpace(token)
	c, err := n.verifier.VerifyCredential(token, n.id)
	if err != nil {
		return nil, fmt.Errorf("%w: membership credential: %w", nii.ErrInvalid, err)
	}
	if c.Org != n.cfg.Org {
		return nil, fmt.Errorf("%w: the credential is for org %q; this node publishes for %q", nii.ErrInvalid, c.Org, n.cfg.Org)
	}
	if err := writeFileAtomic(filepath.Join(n.cfg.Home, CredFile), []byte(token+"\n"), 0o600); err != nil {
		return nil, err
	}
	n.credMu.Lock()
	n.credential = token
	n.credMu.Unlock()
	n.catalog.SetCredential(token)
	n.host.SetCredential(token)
	n.catalog.Reverify()
	if err := n.readvertise(); err != nil {
		return c, err
	}
	n.log.Info("membership credential installed", slog.String(nii.LogOrg, c.Org), slog.String(nii.LogExpires, c.ExpiresAt.UTC().Format(time.RFC3339)))
	return c, nil
}

// readvertise signs this node's current records again (same content, new
// seq) so that they carry its current credential.
func (n *Node) readvertise() error {
	for _, a := range n.catalog.OwnRecords() {
		if _, err := n.announce(*a); err != nil {
			return err
		}
	}
	return nil
}

// Revoke keeps a revocation (verified against this node's anchors) and
// spreads it through the federation.
func (n *Node) Revoke(token string) (string, bool, error) {
	jti, isNew, err := n.revocations.Add(strings.TrimSpace(token))
	if err != nil {
		return "", false, fmt.Errorf("%w: revocation: %w", nii.ErrInvalid, err)
	}
	if isNew {
		n.gossip.SpreadRevocation(strings.TrimSpace(token))
		n.revoked(jti)
	}
	return jti, isNew, nil
}

// revoked reacts to a new revocation: org claims resting on a revoked
// credential become unverified, and follows stop using a revoked grant.
func (n *Node) revoked(jti string) {
	n.log.Info("token revoked", slog.String(nii.LogJTI, jti))
	n.trustChanged()
	n.kickFollow()
}

// Revocations returns the revocations this node holds.
func (n *Node) Revocations() []auth.Revocation { return n.revocations.List() }

// Audit returns a page of the audit log.
func (n *Node) Audit(q auth.AuditQuery) ([]auth.Record, uint64, error) { return n.audit.Page(q) }

// InspectGrant checks a token as this node would.
func (n *Node) InspectGrant(token string, r *auth.Request) auth.Report {
	return n.verifier.Inspect(token, r)
}

// JWKS returns the issuer keys this node trusts, as a JWK Set.
func (n *Node) JWKS() auth.JWKS { return n.anchors.JWKS() }

// authLoop keeps the auth state current: it prunes the audit log past its
// retention and expired revocations, and re-verifies org claims (credentials
// expire) every minute.
func (n *Node) authLoop(retention time.Duration) {
	defer n.wg.Done()
	tick := time.NewTicker(time.Minute)
	defer tick.Stop()
	prune := func() {
		if k, err := n.audit.Prune(time.Now().Add(-retention)); err != nil {
			n.log.Error("audit prune", slog.String(nii.LogErr, err.Error()))
		} else if k > 0 {
			n.log.Info("audit records past retention removed", slog.Int(nii.LogCount, k))
		}
		n.revocations.Prune(time.Now())
	}
	prune()
	last := time.Now()
	for {
		select {
		case <-n.closeCh:
			return
		case <-tick.C:
			n.trustChanged()
			if time.Since(last) >= time.Hour {
				prune()
				last = time.Now()
			}
		}
	}
}

// accessDecisionCounts returns the access decisions made since start, by
// (result, reason), for the metrics collector.
func (n *Node) accessDecisionCounts() map[[2]string]uint64 {
	if n.audit == nil {
		return nil
	}
	return n.audit.Counts()
}
