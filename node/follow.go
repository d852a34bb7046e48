package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/auth"
	"github.com/nii-uk/nii/node/api"
	"github.com/nii-uk/nii/registry"
)

// Follow states, as 'nii datasets' shows them: the API's (node/api
// documents each).
const (
	FollowSynced    = api.FollowSynced
	FollowSyncing   = api.FollowSyncing
	FollowWaiting   = api.FollowWaiting
	FollowRefused   = api.FollowRefused
	FollowWithdrawn = api.FollowWithdrawn
	// The follow's grant can no longer be used; it stops until 'nii follow'
	// is run again with a new grant.
	FollowGrantExpired = api.FollowGrantExpired
	FollowGrantRevoked = api.FollowGrantRevoked
	// Another node now claims to publish the dataset than the one followed
	// (pinned when the follow began); the follow stops rather than take its
	// versions (and hand it the grant). Follow again to accept the new one.
	FollowPublisherChanged = api.FollowPublisherChanged
)

// Follow is a persisted subscription: keep a dataset in sync.
type Follow struct {
	Dataset      nii.DatasetID `json:"dataset" cbor:"1,keyasint"`
	Grant        string        `json:"-" cbor:"2,keyasint,omitempty"`
	HasGrant     bool          `json:"has_grant" cbor:"-"`
	Since        time.Time     `json:"since" cbor:"3,keyasint"`
	State        string        `json:"state" cbor:"4,keyasint"`
	Version      uint64        `json:"version" cbor:"5,keyasint,omitempty"` // newest version held
	Advertised   uint64        `json:"advertised" cbor:"6,keyasint,omitempty"`
	LastError    string        `json:"last_error,omitempty" cbor:"7,keyasint,omitempty"`
	LastSync     time.Time     `json:"last_sync,omitempty" cbor:"8,keyasint,omitempty"`
	NextAttempt  time.Time     `json:"next_attempt,omitempty" cbor:"9,keyasint,omitempty"`
	Failures     int           `json:"failures,omitempty" cbor:"10,keyasint,omitempty"`
	FetchedBytes int64         `json:"fetched_bytes" cbor:"11,keyasint,omitempty"`
	Publisher    nii.NodeID    `json:"publisher,omitempty" cbor:"12,keyasint,omitempty"` // pinned at follow
	// AllowUnverified: the follow accepts an unverified publisher (asked
	// for with 'nii follow --allow-unverified').
	AllowUnverified bool `json:"allow_unverified,omitempty" cbor:"13,keyasint,omitempty"`
	// ErrorCode is LastError's API error code (unavailable, refused, …).
	ErrorCode string `json:"error_code,omitempty" cbor:"14,keyasint,omitempty"`
}

// followPending is the signed manifest's chunk list of the newest version
// a follow has seen and not yet committed, kept (under its own key, apart
// from the follow, which the sync loop rewrites often) when a pull of it
// fails after the manifest was checked, so that what is still to go can be
// counted from the store.
type followPending struct {
	Version  uint64         `cbor:"1,keyasint"`
	Manifest nii.Hash       `cbor:"2,keyasint"`
	Size     int64          `cbor:"3,keyasint"`
	Chunks   []nii.ChunkRef `cbor:"4,keyasint"`
}

var prefixFollowPending = []byte("fpend/")

func followPendingKey(d nii.DatasetID) []byte {
	return []byte(string(prefixFollowPending) + d.String())
}

// pending returns the follow's kept manifest of an uncommitted version,
// or nil.
func (n *Node) pending(d nii.DatasetID) *followPending {
	var p followPending
	err := n.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(followPendingKey(d))
		if err != nil {
			return err
		}
		return item.Value(func(b []byte) error { return nii.Unmarshal(b, &p) })
	})
	if err != nil {
		return nil
	}
	return &p
}

func (n *Node) dropPending(d nii.DatasetID) error {
	return n.db.Update(func(txn *badger.Txn) error { return txn.Delete(followPendingKey(d)) })
}

// followToGo counts what f still has to fetch of its latest version: none
// when it holds it; else the chunks of the version's manifest (kept by a
// pull that got that far) that the store lacks. nil when the manifest of
// the latest version is not known here.
func (n *Node) followToGo(f *Follow) *api.FollowToGo {
	if f.Advertised == 0 || f.Version >= f.Advertised {
		if f.Version == 0 {
			return nil
		}
		rec, err := n.store.Version(nii.Ref{Dataset: f.Dataset, Version: f.Version})
		if err != nil {
			return nil
		}
		return &api.FollowToGo{Version: f.Version, Manifest: rec.Manifest, Size: rec.Size, Chunks: rec.Chunks}
	}
	p := n.pending(f.Dataset)
	if p == nil || p.Version != f.Advertised {
		return nil
	}
	need, held, err := n.store.Missing(p.Chunks)
	if err != nil {
		return nil
	}
	tg := &api.FollowToGo{Version: p.Version, Manifest: p.Manifest, Size: p.Size, Chunks: held + len(need), ChunksToGo: len(need)}
	for _, c := range need {
		tg.BytesToGo += int64(c.Size)
	}
	return tg
}

