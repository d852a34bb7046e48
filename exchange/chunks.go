package exchange

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/nii-uk/nii"
)

// Writing chunks, and counting them.
//
// Every chunk write goes through a transaction that first reads the chunk's
// key and writes only the keys it did not find. badger (with conflict
// detection, which NewStore requires) refuses to commit a transaction that
// read a key another transaction wrote after it began, so when two ingests
// or pulls store the same chunk at once exactly one of them counts it; the
// other retries and finds it. The counts are therefore exact without
// scanning the chunk keys.
//
// They are kept in memory and saved under countsKey when the store is
// closed. Every chunk transaction also deletes countsKey, so the saved
// counts survive only until the next chunk is written: after a crash (or a
// write by a build that does not count) the key is gone and the next open
// counts by a scan, once.
var countsKey = []byte("s/chunks")

type chunkCounts struct {
	mu            sync.Mutex
	idle          sync.Cond // signalled when inflight drops to 0
	chunks, bytes int64
	inflight      int // chunk transactions begun and not yet counted
	closed        bool
}

func (c *chunkCounts) get() (chunks, bytes int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.chunks, c.bytes
}

// begin is called before a chunk transaction is created, end once it is
// committed (or abandoned) with what it added.
func (c *chunkCounts) begin() {
	c.mu.Lock()
	c.inflight++
	c.mu.Unlock()
}

func (c *chunkCounts) end(chunks, bytes int64) {
	c.mu.Lock()
	c.chunks += chunks
	c.bytes += bytes
	if c.inflight--; c.inflight == 0 {
		c.idle.Broadcast()
	}
	c.mu.Unlock()
}

// loadCounts reads the counts saved by Close, or counts the chunk keys.
func (s *Store) loadCounts() error {
	s.counts.idle.L = &s.counts.mu
	return s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(countsKey)
		if err == nil {
			return item.Value(func(b []byte) error {
				if len(b) != 16 {
					return fmt.Errorf("chunk counts: %w: %d bytes", nii.ErrCorrupt, len(b))
				}
				s.counts.chunks = int64(binary.BigEndian.Uint64(b))
				s.counts.bytes = int64(binary.BigEndian.Uint64(b[8:]))
				return nil
			})
		}
		if !errors.Is(err, badger.ErrKeyNotFound) {
			return err
		}
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefixChunk})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			s.counts.chunks++
			s.counts.bytes += chunkItemSize(it.Item())
		}
		return nil
	})
}

// Close waits for chunk writes in flight and saves the chunk counts, so the
// next open need not count. It does not close the badger DB. Writes after
// Close still work; they discard the saved counts.
func (s *Store) Close() error {
	c := &s.counts
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	for c.inflight > 0 {
		c.idle.Wait()
	}
	if err := s.packs.close(); err != nil {
		return fmt.Errorf("close packs: %w", err)
	}
	if s.db.Opts().ReadOnly {
		return nil // opened read-only (a full disk): nothing was written
	}
	// No chunk transaction can begin until this one has committed.
	b := binary.BigEndian.AppendUint64(nil, uint64(c.chunks))
	b = binary.BigEndian.AppendUint64(b, uint64(c.bytes))
	if err := s.db.Update(func(txn *badger.Txn) error { return txn.Set(countsKey, b) }); err != nil {
		return fmt.Errorf("save chunk counts: %w", err)
	}
	return nil
}

// newChunkTxn begins a chunk transaction: it discards the saved counts.
func (s *Store) newChunkTxn() (*badger.Txn, error) {
	txn := s.db.NewTransaction(true)
	if err := txn.Delete(countsKey); err != nil {
		txn.Discard()
		return nil, err
	}
	return txn, nil
}

// chunkItemSize is the size of the chunk a c/ entry stands for: exact for
// a pack index entry, badger's estimate for a body stored in badger by an
// earlier build (exact once its value is read: chunkItemExactSize).
func chunkItemSize(item *badger.Item) int64 {
	if item.UserMeta() == metaPacked {
		var size int64
		item.Value(func(b []byte) error {
			if p, err := decodePackPtr(b); err == nil {
				size = int64(p.size)
			}
			return nil
		})
		return size
	}
	return item.ValueSize()
}

// chunkItemExactSize is chunkItemSize reading a badger-held body's value
// for its exact length (the estimate if it cannot be read).
func chunkItemExactSize(item *badger.Item) int64 {
	if item.UserMeta() == metaPacked {
		return chunkItemSize(item)
	}
	size := item.ValueSize()
	item.Value(func(b []byte) error { size = int64(len(b)); return nil })
	return size
}

