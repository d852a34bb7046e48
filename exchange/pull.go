package exchange

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nii-uk/nii"
)

// PullRequest says what to fetch and from whom: what a pull (or the
// download relay) asks the fetch engine for.
type PullRequest struct {
	Ref nii.Ref // Version 0: the latest a provider holds
	// Publisher is the node whose signature the manifest must carry (the
	// publisher the catalog chose).
	Publisher nii.NodeID
	// Manifest, if set, is the manifest hash the publisher advertises for
	// this version: anything else is refused. At least one of Publisher
	// and Manifest must be set (see CheckManifest).
	Manifest nii.Hash
	// Providers to try, best first (the publisher and replicas).
	Providers []nii.NodeID
	Grant     string
	Action    nii.Action // nii.ActionRead (default) or nii.ActionSync
	// Credential is this node's membership credential, presented with the
	// grant so providers can check a grant made out to its org.
	Credential string
	// InFlight is how many chunk requests run at once (default 8).
	InFlight int
	// InFlightBytes bounds the chunk bytes the fetch holds at once: asked
	// for and not yet stored (default DefaultInFlightBytes; never less
	// than one chunk of the largest size).
	InFlightBytes int64
	// Progress, if set, is called as chunks are stored.
	Progress func(done, total int64)
	// Copy, if set, is a file the version is also written into as it is
	// pulled ('nii pull -o FILE'): each chunk fetched whole is written at
	// its offsets once the store has taken it, from the verified bytes in
	// hand, instead of being read back from the packs after the pull, on
	// a goroutine of its own that may lag the store by copyQueueBytes
	// (past that, the fetch waits for it while no other pull has joined,
	// and leaves the chunks for the caller once one has). PullResult.Copied says
	// which chunks were written; the caller writes the rest from the
	// store (Store.WriteAtExcept). A write into the copy that fails stops
	// the copying, not the pull (other pulls of the version may have
	// joined it): PullResult.CopyErr says why. Pull returns once the
	// copy's writes are done (a write the disk never answers holds it,
	// cancelled or not); pulls joined to this one do not wait for them.
	Copy   VersionCopy
	Logger *slog.Logger

	retryWait time.Duration // between manifest rounds; tests shorten it
}

// PullResult reports what a pull did.
type PullResult struct {
	Record   *VersionRecord
	Manifest *nii.Manifest // set once the manifest was checked, a failed pull's too
	// ManifestHash is Manifest's hash (its signed form's).
	ManifestHash  nii.Hash
	FetchedChunks int                  // chunks fetched over the network
	FetchedBytes  int64                // their bytes
	HeldChunks    int                  // chunks already in the store (earlier versions, an interrupted pull)
	Providers     map[nii.NodeID]int64 // bytes fetched per provider
	// ProviderChunks is the chunks fetched per provider.
	ProviderChunks map[nii.NodeID]int
	Dropped        []nii.NodeID // providers dropped for bad data or errors
	// MaxInFlight is the most chunk bytes the pull held at once (within
	// PullRequest.InFlightBytes).
	MaxInFlight int64
	// ManifestBytes is the size of the signed manifest as it was fetched
	// (encoded): bytes a pull moves besides its chunks.
	ManifestBytes int64
	// DeltaChunks of FetchedChunks were assembled by delta sync (delta.go)
	// from an older version held and byte ranges; FetchedBytes counts only
	// the ranges' bytes for them. SubchunkListBytes is what their sub-chunk
	// lists cost (sizes and short hashes), ReusedBytes what came from the
	// older version instead of the network.
	DeltaChunks       int
	SubchunkListBytes int64
	ReusedBytes       int64
	// Shared is set when another pull of the same version, running at
	// the same time in this store, fetched the chunks: the counts above
	// are that pull's.
	Shared bool
	// Copied, with PullRequest.Copy, marks the manifest positions whose
	// chunk was written into the copy as it arrived (nil if the copy
	// never started: the version was held, assembled by delta, or another
	// pull fetched it; all false if its first write failed or the pull
	// was cancelled); CopiedChunks and CopiedBytes count them.
	Copied       []bool
	CopiedChunks int
	CopiedBytes  int64
	// CopyErr is the write into the copy that failed, if one did: the
	// version was stored, the copy is not whole.
	CopyErr error
}

