package exchange

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/exchange/chunker"
)

// Key layout in the shared badger DB (every package owns a prefix; see
// docs/storage.md):
//
//	c/<hash:32>                         where the chunk's bytes are in a pack
//	                                    (pack.go), or, stored by an earlier
//	                                    build, the bytes themselves
//	m/<hash:32>                         signed manifest (canonical CBOR)
//	v/<org>/<name>/<version:8 BE>       VersionRecord (canonical CBOR)
//
// A version is visible exactly when its v/ key exists, and that key is
// written in the same transaction as its manifest, after every chunk it names
// is stored. A crash at any instant therefore leaves either the whole version
// or none of it; chunks written by a publish that never committed are
// harmless (and reused by the next attempt).
var (
	prefixChunk    = []byte("c/")
	prefixManifest = []byte("m/")
	prefixVersion  = []byte("v/")
)

func chunkKey(h nii.Hash) []byte    { return append(append([]byte{}, prefixChunk...), h[:]...) }
func manifestKey(h nii.Hash) []byte { return append(append([]byte{}, prefixManifest...), h[:]...) }

func datasetPrefix(d nii.DatasetID) []byte {
	return []byte(string(prefixVersion) + d.Org + "/" + d.Name + "/")
}

func versionKey(d nii.DatasetID, v uint64) []byte {
	return binary.BigEndian.AppendUint64(datasetPrefix(d), v)
}

// The store's errors are of the root kinds: nii.ErrNotFound, nii.ErrCorrupt,
// nii.ErrExists. These names remain for code written before the kinds
// moved there.
var (
	// Deprecated: use nii.ErrNotFound.
	ErrNotFound = nii.ErrNotFound
	// Deprecated: use nii.ErrCorrupt.
	ErrCorrupt = nii.ErrCorrupt
	// Deprecated: use nii.ErrExists.
	ErrExists = nii.ErrExists
)

// VersionRecord is what the store keeps per version besides the manifest:
// enough to list and describe versions without decoding chunk lists.
type VersionRecord struct {
	Ref       nii.Ref      `json:"-" cbor:"-"`
	Manifest  nii.Hash     `json:"manifest" cbor:"1,keyasint"`
	Publisher nii.NodeID   `json:"publisher" cbor:"2,keyasint"`
	Created   time.Time    `json:"created" cbor:"3,keyasint"`
	Size      int64        `json:"size" cbor:"4,keyasint"`
	Chunks    int          `json:"chunks" cbor:"5,keyasint"`
	Meta      nii.Metadata `json:"meta" cbor:"6,keyasint"`
	Stored    time.Time    `json:"stored" cbor:"7,keyasint"` // when this node committed it
}

// Store is the content store: chunks by hash, signed manifests, and the
// versions this node holds. It lives in a badger DB that it shares (under its
// own key prefixes) with the rest of the node.
type Store struct {
	db     *badger.DB
	params chunker.Params
	counts chunkCounts
	// putBytes counts the chunk bytes pulls have handed to a
	// syncedWriter and it has written (or found stored): their buffers
	// are free from then on (for tests of the fetch's memory bound).
	putBytes atomic.Int64

	commitMu sync.Mutex // serialises version commits, so numbering is race-free
	flights  flights    // pulls in progress, by manifest (pull.go)
	leases   leaseSet   // chunks in use by publishes and pulls not yet committed (gc.go)
	gcMu     sync.Mutex // one garbage collection at a time
	space    SpaceCheck // nil: writes are not checked for free space (space.go)
	damage   damageSet  // damaged versions found by Verify or while serving (verify.go)
	packs    *packSet   // the files chunk bodies live in (pack.go)
	locs     recentLocs // where recently written chunks are, a hint (locs.go)
	dropped  droppedSet // chunks dropped as damaged since the store opened
}

// droppedSet remembers which chunks this store dropped as damaged, so that
// a reader who comes after the one that found the damage is told the
// chunk was corrupt, not merely missing. Bounded: past maxDropped it
// starts again (the store check still reports the versions).
type droppedSet struct {
	mu sync.Mutex
	m  map[nii.Hash]struct{}
}

const maxDropped = 4096

func (d *droppedSet) add(h nii.Hash) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.m == nil || len(d.m) >= maxDropped {
		d.m = map[nii.Hash]struct{}{}
	}
	d.m[h] = struct{}{}
}

func (d *droppedSet) has(h nii.Hash) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	_, ok := d.m[h]
	return ok
}

// NewStore returns a store over db using chunk bounds p.
func NewStore(db *badger.DB, p chunker.Params) (*Store, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if !db.Opts().DetectConflicts {
		// Chunk counting relies on badger refusing a transaction that
		// read a key another one wrote meanwhile.
		return nil, errors.New("store: badger must detect conflicts")
	}
	opts := db.Opts()
	if opts.InMemory || opts.Dir == "" {
		return nil, errors.New("store: badger must be on disk (chunk bodies live in pack files beside it)")
	}
	packs, err := openPacks(filepath.Join(opts.Dir, packDirName), opts.ReadOnly)
	if err != nil {
		return nil, err
	}
	s := &Store{db: db, params: p, packs: packs}
	if err := s.loadCounts(); err != nil {
		return nil, err
	}
	return s, nil
}

