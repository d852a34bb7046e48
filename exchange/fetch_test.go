package exchange

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nii-uk/nii"
)

// Unit tests of the fetch engine over PipeFetcher: the content protocols'
// real code on both ends of a net.Pipe, providers that misbehave in the
// ways the engine must survive, and no libp2p.

// testSource serves a store as a provider might: honestly, lacking some
// chunks, flipping a byte in each, or failing part-way.
type testSource struct {
	*Store
	lacks     map[nii.Hash]bool
	corrupt   bool
	failAfter int // > 0: the chunk after this many served fails (the stream is reset)

	mu     sync.Mutex
	served []nii.Hash // chunks sent, in order
	calls  int
}

func (s *testSource) Chunk(h nii.Hash) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if s.failAfter > 0 && len(s.served) == s.failAfter {
		return nil, errors.New("disk failure")
	}
	if s.lacks[h] {
		return nil, fmt.Errorf("chunk %s: %w", h, ErrNotFound)
	}
	b, err := s.Store.Chunk(h)
	if err != nil {
		return nil, err
	}
	if s.corrupt {
		b[len(b)/2] ^= 0x40
	}
	s.served = append(s.served, h)
	return b, nil
}

func (s *testSource) sent() []nii.Hash {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]nii.Hash(nil), s.served...)
}

// watchFetcher wraps a Fetcher: it counts what is asked of each provider
// and the chunk bytes handed over, makes providers unreachable for a number
// of manifest requests, and can hold a chunk request back.
type watchFetcher struct {
	Fetcher

	mu          sync.Mutex
	manifests   map[nii.NodeID]int
	requests    map[nii.NodeID]int // chunk requests
	chunks      int                // chunks handed over
	unreachable map[nii.NodeID]int // fail this many more manifest requests
	before      func(ctx context.Context, from nii.NodeID) error
	onChunk     func(size int) // called as each chunk is handed over
}

func newWatch(f Fetcher) *watchFetcher {
	return &watchFetcher{Fetcher: f, manifests: map[nii.NodeID]int{}, requests: map[nii.NodeID]int{}, unreachable: map[nii.NodeID]int{}}
}

func (w *watchFetcher) FetchManifest(ctx context.Context, from nii.NodeID, req ManifestRequest) (*nii.Manifest, nii.Hash, *nii.SignedManifest, error) {
	w.mu.Lock()
	w.manifests[from]++
	down := w.unreachable[from] > 0
	if down {
		w.unreachable[from]--
	}
	w.mu.Unlock()
	if down {
		return nil, nii.Hash{}, nil, fmt.Errorf("dial %s: %w", from.Short(), ErrUnreachable)
	}
	return w.Fetcher.FetchManifest(ctx, from, req)
}

func (w *watchFetcher) FetchChunks(ctx context.Context, from nii.NodeID, req ChunkRequest, fn func(nii.Hash, []byte) error, missing func(nii.Hash)) error {
	w.mu.Lock()
	w.requests[from]++
	before, onChunk := w.before, w.onChunk
	w.mu.Unlock()
	if before != nil {
		if err := before(ctx, from); err != nil {
			return err
		}
	}
	return w.Fetcher.FetchChunks(ctx, from, req, func(h nii.Hash, b []byte) error {
		w.mu.Lock()
		w.chunks++
		w.mu.Unlock()
		if onChunk != nil {
			onChunk(len(b))
		}
		return fn(h, b)
	}, missing)
}

func (w *watchFetcher) counts(from nii.NodeID) (manifests, requests int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.manifests[from], w.requests[from]
}

func (w *watchFetcher) handed() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.chunks
}

// fixture is a published version and a PipeFetcher to serve it from.
type fixture struct {
	pub  *Store
	sg   signer
	rec  *VersionRecord
	m    *nii.Manifest
	data []byte
	pf   *PipeFetcher
	t    testing.TB
}

func newFixture(t *testing.T, data []byte) *fixture {
	t.Helper()
	pub := openStoreWith(t, smallChunks)
	sg := newSigner(t)
	rec := publishAccess(t, pub, sg, spend, data, nii.AccessOpen)
	return &fixture{pub: pub, sg: sg, rec: rec, m: mustManifest(t, pub, rec), data: data, pf: NewPipeFetcher(newSigner(t).id), t: t}
}

