package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/node/api"
)

// A watch keeps a published merged dataset current: whenever a source that
// conforms to its standard (or has a mapping to it), a mapping, or the
// standard itself gets a new version in the catalog, the node merges again
// (re-mapping only what changed, thanks to the partition cache) and
// publishes the next version of the merged dataset. 'nii follow STANDARD
// --publish NAME' and 'nii merge STANDARD --publish NAME --watch' make one.

// Watch states: node/api's.
const (
	WatchCurrent = api.WatchCurrent
	WatchMerging = api.WatchMerging
	WatchWaiting = api.WatchWaiting
)

// Watch is a persisted "keep this merged dataset current".
type Watch struct {
	Publish      nii.DatasetID `cbor:"1,keyasint"` // this node's merged dataset
	Standard     nii.Ref       `cbor:"2,keyasint"` // version 0: the standard's newest
	Title        string        `cbor:"3,keyasint,omitempty"`
	AllowPartial bool          `cbor:"4,keyasint,omitempty"`
	Grants       []string      `cbor:"5,keyasint,omitempty"`
	Since        time.Time     `cbor:"6,keyasint"`
	State        string        `cbor:"7,keyasint"`
	LastError    string        `cbor:"8,keyasint,omitempty"`
	Version      uint64        `cbor:"9,keyasint,omitempty"`  // the newest version published
	Inputs       nii.Hash      `cbor:"10,keyasint,omitempty"` // digest of the catalog's inputs last merged
	LastMerge    time.Time     `cbor:"11,keyasint,omitempty"`
	Sources      int           `cbor:"12,keyasint,omitempty"` // sources in the last merge
	Remapped     int           `cbor:"13,keyasint,omitempty"` // of which re-mapped (not from the cache)
	Missing      int           `cbor:"14,keyasint,omitempty"`
	Failures     int           `cbor:"15,keyasint,omitempty"`
	NextAttempt  time.Time     `cbor:"16,keyasint,omitempty"`
	Merges       int           `cbor:"17,keyasint,omitempty"` // merges run by the watch
}

type watchState struct {
	kick chan struct{}
}

var prefixWatch = []byte("hw/")

func watchKey(d nii.DatasetID) []byte { return []byte(string(prefixWatch) + d.String()) }

func (n *Node) saveWatch(w *Watch) error { return n.putRecord(watchKey(w.Publish), w) }

// updateWatch saves w only if the watch still exists.
func (n *Node) updateWatch(w *Watch) error { return n.updateRecord(watchKey(w.Publish), w) }

// Watches lists the merged datasets this node keeps current.
func (n *Node) Watches() ([]Watch, error) { return listRecords[Watch](n.db, prefixWatch) }

// WatchRequest asks the node to keep a merged dataset current.
type WatchRequest struct {
	Standard     nii.Ref
	Name         string // the merged dataset's name; the org is the node's
	Title        string
	AllowPartial bool
	Grants       []string
}

// StartWatch makes the node keep this org's dataset Name current as the
// merge of Standard: merged (and published) now, in the background, and
// again whenever an input changes. Watching again replaces the settings.
func (n *Node) StartWatch(req WatchRequest) (*Watch, error) {
	if n.cfg.RegistryOnly {
		return nil, ErrRegistryOnly
	}
	d := nii.DatasetID{Org: n.cfg.Org, Name: req.Name}
	if err := d.Validate(); err != nil {
		return nil, err
	}
	if _, err := n.standardEntry(req.Standard.Dataset); err != nil {
		return nil, err
	}
	if rec, err := n.store.Latest(d); err == nil && rec.Meta.Kind != nii.KindMerged {
		return nil, fmt.Errorf("%w: %s is a %s; a merged table is published under a dataset of its own", nii.ErrConflict, d, kindWord(rec.Meta.Kind))
	}
	w := &Watch{Publish: d, Standard: req.Standard, Title: req.Title, AllowPartial: req.AllowPartial, Grants: req.Grants,
		Since: time.Now().UTC(), State: WatchWaiting}
	if old, err := n.watch(d); err == nil {
		w.Since, w.Version, w.Merges = old.Since, old.Version, old.Merges
	}
	if err := n.saveWatch(w); err != nil {
		return nil, err
	}
	n.kickWatch()
	return w, nil
}

func (n *Node) watch(d nii.DatasetID) (*Watch, error) {
	var w Watch
	err := n.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(watchKey(d))
		if err != nil {
			return err
		}
		return item.Value(func(b []byte) error { return nii.Unmarshal(b, &w) })
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, fmt.Errorf("%s is not kept current here: %w", d, nii.ErrNotFound)
	}
	return &w, err
}

