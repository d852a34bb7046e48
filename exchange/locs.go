package exchange

// Where recently written chunks live, kept in memory beside the index.
//
// A version is pulled right after it is published: every subscriber's
// node asks for its chunks as the advert reaches it. Serving each chunk
// starts with finding it in the index, a badger read whose memtable (a
// skiplist over random keys, the chunks just written) costs a string of
// cache misses per lookup: in a profile of a 1 GiB pull between two
// daemons those lookups were 11% of the publisher's CPU, against 0.2%
// with the locations held in a map (docs/benchmarks.md, "A map of recent
// chunk locations").
//
// The map is a hint, never the truth. Every writer records a location as
// it records the index entry, before its transaction commits; a delete
// forgets it after. So an entry may name a frame the index does not (a
// commit that lost a conflict, a chunk a GC has just dropped), and a
// reader only ever uses one through the frame's own checks: the hash and
// size in its header and the CRC of its bytes (packSet.read). A frame that
// passes them holds exactly that chunk's bytes, wherever the index points;
// on any failure the reader forgets the entry and asks the index, as it
// would without the map, so damage is judged (and a damaged chunk
// dropped) only from what the index says.

import (
	"sync"

	"github.com/nii-uk/nii"
)

// locsMax is how many locations each of the map's two generations holds:
// 32,768 chunks, a GiB of 32 KiB chunks; with both, a node remembers the
// last 1–2 GiB it wrote, in at most about 5 MB of heap (56 bytes a
// location, and the map's slack).
const locsMax = 1 << 15

// recentLocs maps chunk hashes to where they were last written. When the
// current generation is full it becomes the previous one and the one
// before is dropped: the memory is bounded, and what was written last is
// kept.
type recentLocs struct {
	mu   sync.RWMutex
	cur  map[nii.Hash]packPtr
	prev map[nii.Hash]packPtr
}

// get returns where h was last written, if it is remembered.
func (r *recentLocs) get(h nii.Hash) (packPtr, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if p, ok := r.cur[h]; ok {
		return p, true
	}
	p, ok := r.prev[h]
	return p, ok
}

// put remembers that h was written at p, if p is a frame with a CRC (every
// frame written since packs had them): a reader can check such a frame's
// bytes without hashing them, so a location that has gone stale is caught
// by the read alone.
func (r *recentLocs) put(h nii.Hash, p packPtr) {
	if !p.hasCRC() {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cur == nil || len(r.cur) >= locsMax {
		r.prev, r.cur = r.cur, make(map[nii.Hash]packPtr, min(locsMax, 1024))
	}
	r.cur[h] = p
	if r.prev != nil {
		delete(r.prev, h) // one location per chunk: the newest
	}
}

// forget drops what is remembered of hs.
func (r *recentLocs) forget(hs ...nii.Hash) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, h := range hs {
		delete(r.cur, h)
		delete(r.prev, h)
	}
}

// size is how many locations are remembered.
func (r *recentLocs) size() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.cur) + len(r.prev)
}