// SetBufferedWrites makes the store write pack files through the page
// cache only, without O_DIRECT (directio.go), from the next pack it
// creates. Call it before the first write.
func (s *Store) SetBufferedWrites() {
	s.packs.mu.Lock()
	s.packs.buffered = true
	s.packs.mu.Unlock()
}

// PackWrites returns the bytes written to pack files since the store
// opened: directly (O_DIRECT, directio.go) and through the page cache.
func (s *Store) PackWrites() (direct, pageCache int64) {
	return s.packs.directBytes.Load(), s.packs.cachedBytes.Load()
}

// ChunkParams returns the store's chunker bounds.
func (s *Store) ChunkParams() chunker.Params { return s.params }

// Ingest cuts r into chunks, stores each chunk not already held, and returns
// the chunk list and total size. Nothing becomes visible: the chunks are only
// reachable once a manifest naming them is committed.
//
// Four stages overlap: one goroutine reads and cuts r; ingestHashers hash
// the chunks it cuts; the caller's goroutine takes them in order, looks
// each up and frames the new ones into a batch; and each full batch is
// written to a pack, synced and its index committed in the background
// (chunkWriter). The file is read once.
//
// Every chunk is added to ctx's lease (WithLease), which the caller holds
// until it has committed the version naming them; without one the chunks
// are protected from GC only until Ingest returns.
func (s *Store) Ingest(ctx context.Context, r io.Reader) ([]nii.ChunkRef, int64, error) {
	lease, own := s.leaseFrom(ctx)
	if own {
		defer lease.Release()
	}
	c, err := chunker.New(r, s.params)
	if err != nil {
		return nil, 0, err
	}
	type piece struct {
		h      nii.Hash
		b      []byte
		hashed chan struct{}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pieces := make(chan *piece, 64) // in file order, to this goroutine
	work := make(chan *piece, 64)   // to the hashers
	var readErr error
	var hashers sync.WaitGroup
	for range ingestHashers() {
		hashers.Go(func() {
			for p := range work {
				p.h = nii.HashOf(p.b)
				close(p.hashed)
			}
		})
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer hashers.Wait()
		defer close(work)
		defer close(pieces)
		for {
			b, err := c.Next()
			if errors.Is(err, io.EOF) {
				return
			}
			if err != nil {
				readErr = fmt.Errorf("read: %w", err)
				return
			}
			// b is ours to keep: the chunker never reuses its bytes.
			p := &piece{b: b, hashed: make(chan struct{})}
			select {
			case work <- p:
			case <-ctx.Done():
				return
			}
			select {
			case pieces <- p:
			case <-ctx.Done():
				return
			}
		}
	}()
	// On any early return, stop the reader and hashers and wait for them.
	defer func() {
		cancel()
		for range pieces {
		}
		<-done
	}()

	w := s.newChunkWriter()
	w.lease = lease
	defer w.cancel()
	var (
		refs  []nii.ChunkRef
		total int64
		seen  = make(map[nii.Hash]struct{})
	)
	for p := range pieces {
		select {
		case <-p.hashed:
		case <-ctx.Done():
			return nil, 0, ctx.Err()
		}
		refs = append(refs, nii.ChunkRef{Hash: p.h, Size: uint32(len(p.b))})
		total += int64(len(p.b))
		if _, dup := seen[p.h]; dup {
			continue
		}
		seen[p.h] = struct{}{}
		if err := w.set(p.h, p.b); err != nil {
			return nil, 0, fmt.Errorf("store chunk: %w", err)
		}
	}
	<-done
	if readErr != nil {
		return nil, 0, readErr
	}
	if err := ctx.Err(); err != nil {
		return nil, 0, err
	}
	if err := w.flush(); err != nil {
		return nil, 0, fmt.Errorf("store chunks: %w", err)
	}
	return refs, total, nil
}

// ingestHashers is how many goroutines hash an ingest's chunks: one per
// core, at most four (BLAKE3 runs at several GB/s a core; the reader and
// the disk are the limit past that).
func ingestHashers() int { return min(max(runtime.GOMAXPROCS(0), 1), 4) }

// HasChunk reports whether the chunk is stored.
func (s *Store) HasChunk(h nii.Hash) (bool, error) { return s.has(chunkKey(h)) }

// has reports whether key is stored, with one key lookup.
func (s *Store) has(key []byte) (bool, error) {
	err := s.db.View(func(txn *badger.Txn) error {
		_, err := txn.Get(key)
		return err
	})
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, badger.ErrKeyNotFound):
		return false, nil
	}
	return false, err
}

// PutChunk stores one chunk after checking that b hashes to h.
func (s *Store) PutChunk(h nii.Hash, b []byte) error {
	if nii.HashOf(b) != h {
		return fmt.Errorf("chunk %s: %w: content does not match its hash", h, nii.ErrCorrupt)
	}
	return s.putChunks([]Chunk{{Hash: h, Data: b}})
}