// provider serves the fixture's store as src (nil: honestly) under a new
// node ID.
func (fx *fixture) provider(src ContentSource, auth Authorizer) nii.NodeID {
	if src == nil {
		src = fx.pub
	}
	id := newSigner(fx.t).id
	fx.pf.Serve(id, src, auth)
	return id
}

func (fx *fixture) request(providers ...nii.NodeID) PullRequest {
	return PullRequest{Ref: fx.rec.Ref, Publisher: fx.sg.id, Manifest: fx.rec.Manifest, Providers: providers, retryWait: time.Millisecond}
}

func (fx *fixture) checkPulled(t *testing.T, dst *Store, res *PullResult) {
	t.Helper()
	if res == nil || res.Record == nil {
		t.Fatal("no version committed")
	}
	if got := readAll(t, dst, res.Record); !bytes.Equal(got, fx.data) {
		t.Fatal("pulled content differs from the published")
	}
}

// TestFetchRetriesRoundsWhenUnreachable: a round in which no provider can
// be reached is tried again (twice); a round in which any provider
// answered is not.
func TestFetchRetriesRoundsWhenUnreachable(t *testing.T) {
	fx := newFixture(t, randBytes(1, 64<<10))
	a, b := fx.provider(nil, nil), fx.provider(nil, nil)
	ctx := context.Background()

	// Unreachable in the first round only: the second round pulls.
	w := newWatch(fx.pf)
	w.unreachable[a], w.unreachable[b] = 1, 1
	res, err := Pull(ctx, w, openStoreWith(t, smallChunks), fx.request(a, b))
	if err != nil {
		t.Fatal(err)
	}
	if ma, _ := w.counts(a); ma != 2 {
		t.Fatalf("provider a was asked for the manifest %d times, want 2 (one round failed, one served)", ma)
	}
	if mb, _ := w.counts(b); mb != 1 {
		t.Fatalf("provider b was asked for the manifest %d times, want 1", mb)
	}
	if len(res.Dropped) != 0 {
		t.Fatalf("a failed round's providers are still listed as dropped: %v", res.Dropped)
	}

	// Unreachable for good: three rounds, then ErrNoProvider.
	w = newWatch(fx.pf)
	w.unreachable[a], w.unreachable[b] = 100, 100
	_, err = Pull(ctx, w, openStoreWith(t, smallChunks), fx.request(a, b))
	if !errors.Is(err, ErrNoProvider) || !errors.Is(err, ErrUnreachable) {
		t.Fatalf("every provider unreachable: %v, want ErrNoProvider wrapping ErrUnreachable", err)
	}
	for _, p := range []nii.NodeID{a, b} {
		if m, _ := w.counts(p); m != manifestRounds {
			t.Fatalf("an unreachable provider was asked %d times, want %d rounds", m, manifestRounds)
		}
	}

	// One unreachable, one that does not hold the version: no retry.
	empty := fx.provider(openStoreWith(t, smallChunks), nil)
	w = newWatch(fx.pf)
	w.unreachable[a] = 100
	_, err = Pull(ctx, w, openStoreWith(t, smallChunks), fx.request(a, empty))
	if !errors.Is(err, ErrNoProvider) || !errors.Is(err, ErrNotFound) {
		t.Fatalf("unreachable and not found: %v", err)
	}
	if m, _ := w.counts(a); m != 1 {
		t.Fatalf("a round with an answer was retried: %d manifest requests", m)
	}
}

