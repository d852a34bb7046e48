package exchange

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/nii-uk/nii"
)

// Garbage collection of chunks no version names.
//
// A publish stores its chunks before it commits the version that names
// them, and a pull stores what it fetched before it commits; a publish or
// pull that fails (or a daemon killed) in between leaves chunks nothing
// reaches. GC deletes them. What makes that safe against a publish or pull
// running at the same time is the lease: every chunk an ingest, a pull or
// a merge's reuse of a kept chunk list is about to write, or relies on
// finding stored, is first added to a Lease held until that work has
// committed its version (or failed). The collector
//
//  1. starts a run (under the lease lock): from now on a lease released
//     hands its chunks to the run, which keeps them too — they may belong
//     to a version committed after step 2 read the versions;
//  2. marks every chunk the committed versions' manifests name;
//  3. lists the chunk keys, keeping those neither marked;
//  4. deletes them in batches, each batch filtered against the live leases
//     and the run's kept set and committed with the lease lock held, and
//     bumps the store's GC generation after each batch.
//
// An ingest adds a chunk to its lease (under the same lock) before it reads
// the chunk's key, so either the collector saw the lease and spared the
// chunk, or the batch that deleted it committed first. In the second case
// a transaction the ingest began before that commit could still see the
// chunk in its snapshot: the ingest therefore compares the generation when
// it began its transaction with the one its lease add returns, and begins
// a fresh transaction if they differ (chunkWriter.set). A pull adds its
// whole manifest to its lease before its single look at what is held.

// Lease protects the chunks added to it from GC until Release. The zero
// value is not usable: see Store.NewLease.
type Lease struct {
	s      *Store
	hashes map[nii.Hash]struct{}
	done   bool
}

type leaseSet struct {
	mu     sync.Mutex
	active map[*Lease]struct{}
	gen    uint64                // bumped by every committed GC delete batch
	run    map[nii.Hash]struct{} // while a GC runs: chunks of leases released during it
}

// NewLease returns an empty lease on s's chunks. Release it when the work
// it protects has committed or failed.
func (s *Store) NewLease() *Lease {
	l := &Lease{s: s, hashes: map[nii.Hash]struct{}{}}
	s.leases.mu.Lock()
	if s.leases.active == nil {
		s.leases.active = map[*Lease]struct{}{}
	}
	s.leases.active[l] = struct{}{}
	s.leases.mu.Unlock()
	return l
}

// add protects hs and returns the GC generation after adding them.
func (l *Lease) add(hs ...nii.Hash) uint64 {
	ls := &l.s.leases
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if !l.done {
		for _, h := range hs {
			l.hashes[h] = struct{}{}
		}
	}
	return ls.gen
}

func (l *Lease) addRefs(refs []nii.ChunkRef) {
	hs := make([]nii.Hash, len(refs))
	for i, c := range refs {
		hs[i] = c.Hash
	}
	l.add(hs...)
}

// Release ends the lease. It is safe to call more than once.
func (l *Lease) Release() {
	ls := &l.s.leases
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if l.done {
		return
	}
	l.done = true
	delete(ls.active, l)
	if ls.run != nil {
		for h := range l.hashes {
			ls.run[h] = struct{}{}
		}
	}
	l.hashes = nil
}

// generation returns the GC generation.
func (ls *leaseSet) generation() uint64 {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return ls.gen
}

// leased reports, with ls.mu held, whether h is protected.
func (ls *leaseSet) leasedLocked(h nii.Hash) bool {
	if _, ok := ls.run[h]; ok {
		return true
	}
	for l := range ls.active {
		if _, ok := l.hashes[h]; ok {
			return true
		}
	}
	return false
}

type leaseKey struct{}

// WithLease returns a context carrying l: Ingest and HoldChunks add to it
// the chunks they store or find, so that they stay protected until the
// caller commits its version and releases l.
func WithLease(ctx context.Context, l *Lease) context.Context {
	return context.WithValue(ctx, leaseKey{}, l)
}

