package node

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/node/api"
)

// A node's own history, and a home restored from a backup. The catalog
// numbers this node's records (seq) and the store its versions from what
// the home holds; a home restored from a backup holds less than the
// federation saw from it, so it would reuse seqs (which members refuse as
// stale, silently dropping the publish) and version numbers (a second @3
// with another manifest). So:
//
//   - A node that had peers before (its member table is not empty) or is
//     told whom to join does not publish until gossip has exchanged state
//     with a member and caught up on its own records that member holds
//     (gossip.Synced). A publish waits up to [gossip] sync_wait for it,
//     then is refused, saying why; sync_wait = "0s" turns the wait off, for
//     a node whose peers are gone for good.
//   - Its own records coming back beyond its counter are adopted (signed
//     by its key, so truly its own), and its counter moves past them; a
//     seq it issued that the federation holds for other content is a
//     collision. Both are logged, counted in 'nii status', and make the
//     node sign its current records again under fresh seqs, superseding
//     whatever a restored life signed meanwhile.
//   - A new version's number is at least one more than the version this
//     node last advertised for the dataset, adopted records included.

// DefaultSyncWait is how long a publish waits for the node to learn its
// own history from the federation.
const DefaultSyncWait = 30 * time.Second

func (g GossipConfig) syncWait() (time.Duration, error) {
	if g.SyncWait == "" {
		return DefaultSyncWait, nil
	}
	d, err := time.ParseDuration(g.SyncWait)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("config: gossip.sync_wait %q: want a duration (e.g. 30s)", g.SyncWait)
	}
	return d, nil
}

// watchHistory decides, at start, whether this node must learn its
// history before publishing, and hooks the catalog's report of its own
// records coming back.
func (n *Node) watchHistory() {
	n.needSync = n.peers.Len() > 0 || len(n.cfg.Gossip.Join) > 0
	n.catalog.OnOwnRecord(func(a *nii.Advert, collision bool) {
		if collision {
			n.log.Warn("collision: the federation holds one of this node's seqs signed for other content; this home was restored from a backup, or another node runs with this key (never run two); signing this node's records again",
				slog.String(nii.LogDataset, a.Dataset.String()), slog.Uint64("seq", a.Seq), slog.Uint64("version", a.Version))
		} else {
			n.log.Warn("learnt one of this node's own records from the federation, beyond this home's counter: the home was restored from a backup; adopting it",
				slog.String(nii.LogDataset, a.Dataset.String()), slog.Uint64("seq", a.Seq), slog.Uint64("version", a.Version))
		}
		select {
		case n.ownKick <- struct{}{}:
		default:
		}
	})
}

// synced reports whether this node knows its history well enough to
// publish.
func (n *Node) synced() bool {
	if wait, _ := n.cfg.Gossip.syncWait(); !n.needSync || n.gossip == nil || wait == 0 {
		return true // 0: the operator chose not to wait (a lone survivor)
	}
	select {
	case <-n.gossip.Synced():
		return true
	default:
		return false
	}
}

// awaitHistory waits, up to [gossip] sync_wait, until this node has learnt
// its own history from the federation.
func (n *Node) awaitHistory(ctx context.Context) error {
	if n.synced() {
		return nil
	}
	wait, _ := n.cfg.Gossip.syncWait() // validated
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-n.gossip.Synced():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-n.closeCh:
		return fmt.Errorf("%w: the node is stopping", nii.ErrUnavailable)
	case <-t.C:
		return fmt.Errorf("%w: this node has not yet heard from any member of the federation what it published before, so it could reuse a version number (a home restored from a backup lacks the latest); it waited %v: check 'nii peers' and that a member is up, then publish again",
			nii.ErrUnavailable, wait)
	}
}

// nextAdvertised is one more than the version this node last advertised
// for d (0 if none): the least number a new version of d may take.
func (n *Node) nextAdvertised(d nii.DatasetID) uint64 {
	if own, ok := n.catalog.Own(d); ok && !own.Withdrawn {
		return own.Version + 1
	}
	return 0
}

// history is the API's view of it.
func (n *Node) history() api.History {
	adopted, collisions := n.catalog.OwnLearnt()
	return api.History{Synced: n.synced(), Adopted: adopted, Collisions: collisions}
}