// TestFetchRefusalAbortsPull: a provider's refusal ends the whole pull, at
// the manifest or at a chunk batch, however many providers would serve.
func TestFetchRefusalAbortsPull(t *testing.T) {
	fx := newFixture(t, randBytes(2, 2<<20))
	refuse := errors.New("grant expired")
	ctx := context.Background()

	// At the manifest: the next provider is not asked.
	refuser, honest := fx.provider(nil, func(AccessRequest) error { return refuse }), fx.provider(nil, allow)
	w := newWatch(fx.pf)
	dst := openStoreWith(t, smallChunks)
	_, err := Pull(ctx, w, dst, fx.request(refuser, honest))
	if !errors.Is(err, ErrRefused) {
		t.Fatalf("refused manifest: %v, want ErrRefused", err)
	}
	if m, _ := w.counts(honest); m != 0 {
		t.Fatal("after a refusal the pull went on to another provider")
	}

	// At a chunk batch: the manifest is allowed, chunks are not. The pull
	// ends with the refusal, not with another provider's chunks.
	chunkRefuser := fx.provider(nil, func(r AccessRequest) error {
		if r.Chunks {
			return refuse
		}
		return nil
	})
	w = newWatch(fx.pf)
	req := fx.request(chunkRefuser, honest)
	req.InFlight = 1
	_, err = Pull(ctx, w, dst, req)
	if !errors.Is(err, ErrRefused) {
		t.Fatalf("refused chunks: %v, want ErrRefused", err)
	}
	if _, r := w.counts(chunkRefuser); r != 1 {
		t.Fatalf("the refusing provider got %d chunk requests, want 1", r)
	}
	if _, r := w.counts(honest); r != 0 {
		t.Fatalf("after a refusal %d chunk requests went to another provider", r)
	}
	if _, err := dst.Version(fx.rec.Ref); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a refused pull left a version: %v", err)
	}
}

// TestFetchRequeuesMissingChunks: chunks a provider lacks go to another
// provider, and the provider stays in the pull; chunks nobody has fail the
// pull.
func TestFetchRequeuesMissingChunks(t *testing.T) {
	fx := newFixture(t, randBytes(3, 3<<20))
	hashes := distinctChunks(fx.m)
	lacks := map[nii.Hash]bool{}
	for i, h := range hashes {
		if i%3 == 0 {
			lacks[h] = true
		}
	}
	partial := &testSource{Store: fx.pub, lacks: lacks}
	full := &testSource{Store: fx.pub}
	a, b := fx.provider(partial, nil), fx.provider(full, nil)
	dst := openStoreWith(t, smallChunks)
	res, err := Pull(context.Background(), fx.pf, dst, fx.request(a, b))
	if err != nil {
		t.Fatal(err)
	}
	fx.checkPulled(t, dst, res)
	if len(res.Dropped) != 0 {
		t.Fatalf("a provider that only lacked chunks was dropped: %v", res.Dropped)
	}
	fromB := map[nii.Hash]bool{}
	for _, h := range full.sent() {
		fromB[h] = true
	}
	for h := range lacks {
		if !fromB[h] {
			t.Fatalf("chunk %s that a lacked never came from b", shortHash(h))
		}
	}
	if len(partial.sent()) == 0 || res.Providers[a] == 0 {
		t.Fatal("the partial provider served nothing: it was not kept in the pull")
	}
	if res.FetchedChunks != len(hashes) {
		t.Fatalf("fetched %d chunks, want %d", res.FetchedChunks, len(hashes))
	}

	// Lacked by every provider: the pull fails and commits nothing.
	dst2 := openStoreWith(t, smallChunks)
	_, err = Pull(context.Background(), fx.pf, dst2, fx.request(a, fx.provider(&testSource{Store: fx.pub, lacks: lacks}, nil)))
	if !errors.Is(err, ErrNoProvider) {
		t.Fatalf("chunks nobody has: %v, want ErrNoProvider", err)
	}
	if _, err := dst2.Version(fx.rec.Ref); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a failed pull left a version: %v", err)
	}
}