// StopWatch stops keeping d current: d is the merged dataset, or a
// standard (every watch of it stops). Versions published stay. It
// returns the merged datasets no longer kept current.
func (n *Node) StopWatch(d nii.DatasetID) ([]nii.DatasetID, error) {
	ws, err := n.Watches()
	if err != nil {
		return nil, err
	}
	var stopped []nii.DatasetID
	for _, w := range ws {
		if w.Publish == d || w.Standard.Dataset == d {
			if err := n.db.Update(func(txn *badger.Txn) error { return txn.Delete(watchKey(w.Publish)) }); err != nil {
				return stopped, err
			}
			stopped = append(stopped, w.Publish)
		}
	}
	if len(stopped) == 0 {
		return nil, fmt.Errorf("%s is not kept current here: %w", d, nii.ErrNotFound)
	}
	return stopped, nil
}

func (n *Node) kickWatch() {
	select {
	case n.watches.kick <- struct{}{}:
	default:
	}
}

// watchLoop keeps watched merged datasets current: woken by every catalog
// change and by a timer for retries.
func (n *Node) watchLoop() {
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
		case <-n.watches.kick:
		case <-timer.C:
		}
		next := n.syncWatches(ctx)
		timer.Reset(min(max(time.Until(next), 50*time.Millisecond), 30*time.Second))
	}
}

// inputsDigest summarises, from the catalog alone, what a merge of w's
// standard would read now: the standard version and every source's and
// mapping's advertised version and manifest. A watch merges again when
// it changes.
func (n *Node) inputsDigest(w *Watch) (nii.Hash, error) {
	ent, err := n.standardEntry(w.Standard.Dataset)
	if err != nil {
		return nii.Hash{}, err
	}
	std := w.Standard
	if std.Version == 0 {
		std.Version = ent.Advert.Version
	}
	h := nii.Hasher()
	fmt.Fprintf(h, "%s\x00", std)
	if std.Version == ent.Advert.Version {
		h.Write(ent.Advert.Manifest[:])
	}
	plan := n.plan(std)
	sort.Slice(plan, func(i, j int) bool {
		return plan[i].entry.Advert.Dataset.String() < plan[j].entry.Advert.Dataset.String()
	})
	for _, ps := range plan {
		a := ps.entry.Advert
		fmt.Fprintf(h, "%s@%d\x00%s\x00", a.Dataset, a.Version, ps.choice)
		h.Write(a.Manifest[:])
		if ps.mapping != nil {
			ma := ps.mapping.Advert
			fmt.Fprintf(h, "%s@%d\x00", ma.Dataset, ma.Version)
			h.Write(ma.Manifest[:])
		}
	}
	var d nii.Hash
	copy(d[:], h.Sum(nil))
	return d, nil
}

// syncWatches brings every due watch up to date and returns when the next
// retry is due.
func (n *Node) syncWatches(ctx context.Context) time.Time {
	next := time.Now().Add(30 * time.Second)
	ws, err := n.Watches()
	if err != nil {
		n.log.Error("read watches", slog.String(nii.LogErr, err.Error()))
		return next
	}
	for i := range ws {
		if ctx.Err() != nil {
			return next
		}
		w := &ws[i]
		digest, err := n.inputsDigest(w)
		if err != nil {
			w.State, w.LastError = WatchWaiting, err.Error()
			n.updateWatch(w)
			continue
		}
		if digest == w.Inputs && w.State == WatchCurrent {
			continue
		}
		if digest == w.Inputs && time.Now().Before(w.NextAttempt) {
			next = minTime(next, w.NextAttempt)
			continue
		}
		w.State = WatchMerging
		n.updateWatch(w)
		err = n.runWatch(ctx, w, digest)
		if ctx.Err() != nil {
			return next
		}
		if err != nil {
			w.Failures++
			w.State, w.LastError = WatchWaiting, err.Error()
			w.Inputs = digest
			w.NextAttempt = time.Now().Add(min(time.Second<<min(w.Failures-1, 8), 5*time.Minute))
			next = minTime(next, w.NextAttempt)
			n.log.Warn("merge of a watched standard failed", slog.String(nii.LogDataset, w.Publish.String()), slog.String(nii.LogErr, err.Error()))
		}
		if err := n.updateWatch(w); err != nil {
			n.log.Error("save watch", slog.String(nii.LogErr, err.Error()))
		}
	}
	return next
}

// runWatch merges w's standard and publishes the result.
func (n *Node) runWatch(ctx context.Context, w *Watch, digest nii.Hash) error {
	out, err := n.Merge(ctx, w.Standard, MergeOptions{AllowPartial: w.AllowPartial, Grants: w.Grants})
	if err != nil {
		return err
	}
	rec, err := n.PublishMerged(ctx, out, w.Publish.Name, w.Title)
	if err != nil {
		return err
	}
	w.State, w.LastError, w.Failures, w.NextAttempt = WatchCurrent, "", 0, time.Time{}
	w.Inputs, w.Version, w.LastMerge = digest, rec.Ref.Version, time.Now().UTC()
	w.Sources, w.Remapped, w.Missing = len(out.Inputs), out.Merged.Remapped, len(out.Missing)
	w.Merges++
	n.log.Info("kept merged dataset current", slog.String(nii.LogDataset, rec.Ref.String()), slog.Int("sources", w.Sources),
		slog.Int("remapped", w.Remapped), slog.Bool("unchanged", out.Unchanged))
	return nil
}
