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
	Versions     int           `json:"versions"`        // versions whose chunks were kept
	Kept         int64         `json:"kept_chunks"`     // chunks kept: named by a version or in use
	Chunks       int64         `json:"chunks"`          // chunks deleted
	Bytes        int64         `json:"bytes"`           // their bytes
	Spared       int64         `json:"spared_chunks"`   // unnamed chunks spared because a publish or pull held them
	VlogRewrites int           `json:"vlog_rewrites"`   // value-log files badger rewrote to return space
	DiskBefore   int64         `json:"disk_before"`     // badger's size estimate (LSM + value log) and the pack files' sizes, before
	DiskAfter    int64         `json:"disk_after"`      // and after
	Packs        int           `json:"packs"`           // pack files after the collection
	PackLive     int64         `json:"pack_live"`       // bytes of their frames that an index entry names
	PackDead     int64         `json:"pack_dead"`       // and the rest: deleted chunks, writes a crash cut, headers
	PacksMoved   int           `json:"packs_rewritten"` // packs whose live chunks were moved to a new pack and the file removed
	PacksRemoved int           `json:"packs_removed"`   // packs removed (those rewritten, and those holding nothing live)
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
	res.DiskBefore = lsm + vlog + s.packBytes()

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
	if err := s.packGC(ctx, res); err != nil {
		return res, fmt.Errorf("gc: packs: %w", err)
	}
	lsm, vlog = s.db.Size()
	res.DiskAfter = lsm + vlog + s.packBytes()
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
		s.locs.forget(del...)
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

// Pack files after a collection.
//
// Deleting a chunk's index entry leaves its frame in its pack as dead
// space. packGC counts, per pack, the bytes its live index entries name;
// a sealed pack (one nothing writes to again: pack.go) with nothing live
// is removed, and one less than packRewriteLive live is rewritten: its
// live chunks are read, verified, appended to the current pack (synced),
// and their index entries moved to the new place in transactions that
// change an entry only if it still names the old place; then, with no
// entry left naming it, the pack is removed. A reader that looked up the
// old place and finds the pack gone looks again (Store.chunkBytes). A
// chunk that fails its hash is not moved: its pack stays, and the store
// check finds it.
const packRewriteLive = 0.5

// packLive returns, for each pack, the frame bytes live index entries name
// and, for the packs in collect, the hashes that name them.
func (s *Store) packLive(ctx context.Context, collect map[uint32]bool) (map[uint32]int64, map[uint32][]nii.Hash, error) {
	live := map[uint32]int64{}
	names := map[uint32][]nii.Hash{}
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefixChunk})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			if item.UserMeta() != metaPacked {
				continue
			}
			var p packPtr
			if err := item.Value(func(v []byte) error {
				var err error
				p, err = decodePackPtr(v)
				return err
			}); err != nil {
				continue // a damaged entry: the store check reports its chunk
			}
			live[p.pack] += p.frameLen()
			if collect[p.pack] {
				var h nii.Hash
				copy(h[:], item.Key()[len(prefixChunk):])
				names[p.pack] = append(names[p.pack], h)
			}
		}
		return ctx.Err()
	})
	return live, names, err
}