// TestFetchDropsProviderAtFirstBadChunk: a provider whose first chunk is
// bad gets no more requests, nothing it sent is stored, and the pull
// completes from the others.
func TestFetchDropsProviderAtFirstBadChunk(t *testing.T) {
	fx := newFixture(t, randBytes(4, 3<<20))
	evil := &testSource{Store: fx.pub, corrupt: true}
	bad, good := fx.provider(evil, nil), fx.provider(nil, nil)
	w := newWatch(fx.pf)
	dst := openStoreWith(t, smallChunks)
	// One batch in flight, so that no request to the bad provider is
	// already under way when its first bad chunk arrives.
	req := fx.request(bad, good)
	req.InFlight = 1
	res, err := Pull(context.Background(), w, dst, req)
	if err != nil {
		t.Fatal(err)
	}
	fx.checkPulled(t, dst, res)
	if len(res.Dropped) != 1 || res.Dropped[0] != bad {
		t.Fatalf("dropped %v, want only the corrupting provider", res.Dropped)
	}
	if _, r := w.counts(bad); r != 1 {
		t.Fatalf("the corrupting provider got %d chunk requests, want 1", r)
	}
	if res.Providers[bad] != 0 {
		t.Fatalf("%d bytes were taken from the corrupting provider", res.Providers[bad])
	}
	// The pipe is synchronous: the server got at most one frame buffer
	// (and the chunk that did not fit it) ahead of the first bad chunk.
	size := map[nii.Hash]int64{}
	for _, c := range fx.m.Chunks {
		size[c.Hash] = int64(c.Size)
	}
	var ahead int64
	for _, h := range evil.sent()[1:] {
		ahead += size[h]
	}
	if ahead > frameBufSize+int64(smallChunks.Max) {
		t.Fatalf("the corrupting provider was read for %d chunks, %d bytes past the first", len(evil.sent()), ahead)
	}
}

// sliceSink keeps what it is given, in order.
type sliceSink struct {
	mu  sync.Mutex
	buf bytes.Buffer
	n   int
}

func (s *sliceSink) Put(cs []Chunk) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range cs {
		s.buf.Write(c.Data)
		s.n++
	}
	return nil
}

// TestStreamContinuesFromNextChunk: the relay's ordered stream goes on
// from the chunk after the last one written when a provider fails
// mid-batch or lacks a chunk, and the bytes come out in order.
func TestStreamContinuesFromNextChunk(t *testing.T) {
	// Repeated content: the same chunks at several positions.
	block := randBytes(5, 600<<10)
	data := append(append(bytes.Clone(block), randBytes(6, 300<<10)...), block...)
	fx := newFixture(t, data)
	n := len(fx.m.Chunks)
	if n < 2*MaxChunksPerRequest {
		t.Fatalf("only %d chunks: want more than two batches", n)
	}
	// A chunk past the first batch that occurs once, for a provider to lack.
	count := map[nii.Hash]int{}
	for _, c := range fx.m.Chunks {
		count[c.Hash]++
	}
	unique := -1
	for i := MaxChunksPerRequest + 3; i < n && unique < 0; i++ {
		if count[fx.m.Chunks[i].Hash] == 1 {
			unique = i
		}
	}
	if unique < 0 || len(count) == n {
		t.Fatalf("want repeated chunks and a unique one past the first batch (%d distinct of %d)", len(count), n)
	}
	for _, tc := range []struct {
		name    string
		first   *testSource
		dropped bool
		resume  int // the chunk the second provider must start at
	}{
		{"fails mid-batch", &testSource{Store: fx.pub, failAfter: MaxChunksPerRequest + 7}, true, MaxChunksPerRequest + 7},
		{"lacks a chunk", &testSource{Store: fx.pub, lacks: map[nii.Hash]bool{fx.m.Chunks[unique].Hash: true}}, false, unique},
	} {
		t.Run(tc.name, func(t *testing.T) {
			second := &testSource{Store: fx.pub}
			a, b := fx.provider(tc.first, nil), fx.provider(second, nil)
			x, err := NewFetch(context.Background(), fx.pf, fx.request(a, b))
			if err != nil {
				t.Fatal(err)
			}
			var sink sliceSink
			if err := x.Stream(context.Background(), &sink); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(sink.buf.Bytes(), data) || sink.n != n {
				t.Fatalf("streamed %d chunks, %d bytes; not the version's %d bytes in order", sink.n, sink.buf.Len(), len(data))
			}
			got := second.sent()
			if len(got) == 0 || got[0] != fx.m.Chunks[tc.resume].Hash {
				t.Fatalf("the second provider did not start at chunk %d", tc.resume)
			}
			// a served every chunk before the break, b every one from it
			// that a had not sent (a is asked again only if it stayed).
			if sent := len(tc.first.sent()); sent < tc.resume || (tc.dropped && sent != tc.resume) {
				t.Fatalf("the first provider sent %d chunks, want %d before it failed", sent, tc.resume)
			}
			if d := len(x.stats.dropped) == 1 && x.stats.dropped[0] == a; d != tc.dropped {
				t.Fatalf("dropped %v", x.stats.dropped)
			}
		})
	}
}