// leaseFrom returns ctx's lease of s, or a new one that the caller must
// release (own is then true).
func (s *Store) leaseFrom(ctx context.Context) (l *Lease, own bool) {
	if l, ok := ctx.Value(leaseKey{}).(*Lease); ok && l != nil && l.s == s {
		return l, false
	}
	return s.NewLease(), true
}

// HoldChunks reports whether every chunk of refs is stored, first adding
// them to ctx's lease (if it has one) so that GC spares them.
func (s *Store) HoldChunks(ctx context.Context, refs []nii.ChunkRef) (bool, error) {
	if l, ok := ctx.Value(leaseKey{}).(*Lease); ok && l != nil && l.s == s {
		l.addRefs(refs)
	}
	need, _, err := s.missing(refs)
	return len(need) == 0 && err == nil, err
}

// GCResult reports what a collection did.
type GCResult struct {
	Versions     int           `json:"versions"`      // versions whose chunks were kept
	Kept         int64         `json:"kept_chunks"`   // chunks kept: named by a version or in use
	Chunks       int64         `json:"chunks"`        // chunks deleted
	Bytes        int64         `json:"bytes"`         // their bytes
	Spared       int64         `json:"spared_chunks"` // unnamed chunks spared because a publish or pull held them
	VlogRewrites int           `json:"vlog_rewrites"` // value-log files badger rewrote to return space
	DiskBefore   int64         `json:"disk_before"`   // badger's size estimate (LSM + value log) before
	DiskAfter    int64         `json:"disk_after"`    // and after
	Took         time.Duration `json:"took_ns"`
}

// gcBatch is how many chunk keys one delete transaction removes.
const gcBatch = 512

// ErrGCRunning is returned by GC while another collection runs. It is of
// kind nii.ErrUnavailable.
var ErrGCRunning = nii.Errorf(nii.ErrUnavailable, "a garbage collection is already running")

// GC deletes every chunk that no committed version names and no lease
// protects, then asks badger to rewrite value-log files that are now
// mostly garbage, so the space returns to the disk. It is safe to run while
// publishes and pulls run (see the comment at the top of gc.go).
func (s *Store) GC(ctx context.Context) (*GCResult, error) {
	if !s.gcMu.TryLock() {
		return nil, ErrGCRunning
	}
	defer s.gcMu.Unlock()
	if s.db.Opts().ReadOnly {
		return nil, nii.Errorf(nii.ErrConflict, "the store is open read-only")
	}
	start := time.Now()
	res := &GCResult{}
	lsm, vlog := s.db.Size()
	res.DiskBefore = lsm + vlog

	ls := &s.leases
	ls.mu.Lock()
	ls.run = map[nii.Hash]struct{}{}
	ls.mu.Unlock()
	defer func() {
		ls.mu.Lock()
		ls.run = nil
		ls.mu.Unlock()
	}()

	marked, versions, err := s.referenced(ctx)
	if err != nil {
		return nil, fmt.Errorf("gc: %w", err)
	}
	res.Versions = versions
	type cand struct {
		h    nii.Hash
		size int64
	}
	var cands []cand
	err = s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefixChunk})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := it.Item().Key()
			if len(k) != len(prefixChunk)+nii.HashSize {
				continue
			}
			var h nii.Hash
			copy(h[:], k[len(prefixChunk):])
			if _, ok := marked[h]; ok {
				res.Kept++
				continue
			}
			cands = append(cands, cand{h, chunkItemSize(it.Item())})
		}
		return ctx.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("gc: list chunks: %w", err)
	}
	for len(cands) > 0 {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		batch := cands[:min(gcBatch, len(cands))]
		cands = cands[len(batch):]
		hs := make([]nii.Hash, 0, len(batch))
		sizes := make(map[nii.Hash]int64, len(batch))
		for _, c := range batch {
			hs = append(hs, c.h)
			sizes[c.h] = c.size
		}
		n, b, spared, err := s.deleteUnleased(hs, sizes)
		res.Chunks, res.Bytes, res.Spared = res.Chunks+n, res.Bytes+b, res.Spared+spared
		if err != nil {
			return res, fmt.Errorf("gc: delete chunks: %w", err)
		}
	}
	res.Kept += res.Spared
	if res.Chunks > 0 {
		res.VlogRewrites = s.valueLogGC(ctx)
	}
	lsm, vlog = s.db.Size()
	res.DiskAfter = lsm + vlog
	res.Took = time.Since(start)
	return res, nil
}