// isHeld reports whether txn sees chunk h stored.
func isHeld(txn *badger.Txn, h nii.Hash) (bool, error) {
	_, err := txn.Get(chunkKey(h))
	if err == nil {
		return true, nil
	}
	if errors.Is(err, badger.ErrKeyNotFound) {
		return false, nil
	}
	return false, err
}

// setPacked records in txn that chunk h lives at p. (Once txn has
// committed, the writer hands the locations to Store.locs.)
func setPacked(txn *badger.Txn, h nii.Hash, p packPtr) error {
	return txn.SetEntry(badger.NewEntry(chunkKey(h), p.encode()).WithMeta(metaPacked))
}

// putChunks stores the chunks not yet stored, in transactions of at most
// badger's size, retrying any that conflicts with another writer.
func (s *Store) putChunks(chunks []Chunk) error {
	var size int64
	for _, c := range chunks {
		size += int64(len(c.Data))
	}
	if err := s.checkSpace(size); err != nil {
		return err
	}
	s.counts.begin()
	n, size, err := s.writeChunks(chunks)
	s.counts.end(n, size)
	return err
}

// writeChunks stores the chunks not yet stored and returns what was new.
func (s *Store) writeChunks(chunks []Chunk) (n, size int64, err error) {
	for len(chunks) > 0 {
		k, kn, ksize, err := s.commitChunks(chunks)
		if err != nil {
			return n, size, err
		}
		chunks, n, size = chunks[k:], n+kn, size+ksize
	}
	return n, size, nil
}

// freshChunks returns the chunks of chunks that txn does not hold, each
// once, and their bytes: what a writer must still write.
func freshChunks(txn *badger.Txn, chunks []Chunk) ([]Chunk, int64, error) {
	var (
		fresh []Chunk
		size  int64
	)
	seen := make(map[nii.Hash]struct{}, len(chunks))
	for _, c := range chunks {
		if _, dup := seen[c.Hash]; dup {
			continue
		}
		seen[c.Hash] = struct{}{}
		held, err := isHeld(txn, c.Hash)
		if err != nil {
			return nil, 0, err
		}
		if !held {
			fresh = append(fresh, c)
			size += int64(len(c.Data))
		}
	}
	return fresh, size, nil
}

// chunkTxnMax is how many chunks one chunk transaction records at most.
const chunkTxnMax = 4096

// commitChunks writes as many of chunks as fit one transaction (at least
// one): it looks up which are not stored, appends those to a pack and
// syncs it, records their index entries and commits, retrying on a
// conflict. It returns how many it dealt with and what was new. (A retry
// writes the still-missing bodies again; the first copies are dead space
// in their pack.)
func (s *Store) commitChunks(chunks []Chunk) (int, int64, int64, error) {
	chunks = chunks[:min(len(chunks), chunkTxnMax)]
	for {
		txn, err := s.newChunkTxn()
		if err != nil {
			return 0, 0, 0, err
		}
		fresh, size, err := freshChunks(txn, chunks)
		if err != nil {
			txn.Discard()
			return 0, 0, 0, err
		}
		var (
			p    *packFile
			ptrs []packPtr
		)
		if len(fresh) > 0 {
			p, ptrs, err = s.packs.put(fresh)
			if err != nil {
				txn.Discard()
				return 0, 0, 0, err
			}
			for i, c := range fresh {
				if err := setPacked(txn, c.Hash, ptrs[i]); err != nil {
					txn.Discard()
					s.packs.done(p)
					return 0, 0, 0, err
				}
			}
		}
		epoch := s.locs.since()
		err = txn.Commit()
		if p != nil {
			s.packs.done(p)
		}
		if errors.Is(err, badger.ErrConflict) {
			continue // another writer stored some of these: look again
		}
		if err != nil {
			return 0, 0, 0, err
		}
		s.locs.putAll(epoch, len(fresh), func(i int) (nii.Hash, packPtr) { return fresh[i].Hash, ptrs[i] })
		return len(chunks), int64(len(fresh)), size, nil
	}
}