// Chunk returns a chunk's bytes after verifying them against h.
//
// A chunk found damaged — bytes that do not hash to h, a pack frame that
// is not the one its index entry names, a pack cut short or missing — is
// caught here once, by whoever reads it: its index entry is deleted (if it
// still names the damaged place), so that the chunk is missing from then
// on. It is never served or counted as stored again: a publish of the
// same content stores it afresh, a pull or repair fetches it, and the
// store check reports the versions that name it as missing chunks.
func (s *Store) Chunk(h nii.Hash) ([]byte, error) {
	b, loc, err := s.chunkBytes(h)
	return s.checkRead(h, b, loc, err, true)
}

// checkRead ends a read of chunk h that found b at loc (or err): b is
// hashed if rehash, and a chunk found damaged has its index entry dropped
// (if it still names loc) before the error is returned.
func (s *Store) checkRead(h nii.Hash, b []byte, loc chunkLoc, err error, rehash bool) ([]byte, error) {
	if err == nil && rehash && nii.HashOf(b) != h {
		err = fmt.Errorf("chunk %s: %w: stored bytes do not match the hash", h, nii.ErrCorrupt)
	}
	if err != nil {
		if loc.damaged(err) {
			if derr := s.dropDamaged(h, loc); derr != nil {
				err = fmt.Errorf("%w (and deleting its index entry failed: %v)", err, derr)
			}
		}
		return nil, err
	}
	return b, nil
}

// readChunk is the content server's read: chunk h's bytes read into the
// buffer dst(pre, size) returns (see packSet.read), checked
// once. A chunk in a v2 pack is checked against its frame's CRC, not
// hashed again: the server sends it to a client that checks BLAKE3 against
// the signed manifest, and the CRC catches what the disk damaged, so the
// server never sends it (it answers "missing" and drops the entry, as
// Chunk does). Any other chunk (a v1 pack's, one stored in badger) is
// hashed, as Chunk does.
func (s *Store) readChunk(h nii.Hash, dst func(pre, size int) []byte) ([]byte, error) {
	b, loc, err := s.chunkInto(h, dst)
	return s.checkRead(h, b, loc, err, !(loc.packed && loc.ptr.hasCRC()))
}

// chunkLoc is where chunkBytes found a chunk: in a pack, or (stored by an
// earlier build) in badger.
type chunkLoc struct {
	found  bool
	packed bool
	ptr    packPtr
}

// damaged reports whether err, from reading the chunk at l, says the
// stored chunk itself is bad (not an I/O error or a closed store).
func (l chunkLoc) damaged(err error) bool {
	return l.found && errors.Is(err, nii.ErrCorrupt) && !errors.Is(err, errReadFailed)
}

// errReadFailed marks a read that failed for a reason other than the
// stored bytes (the disk, the file system): the chunk is not dropped.
var errReadFailed = errors.New("read failed")

// chunkBytes returns a chunk's bytes as stored, not yet checked against h,
// from where the index says (never from a hint: what the store check,
// repair and exports read).
func (s *Store) chunkBytes(h nii.Hash) ([]byte, chunkLoc, error) {
	return s.indexedChunkInto(h, nil, false)
}

// chunkInto is chunkBytes reading into dst(pre, size) if dst is set (see
// packSet.read; a chunk stored in badger is copied to its last size bytes),
// for the content server: a chunk written recently is read
// from where it was written (locs.go) without the index lookup, if that
// frame passes its checks; otherwise, and for every other chunk, from
// where the index says. A chunk in a v2 pack is checked against its CRC;
// nothing is hashed.
func (s *Store) chunkInto(h nii.Hash, dst func(pre, size int) []byte) ([]byte, chunkLoc, error) {
	if p, ok := s.locs.get(h); ok {
		if b, err := s.packs.read(h, p, dst, false); err == nil {
			s.locs.hits.Add(1)
			return b, chunkLoc{found: true, packed: true, ptr: p}, nil
		}
		s.locs.stale.Add(1)
		s.locs.drop(h) // moved, dropped or damaged: the index says which
	} else {
		s.locs.misses.Add(1)
	}
	return s.indexedChunkInto(h, dst, false)
}

// indexedChunkInto is chunkInto without the hints; hashed is packSet.read's.
func (s *Store) indexedChunkInto(h nii.Hash, dst func(pre, size int) []byte, hashed bool) ([]byte, chunkLoc, error) {
	for try := 0; ; try++ {
		loc, b, err := s.lookupChunk(h)
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil, loc, fmt.Errorf("chunk %s: %w", h, nii.ErrNotFound)
		}
		if err != nil && !errors.Is(err, badger.ErrDBClosed) {
			if errors.Is(err, nii.ErrCorrupt) {
				return nil, loc, fmt.Errorf("chunk %s: %w", h, err)
			}
			// The key is there but its value cannot be read (a value log
			// cut short or damaged): as corrupt as bytes that do not hash.
			return nil, loc, fmt.Errorf("chunk %s: %w: stored value unreadable: %v", h, nii.ErrCorrupt, err)
		}
		if err != nil {
			return nil, chunkLoc{}, fmt.Errorf("chunk %s: %w", h, err)
		}
		if !loc.packed {
			if dst != nil {
				// Copied out of the transaction first: dst may write to a
				// stream, which must not hold a read transaction open.
				d := dst(0, len(b))
				copy(d, b)
				b = d
			}
			return b, loc, nil
		}
		b, err = s.packs.read(h, loc.ptr, dst, hashed)
		if errors.Is(err, errPackGone) && try < 3 {
			continue // moved by a pack rewrite: look it up again
		}
		if err != nil {
			if !errors.Is(err, nii.ErrCorrupt) {
				err = fmt.Errorf("%w: %w: %v", nii.ErrCorrupt, errReadFailed, err)
			}
			return nil, loc, fmt.Errorf("chunk %s: %w", h, err)
		}
		return b, loc, nil
	}
}

