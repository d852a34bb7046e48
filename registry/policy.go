package registry

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"

	"github.com/nii-uk/nii"
)

// Catalog policy: which advert this node treats as a dataset's publisher,
// and which nodes it takes a version's content from. Pull, follow, the
// download relay and 'nii show' all ask here, so they never disagree.

// ErrUnlisted is returned when no node claims to publish a dataset.
var ErrUnlisted = nii.Errorf(nii.ErrNotFound, "not in the federated catalog")

// ErrAmbiguous is returned when more than one node claims to publish a
// dataset and none of the claims is verified: nii will not guess which is
// the real publisher (and send it a grant).
var ErrAmbiguous = nii.Errorf(nii.ErrAmbiguous, "ambiguous publisher")

// ErrUnverified is returned, on a node that requires verified publishers
// (one with trust anchors: see SetRequireVerified), when the only claims to
// publish a dataset are not proven by a membership credential. Pulling or
// following it anyway needs an explicit AllowUnverified.
var ErrUnverified = nii.Errorf(nii.ErrRefused, "unverified publisher")

// SetRequireVerified says whether this node lists and takes data only from
// publishers whose org claim a membership credential proves. A node with
// trust anchors requires it (package node keeps it in step with the
// anchors); a federation with none (a lab, a demo) is open: every claim is
// unverified and the only claim is the publisher.
func (c *Catalog) SetRequireVerified(on bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.requireVerified != on {
		c.requireVerified = on
		c.relistAll()
	}
}

// RequireVerified reports the mode SetRequireVerified set.
func (c *Catalog) RequireVerified() bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.requireVerified
}

// SourceOption changes how Sources and Publisher choose.
type SourceOption func(*sourceOptions)

type sourceOptions struct{ allowUnverified bool }

// AllowUnverified lets a node that requires verified publishers take the
// only (unverified) claim as the publisher: what 'nii pull
// --allow-unverified' asks for. It never lets an unverified claim win over
// a verified one, nor chooses between two unverified claims.
func AllowUnverified() SourceOption {
	return func(o *sourceOptions) { o.allowUnverified = true }
}

// Publisher chooses the entry this node treats as the publisher of d: the
// newest verified claim, or — if none is verified — the only claim (a
// tombstone counts: a withdrawn dataset's publisher is the one that
// withdrew it). Two or more unverified claims are refused with
// ErrAmbiguous: otherwise any member could take over a dataset whose real
// publisher is unverified here (its credential expired, or its issuer not
// trusted) by advertising a higher version. On a node that requires
// verified publishers an unverified only claim is ErrUnverified unless
// AllowUnverified is given. No claim at all is ErrUnlisted.
func (c *Catalog) Publisher(d nii.DatasetID, opts ...SourceOption) (Entry, error) {
	pub, _, err := c.choosePublisher(d, c.Lookup(d), opts)
	return pub, err
}

// Listed reports whether public views (CKAN, DCAT, search, the catalog
// API) show e under its dataset's own name: e is the claim Publisher
// chooses with no options. Every other claim — an impostor's beside the
// verified publisher, either of two unverified claims, any unverified
// claim on a node that requires verified publishers — is shown only when
// asked for, under an identity of its own (see ClaimID).
func (c *Catalog) Listed(e Entry) bool {
	if e.Advert == nil || e.Advert.Replica {
		return false
	}
	pub, err := c.Publisher(e.Advert.Dataset)
	return err == nil && pub.Advert.Origin == e.Advert.Origin
}

// ClaimID names one origin's claim to publish a dataset, for views that
// must tell it apart from the dataset itself: the first 12 hex digits of
// the SHA-256 of the origin's node ID. It is stable, lowercase and short
// enough for a CKAN name.
func ClaimID(origin nii.NodeID) string {
	h := sha256.Sum256([]byte(origin))
	return hex.EncodeToString(h[:6])
}

// choosePublisher applies Publisher's rule to entries in Lookup's order
// (claims before replicas, verified first, newest first). It also returns
// the claims it did not choose.
func (c *Catalog) choosePublisher(d nii.DatasetID, entries []Entry, opts []SourceOption) (Entry, []Entry, error) {
	return c.choosePublisherMode(d, entries, opts, c.RequireVerified())
}