// VersionCopy is a file a pull writes its version into as the chunks
// arrive (PullRequest.Copy).
type VersionCopy interface {
	io.WriterAt
	// Reserve is called once the manifest is checked, before any chunk
	// is written, with the version's size: a file that cannot hold it
	// fails the pull before anything is fetched.
	Reserve(size int64) error
}

// ErrNoProvider is returned when no provider could serve the pull. It is of
// kind nii.ErrUnavailable.
var ErrNoProvider = nii.Errorf(nii.ErrUnavailable, "no reachable provider")

// Pull fetches a version into the store: the manifest first (verified by
// CheckManifest against the publisher's signature and advertised hash),
// then only the chunks the store lacks, several batches in flight across
// all providers, each chunk verified before it is stored. The version
// becomes visible only when every chunk is stored. Chunks are kept as they
// arrive, so a pull that is interrupted resumes where it stopped.
// Concurrent pulls of one version into one store share a single fetch of
// its chunks.
func Pull(ctx context.Context, f Fetcher, s *Store, req PullRequest) (*PullResult, error) {
	x, err := NewFetch(ctx, f, req)
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", req.Ref, err)
	}
	m := x.Manifest
	if req.Copy != nil {
		if err := req.Copy.Reserve(m.Size); err != nil {
			return nil, fmt.Errorf("pull %s: %w", m.Ref(), err)
		}
	}
	if rec, err := s.Version(m.Ref()); err == nil && rec.Manifest == x.Hash {
		return &PullResult{Record: rec, Manifest: m, ManifestHash: x.Hash, HeldChunks: len(m.Chunks), Providers: map[nii.NodeID]int64{}, ProviderChunks: map[nii.NodeID]int{}, Dropped: x.stats.dropped}, nil
	}
	var cp *copyTee
	if req.Copy != nil {
		cp = newCopyTee(ctx, req.Copy, m)
	}
	res, shared, err := s.flights.do(ctx, x.Hash, req.Progress, func(f *flight) (*PullResult, error) {
		if cp != nil {
			cp.f = f
		}
		return x.into(ctx, s, f.report, cp)
	})
	// Only the pull that ran the fetch used its copy; it waits here, after
	// the flight has ended, so pulls joined to it never wait on its file.
	if cp != nil && cp.wait() && res != nil {
		r := *res // f.res, which joined pulls read: not written to
		r.Copied, r.CopiedChunks, r.CopiedBytes, r.CopyErr = cp.copied, cp.chunks, cp.bytes, cp.err
		res = &r
	}
	if err != nil {
		return res, fmt.Errorf("pull %s: %w", m.Ref(), err)
	}
	if shared {
		r := *res
		r.Shared = true
		// The chunks were copied, if at all, into the other pull's file.
		r.Copied, r.CopiedChunks, r.CopiedBytes, r.CopyErr = nil, 0, 0, nil
		res = &r
	}
	return res, nil
}