// lookupChunk reads chunk h's index entry: where its frame is, or (stored
// by an earlier build) its bytes themselves.
func (s *Store) lookupChunk(h nii.Hash) (loc chunkLoc, inline []byte, err error) {
	err = s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(chunkKey(h))
		if err != nil {
			return err
		}
		loc.found = true
		if item.UserMeta() == metaPacked {
			loc.packed = true
			return item.Value(func(v []byte) error {
				var err error
				loc.ptr, err = decodePackPtr(v)
				return err
			})
		}
		inline, err = item.ValueCopy(nil)
		return err
	})
	return loc, inline, err
}

// chunkPtr returns where chunk h's frame is, from its hint or the index,
// if it is in a pack.
func (s *Store) chunkPtr(h nii.Hash) (packPtr, bool) {
	if p, ok := s.locs.get(h); ok {
		return p, true
	}
	loc, _, err := s.lookupChunk(h)
	return loc.ptr, err == nil && loc.packed
}

// dropDamaged deletes chunk h's index entry if it still names loc, with
// the counts adjusted and the GC generation bumped (as a GC delete: an
// ingest that saw the chunk held in an older snapshot looks again).
func (s *Store) dropDamaged(h nii.Hash, loc chunkLoc) error {
	ls := &s.leases
	ls.mu.Lock()
	defer ls.mu.Unlock()
	// Marked before the entry goes: a concurrent reader (another export
	// worker at a later copy of the same chunk) that finds it missing must
	// already see why, or it reports "not found" where the damage is the
	// cause. The mark holds even if the entry was rewritten meanwhile: the
	// bytes this reader found were bad.
	s.dropped.add(h)
	n, err := s.deleteChunkEntries([]nii.Hash{h}, func(item *badger.Item) bool {
		if item.UserMeta() != metaPacked || !loc.packed {
			return item.UserMeta() != metaPacked && !loc.packed
		}
		same := false
		item.Value(func(v []byte) error {
			p, err := decodePackPtr(v)
			same = err == nil && p == loc.ptr
			return nil
		})
		return same // else rewritten meanwhile: not the bytes found bad
	})
	if n == 1 {
		ls.gen++
	}
	return err
}

// deleteChunkEntries deletes, in one transaction retried on conflict, the
// index entries of hs that match (nil: every one held), and adjusts the
// counts by what the committed transaction deleted. It returns how many.
func (s *Store) deleteChunkEntries(hs []nii.Hash, match func(*badger.Item) bool) (int64, error) {
	s.counts.begin()
	var n, size int64
	defer func() { s.counts.end(-n, -size) }()
	for {
		txn, err := s.newChunkTxn()
		if err != nil {
			return 0, err
		}
		var k, sz int64
		for _, h := range hs {
			item, err := txn.Get(chunkKey(h))
			if errors.Is(err, badger.ErrKeyNotFound) {
				continue
			}
			if err != nil {
				txn.Discard()
				return 0, err
			}
			if match != nil && !match(item) {
				continue
			}
			isz := chunkItemExactSize(item)
			if err := txn.Delete(chunkKey(h)); err != nil {
				txn.Discard()
				return 0, err
			}
			k, sz = k+1, sz+isz
		}
		if k == 0 {
			txn.Discard()
			return 0, nil
		}
		err = txn.Commit()
		if errors.Is(err, badger.ErrConflict) {
			continue
		}
		if err != nil {
			return 0, err
		}
		n, size = k, sz
		s.locs.forget(hs...)
		return n, nil
	}
}

// NextVersion returns the number the next version of d would get. Callers
// that publish hold the result only as a proposal: Commit refuses a number
// that is taken.
func (s *Store) NextVersion(d nii.DatasetID) (uint64, error) {
	latest, err := s.Latest(d)
	if errors.Is(err, nii.ErrNotFound) {
		return 1, nil
	}
	if err != nil {
		return 0, err
	}
	return latest.Ref.Version + 1, nil
}

// Publish commits a new version of d. build is called, with the commit lock
// held, with the version number to use; it returns the signed manifest. The
// version number is therefore never handed out twice.
func (s *Store) Publish(d nii.DatasetID, build func(version uint64) (*nii.SignedManifest, error)) (*VersionRecord, error) {
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	v, err := s.NextVersion(d)
	if err != nil {
		return nil, err
	}
	sm, err := build(v)
	if err != nil {
		return nil, err
	}
	return s.commitLocked(sm, true)
}