// choosePublisherMode is choosePublisher with the policy's mode given (for
// callers that hold c.mu).
func (c *Catalog) choosePublisherMode(d nii.DatasetID, entries []Entry, opts []SourceOption, requireVerified bool) (Entry, []Entry, error) {
	var o sourceOptions
	for _, f := range opts {
		f(&o)
	}
	var claims []Entry
	for _, e := range entries {
		if !e.Advert.Replica {
			claims = append(claims, e)
		}
	}
	switch {
	case len(claims) == 0:
		return Entry{}, nil, fmt.Errorf("dataset %s: %w", d, ErrUnlisted)
	case claims[0].Verified:
		return claims[0], claims[1:], nil
	case len(claims) == 1 && requireVerified && !o.allowUnverified:
		return Entry{}, nil, fmt.Errorf("dataset %s: %w: node %s claims to publish it for org %s, but no membership credential this node's trust anchors accept proves that claim; it may be an impostor. To take its data anyway pass --allow-unverified (the API's allow_unverified)",
			d, ErrUnverified, claims[0].Advert.Origin, d.Org)
	case len(claims) == 1:
		return claims[0], nil, nil
	}
	return Entry{}, nil, fmt.Errorf("dataset %s: %w: %d nodes claim to publish it and none is verified by this node's trust anchors (enrol the publisher with 'nii enrol', or trust its issuer with 'nii trust add')",
		d, ErrAmbiguous, len(claims))
}

// Sources is the catalog's answer to "where does version Version of a
// dataset come from, and what must it be?".
type Sources struct {
	// Publisher is the chosen publisher's newest record (it may be a
	// tombstone: check Advert.Withdrawn).
	Publisher Entry
	// Version is the version asked for; 0 was resolved to the publisher's
	// newest.
	Version uint64
	// Manifest is the manifest hash the publisher advertises for Version,
	// if the catalog holds that advert (it holds only the publisher's
	// newest); zero for an older version. Content for Version must carry
	// the publisher's signature and, where this is set, hash to it.
	Manifest nii.Hash
	// Providers are the entries of nodes that can serve Version, best
	// first: online before offline, the publisher first among equals. They
	// are the publisher (which keeps its older versions) and the replicas
	// that advertise Version — with the publisher's manifest, where that
	// is known. A restricted dataset has the publisher alone: a replica
	// would judge grants against its own trust anchors, not the
	// publisher's. This node's own entry is included if it qualifies.
	Providers []Entry
	// Others are the claims to publish the dataset that were not chosen
	// (an unverified claim beside a verified one).
	Others []Entry

	self nii.NodeID
}

// Remote returns the providers' node IDs, best first, without this node:
// the nodes a fetch asks.
func (s *Sources) Remote() []nii.NodeID {
	out := make([]nii.NodeID, 0, len(s.Providers))
	for _, e := range s.Providers {
		if e.Advert.Origin != s.self {
			out = append(out, e.Advert.Origin)
		}
	}
	return out
}

// Sources applies the catalog policy to ref: it chooses the publisher
// (Publisher's rule and errors) and the providers of ref's version
// (version 0: the publisher's newest). online says whether a node is
// reachable now; nil counts every node as offline. A withdrawn dataset is
// returned as such, with no providers: callers say it is withdrawn.
func (c *Catalog) Sources(ref nii.Ref, online func(nii.NodeID) bool, opts ...SourceOption) (*Sources, error) {
	entries := c.Lookup(ref.Dataset)
	pub, others, err := c.choosePublisher(ref.Dataset, entries, opts)
	if err != nil {
		return nil, err
	}
	s := &Sources{Publisher: pub, Version: ref.Version, self: c.self, Providers: []Entry{}}
	for _, o := range others {
		if !o.Advert.Withdrawn {
			s.Others = append(s.Others, o)
		}
	}
	a := pub.Advert
	if a.Withdrawn {
		return s, nil
	}
	if s.Version == 0 {
		s.Version = a.Version
	}
	if s.Version == a.Version {
		s.Manifest = a.Manifest
	}
	restricted := a.Meta.Access == nii.AccessRestricted
	type cand struct {
		e      Entry
		online bool
		pub    bool
	}
	var cs []cand
	for _, e := range entries {
		r := e.Advert
		switch {
		case r.Withdrawn:
			continue
		case r.Origin == a.Origin:
			// The publisher itself (its newest record is its claim).
		case !r.Replica || restricted || r.Version != s.Version:
			continue
		case !s.Manifest.IsZero() && r.Manifest != s.Manifest:
			continue // a "replica" of other content than the publisher's
		}
		cs = append(cs, cand{e, online != nil && online(r.Origin), r.Origin == a.Origin})
	}
	sort.SliceStable(cs, func(i, j int) bool {
		if cs[i].online != cs[j].online {
			return cs[i].online
		}
		return cs[i].pub && !cs[j].pub
	})
	for _, c := range cs {
		s.Providers = append(s.Providers, c.e)
	}
	return s, nil
}