// sourceOptions are the catalog policy options the follow's pulls ask for.
func (f *Follow) sourceOptions() []registry.SourceOption {
	return PullOptions{AllowUnverified: f.AllowUnverified}.sourceOptions()
}

var prefixFollow = []byte("f/")

func followKey(d nii.DatasetID) []byte { return []byte(string(prefixFollow) + d.String()) }

func (n *Node) saveFollow(f *Follow) error { return n.putRecord(followKey(f.Dataset), f) }

// updateFollow saves f only if the subscription still exists, so the sync
// loop never resurrects one that 'nii unfollow' removed meanwhile.
func (n *Node) updateFollow(f *Follow) error { return n.updateRecord(followKey(f.Dataset), f) }

// Follows lists the node's subscriptions.
func (n *Node) Follows() ([]Follow, error) {
	fs, err := listRecords[Follow](n.db, prefixFollow)
	for i := range fs {
		fs[i].HasGrant = fs[i].Grant != ""
	}
	return fs, err
}

func (n *Node) follow(d nii.DatasetID) (*Follow, error) {
	var f Follow
	err := n.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(followKey(d))
		if err != nil {
			return err
		}
		return item.Value(func(b []byte) error { return nii.Unmarshal(b, &f) })
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, fmt.Errorf("%s is not followed: %w", d, nii.ErrNotFound)
	}
	return &f, err
}

// StartFollowing subscribes to a dataset: its latest version is pulled now
// (in the background) and every newer version as soon as its advert arrives.
func (n *Node) StartFollowing(d nii.DatasetID, grant string) (*Follow, error) {
	return n.StartFollowingWith(d, FollowOptions{Grant: grant})
}

// FollowOptions tune a subscription.
type FollowOptions struct {
	Grant string
	// AllowUnverified lets a node with trust anchors follow a dataset whose
	// only publisher claim nothing proves.
	AllowUnverified bool
}

// StartFollowingWith is StartFollowing with every option.
func (n *Node) StartFollowingWith(d nii.DatasetID, o FollowOptions) (*Follow, error) {
	grant := o.Grant
	if n.cfg.RegistryOnly {
		return nil, ErrRegistryOnly
	}
	if err := d.Validate(); err != nil {
		return nil, err
	}
	if d.Org == n.cfg.Org {
		return nil, fmt.Errorf("%w dataset %s: this node publishes it", nii.ErrInvalid, d)
	}
	pub, err := n.publisher(d, PullOptions{AllowUnverified: o.AllowUnverified}.sourceOptions()...)
	if err != nil {
		return nil, err
	}
	f, err := n.follow(d)
	if err != nil {
		f = &Follow{Dataset: d, Since: time.Now().UTC(), State: FollowWaiting}
	}
	// Following again (with a new grant, say) starts afresh: a follow that
	// stopped on an expired or revoked grant resumes.
	f.Grant = grant
	f.Publisher = pub.Advert.Origin
	f.AllowUnverified = o.AllowUnverified
	f.State, f.LastError, f.Failures, f.NextAttempt = FollowWaiting, "", 0, time.Time{}
	if err := n.saveFollow(f); err != nil {
		return nil, err
	}
	n.kickFollow()
	f.HasGrant = f.Grant != ""
	return f, nil
}

// StopFollowing removes a subscription; versions already pulled stay.
func (n *Node) StopFollowing(d nii.DatasetID) error {
	if _, err := n.follow(d); err != nil {
		return err
	}
	return n.db.Update(func(txn *badger.Txn) error {
		if err := txn.Delete(followPendingKey(d)); err != nil {
			return err
		}
		return txn.Delete(followKey(d))
	})
}

func (n *Node) kickFollow() {
	select {
	case n.followKick <- struct{}{}:
	default:
	}
}

// followLoop keeps followed datasets in sync: woken by every catalog change
// and by a timer for retries.
func (n *Node) followLoop() {
	defer n.wg.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { <-n.closeCh; cancel() }()
	timer := time.NewTimer(time.Second)
	defer timer.Stop()
	for {
		select {
		case <-n.closeCh:
			return
		case <-n.followKick:
		case <-timer.C:
		}
		next := n.syncFollows(ctx)
		timer.Reset(min(max(time.Until(next), 50*time.Millisecond), 30*time.Second))
	}
}