// into fetches the chunks the store lacks and commits the version.
// With cp, what is fetched whole is offered to it too (copyTee.offer).
func (x *Fetch) into(ctx context.Context, s *Store, progress func(done, total int64), cp *copyTee) (*PullResult, error) {
	m := x.Manifest
	res := &PullResult{Manifest: m, ManifestHash: x.Hash}
	// Every chunk of the version is leased before the store is looked at,
	// so GC spares both those held and those fetched until the commit.
	lease := s.NewLease()
	defer lease.Release()
	lease.addRefs(m.Chunks)
	// The only look at which chunks are held: one read transaction. What
	// is fetched is stored by a write that skips chunks already there, and
	// the commit does not look again.
	need, held, err := s.missing(m.Chunks)
	if err != nil {
		return nil, err
	}
	res.HeldChunks = held
	total := sizeOf(need)
	// Refused up front if what is to be fetched would take the disk below
	// its floor (and checked again as batches are stored).
	if err := s.checkSpace(total); err != nil {
		return res, err
	}
	if enc, err := nii.EncodeSignedManifest(x.Signed); err == nil {
		res.ManifestBytes = int64(len(enc))
	}
	var report func(int64)
	var deltaDone int64
	if progress != nil {
		report = func(done int64) { progress(deltaDone+done, total) }
	}
	// With an older version of the dataset held, chunks come as deltas
	// first; what that cannot assemble is fetched whole.
	need, ds := x.delta(ctx, s, need, func(n int64) {
		deltaDone += n // one call at a time, and before run starts
		if progress != nil {
			progress(deltaDone, total)
		}
	})
	if len(need) == 0 {
		cp = nil
	}
	err = x.store(ctx, s, need, cp, report)
	res.FetchedChunks, res.FetchedBytes, res.Providers = x.stats.chunks+ds.chunks, x.stats.bytes+ds.bytes, x.stats.providers
	for p, n := range ds.providers {
		res.Providers[p] += n
	}
	res.DeltaChunks, res.SubchunkListBytes, res.ReusedBytes = ds.chunks, ds.listBytes, ds.reused
	res.ProviderChunks = x.stats.providerChunks
	res.Dropped, res.MaxInFlight = x.stats.dropped, x.stats.peak
	if err != nil {
		return res, err
	}
	// Visible only now, and only if every chunk is there.
	rec, err := s.commitFetched(x.Signed)
	if err != nil {
		return res, err
	}
	res.Record = rec
	return res, nil
}

// store fetches need into s. When it returns, every chunk put is synced
// and indexed (so the version may be committed), and, if the fetch
// failed, kept for the next one.
func (x *Fetch) store(ctx context.Context, s *Store, need []nii.ChunkRef, cp *copyTee, report func(int64)) error {
	_, recycle := x.f.(ownBuffers)
	if cp != nil {
		cp.start(recycle)
	}
	w := s.newSyncedWriter()
	err := x.run(ctx, need, storeSink{w: w, recycle: recycle, copy: cp}, false, report)
	if werr := w.close(); err == nil && werr != nil {
		err = fmt.Errorf("store chunks: %w", werr)
	}
	return err
}

// storeSink puts a pull's chunks in the store, through a syncedWriter:
// Put returns once they are written to a pack, and the pack is synced and
// their index entries committed behind it. With copy, it then offers them
// to the pull's copy. With recycle, the chunks' buffers are the Fetcher's
// own (ownBuffers) and go back to its pool once they are written (by the
// copy, if it took them): nothing else refers to them after Put.
type storeSink struct {
	w       *syncedWriter
	recycle bool
	copy    *copyTee // may be nil
}

func (storeSink) framesChunks() {}

func (k storeSink) Put(chunks []Chunk) error {
	err := k.w.put(chunks)
	if err != nil {
		err = fmt.Errorf("store chunks: %w", err)
	} else if k.copy != nil && k.copy.offer(chunks) {
		return nil // the copy recycles them once written
	}
	if k.recycle {
		for _, c := range chunks {
			putChunkBuf(c.Data)
		}
	}
	return err
}

// copyQueueBytes bounds the chunk bytes a copyTee holds, taken and not
// yet written: what a pull's copy may lag behind its store. (A var: tests
// make it small.)
var copyQueueBytes int64 = 16 << 20