// chunkWriter writes an ingest's chunks in batches of about
// ingestTxnBytes: the bodies it does not find stored are framed into a
// buffer; when the buffer is full its place at the end of the current pack
// is reserved, and in the background the batch is written there, the pack
// synced and then the transaction holding the batch's index entries
// committed — so the disk writes one part of a file while the next is
// being read, cut and hashed.
type chunkWriter struct {
	s       *Store
	lease   *Lease // every chunk set is added to it first (gc.go)
	txnGen  uint64 // the GC generation when txn began
	txn     *badger.Txn
	batch   []Chunk // the bodies txn lacks, in buf's order
	buf     []byte  // their frames
	seen    map[nii.Hash]struct{}
	size    int
	slots   chan struct{}
	bufs    chan []byte // free batch buffers
	pending sync.WaitGroup
	firstErr
}

// firstErr keeps the first error set on it: a writer's, whose goroutines
// fail independently and whose every later call returns that error.
type firstErr struct {
	errMu sync.Mutex
	err   error
}

func (e *firstErr) failed() error {
	e.errMu.Lock()
	defer e.errMu.Unlock()
	return e.err
}

func (e *firstErr) fail(err error) {
	e.errMu.Lock()
	if e.err == nil {
		e.err = err
	}
	e.errMu.Unlock()
}

const (
	ingestTxnBytes   = 16 << 20
	ingestTxnPending = 4 // batches written and committed at once
)

func (s *Store) newChunkWriter() *chunkWriter {
	return &chunkWriter{s: s, slots: make(chan struct{}, ingestTxnPending), bufs: make(chan []byte, ingestTxnPending+1)}
}

// set stores chunk h unless it is stored already. b must not change until
// flush returns.
func (w *chunkWriter) set(h nii.Hash, b []byte) error {
	if err := w.failed(); err != nil {
		return err
	}
	c := Chunk{Hash: h, Data: b}
	gen := w.txnGen
	if w.lease != nil {
		gen = w.lease.add(h)
	}
	if w.txn != nil && gen != w.txnGen {
		// A GC batch committed since txn began: its snapshot may still
		// show a chunk that batch deleted. Look again in a fresh one.
		w.commit()
	}
	if w.txn == nil {
		if err := w.begin(); err != nil {
			return err
		}
	}
	if _, dup := w.seen[h]; dup {
		return nil
	}
	held, err := isHeld(w.txn, h)
	if err != nil || held {
		return err
	}
	w.seen[h] = struct{}{}
	w.batch = append(w.batch, c)
	w.buf = appendFrame(w.buf, c)
	if w.size += len(b); w.size >= ingestTxnBytes || len(w.batch) >= chunkTxnMax {
		w.commit()
	}
	return nil
}

func (w *chunkWriter) begin() error {
	if err := w.s.checkSpace(ingestTxnBytes); err != nil {
		return err
	}
	w.txnGen = w.s.leases.generation()
	w.s.counts.begin()
	txn, err := w.s.newChunkTxn()
	if err != nil {
		w.s.counts.end(0, 0)
		return err
	}
	w.txn = txn
	w.seen = map[nii.Hash]struct{}{}
	select {
	case w.buf = <-w.bufs:
	default:
		w.buf = make([]byte, 0, ingestTxnBytes+(1<<20)+64<<10)
	}
	return nil
}

// commit reserves the batch's place in a pack and, once fewer than
// ingestTxnPending batches are in flight, writes, syncs and commits it in
// the background.
func (w *chunkWriter) commit() {
	txn, batch, buf := w.txn, w.batch, w.buf
	w.txn, w.batch, w.buf, w.seen, w.size = nil, nil, nil, nil, 0
	w.slots <- struct{}{}
	w.pending.Add(1)
	var (
		p   *packFile
		off int64
		err error
	)
	if len(batch) > 0 {
		p, off, err = w.s.packs.reserve(int64(len(buf)))
	}
	go func() {
		defer w.pending.Done()
		defer func() { <-w.slots }()
		var added [2]int64
		if err == nil && p != nil {
			err = w.writeBatch(txn, p, off, buf, batch)
			w.s.packs.done(p)
		} else if err == nil {
			err = txn.Commit() // nothing new: only the counts key's delete
		} else {
			txn.Discard()
		}
		if err == nil {
			added[0] = int64(len(batch))
			for _, c := range batch {
				added[1] += int64(len(c.Data))
			}
		}
		if errors.Is(err, badger.ErrConflict) {
			// Another writer stored some of these chunks meanwhile:
			// write again whatever is still missing, and count that.
			added[0], added[1], err = w.s.writeChunks(batch)
		}
		if err != nil {
			w.fail(err)
		}
		w.s.counts.end(added[0], added[1])
		select {
		case w.bufs <- buf[:0]:
		default:
		}
	}()
}