// gateSink holds its first Put until opened, and counts the bytes it has
// finished with.
type gateSink struct {
	ctx  context.Context
	open chan struct{}
	once sync.Once
	put  atomic.Int64
}

func (g *gateSink) Put(cs []Chunk) error {
	g.once.Do(func() {
		select {
		case <-g.open:
		case <-g.ctx.Done():
		}
	})
	if g.ctx.Err() != nil {
		return fmt.Errorf("the fetch never filled its budget: %w", g.ctx.Err())
	}
	for _, c := range cs {
		g.put.Add(int64(len(c.Data)))
	}
	return nil
}

// publishBigChunks publishes data cut into 1 MiB chunks, the largest a
// manifest may name, as a hostile publisher might.
func publishBigChunks(t *testing.T, s *Store, sg signer, data []byte) *VersionRecord {
	t.Helper()
	var refs []nii.ChunkRef
	for off := 0; off < len(data); off += nii.MaxChunkSize {
		b := data[off:min(off+nii.MaxChunkSize, len(data))]
		h := nii.HashOf(b)
		if err := s.PutChunk(h, b); err != nil {
			t.Fatal(err)
		}
		refs = append(refs, nii.ChunkRef{Hash: h, Size: uint32(len(b))})
	}
	rec, err := s.Publish(spend, func(v uint64) (*nii.SignedManifest, error) {
		return sg.manifest(t, spend, v, refs, int64(len(data))), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

// TestFetchBoundsBytesInFlight: with 1 MiB chunks and eight batches in
// flight, the chunks a fetch holds stay within its byte budget: by its own
// accounting, and measured apart from it (bytes handed over by the fetcher
// less bytes the sink has finished with).
func TestFetchBoundsBytesInFlight(t *testing.T) {
	const budget = 4 << 20
	pub, _ := openStore(t)
	sg := newSigner(t)
	data := randBytes(7, 16<<20)
	rec := publishBigChunks(t, pub, sg, data)
	pf := NewPipeFetcher(newSigner(t).id)
	p1, p2 := newSigner(t).id, newSigner(t).id
	pf.Serve(p1, pub, nil)
	pf.Serve(p2, pub, nil)

	// The engine with a sink that holds everything back until the budget
	// is full: the fetch must then stop asking, not run ahead.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sink := &gateSink{ctx: ctx, open: make(chan struct{})}
	var handed, peak atomic.Int64
	var openOnce sync.Once
	w := newWatch(pf)
	w.onChunk = func(size int) {
		held := handed.Add(int64(size)) - sink.put.Load()
		for old := peak.Load(); held > old && !peak.CompareAndSwap(old, held); old = peak.Load() {
		}
		if held >= budget {
			openOnce.Do(func() { close(sink.open) })
		}
	}
	req := PullRequest{Ref: rec.Ref, Publisher: sg.id, Manifest: rec.Manifest, Providers: []nii.NodeID{p1, p2}, InFlight: 8, InFlightBytes: budget}
	x, err := NewFetch(ctx, w, req)
	if err != nil {
		t.Fatal(err)
	}
	if err := x.run(ctx, x.Manifest.Chunks, sink, false, nil); err != nil {
		t.Fatal(err)
	}
	if sink.put.Load() != int64(len(data)) {
		t.Fatalf("the sink got %d bytes, want %d", sink.put.Load(), len(data))
	}
	if peak.Load() != budget || x.stats.peak != budget {
		t.Fatalf("held at most %d bytes (by the budget's accounting %d); want exactly the budget, %d", peak.Load(), x.stats.peak, budget)
	}

	// A whole pull into a store, default eight batches in flight: measured
	// apart by bytes handed over less chunk bytes the store has written
	// (their buffers are free once written; the sync and the index commit
	// follow behind, holding no chunk bytes).
	dst, _ := openStore(t)
	handed.Store(0)
	peak.Store(0)
	w = newWatch(pf)
	w.onChunk = func(size int) {
		held := handed.Add(int64(size)) - dst.putBytes.Load()
		for old := peak.Load(); held > old && !peak.CompareAndSwap(old, held); old = peak.Load() {
		}
	}
	req.InFlight = 0
	res, err := Pull(context.Background(), w, dst, req)
	if err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, dst, res.Record); !bytes.Equal(got, data) {
		t.Fatal("pulled content differs")
	}
	if res.MaxInFlight > budget || peak.Load() > budget || res.MaxInFlight < nii.MaxChunkSize {
		t.Fatalf("a pull held up to %d bytes (by its accounting %d), budget %d", peak.Load(), res.MaxInFlight, budget)
	}
	t.Logf("budget %d: held at most %d (accounting %d)", budget, peak.Load(), res.MaxInFlight)
}

// TestConcurrentPullsShareOneFetch: pulls of one version into one store
// that run at the same time fetch its chunks once, between them.
func TestConcurrentPullsShareOneFetch(t *testing.T) {
	fx := newFixture(t, randBytes(8, 2<<20))
	p := fx.provider(nil, nil)
	dst := openStoreWith(t, smallChunks)
	const pulls = 3
	// The first chunk request waits until every other pull has joined.
	w := joinedWatch(fx.pf, dst, fx.rec.Manifest, pulls-1)
	var wg sync.WaitGroup
	results := make([]*PullResult, pulls)
	errs := make([]error, pulls)
	progress := make([]atomic.Int64, pulls)
	for i := range pulls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := fx.request(p)
			req.Progress = func(done, _ int64) { progress[i].Store(done) }
			results[i], errs[i] = Pull(context.Background(), w, dst, req)
		}()
	}
	wg.Wait()
	shared := 0
	for i := range pulls {
		if errs[i] != nil {
			t.Fatalf("pull %d: %v", i, errs[i])
		}
		fx.checkPulled(t, dst, results[i])
		if results[i].Shared {
			shared++
		}
		if progress[i].Load() != fx.rec.Size {
			t.Errorf("pull %d saw progress to %d of %d bytes", i, progress[i].Load(), fx.rec.Size)
		}
	}
	if want := len(distinctChunks(fx.m)); w.handed() != want {
		t.Fatalf("%d pulls at once fetched %d chunks, want %d (each once)", pulls, w.handed(), want)
	}
	if shared != pulls-1 {
		t.Fatalf("%d pulls report a shared fetch, want %d", shared, pulls-1)
	}
}