// copyTee writes the chunks a pull stores into its copy, at every offset
// of the version where each occurs, until a write fails, on a goroutine
// of its own: the fetch's writer only hands them over (offer), up to
// copyQueueBytes ahead of the copy's writes. Past that the writer waits
// for the copy while the pull is alone; once other pulls have joined the
// fetch, a copy on a slow disk must not hold them up, and the chunks are
// turned away instead: not marked copied, written by the caller from the
// store once the pull is done, as the chunks held before are. (Turning
// chunks away whenever the copy lagged was measured slower: they are read
// back off the disk and hashed again; docs/benchmarks.md.) The pull that
// started it waits for it (wait) before reading what it copied. What it
// holds comes on top of the fetch's in-flight bytes.
type copyTee struct {
	ctx     context.Context // once it ends, taken chunks are dropped unwritten
	w       VersionCopy
	at      map[nii.Hash][]int // manifest positions by chunk
	offs    []int64
	recycle bool
	f       *flight // the fetch it copies: pulls may join it
	waiting func()  // tests: called as offer begins to wait for room

	mu      sync.Mutex
	queue   [][]Chunk     // taken, not yet written
	queued  int64         // their bytes
	closed  bool          // wait was called: nothing more comes
	stopped bool          // a write failed: nothing more is taken
	wake    chan struct{} // something was taken, or wait was called
	room    chan struct{} // a group was written (or dropped)
	done    chan struct{}

	// Set by the goroutine, read after wait.
	copied []bool
	chunks int
	bytes  int64
	err    error // the write that failed: nothing more is copied
}

func newCopyTee(ctx context.Context, w VersionCopy, m *nii.Manifest) *copyTee {
	offs, _ := chunkOffsets(m)
	at := make(map[nii.Hash][]int, len(m.Chunks))
	for i, c := range m.Chunks {
		at[c.Hash] = append(at[c.Hash], i)
	}
	return &copyTee{ctx: ctx, w: w, at: at, offs: offs, copied: make([]bool, len(m.Chunks))}
}

// start starts the goroutine that writes what is offered. With recycle,
// the chunks' buffers go back to the pool once written.
func (t *copyTee) start(recycle bool) {
	t.recycle = recycle
	t.wake, t.room = make(chan struct{}, 1), make(chan struct{}, 1)
	t.done = make(chan struct{})
	go t.run()
}

// offer hands chunks, just stored, to the copy, and reports whether it
// took them (it then owns their buffers). While copyQueueBytes wait to be
// written it waits for room, since only this pull needs its file, unless
// pulls have joined the fetch: those are not held up for this one's
// disk, and it turns the chunks away. It turns them away too after a
// failed write or once the pull's context has ended.
func (t *copyTee) offer(chunks []Chunk) bool {
	var size int64
	for _, c := range chunks {
		size += int64(len(c.Data))
	}
	var joins <-chan struct{}
	if t.f != nil {
		joins = t.f.joins
	}
	for {
		t.mu.Lock()
		stopped, fits := t.stopped, t.queued == 0 || t.queued+size <= copyQueueBytes
		if !stopped && fits {
			t.queue = append(t.queue, chunks)
			t.queued += size
		}
		t.mu.Unlock()
		switch {
		case stopped:
			return false
		case fits:
			signal(t.wake)
			return true
		case t.f != nil && t.f.waiters.Load() > 0:
			return false
		}
		if t.waiting != nil {
			t.waiting()
		}
		select {
		case <-t.room:
		case <-joins:
		case <-t.ctx.Done():
			return false
		}
	}
}

// signal wakes whoever waits on c (capacity 1) without waiting itself.
func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

func (t *copyTee) run() {
	defer close(t.done)
	for {
		t.mu.Lock()
		groups, closed := t.queue, t.closed
		t.queue = nil
		t.mu.Unlock()
		if len(groups) == 0 {
			if closed {
				return
			}
			<-t.wake
			continue
		}
		for _, chunks := range groups {
			var size int64
			for _, c := range chunks {
				size += int64(len(c.Data))
				if t.err == nil && t.ctx.Err() == nil {
					t.write(c)
				}
				if t.recycle {
					putChunkBuf(c.Data)
				}
			}
			t.mu.Lock()
			t.queued -= size
			t.stopped = t.err != nil
			t.mu.Unlock()
			signal(t.room)
		}
	}
}

// write writes c at every offset of the version where it occurs.
func (t *copyTee) write(c Chunk) {
	for _, i := range t.at[c.Hash] {
		if t.copied[i] {
			continue
		}
		if _, err := t.w.WriteAt(c.Data, t.offs[i]); err != nil {
			t.err = fmt.Errorf("write the output file: %w", err)
			return
		}
		t.copied[i] = true
		t.chunks++
		t.bytes += int64(len(c.Data))
	}
}

