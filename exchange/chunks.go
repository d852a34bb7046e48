package exchange

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

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
			s.counts.bytes += it.Item().ValueSize()
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

// setNew adds c to txn unless it is stored (or already in txn), and says
// whether it did.
func setNew(txn *badger.Txn, c Chunk) (bool, error) {
	k := chunkKey(c.Hash)
	_, err := txn.Get(k)
	if err == nil {
		return false, nil
	}
	if !errors.Is(err, badger.ErrKeyNotFound) {
		return false, err
	}
	return true, txn.Set(k, c.Data)
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

// commitChunks writes as many of chunks as fit one transaction (at least
// one), committing synchronously and retrying on a conflict. It returns
// how many it dealt with and what was new.
func (s *Store) commitChunks(chunks []Chunk) (int, int64, int64, error) {
	for {
		txn, err := s.newChunkTxn()
		if err != nil {
			return 0, 0, 0, err
		}
		var k, n, size int64
		for _, c := range chunks {
			added, err := setNew(txn, c)
			if errors.Is(err, badger.ErrTxnTooBig) && k > 0 {
				break // commit these; the rest go in the next
			}
			if err != nil {
				txn.Discard()
				return 0, 0, 0, err
			}
			k++
			if added {
				n, size = n+1, size+int64(len(c.Data))
			}
		}
		err = txn.Commit()
		if errors.Is(err, badger.ErrConflict) {
			continue // another writer stored some of these: look again
		}
		if err != nil {
			return 0, 0, 0, err
		}
		return int(k), n, size, nil
	}
}

// chunkWriter writes an ingest's chunks in transactions of about
// ingestTxnBytes of values, each committed in the background while the
// next fills, so badger writes one part of a file while the next is being
// cut and hashed. (badger's WriteBatch would put a whole file of chunks in
// one transaction — its limit counts entries, not value-log bytes — so
// nothing reached the disk until the file had been read to its end.)
type chunkWriter struct {
	s       *Store
	lease   *Lease // every chunk set is added to it first (gc.go)
	txnGen  uint64 // the GC generation when txn began
	txn     *badger.Txn
	batch   []Chunk // what txn holds, for a retry
	size    int
	new     [2]int64 // chunks and bytes txn adds
	slots   chan struct{}
	pending sync.WaitGroup
	mu      sync.Mutex
	err     error
}

const (
	ingestTxnBytes   = 16 << 20
	ingestTxnPending = 2 // commits in flight
)

func (s *Store) newChunkWriter() *chunkWriter {
	return &chunkWriter{s: s, slots: make(chan struct{}, ingestTxnPending)}
}

func (w *chunkWriter) failed() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

func (w *chunkWriter) fail(err error) {
	w.mu.Lock()
	if w.err == nil {
		w.err = err
	}
	w.mu.Unlock()
}

// set stores chunk h unless it is stored already. b must not change until
// flush returns.
func (w *chunkWriter) set(h nii.Hash, b []byte) error {
	if err := w.failed(); err != nil {
		return err
	}
	c := Chunk{h, b}
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
	added, err := setNew(w.txn, c)
	if errors.Is(err, badger.ErrTxnTooBig) {
		w.commit()
		if err := w.begin(); err != nil {
			return err
		}
		added, err = setNew(w.txn, c)
	}
	if err != nil {
		return err
	}
	if !added {
		return nil
	}
	w.batch = append(w.batch, c)
	w.new[0]++
	w.new[1] += int64(len(b))
	if w.size += len(b); w.size >= ingestTxnBytes {
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
	return nil
}

// commit sends the current transaction to badger without waiting for it,
// once fewer than ingestTxnPending are in flight.
func (w *chunkWriter) commit() {
	txn, batch, added := w.txn, w.batch, w.new
	w.txn, w.batch, w.size, w.new = nil, nil, 0, [2]int64{}
	w.slots <- struct{}{}
	w.pending.Add(1)
	txn.CommitWith(func(err error) {
		defer w.pending.Done()
		defer func() { <-w.slots }()
		switch {
		case errors.Is(err, badger.ErrConflict):
			// Another writer stored some of these chunks meanwhile:
			// write again whatever is still missing, and count that.
			added[0], added[1], err = w.s.writeChunks(batch)
		case err != nil:
			added = [2]int64{}
		}
		if err != nil {
			w.fail(err)
		}
		w.s.counts.end(added[0], added[1])
	})
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
	w.txn, w.batch, w.size, w.new = nil, nil, 0, [2]int64{}
	w.s.counts.end(0, 0)
}