// TestSharedPullOutlivesItsStarter: when the pull that started a shared
// fetch is cancelled, the one waiting on it carries on and completes.
func TestSharedPullOutlivesItsStarter(t *testing.T) {
	fx := newFixture(t, randBytes(9, 2<<20))
	p := fx.provider(nil, nil)
	dst := openStoreWith(t, smallChunks)
	starter, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := newWatch(fx.pf)
	var first sync.Once
	w.before = func(ctx context.Context, _ nii.NodeID) error {
		var err error
		first.Do(func() {
			if err = waitJoined(ctx, dst, fx.rec.Manifest, 1); err == nil {
				cancel()
				err = context.Canceled
			}
		})
		return err
	}
	var wg sync.WaitGroup
	var errStarter error
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, errStarter = Pull(starter, w, dst, fx.request(p))
	}()
	// The second pull starts once the first holds the flight.
	waitFlight(t, dst, fx.rec.Manifest)
	res, err := Pull(context.Background(), w, dst, fx.request(p))
	wg.Wait()
	if !errors.Is(errStarter, context.Canceled) {
		t.Fatalf("the cancelled pull: %v", errStarter)
	}
	if err != nil {
		t.Fatalf("the pull that waited on a cancelled one: %v", err)
	}
	fx.checkPulled(t, dst, res)
}