// wait waits until everything taken is written (or dropped) and the
// goroutine has stopped; it reports whether the copy was started, and so
// whether its figures mean anything. Nothing may be offered after.
func (t *copyTee) wait() bool {
	if t.done == nil {
		return false
	}
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
	signal(t.wake)
	<-t.done
	return true
}

// ownBuffers is a Fetcher whose FetchChunks hands fn buffers nothing else
// refers to, which may go back to the chunk buffer pool (putChunkBuf) once
// fn's taker is done with them. *Host and *PipeFetcher are.
type ownBuffers interface{ ownsChunkBuffers() }

func (h *Host) ownsChunkBuffers()        {}
func (p *PipeFetcher) ownsChunkBuffers() {}

// flights are the pulls in progress in one store, by manifest hash, so
// that concurrent pulls of one version fetch its chunks once.
type flights struct {
	mu sync.Mutex
	m  map[nii.Hash]*flight
}

// flight is one pull's fetch that others may join.
type flight struct {
	done    chan struct{} // closed when res and err are set
	res     *PullResult
	err     error
	waiters atomic.Int32  // pulls joined, besides the one running it
	joins   chan struct{} // a pull joined (capacity 1: a copy's wait for room ends on it)

	mu       sync.Mutex
	progress map[int]func(done, total int64)
	nextID   int
}

// report passes progress to every pull of the flight.
func (f *flight) report(done, total int64) {
	f.mu.Lock()
	fns := make([]func(int64, int64), 0, len(f.progress))
	for _, fn := range f.progress {
		fns = append(fns, fn)
	}
	f.mu.Unlock()
	for _, fn := range fns {
		fn(done, total)
	}
}

func (f *flight) subscribe(fn func(done, total int64)) (unsubscribe func()) {
	if fn == nil {
		return func() {}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	id := f.nextID
	f.nextID++
	if f.progress == nil {
		f.progress = map[int]func(int64, int64){}
	}
	f.progress[id] = fn
	return func() {
		f.mu.Lock()
		delete(f.progress, id)
		f.mu.Unlock()
	}
}

// do runs fn for key unless a pull of key is already running, in which
// case it waits for that one's result (shared is then true). A pull that
// stops because its own context ended does not fail those waiting on it:
// they try again (the chunks it stored are kept). progress, if set, gets
// the running pull's progress until do returns. fn is given the flight:
// its report passes progress on, and its waiters say who has joined.
func (fs *flights) do(ctx context.Context, key nii.Hash, progress func(done, total int64),
	fn func(f *flight) (*PullResult, error)) (res *PullResult, shared bool, err error) {
	for {
		fs.mu.Lock()
		if f, ok := fs.m[key]; ok {
			f.waiters.Add(1)
			fs.mu.Unlock()
			signal(f.joins)
			unsubscribe := f.subscribe(progress)
			select {
			case <-f.done:
			case <-ctx.Done():
			}
			unsubscribe()
			f.waiters.Add(-1)
			if ctx.Err() != nil {
				return nil, false, ctx.Err()
			}
			if f.err != nil && (errors.Is(f.err, context.Canceled) || errors.Is(f.err, context.DeadlineExceeded)) {
				continue // that pull gave up, not this one
			}
			return f.res, true, f.err
		}
		f := &flight{done: make(chan struct{}), joins: make(chan struct{}, 1)}
		if fs.m == nil {
			fs.m = map[nii.Hash]*flight{}
		}
		fs.m[key] = f
		fs.mu.Unlock()

		unsubscribe := f.subscribe(progress)
		f.res, f.err = fn(f)
		unsubscribe()
		fs.mu.Lock()
		delete(fs.m, key)
		fs.mu.Unlock()
		close(f.done)
		return f.res, false, f.err
	}
}

// joined returns how many pulls wait on the flight of key (for tests).
func (fs *flights) joined(key nii.Hash) int {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if f, ok := fs.m[key]; ok {
		return int(f.waiters.Load())
	}
	return -1
}
