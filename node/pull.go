package node

import (
	"context"
	"fmt"
	"log/slog"
	"sort"

	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/exchange"
	"github.com/nii-uk/nii/registry"
)

// PullOptions tune a pull.
type PullOptions struct {
	Grant    string
	Action   nii.Action // nii.ActionRead (default) or nii.ActionSync (follow)
	Progress func(done, total int64)
}

// Pull fetches a version of a dataset from its providers (the publisher and
// any replicas the catalog lists), verified, into the store, and — unless
// replicas are turned off — advertises this node as a replica.
func (n *Node) Pull(ctx context.Context, ref nii.Ref, opt PullOptions) (*exchange.PullResult, error) {
	if n.cfg.RegistryOnly {
		return nil, ErrRegistryOnly
	}
	if err := ref.Dataset.Validate(); err != nil {
		return nil, err
	}
	pub, entries, err := n.publisherOf(ref.Dataset)
	if err != nil {
		return nil, err
	}
	if pub.Advert.Withdrawn {
		return nil, fmt.Errorf("dataset %s: %w: withdrawn by its publisher", ref.Dataset, exchange.ErrNotFound)
	}
	if pub.Advert.Origin == n.id {
		rec, err := n.store.Version(ref)
		if err != nil {
			return nil, err
		}
		return &exchange.PullResult{Record: rec, HeldChunks: rec.Chunks}, nil
	}
	req := exchange.PullRequest{
		Ref:        ref,
		Publisher:  pub.Advert.Origin,
		Grant:      opt.Grant,
		Action:     opt.Action,
		Credential: n.Credential(),
		Progress:   opt.Progress,
		Logger:     n.log,
	}
	if ref.Version == 0 || ref.Version == pub.Advert.Version {
		req.Ref.Version = pub.Advert.Version
		req.Manifest = pub.Advert.Manifest
	}
	req.Providers = n.providers(entries, pub.Advert, req.Ref.Version)
	n.ops.pullsStarted.Add(1)
	res, err := exchange.Pull(ctx, n.host, n.store, req)
	if err != nil {
		n.ops.pullsFailed.Add(1)
		n.log.Warn("pull failed", slog.String(LogDataset, req.Ref.String()), slog.String(LogErr, err.Error()))
		return res, err
	}
	n.log.Info("pulled", slog.String(LogDataset, res.Record.Ref.String()), slog.Int("fetched_chunks", res.FetchedChunks),
		slog.Int64("fetched_bytes", res.FetchedBytes), slog.Int("held_chunks", res.HeldChunks))
	n.pulledBytes.Add(res.FetchedBytes)
	n.ops.pullsCompleted.Add(1)
	if n.cfg.Replica.serve() {
		n.advertiseReplica(res.Record)
	}
	return res, nil
}

// providers orders the nodes that can serve version v: the publisher and
// replicas holding it, online ones first, the publisher first among equals.
// A restricted dataset is served by its publisher only: a replica would
// judge grants against its own trust anchors, not the publisher's.
func (n *Node) providers(entries []registry.Entry, pub *nii.Advert, v uint64) []nii.NodeID {
	restricted := pub.Meta.Access == nii.AccessRestricted
	type cand struct {
		id     nii.NodeID
		online bool
		pub    bool
	}
	var cs []cand
	for _, e := range entries {
		a := e.Advert
		if a.Withdrawn || a.Origin == n.id {
			continue
		}
		if a.Origin != pub.Origin && (!a.Replica || a.Version != v || restricted) {
			continue
		}
		online, _ := n.presence(a.Origin)
		cs = append(cs, cand{a.Origin, online, a.Origin == pub.Origin})
	}
	sort.SliceStable(cs, func(i, j int) bool {
		if cs[i].online != cs[j].online {
			return cs[i].online
		}
		return cs[i].pub && !cs[j].pub
	})
	out := make([]nii.NodeID, len(cs))
	for i, c := range cs {
		out[i] = c.id
	}
	return out
}

// advertiseReplica tells the federation this node serves a version it pulled.
func (n *Node) advertiseReplica(rec *exchange.VersionRecord) {
	if rec.Meta.Access == nii.AccessRestricted {
		return // only its publisher serves a restricted version (see providers)
	}
	if own, ok := n.catalog.Own(rec.Ref.Dataset); ok && own.Version >= rec.Ref.Version {
		return
	}
	_, err := n.announce(nii.Advert{
		Dataset: rec.Ref.Dataset, Version: rec.Ref.Version, Manifest: rec.Manifest, Replica: true, Meta: rec.Meta,
	})
	if err != nil {
		n.log.Error("advertise replica", slog.String(LogDataset, rec.Ref.String()), slog.String(LogErr, err.Error()))
	}
}

// ReplicaConfig says whether a node serves what it pulled.
type ReplicaConfig struct {
	// Disable stops this node from serving and advertising versions it
	// pulled (it still serves what it publishes).
	Disable bool `toml:"disable,omitempty" comment:"do not serve or advertise versions pulled from others"`
}

func (r ReplicaConfig) serve() bool { return !r.Disable }

// ErrAmbiguous is wrapped when more than one node claims to publish a
// dataset and none of the claims is verified: nii will not guess which is
// the real publisher (and send it a grant).
//
// Deprecated: use nii.ErrAmbiguous.
var ErrAmbiguous = nii.ErrAmbiguous

// publisherOf chooses the advert a node treats as the publisher of d: the
// newest verified claim, or — if none is verified — the only claim. Two or
// more unverified claims are refused: otherwise any member could take over
// a dataset whose real publisher is unverified here (its credential
// expired, or its issuer not trusted) by advertising a higher version.
func (n *Node) publisherOf(d nii.DatasetID) (*registry.Entry, []registry.Entry, error) {
	entries := n.catalog.Lookup(d)
	var claims []*registry.Entry
	for i := range entries {
		if !entries[i].Advert.Replica {
			claims = append(claims, &entries[i])
		}
	}
	switch {
	case len(claims) == 0:
		return nil, entries, fmt.Errorf("dataset %s: %w in the federated catalog (try 'nii search')", d, exchange.ErrNotFound)
	case claims[0].Verified || len(claims) == 1:
		return claims[0], entries, nil
	}
	return nil, entries, fmt.Errorf("dataset %s: %w publisher: %d nodes claim to publish it and none is verified by this node's trust anchors (enrol the publisher with 'nii enrol', or trust its issuer with 'nii trust add')",
		d, ErrAmbiguous, len(claims))
}