// writeBatch writes and syncs a batch's frames, then records and commits
// their index entries.
func (w *chunkWriter) writeBatch(txn *badger.Txn, p *packFile, off int64, buf []byte, batch []Chunk) error {
	ptrs, err := w.s.packs.write(p, off, buf, batch)
	if err != nil {
		txn.Discard()
		return err
	}
	for i, c := range batch {
		if err := setPacked(txn, c.Hash, ptrs[i]); err != nil {
			txn.Discard()
			return err
		}
	}
	epoch := w.s.locs.since()
	if err := txn.Commit(); err != nil {
		return err
	}
	w.s.locs.putAll(epoch, len(batch), func(i int) (nii.Hash, packPtr) { return batch[i].Hash, ptrs[i] })
	return nil
}

// flush commits what is left and waits for every commit.
func (w *chunkWriter) flush() error {
	if w.txn != nil {
		if w.failed() == nil {
			w.commit()
		} else {
			w.discard()
		}
	}
	w.pending.Wait()
	return w.failed()
}

// cancel drops what is not committed and waits for commits in flight.
// Chunks already committed stay: harmless, and reused by the next ingest.
func (w *chunkWriter) cancel() {
	if w.txn != nil {
		w.discard()
	}
	w.pending.Wait()
}

func (w *chunkWriter) discard() {
	w.txn.Discard()
	w.txn, w.batch, w.buf, w.seen, w.size = nil, nil, nil, nil, 0
	w.s.counts.end(0, 0)
}

// syncedWriter stores a pull's chunks with the pack syncs off the
// caller's path: put writes each group's new bodies to a pack at once
// (when it returns, the chunks' buffers may be reused) and queues the
// group; a goroutine of its own gathers the queued groups, up to
// syncBytes of them or for syncDelay after the first, syncs their packs
// once (a group commit) and only then commits the groups' index entries,
// in order. So an index entry still never names bytes that are not on the
// disk, and the pull goes on receiving while the disk makes the last
// groups durable. put blocks once syncPending groups wait beyond those
// gathered. close waits for every queued group; the caller commits its
// version only after.
type syncedWriter struct {
	s     *Store
	delay time.Duration // how long a group may wait for others to share its sync
	queue chan *writtenGroup
	done  chan struct{} // closed when the goroutine has stopped
	firstErr

	mu     sync.Mutex
	closed bool
}

// writtenGroup is one transaction's worth of chunks: their frames written,
// not yet synced; txn has read every hash and records nothing yet.
type writtenGroup struct {
	txn    *badger.Txn
	p      *packFile // nil when every chunk was held
	hashes []nii.Hash
	ptrs   []packPtr
	size   int64
}

// syncPending is how many written groups may wait for their sync: about
// 64 MiB of a pull's 8 MiB groups.
const syncPending = 8

// A pull's groups share one sync until syncBytes of them are written or
// syncDelay has passed since the first: what a crash can lose of a pull
// (fetched again on resume), for one fsync per 32 MiB instead of one per
// group.
const (
	syncBytes = 32 << 20
	syncDelay = 200 * time.Millisecond
)

func (s *Store) newSyncedWriter() *syncedWriter { return s.newSyncedWriterDelay(syncDelay) }

// newSyncedWriterDelay is newSyncedWriter with groups waiting up to delay
// to share a sync (0: each sync takes only what is queued).
func (s *Store) newSyncedWriterDelay(delay time.Duration) *syncedWriter {
	w := &syncedWriter{s: s, delay: delay, queue: make(chan *writtenGroup, syncPending), done: make(chan struct{})}
	go w.run()
	return w
}

// put writes the chunks not yet stored and queues them to be synced and
// committed. It returns the first error of an earlier group's sync or
// commit: the pull then ends, and keeps what was committed.
func (w *syncedWriter) put(chunks []Chunk) error {
	if err := w.failed(); err != nil {
		return err
	}
	var size int64
	for _, c := range chunks {
		size += int64(len(c.Data))
	}
	if err := w.s.checkSpace(size); err != nil {
		return err
	}
	for len(chunks) > 0 {
		k := min(len(chunks), chunkTxnMax)
		g, err := w.write(chunks[:k])
		if err != nil {
			return err
		}
		w.queue <- g
		for _, c := range chunks[:k] {
			w.s.putBytes.Add(int64(len(c.Data)))
		}
		chunks = chunks[k:]
	}
	return nil
}