// referenced returns the chunks every committed version names.
func (s *Store) referenced(ctx context.Context) (map[nii.Hash]struct{}, int, error) {
	recs, err := s.Versions(nil)
	if err != nil {
		return nil, 0, err
	}
	marked := map[nii.Hash]struct{}{}
	for _, rec := range recs {
		if err := ctx.Err(); err != nil {
			return nil, 0, err
		}
		sm, err := s.Manifest(rec.Manifest)
		if err != nil {
			// A version whose manifest cannot be read is damaged (the
			// store check reports it); its chunks cannot be told apart,
			// so nothing is collected rather than guessing.
			return nil, 0, fmt.Errorf("%s: %w; run 'nii store verify' first", rec.Ref, err)
		}
		m, _, err := sm.Open()
		if err != nil {
			return nil, 0, fmt.Errorf("%s: %w; run 'nii store verify' first", rec.Ref, err)
		}
		for _, c := range m.Chunks {
			marked[c.Hash] = struct{}{}
		}
	}
	return marked, len(recs), nil
}

// deleteUnleased deletes those of hs no lease protects, in one transaction
// committed with the lease lock held, and bumps the GC generation.
func (s *Store) deleteUnleased(hs []nii.Hash, sizes map[nii.Hash]int64) (n, bytes, spared int64, err error) {
	ls := &s.leases
	ls.mu.Lock()
	defer ls.mu.Unlock()
	var del []nii.Hash
	for _, h := range hs {
		if ls.leasedLocked(h) {
			spared++
			continue
		}
		del = append(del, h)
	}
	if len(del) == 0 {
		return 0, 0, spared, nil
	}
	s.counts.begin()
	defer func() { s.counts.end(-n, -bytes) }()
	for {
		txn, err := s.newChunkTxn()
		if err != nil {
			return 0, 0, spared, err
		}
		n, bytes = 0, 0
		for _, h := range del {
			item, err := txn.Get(chunkKey(h))
			if errors.Is(err, badger.ErrKeyNotFound) {
				continue
			} else if err != nil {
				txn.Discard()
				return 0, 0, spared, err
			}
			// The exact size, as the counts were kept (ValueSize is an
			// estimate for values in the value log); the estimate if the
			// value cannot be read (a damaged store).
			size := chunkItemExactSize(item)
			if err := txn.Delete(chunkKey(h)); err != nil {
				txn.Discard()
				return 0, 0, spared, err
			}
			n, bytes = n+1, bytes+size
		}
		err = txn.Commit()
		if errors.Is(err, badger.ErrConflict) {
			continue
		}
		if err != nil {
			n, bytes = 0, 0
			return 0, 0, spared, err
		}
		ls.gen++
		return n, bytes, spared, nil
	}
}

// valueLogGC asks badger to rewrite value-log files at least half garbage
// until none is left, and returns how many it rewrote. badger learns what
// is garbage as its compactions drop the deleted keys, so space may come
// back only at a later run (the scheduled one).
func (s *Store) valueLogGC(ctx context.Context) int {
	n := 0
	for ctx.Err() == nil {
		if err := s.db.RunValueLogGC(0.5); err != nil {
			break // badger.ErrNoRewrite: nothing (more) worth rewriting
		}
		n++
	}
	return n
}

// ValueLogGC runs badger's value-log GC alone (the schedule does, between
// collections).
func (s *Store) ValueLogGC(ctx context.Context) int {
	if s.db.Opts().ReadOnly {
		return 0
	}
	return s.valueLogGC(ctx)
}
