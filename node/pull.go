package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/exchange"
	"github.com/nii-uk/nii/registry"
)

// PullOptions tune a pull.
type PullOptions struct {
	Grant    string
	Action   nii.Action // nii.ActionRead (default) or nii.ActionSync (follow)
	Progress func(done, total int64)
	// AllowUnverified lets a node with trust anchors take the data of a
	// publisher whose org claim nothing proves (registry.AllowUnverified).
	AllowUnverified bool
	// Copy, if set, gets each chunk fetched as it is stored
	// (exchange.PullRequest.Copy; PullInto fills in the rest).
	Copy exchange.VersionCopy
}

// sourceOptions are the catalog policy options a pull asks for.
func (o PullOptions) sourceOptions() []registry.SourceOption {
	if o.AllowUnverified {
		return []registry.SourceOption{registry.AllowUnverified()}
	}
	return nil
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
	if err := n.writable(); err != nil {
		return nil, err
	}
	src, err := n.sources(ref, opt.sourceOptions()...)
	if err != nil {
		return nil, err
	}
	if !src.Publisher.Verified && opt.AllowUnverified {
		n.log.Warn("pulling from an unverified publisher, as asked", slog.String(LogDataset, ref.String()),
			slog.String(nii.LogNodeID, string(src.Publisher.Advert.Origin)))
	}
	pub := src.Publisher.Advert
	if pub.Withdrawn {
		return nil, fmt.Errorf("dataset %s: %w: withdrawn by its publisher", ref.Dataset, exchange.ErrNotFound)
	}
	if pub.Origin == n.id {
		rec, err := n.store.Version(ref)
		if err != nil {
			return nil, err
		}
		return &exchange.PullResult{Record: rec, HeldChunks: rec.Chunks}, nil
	}
	req := n.fetchRequest(src)
	req.Grant, req.Action, req.Credential, req.Progress, req.Copy = opt.Grant, opt.Action, n.Credential(), opt.Progress, opt.Copy
	n.ops.pullsStarted.Add(1)
	start := time.Now()
	res, err := exchange.Pull(ctx, n.host, n.store, req)
	if err != nil {
		n.ops.pullsFailed.Add(1)
		n.transfer.dropped(res)
		n.log.Warn("pull failed", slog.String(LogDataset, req.Ref.String()), slog.String(LogErr, err.Error()))
		if res != nil && res.FetchedChunks > 0 {
			// Kept for a resumed pull, but reclaimed if none comes: the
			// collection spares the chunks of a pull in flight.
			n.kickGC()
		}
		return res, err
	}
	n.log.Info("pulled", slog.String(LogDataset, res.Record.Ref.String()), slog.Int("fetched_chunks", res.FetchedChunks),
		slog.Int64("fetched_bytes", res.FetchedBytes), slog.Int("held_chunks", res.HeldChunks), slog.Bool("shared", res.Shared),
		slog.Int("delta_chunks", res.DeltaChunks), slog.Int64("reused_bytes", res.ReusedBytes), slog.Int64("manifest_bytes", res.ManifestBytes),
		slog.Int("copied_chunks", res.CopiedChunks))
	if !res.Shared {
		n.pulledBytes.Add(res.FetchedBytes)
		n.pulledDelta.Add(int64(res.DeltaChunks))
		n.pulledReused.Add(res.ReusedBytes)
		n.transfer.pulled(res, time.Since(start))
		n.transfer.dropped(res)
	}
	n.ops.pullsCompleted.Add(1)
	if n.cfg.Replica.serve() {
		n.advertiseReplica(res.Record)
	}
	return res, nil
}

// sources asks the catalog policy where ref comes from (registry.Sources):
// the publisher, the version, the manifest it must hash to where known,
// and the providers, online ones first.
func (n *Node) sources(ref nii.Ref, opts ...registry.SourceOption) (*registry.Sources, error) {
	src, err := n.catalog.Sources(ref, n.online, opts...)
	if errors.Is(err, registry.ErrUnlisted) {
		return nil, fmt.Errorf("dataset %s: %w in the federated catalog (try 'nii search')", ref.Dataset, exchange.ErrNotFound)
	}
	return src, err
}

// publisher is the catalog policy's choice of d's publisher.
func (n *Node) publisher(d nii.DatasetID, opts ...registry.SourceOption) (registry.Entry, error) {
	src, err := n.sources(nii.Ref{Dataset: d}, opts...)
	if err != nil {
		return registry.Entry{}, err
	}
	return src.Publisher, nil
}

// online says whether a node is reachable now, as the peer table has it.
func (n *Node) online(id nii.NodeID) bool {
	on, _ := n.presence(id)
	return on
}

// fetchRequest is what every fetch of src's version asks the engine for:
// that version, from its providers, with the manifest signed by the
// publisher the policy chose and, where the catalog holds the publisher's
// advert of it, hashing to the advertised manifest (exchange.CheckManifest).
func (n *Node) fetchRequest(src *registry.Sources) exchange.PullRequest {
	return exchange.PullRequest{
		Ref:           nii.Ref{Dataset: src.Publisher.Advert.Dataset, Version: src.Version},
		Publisher:     src.Publisher.Advert.Origin,
		Manifest:      src.Manifest,
		Providers:     src.Remote(),
		InFlightBytes: n.cfg.P2P.inFlightBytes(),
		Logger:        n.log,
	}
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
// dataset and none of the claims is verified.
//
// Deprecated: use nii.ErrAmbiguous.
var ErrAmbiguous = nii.ErrAmbiguous