// syncFollows brings every due subscription up to date and returns when
// the next retry is due.
func (n *Node) syncFollows(ctx context.Context) time.Time {
	next := time.Now().Add(30 * time.Second)
	follows, err := n.Follows()
	if err != nil {
		n.log.Error("read follows", slog.String(nii.LogErr, err.Error()))
		return next
	}
	for i := range follows {
		if ctx.Err() != nil {
			return next
		}
		f := &follows[i]
		if f.State == FollowGrantExpired || f.State == FollowGrantRevoked || f.State == FollowPublisherChanged {
			continue
		}
		if pub, err := n.publisher(f.Dataset, f.sourceOptions()...); err == nil && f.Publisher != "" && pub.Advert.Origin != f.Publisher {
			f.State, f.NextAttempt = FollowPublisherChanged, time.Time{}
			f.LastError = fmt.Sprintf("%s is now published by node %s, not %s as when it was followed; follow it again to accept that", f.Dataset, pub.Advert.Origin.Short(), f.Publisher.Short())
			n.log.Warn("follow stopped", slog.String(nii.LogDataset, f.Dataset.String()), slog.String(nii.LogErr, f.LastError))
			n.updateFollow(f)
			continue
		}
		if state, why := n.grantUsable(f.Grant); state != "" {
			f.State, f.LastError, f.NextAttempt = state, why, time.Time{}
			n.log.Warn("follow stopped", slog.String(nii.LogDataset, f.Dataset.String()), slog.String(nii.LogErr, why))
			n.updateFollow(f)
			continue
		}
		cd, err := n.LookupDataset(f.Dataset, f.sourceOptions()...)
		if err != nil || cd.Publisher == "" {
			continue
		}
		f.Advertised = cd.Version
		if cd.Withdrawn {
			if f.State != FollowWithdrawn {
				f.State = FollowWithdrawn
				n.updateFollow(f)
			}
			continue
		}
		if f.Version >= cd.Version {
			if f.State != FollowSynced {
				f.State, f.LastError, f.Failures = FollowSynced, "", 0
				n.updateFollow(f)
			}
			continue
		}
		if time.Now().Before(f.NextAttempt) {
			next = minTime(next, f.NextAttempt)
			continue
		}
		f.State = FollowSyncing
		n.updateFollow(f)
		res, err := n.Pull(ctx, nii.Ref{Dataset: f.Dataset}, PullOptions{Grant: f.Grant, Action: nii.ActionSync, AllowUnverified: f.AllowUnverified})
		if ctx.Err() != nil {
			return next
		}
		if err != nil {
			f.Failures++
			f.LastError = err.Error()
			_, body := api.ErrorFor(err)
			f.ErrorCode = body.Code
			if res != nil && res.Manifest != nil && res.Manifest.Version > f.Version {
				// Checked against the publisher's signature: what is to go
				// is counted against it.
				m := res.Manifest
				if perr := n.putRecord(followPendingKey(f.Dataset), &followPending{Version: m.Version, Manifest: res.ManifestHash, Size: m.Size, Chunks: m.Chunks}); perr != nil {
					n.log.Warn("keep follow manifest", slog.String(nii.LogErr, perr.Error()))
				}
			}
			f.State = FollowWaiting
			if errors.Is(err, nii.ErrRefused) {
				f.State = FollowRefused
			}
			backoff := min(time.Second<<min(f.Failures-1, 8), 5*time.Minute)
			f.NextAttempt = time.Now().Add(backoff)
			next = minTime(next, f.NextAttempt)
		} else {
			f.Version = res.Record.Ref.Version
			f.State, f.LastError, f.ErrorCode, f.Failures, f.NextAttempt = FollowSynced, "", "", 0, time.Time{}
			if p := n.pending(f.Dataset); p != nil && p.Version <= f.Version {
				n.dropPending(f.Dataset)
			}
			f.LastSync = time.Now().UTC()
			f.FetchedBytes += res.FetchedBytes
			if f.Version < cd.Version {
				next = time.Now()
			}
		}
		if err := n.updateFollow(f); err != nil {
			n.log.Error("save follow", slog.String(nii.LogErr, err.Error()))
		}
	}
	return next
}

// grantUsable checks a follow's grant as far as this node can: whether it
// has expired or been revoked (the provider makes every other check). It
// returns the follow state to stop in, and why, or "" to carry on.
func (n *Node) grantUsable(grant string) (string, string) {
	if grant == "" {
		return "", ""
	}
	jti, exp, err := auth.Peek(grant)
	if err != nil {
		return "", "" // the provider will say what is wrong with it
	}
	if n.revocations.Revoked(jti) {
		return FollowGrantRevoked, fmt.Sprintf("grant %s was revoked; follow again with a new grant (nii follow --grant)", jti)
	}
	if !exp.IsZero() && time.Now().After(exp.Add(auth.DefaultLeeway)) {
		return FollowGrantExpired, fmt.Sprintf("grant %s expired at %s; follow again with a new grant (nii follow --grant)", jti, exp.Format(time.RFC3339))
	}
	return "", ""
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}