// waitJoined waits until n pulls wait on the flight of key.
func waitJoined(ctx context.Context, s *Store, key nii.Hash, n int) error {
	for s.flights.joined(key) < n {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
	return nil
}

// waitFlight waits until a pull of key is running in s.
func waitFlight(t *testing.T, s *Store, key nii.Hash) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for s.flights.joined(key) < 0 {
		if time.Now().After(deadline) {
			t.Fatal("timed out waiting for the first pull to start fetching")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestFetchReceivesWhileSinkWrites: while the sink is busy with one Put,
// the workers keep reading chunks (up to the byte budget) rather than
// stopping at a queue of one batch: a slow store write does not stall the
// providers' streams.
func TestFetchReceivesWhileSinkWrites(t *testing.T) {
	const budget = 8 << 20
	fx := newFixture(t, randBytes(21, 16<<20))
	p1, p2 := fx.provider(nil, nil), fx.provider(nil, nil)
	// Several queued batches of small chunks: far more than one batch
	// (64 chunks of ~8 KiB) must arrive before the first Put returns.
	const want = budget / 4
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sink := &gateSink{ctx: ctx, open: make(chan struct{})}
	var handed atomic.Int64
	var openOnce sync.Once
	w := newWatch(fx.pf)
	w.onChunk = func(size int) {
		if handed.Add(int64(size))-sink.put.Load() >= want {
			openOnce.Do(func() { close(sink.open) })
		}
	}
	req := fx.request(p1, p2)
	req.InFlightBytes = budget
	x, err := NewFetch(ctx, w, req)
	if err != nil {
		t.Fatal(err)
	}
	if err := x.run(ctx, x.Manifest.Chunks, sink, false, nil); err != nil {
		t.Fatalf("with the sink's first Put held, the fetch did not go on receiving %d bytes: %v", want, err)
	}
	if sink.put.Load() != int64(len(fx.data)) {
		t.Fatalf("the sink got %d bytes, want %d", sink.put.Load(), len(fx.data))
	}
	if x.stats.peak > budget {
		t.Fatalf("held %d bytes, over the budget %d", x.stats.peak, budget)
	}
}

// crcSink records, for each chunk it is given, whether it came with its
// frame CRC and whether that CRC is right; framing makes it a framingSink.
type crcSink struct {
	mu           sync.Mutex
	with, right  int
	without, all int
}

func (s *crcSink) Put(cs []Chunk) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range cs {
		s.all++
		switch {
		case !c.hasCRC:
			s.without++
		case c.crc == crc32.Checksum(c.Data, castagnoli):
			s.with++
			s.right++
		default:
			s.with++
		}
	}
	return nil
}

type framingCRCSink struct{ crcSink }

func (*framingCRCSink) framesChunks() {}

// TestFetchCRCForFramingSinks: a fetch into a sink that frames chunks
// (a pull's store) hands each chunk over with its right CRC; into any
// other (the relay's stream) it computes none.
func TestFetchCRCForFramingSinks(t *testing.T) {
	fx := newFixture(t, randBytes(9, 900<<10))
	for _, framing := range []bool{true, false} {
		x, err := NewFetch(context.Background(), fx.pf, fx.request(fx.provider(&testSource{Store: fx.pub}, nil)))
		if err != nil {
			t.Fatal(err)
		}
		var (
			sink ChunkSink
			got  *crcSink
		)
		if framing {
			f := &framingCRCSink{}
			sink, got = f, &f.crcSink
		} else {
			got = &crcSink{}
			sink = got
		}
		if err := x.Stream(context.Background(), sink); err != nil {
			t.Fatal(err)
		}
		switch {
		case got.all != len(fx.m.Chunks):
			t.Fatalf("framing %v: %d chunks, want %d", framing, got.all, len(fx.m.Chunks))
		case framing && got.right != got.all:
			t.Fatalf("framing sink: %d of %d chunks with a right CRC (%d with one)", got.right, got.all, got.with)
		case !framing && got.with != 0:
			t.Fatalf("plain sink: %d chunks with a CRC computed for nothing", got.with)
		}
	}
}