func (s *Store) packGC(ctx context.Context, res *GCResult) error {
	// Sealed first, then the scan: an entry naming a sealed pack was
	// committed before it was sealed, so the scan sees it.
	sealed, err := s.packs.sealed()
	if err != nil {
		return err
	}
	sizes, err := s.packs.sizes()
	if err != nil {
		return err
	}
	live, _, err := s.packLive(ctx, nil)
	if err != nil {
		return err
	}
	rewrite := map[uint32]bool{}
	for id := range sealed {
		switch {
		case live[id] == 0:
			if err := s.packs.remove(id); err != nil {
				return err
			}
			res.PacksRemoved++
		case float64(live[id]) < packRewriteLive*float64(sizes[id]):
			rewrite[id] = true
		}
	}
	if len(rewrite) > 0 {
		_, names, err := s.packLive(ctx, rewrite)
		if err != nil {
			return err
		}
		for id, hs := range names {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := s.checkSpace(live[id]); err != nil {
				return err
			}
			moved, err := s.movePack(id, hs)
			if err != nil {
				return err
			}
			if moved {
				res.PacksMoved++
			}
		}
		// Remove those no entry names any more.
		live, _, err = s.packLive(ctx, nil)
		if err != nil {
			return err
		}
		for id := range rewrite {
			if live[id] == 0 {
				if err := s.packs.remove(id); err != nil {
					return err
				}
				res.PacksRemoved++
			}
		}
	}
	sizes, err = s.packs.sizes()
	if err != nil {
		return err
	}
	live, _, err = s.packLive(ctx, nil)
	if err != nil {
		return err
	}
	res.Packs = len(sizes)
	for id, n := range sizes {
		res.PackLive += live[id]
		res.PackDead += n - live[id]
	}
	return nil
}

// movePack moves the chunks hs of pack id to the current pack, in batches,
// and reports whether every one moved.
func (s *Store) movePack(id uint32, hs []nii.Hash) (bool, error) {
	all := true
	for len(hs) > 0 {
		batch := hs[:min(gcBatch, len(hs))]
		hs = hs[len(batch):]
		ok, err := s.moveChunks(id, batch)
		if err != nil {
			return false, err
		}
		all = all && ok
	}
	return all, nil
}

func (s *Store) moveChunks(id uint32, hs []nii.Hash) (bool, error) {
	for {
		old := map[nii.Hash]packPtr{}
		err := s.db.View(func(txn *badger.Txn) error {
			for _, h := range hs {
				item, err := txn.Get(chunkKey(h))
				if errors.Is(err, badger.ErrKeyNotFound) {
					continue
				}
				if err != nil {
					return err
				}
				if item.UserMeta() != metaPacked {
					continue
				}
				item.Value(func(v []byte) error {
					if p, err := decodePackPtr(v); err == nil && p.pack == id {
						old[h] = p
					}
					return nil
				})
			}
			return nil
		})
		if err != nil {
			return false, err
		}
		all := true
		var chunks []Chunk
		for _, h := range hs {
			p, ok := old[h]
			if !ok {
				continue
			}
			b, err := s.packs.read(h, p, nil, true)
			if err != nil || nii.HashOf(b) != h {
				all = false // damaged: left where it is, for the store check
				delete(old, h)
				continue
			}
			chunks = append(chunks, Chunk{Hash: h, Data: b})
		}
		if len(chunks) == 0 {
			return all, nil
		}
		pf, ptrs, err := s.packs.put(chunks)
		if err != nil {
			return false, err
		}
		var moved []int // of chunks, the ones whose index entries txn moves
		epoch := s.locs.since()
		err = s.db.Update(func(txn *badger.Txn) error {
			moved = moved[:0]
			for i, c := range chunks {
				item, err := txn.Get(chunkKey(c.Hash))
				if errors.Is(err, badger.ErrKeyNotFound) {
					continue // deleted meanwhile
				}
				if err != nil {
					return err
				}
				var now packPtr
				item.Value(func(v []byte) error { now, _ = decodePackPtr(v); return nil })
				if item.UserMeta() != metaPacked || now != old[c.Hash] {
					continue
				}
				if err := setPacked(txn, c.Hash, ptrs[i]); err != nil {
					return err
				}
				moved = append(moved, i)
			}
			return nil
		})
		if err == nil {
			s.locs.putAll(epoch, len(moved), func(k int) (nii.Hash, packPtr) { return chunks[moved[k]].Hash, ptrs[moved[k]] })
		}
		s.packs.done(pf)
		if errors.Is(err, badger.ErrConflict) {
			continue
		}
		return all, err
	}
}

// packBytes is the pack files' total size.
func (s *Store) packBytes() int64 {
	sizes, _ := s.packs.sizes()
	var n int64
	for _, b := range sizes {
		n += b
	}
	return n
}