// Commit verifies and stores a signed manifest and makes its version visible.
// Every chunk it names must already be stored. Committing the same manifest
// twice is a no-op; committing a different manifest for a version that
// exists is nii.ErrExists.
func (s *Store) Commit(sm *nii.SignedManifest) (*VersionRecord, error) {
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	return s.commitLocked(sm, true)
}

// commitFetched is Commit for a pull that has itself established that
// every chunk is stored (it found each one held, or stored it), so the
// chunks are not looked up a second time. The pull's lease keeps GC from
// deleting any of them meanwhile (gc.go).
func (s *Store) commitFetched(sm *nii.SignedManifest) (*VersionRecord, error) {
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	return s.commitLocked(sm, false)
}

// Missing returns, in order and without repeats, the chunks of refs the
// store does not hold, and how many distinct chunks of refs it holds (one
// read transaction).
func (s *Store) Missing(refs []nii.ChunkRef) (need []nii.ChunkRef, held int, err error) {
	return s.missing(refs)
}

// missing returns, in order and without repeats, the chunks of refs the
// store lacks, and how many distinct chunks it holds: one read transaction
// for the whole list.
func (s *Store) missing(refs []nii.ChunkRef) (need []nii.ChunkRef, held int, err error) {
	seen := make(map[nii.Hash]struct{}, len(refs))
	err = s.db.View(func(txn *badger.Txn) error {
		for _, c := range refs {
			if _, dup := seen[c.Hash]; dup {
				continue
			}
			seen[c.Hash] = struct{}{}
			_, err := txn.Get(chunkKey(c.Hash))
			switch {
			case err == nil:
				held++
			case errors.Is(err, badger.ErrKeyNotFound):
				need = append(need, c)
			default:
				return fmt.Errorf("chunk %s: %w", c.Hash, err)
			}
		}
		return nil
	})
	return need, held, err
}

func (s *Store) commitLocked(sm *nii.SignedManifest, checkChunks bool) (*VersionRecord, error) {
	m, h, err := sm.Open()
	if err != nil {
		return nil, err
	}
	if checkChunks {
		need, _, err := s.missing(m.Chunks)
		if err != nil {
			return nil, fmt.Errorf("commit %s: %w", m.Ref(), err)
		}
		if len(need) > 0 {
			return nil, fmt.Errorf("commit %s: chunk %s: %w", m.Ref(), need[0].Hash, nii.ErrNotFound)
		}
	}
	// Make sure every chunk is durable before the version that names them.
	if err := s.db.Sync(); err != nil {
		return nil, fmt.Errorf("commit %s: sync: %w", m.Ref(), err)
	}
	rec := &VersionRecord{
		Ref:       m.Ref(),
		Manifest:  h,
		Publisher: m.Publisher,
		Created:   m.Created,
		Size:      m.Size,
		Chunks:    len(m.Chunks),
		Meta:      m.Meta,
		Stored:    time.Now().UTC(),
	}
	recBytes, err := nii.Marshal(rec)
	if err != nil {
		return nil, err
	}
	smBytes, err := nii.EncodeSignedManifest(sm)
	if err != nil {
		return nil, err
	}
	vk := versionKey(m.Dataset, m.Version)
	err = s.db.Update(func(txn *badger.Txn) error {
		item, err := txn.Get(vk)
		if err == nil {
			var old VersionRecord
			if err := item.Value(func(b []byte) error { return nii.Unmarshal(b, &old) }); err != nil {
				return err
			}
			if old.Manifest == h {
				*rec = old
				rec.Ref = m.Ref()
				return errSame
			}
			return fmt.Errorf("%s: %w with another manifest", m.Ref(), nii.ErrExists)
		}
		if !errors.Is(err, badger.ErrKeyNotFound) {
			return err
		}
		if err := txn.Set(manifestKey(h), smBytes); err != nil {
			return err
		}
		return txn.Set(vk, recBytes)
	})
	if errors.Is(err, errSame) {
		return rec, nil
	}
	if err != nil {
		return nil, fmt.Errorf("commit %s: %w", m.Ref(), err)
	}
	if err := s.db.Sync(); err != nil {
		return nil, fmt.Errorf("commit %s: sync: %w", m.Ref(), err)
	}
	return rec, nil
}

var errSame = errors.New("same manifest already committed")

// Version returns the record of r; Version 0 means the latest.
func (s *Store) Version(r nii.Ref) (*VersionRecord, error) {
	if r.Version == 0 {
		return s.Latest(r.Dataset)
	}
	var rec VersionRecord
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(versionKey(r.Dataset, r.Version))
		if err != nil {
			return err
		}
		return item.Value(func(b []byte) error { return nii.Unmarshal(b, &rec) })
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		if _, lerr := s.Latest(r.Dataset); errors.Is(lerr, nii.ErrNotFound) {
			return nil, fmt.Errorf("dataset %s: %w", r.Dataset, nii.ErrNotFound)
		}
		return nil, fmt.Errorf("version %s: %w", r, nii.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("version %s: %w", r, err)
	}
	rec.Ref = r
	return &rec, nil
}

// HasVersion reports whether version r (r.Version ≥ 1) is held: one key
// lookup, where Version, on a miss, also looks for the dataset to say
// which is missing.
func (s *Store) HasVersion(r nii.Ref) (bool, error) { return s.has(versionKey(r.Dataset, r.Version)) }

