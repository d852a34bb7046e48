package exchange

// Where recently written chunks live, kept in memory beside the index.
//
// A version is pulled right after it is published: every subscriber's
// node asks for its chunks as the advert reaches it. Serving each chunk
// started with finding it in the index, a badger read through a memtable
// full of the chunks just written (a skiplist over random keys): about 5 µs
// a chunk (BenchmarkServeRead), 11% of the publisher's CPU in a profile of
// a 1 GiB pull between two daemons; with the map, the publisher serving two
// pulls at once used 9% less CPU (docs/benchmarks.md, "A map of recent
// chunk locations").
//
// The map is a hint, not the index. A writer records the locations its
// transaction committed, after the commit; a delete forgets what it
// deleted, after its commit, and a writer whose commit a delete may have
// overtaken records nothing (the epoch). Even so an entry can name a
// frame the index no longer does (a pack rewritten since, a chunk dropped
// a moment ago, another chunk whose hash starts with the same 8 bytes),
// so a hint is only ever read through the frame's own checks
// (packSet.read): the full hash and size in its header, then the CRC of
// its bytes. Only frames this store wrote with a CRC are remembered, at
// the offsets it wrote them; packs are append-only and a removed pack is
// never read again (errPackGone), so a frame that passes those checks is
// the chunk's, as the index path's read of it would be. On any failure
// the hint is forgotten and the read goes to the index.
//
// The content server's reads take hints (chunkInto), and so do durable
// exports (Store.WriteDirect), which take a hinted frame only if its bytes
// hash to the chunk and otherwise read where the index says, which gives
// the verdict. The store check and repair read through the index alone
// (chunkBytes), so the damage they find, and drop, is always what the
// index names; so does an export into the page cache (Store.WriteAt),
// which was measured slower with hints (exportChunk).

import (
	"encoding/binary"
	"sync"
	"sync/atomic"

	"github.com/nii-uk/nii"
)

// locsMax is how many locations each of the map's two generations holds:
// 32,768 chunks, about a GiB of chunks; with both, a node remembers the
// last 1–2 GiB it wrote, in about 2 MB of heap a generation (a location
// is 24 bytes, and the map's slack).
const locsMax = 1 << 15

// hintLoc is a frame with a CRC (ptrFormat) in 16 bytes.
type hintLoc struct {
	pack, size uint32
	off        int64
}

// recentLocs maps chunks, by the first 8 bytes of their hash, to where
// they were last written. When the current generation is full it becomes
// the previous one and the one before is dropped: the memory is bounded,
// and what was written last is kept.
type recentLocs struct {
	mu    sync.RWMutex
	cur   map[uint64]hintLoc
	prev  map[uint64]hintLoc
	epoch uint64 // forgets so far

	// Serving reads that looked for a hint (chunkInto): found and read,
	// found and stale (read through the index instead), not found.
	hits, stale, misses atomic.Int64
}

// LocationHints is what the store's map of recent chunk locations holds
// and how reads have fared with it (/metrics).
type LocationHints struct {
	Held                int   // locations remembered now
	Hits, Stale, Misses int64 // reads since the store opened
}

// LocationHints reports the map of recent chunk locations (locs.go).
func (s *Store) LocationHints() LocationHints {
	r := &s.locs
	return LocationHints{Held: r.size(), Hits: r.hits.Load(), Stale: r.stale.Load(), Misses: r.misses.Load()}
}

func locKey(h nii.Hash) uint64 { return binary.LittleEndian.Uint64(h[:8]) }

// get returns where h was last written, if it is remembered.
func (r *recentLocs) get(h nii.Hash) (packPtr, bool) {
	k := locKey(h)
	r.mu.RLock()
	l, ok := r.cur[k]
	if !ok {
		l, ok = r.prev[k]
	}
	r.mu.RUnlock()
	return packPtr{pack: l.pack, off: l.off, size: l.size, format: ptrFormat}, ok
}

// since returns the epoch, to be passed to putAll: a writer takes it
// before its commit.
func (r *recentLocs) since() uint64 {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.epoch
}

// putAll remembers that each(i) (for i < n) was written where it says,
// unless a delete was forgotten since epoch (it may have committed after
// the writer's commit, and would be undone). Frames without a CRC are not
// remembered: only the CRC lets a reader check a frame's bytes without
// hashing them.
func (r *recentLocs) putAll(epoch uint64, n int, each func(i int) (nii.Hash, packPtr)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.epoch != epoch {
		return
	}
	for i := range n {
		h, p := each(i)
		if !p.hasCRC() {
			continue
		}
		if r.cur == nil || len(r.cur) >= locsMax {
			r.prev, r.cur = r.cur, make(map[uint64]hintLoc, 1024)
		}
		k := locKey(h)
		r.cur[k] = hintLoc{pack: p.pack, size: p.size, off: p.off}
		delete(r.prev, k) // one location per chunk: the newest
	}
}

// forget drops what is remembered of hs, which a delete has just
// removed from the index.
func (r *recentLocs) forget(hs ...nii.Hash) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.epoch++
	for _, h := range hs {
		delete(r.cur, locKey(h))
		delete(r.prev, locKey(h))
	}
}

// drop forgets h's hint, which a read found stale: nothing was deleted,
// so the epoch stays.
func (r *recentLocs) drop(h nii.Hash) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.cur, locKey(h))
	delete(r.prev, locKey(h))
}

// size is how many locations are remembered.
func (r *recentLocs) size() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.cur) + len(r.prev)
}