// write looks up which of chunks are not stored, in a new transaction, and
// writes those to a pack, unsynced.
func (w *syncedWriter) write(chunks []Chunk) (*writtenGroup, error) {
	w.s.counts.begin()
	txn, err := w.s.newChunkTxn()
	if err != nil {
		w.s.counts.end(0, 0)
		return nil, err
	}
	g := &writtenGroup{txn: txn}
	fresh, size, err := freshChunks(txn, chunks)
	if err != nil {
		txn.Discard()
		w.s.counts.end(0, 0)
		return nil, err
	}
	g.size = size
	for _, c := range fresh {
		g.hashes = append(g.hashes, c.Hash)
	}
	if len(fresh) > 0 {
		if g.p, g.ptrs, err = w.s.packs.writeFrames(fresh); err != nil {
			txn.Discard()
			w.s.counts.end(0, 0)
			return nil, err
		}
	}
	return g, nil
}

// run syncs and commits the queued groups until close.
func (w *syncedWriter) run() {
	defer close(w.done)
	for g := range w.queue {
		groups, size := []*writtenGroup{g}, g.size
		if w.delay > 0 {
			// Gather groups for one sync until syncBytes of them or
			// the delay since the first (one fsync per group made each
			// of a fast pull's 1–2 MiB groups wait on a journal commit).
			wait := time.NewTimer(w.delay)
		gather:
			for size < syncBytes {
				select {
				case g, ok := <-w.queue:
					if !ok {
						break gather
					}
					groups, size = append(groups, g), size+g.size
				case <-wait.C:
					break gather
				}
			}
			wait.Stop()
		}
	more:
		for {
			select {
			case g, ok := <-w.queue:
				if !ok {
					break more
				}
				groups = append(groups, g)
			default:
				break more
			}
		}
		// Every group here was written before it was queued: one sync of
		// each pack they use covers them all.
		var err error
		synced := map[*packFile]bool{}
		for _, g := range groups {
			if err == nil && g.p != nil && !synced[g.p] {
				err = w.s.packs.sync(g.p)
				synced[g.p] = true
			}
		}
		if err == nil {
			err = w.failed()
		}
		for _, g := range groups {
			var n, size int64
			if err == nil {
				n, size, err = w.commit(g)
			} else {
				g.txn.Discard()
			}
			if g.p != nil {
				w.s.packs.done(g.p)
			}
			w.s.counts.end(n, size)
		}
		if err != nil {
			w.fail(err)
		}
	}
}

// commit records a synced group's index entries. If another writer stored
// some of its chunks meanwhile (a conflict), it looks again in a new
// transaction and points only the chunks still missing at the frames
// already synced: nothing is written twice.
func (w *syncedWriter) commit(g *writtenGroup) (n, size int64, err error) {
	txn := g.txn
	for i, h := range g.hashes {
		if err := setPacked(txn, h, g.ptrs[i]); err != nil {
			txn.Discard()
			return 0, 0, err
		}
	}
	for {
		epoch := w.s.locs.since()
		err := txn.Commit()
		if err == nil {
			w.s.locs.putAll(epoch, len(g.hashes), func(i int) (nii.Hash, packPtr) { return g.hashes[i], g.ptrs[i] })
			return int64(len(g.hashes)), g.size, nil
		}
		if !errors.Is(err, badger.ErrConflict) {
			return 0, 0, err
		}
		if txn, err = w.s.newChunkTxn(); err != nil {
			return 0, 0, err
		}
		var keep []nii.Hash
		var ptrs []packPtr
		size = 0
		for i, h := range g.hashes {
			held, err := isHeld(txn, h)
			if err != nil {
				txn.Discard()
				return 0, 0, err
			}
			if !held {
				keep, ptrs = append(keep, h), append(ptrs, g.ptrs[i])
				size += int64(g.ptrs[i].size)
				if err := setPacked(txn, h, g.ptrs[i]); err != nil {
					txn.Discard()
					return 0, 0, err
				}
			}
		}
		g = &writtenGroup{hashes: keep, ptrs: ptrs, size: size}
	}
}

// close waits until every queued group is synced and committed (or, after
// an error, abandoned) and returns the first error. It is safe to call
// more than once; put must not be called after.
func (w *syncedWriter) close() error {
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		close(w.queue)
	}
	w.mu.Unlock()
	<-w.done
	return w.failed()
}