// Latest returns the record of d's highest version.
func (s *Store) Latest(d nii.DatasetID) (*VersionRecord, error) {
	var rec *VersionRecord
	err := s.db.View(func(txn *badger.Txn) error {
		prefix := datasetPrefix(d)
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, Reverse: true})
		defer it.Close()
		// Reverse iteration starts at the first key ≤ the seek key.
		it.Seek(append(bytes.Clone(prefix), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff))
		if !it.ValidForPrefix(prefix) {
			return nil
		}
		r, err := decodeVersion(it.Item())
		rec = r
		return err
	})
	if err != nil {
		return nil, err
	}
	if rec == nil {
		return nil, fmt.Errorf("dataset %s: %w", d, nii.ErrNotFound)
	}
	return rec, nil
}

func decodeVersion(item *badger.Item) (*VersionRecord, error) {
	k := item.Key()
	rest := k[len(prefixVersion):]
	if len(rest) < 8+3 {
		return nil, fmt.Errorf("version key %q: %w", k, nii.ErrCorrupt)
	}
	dsPart := string(rest[:len(rest)-9]) // strip "/" + 8 bytes
	d, err := nii.ParseDatasetID(dsPart)
	if err != nil {
		return nil, fmt.Errorf("version key %q: %w", k, nii.ErrCorrupt)
	}
	var rec VersionRecord
	if err := item.Value(func(b []byte) error { return nii.Unmarshal(b, &rec) }); err != nil {
		return nil, fmt.Errorf("version record %s: %w: %v", d, nii.ErrCorrupt, err)
	}
	rec.Ref = nii.Ref{Dataset: d, Version: binary.BigEndian.Uint64(rest[len(rest)-8:])}
	return &rec, nil
}

// Versions returns every version held, ordered by dataset then version. If
// d is non-nil only that dataset's versions are returned.
func (s *Store) Versions(d *nii.DatasetID) ([]*VersionRecord, error) {
	prefix := prefixVersion
	if d != nil {
		prefix = datasetPrefix(*d)
	}
	var out []*VersionRecord
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true, PrefetchSize: 64})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			rec, err := decodeVersion(it.Item())
			if err != nil {
				return err
			}
			out = append(out, rec)
		}
		return nil
	})
	return out, err
}

// Manifest returns the signed manifest stored under h.
func (s *Store) Manifest(h nii.Hash) (*nii.SignedManifest, error) {
	var sm *nii.SignedManifest
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(manifestKey(h))
		if err != nil {
			return err
		}
		return item.Value(func(b []byte) error {
			var err error
			sm, err = nii.DecodeSignedManifest(b)
			return err
		})
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, fmt.Errorf("manifest %s: %w", h, nii.ErrNotFound)
	}
	if err != nil && !errors.Is(err, badger.ErrDBClosed) {
		return nil, fmt.Errorf("manifest %s: %w: stored value unreadable or undecodable: %v", h, nii.ErrCorrupt, err)
	}
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %w", h, err)
	}
	return sm, nil
}

// OpenManifest returns the verified manifest of a version held.
func (s *Store) OpenManifest(rec *VersionRecord) (*nii.Manifest, error) {
	sm, err := s.Manifest(rec.Manifest)
	if err != nil {
		return nil, err
	}
	m, h, err := sm.Open()
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %v", rec.Ref, nii.ErrCorrupt, err)
	}
	if h != rec.Manifest {
		return nil, fmt.Errorf("%s: %w: manifest hash mismatch", rec.Ref, nii.ErrCorrupt)
	}
	return m, nil
}

// WriteTo writes the content of a version to w, verifying every chunk's
// hash before its bytes are written. A corrupt or missing chunk stops the
// write with an error wrapping nii.ErrCorrupt or nii.ErrNotFound (and a
// corrupt one is dropped, as Chunk drops it).
//
// One goroutine reads chunks up to exportAhead bytes ahead of the caller,
// ingestHashers verify them, and the caller's goroutine writes them to w,
// in order, in writes of about exportWrite bytes.
func (s *Store) WriteTo(ctx context.Context, rec *VersionRecord, w io.Writer) (int64, error) {
	m, err := s.OpenManifest(rec)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type piece struct {
		i        int
		c        nii.ChunkRef
		b        []byte
		loc      chunkLoc
		err      error
		verified chan struct{}
	}
	ahead := make(chan *piece, exportAhead/max(int(s.params.Avg), 1)+1)
	work := make(chan *piece, cap(ahead))
	var hashers sync.WaitGroup
	for range ingestHashers() {
		hashers.Go(func() {
			for p := range work {
				if p.err == nil && nii.HashOf(p.b) != p.c.Hash {
					p.err = fmt.Errorf("chunk %s: %w: stored bytes do not match the hash", p.c.Hash, nii.ErrCorrupt)
				}
				close(p.verified)
			}
		})
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer hashers.Wait()
		defer close(work)
		defer close(ahead)
		for i, c := range m.Chunks {
			if ctx.Err() != nil {
				return
			}
			b, loc, err := s.chunkBytes(c.Hash)
			p := &piece{i: i, c: c, b: b, loc: loc, err: err, verified: make(chan struct{})}
			select {
			case work <- p:
			case <-ctx.Done():
				return
			}
			select {
			case ahead <- p:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	defer func() {
		cancel()
		for range ahead {
		}
		<-done
	}()
	var (
		n   int64
		buf = make([]byte, 0, exportWrite)
	)
	flush := func() error {
		k, err := w.Write(buf)
		n += int64(k)
		buf = buf[:0]
		return err
	}
	for p := range ahead {
		select {
		case <-p.verified:
		case <-ctx.Done():
			return n, ctx.Err()
		}
		if err := s.exportCheck(rec, p.i, len(m.Chunks), p.c, p.b, p.loc, p.err); err != nil {
			if ferr := flush(); ferr != nil {
				return n, ferr
			}
			return n, err
		}
		if len(buf)+len(p.b) > exportWrite && len(buf) > 0 {
			if err := flush(); err != nil {
				return n, err
			}
		}
		buf = append(buf, p.b...)
	}
	if err := ctx.Err(); err != nil {
		return n, err
	}
	if err := flush(); err != nil {
		return n, err
	}
	return n, nil
}

// exportCheck is the verdict on chunk i (of total) of rec read for an
// export as b, from loc, with err (the read's error, or the hash check's):
// nil if b is the chunk, else the error to stop the export with. A chunk
// found damaged is dropped, as Chunk drops it.
func (s *Store) exportCheck(rec *VersionRecord, i, total int, c nii.ChunkRef, b []byte, loc chunkLoc, err error) error {
	if err != nil && loc.damaged(err) {
		if derr := s.dropDamaged(c.Hash, loc); derr != nil {
			err = fmt.Errorf("%w (and deleting its index entry failed: %v)", err, derr)
		}
	}
	if err == nil && len(b) != int(c.Size) {
		err = fmt.Errorf("%w: size %d, manifest says %d", nii.ErrCorrupt, len(b), c.Size)
	}
	if errors.Is(err, nii.ErrNotFound) && s.dropped.has(c.Hash) {
		// Another reader found it corrupt first and dropped it.
		err = fmt.Errorf("%w: chunk %s was found damaged on disk and dropped; a pull or the store's repair fetches it again: %v", nii.ErrCorrupt, c.Hash, err)
	}
	if errors.Is(err, nii.ErrNotFound) {
		if d, ok := s.Damaged()[rec.Ref]; ok {
			// Dropped when found corrupt (Chunk): say so.
			err = fmt.Errorf("%w: the version is damaged (%s), being repaired: %v", nii.ErrCorrupt, d.Reason, err)
		}
	}
	if err != nil {
		return fmt.Errorf("%s chunk %d of %d: %w", rec.Ref, i+1, total, err)
	}
	return nil
}

// exportChunk reads chunk i of m (rec's manifest) into dst and hashes it,
// returning its bytes or exportCheck's verdict: an export's read of one
// chunk (WriteAt, WriteDirect). The CRC is not checked: the hash is.
//
// If at is set, the chunk is first read from there: WriteDirect's
// prefetch found it (chunkPtr: a chunk written recently where it was
// written, locs.go, as the content server reads it; another where the
// index said). WriteAt passes none and reads through the index alone:
// with the hints its export into the page cache was slower, 0.82–0.96 s
// against 0.70–0.86 s per GiB, the extra time in its own preads and
// pwrites; WriteDirect's daemon CPU per GiB was 0.86–1.00 s with them
// against 0.99–1.50 s without (docs/benchmarks.md).
func (s *Store) exportChunk(rec *VersionRecord, m *nii.Manifest, i int, dst func(pre, size int) []byte, at *packPtr) ([]byte, error) {
	c := m.Chunks[i]
	if at != nil {
		// Only a frame that reads and hashes right is taken from there;
		// anything else (moved, damaged) is read again where the index
		// says now, which gives the verdict.
		if b, err := s.packs.read(c.Hash, *at, dst, true); err == nil && len(b) == int(c.Size) && nii.HashOf(b) == c.Hash {
			return b, nil
		}
		s.locs.drop(c.Hash) // if it was a hint: moved, dropped or damaged
	}
	b, loc, err := s.indexedChunkInto(c.Hash, dst, true)
	if err == nil && nii.HashOf(b) != c.Hash {
		err = fmt.Errorf("chunk %s: %w: stored bytes do not match the hash", c.Hash, nii.ErrCorrupt)
	}
	if err := s.exportCheck(rec, i, len(m.Chunks), c, b, loc, err); err != nil {
		return nil, err
	}
	return b, nil
}

// WriteAt writes the content of a version into w, each chunk at its
// offset, verifying every chunk's hash before its bytes are written: the
// export of a version into a file (the daemon fills a file the CLI handed
// it, node/exportsock_linux.go). Errors are WriteTo's; on error w holds
// some chunks and not others, and the caller discards it.
//
// exportWorkers goroutines take the chunks in order of offset, each
// reading, hashing and writing its chunk straight from the buffer it was
// read into: no single reader, no copy into a write buffer (WriteTo's
// order, which a stream needs, costs both).
func (s *Store) WriteAt(ctx context.Context, rec *VersionRecord, w io.WriterAt) (int64, error) {
	return s.WriteAtExcept(ctx, rec, w, nil)
}

// WriteAtExcept is WriteAt for the manifest positions i where skip[i]
// is not set (skip may be nil, or as long as the manifest): the chunks a
// pull did not write into its copy as they arrived (PullResult.Copied).
// It returns the bytes it wrote.
func (s *Store) WriteAtExcept(ctx context.Context, rec *VersionRecord, w io.WriterAt, skip []bool) (int64, error) {
	m, err := s.OpenManifest(rec)
	if err != nil {
		return 0, err
	}
	if skip != nil && len(skip) != len(m.Chunks) {
		return 0, fmt.Errorf("export %s: %d positions to skip for %d chunks", rec.Ref, len(skip), len(m.Chunks))
	}
	offs, _ := chunkOffsets(m)
	ctx, failure := startExport(ctx, m)
	defer failure.cancel()
	var (
		next, n atomic.Int64
		workers sync.WaitGroup
	)
	fail := failure.fail
	for range exportWorkers() {
		workers.Go(func() {
			// One buffer per worker, reused chunk after chunk: w.WriteAt
			// does not keep b (io.WriterAt's contract), and a new 32 KiB
			// slice per chunk cost 7% of an export's CPU in zeroing alone.
			var buf []byte
			into := func(pre, size int) []byte {
				if cap(buf) < pre+size {
					buf = make([]byte, pre+size)
				}
				return buf[:pre+size]
			}
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= len(m.Chunks) {
					return
				}
				if skip != nil && skip[i] {
					continue
				}
				b, err := s.exportChunk(rec, m, i, into, nil)
				if err != nil {
					fail(i, err)
					return
				}
				k, err := w.WriteAt(b, offs[i])
				n.Add(int64(k))
				if err != nil {
					fail(i, err)
					return
				}
			}
		})
	}
	workers.Wait()
	return n.Load(), failure.result(ctx)
}

// startExport returns the context of an export of m's chunks, which its
// first failure cancels (as does the caller's cancel, once it is done),
// and the failure.
func startExport(ctx context.Context, m *nii.Manifest) (context.Context, *exportFailure) {
	ctx, cancel := context.WithCancel(ctx)
	return ctx, &exportFailure{at: len(m.Chunks), cancel: cancel}
}

// exportFailure is how an export's workers fail: the error of the lowest
// chunk that failed is the export's (so the same damage gets the same
// message however the workers ran), and the first failure stops the rest.
type exportFailure struct {
	mu     sync.Mutex
	at     int // the chunk that failed, or the chunk count
	err    error
	cancel context.CancelFunc
}

func (f *exportFailure) fail(i int, err error) {
	f.mu.Lock()
	if i < f.at || f.err == nil {
		f.at, f.err = i, err
	}
	f.mu.Unlock()
	f.cancel()
}

// result is the export's error once its workers are done: the failure,
// or ctx's if it was cancelled from outside.
func (f *exportFailure) result(ctx context.Context) error {
	if f.err != nil {
		return f.err
	}
	return ctx.Err()
}

// chunkOffsets returns where each of m's chunks begins in the content,
// and the content's size.
func chunkOffsets(m *nii.Manifest) ([]int64, int64) {
	offs := make([]int64, len(m.Chunks))
	var end int64
	for i, c := range m.Chunks {
		offs[i] = end
		end += int64(c.Size)
	}
	return offs, end
}

// exportWorkers is WriteAt's parallelism: enough to keep every core busy
// while some wait on a read or a write.
func exportWorkers() int { return min(max(runtime.GOMAXPROCS(0), 1), 4) * 2 }

const (
	exportAhead = 8 << 20 // bytes of chunks read and verified ahead of the writer
	exportWrite = 1 << 20 // bytes per write to the destination
)

// Stats summarises the store.
type Stats struct {
	Chunks     int64 `json:"chunks"`
	ChunkBytes int64 `json:"chunk_bytes"`
	Versions   int64 `json:"versions"`
	Datasets   int64 `json:"datasets"`
	PackFiles  int64 `json:"pack_files"` // files chunk bodies live in (pack.go)
	PackBytes  int64 `json:"pack_bytes"` // their size on disk, dead space included
}

// Stats counts chunks (and their bytes: kept as chunks are written, so
// O(1)), versions and datasets (a scan of the version keys).
func (s *Store) Stats() (Stats, error) {
	var st Stats
	st.Chunks, st.ChunkBytes = s.counts.get()
	if sizes, err := s.packs.sizes(); err == nil {
		st.PackFiles = int64(len(sizes))
		for _, n := range sizes {
			st.PackBytes += n
		}
	}
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefixVersion})
		defer it.Close()
		var last []byte
		for it.Rewind(); it.Valid(); it.Next() {
			st.Versions++
			k := it.Item().Key()
			ds := k[:len(k)-8]
			if !bytes.Equal(ds, last) {
				st.Datasets++
				last = bytes.Clone(ds)
			}
		}
		return nil
	})
	return st, err
}
