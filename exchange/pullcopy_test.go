package exchange

import (
	"bytes"
	"context"
	"errors"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nii-uk/nii"
)

// memCopy is a VersionCopy in memory. With failAt > 0, the write that
// would take it past failAt bytes written fails; with refuse, Reserve does;
// with gate, every write waits until gate is closed (a disk that hangs).
type memCopy struct {
	gate     chan struct{}
	mu       sync.Mutex
	b        []byte
	reserved int64
	written  int64
	failAt   int64
	refuse   bool
}

var errCopyFull = errors.New("the copy's disk is full")

func (c *memCopy) Reserve(size int64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.refuse {
		return errCopyFull
	}
	c.reserved = size
	if int64(len(c.b)) < size {
		c.b = append(c.b, make([]byte, size-int64(len(c.b)))...)
	}
	return nil
}

func (c *memCopy) WriteAt(p []byte, off int64) (int, error) {
	if c.gate != nil {
		<-c.gate
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.failAt > 0 && c.written+int64(len(p)) > c.failAt {
		return 0, errCopyFull
	}
	if end := off + int64(len(p)); end > int64(len(c.b)) {
		c.b = append(c.b, make([]byte, end-int64(len(c.b)))...)
	}
	c.written += int64(len(p))
	return copy(c.b[off:], p), nil
}

// joinedWatch is f holding its first chunk request until n more pulls
// have joined the flight of manifest in dst.
func joinedWatch(f Fetcher, dst *Store, manifest nii.Hash, n int) *watchFetcher {
	w := newWatch(f)
	var first sync.Once
	w.before = func(ctx context.Context, _ nii.NodeID) error {
		var err error
		first.Do(func() { err = waitJoined(ctx, dst, manifest, n) })
		return err
	}
	return w
}

// setCopyQueue sets copyQueueBytes to n for the test.
func setCopyQueue(t *testing.T, n int64) {
	was := copyQueueBytes
	copyQueueBytes = n
	t.Cleanup(func() { copyQueueBytes = was })
}

// copiedOf sums the sizes of the positions a pull says it copied.
func copiedOf(m *nii.Manifest, copied []bool) (chunks int, size int64) {
	for i, ok := range copied {
		if ok {
			chunks++
			size += int64(m.Chunks[i].Size)
		}
	}
	return chunks, size
}

// TestPullCopy: a pull with a copy writes each chunk it fetches into the
// copy at every offset where the version has it, says which positions it
// wrote, and WriteAtExcept fills in the rest from the store; the copy is
// the version byte for byte whether the chunks were all fetched, partly
// held, or all held. A copy that cannot be written fails the pull and
// keeps what was stored.
func TestPullCopy(t *testing.T) {
	// A block repeated: the version has chunks at several offsets.
	block := randBytes(71, 200<<10)
	data := append(append(append([]byte{}, block...), block...), randBytes(72, 3<<20)...)
	fx := newFixture(t, data)
	positions := map[nii.Hash]int{}
	for _, c := range fx.m.Chunks {
		positions[c.Hash]++
	}
	if len(positions) == len(fx.m.Chunks) {
		t.Fatal("the test data has no chunk at two offsets: the repeated block did not chunk alike")
	}
	prov := fx.provider(nil, nil)
	ctx := context.Background()

	// pull pulls into dst with a copy, fills the copy in, checks it, and
	// returns the result and the bytes the fill wrote.
	pull := func(t *testing.T, dst *Store) (*PullResult, int64) {
		t.Helper()
		cp := &memCopy{}
		req := fx.request(prov)
		req.Copy = cp
		res, err := Pull(ctx, fx.pf, dst, req)
		if err != nil {
			t.Fatal(err)
		}
		if cp.reserved != int64(len(data)) {
			t.Fatalf("the copy was reserved at %d bytes, want %d", cp.reserved, len(data))
		}
		n, s := copiedOf(fx.m, res.Copied)
		if n != res.CopiedChunks || s != res.CopiedBytes || cp.written != s {
			t.Fatalf("copied %d chunks, %d bytes by its positions; the result says %d, %d; %d bytes were written",
				n, s, res.CopiedChunks, res.CopiedBytes, cp.written)
		}
		filled, err := dst.WriteAtExcept(ctx, res.Record, cp, res.Copied)
		if err != nil {
			t.Fatal(err)
		}
		if s+filled != int64(len(data)) || !bytes.Equal(cp.b, data) {
			t.Fatalf("the copy is not the version (%d bytes copied, %d filled in, of %d)", s, filled, len(data))
		}
		return res, filled
	}

	t.Run("fetched", func(t *testing.T) {
		// A pull alone waits for its copy when the copy lags: nothing is
		// turned away, even with room for only a chunk queued.
		setCopyQueue(t, 1)
		res, filled := pull(t, openStoreWith(t, smallChunks))
		if res.CopiedChunks != len(fx.m.Chunks) || filled != 0 {
			t.Fatalf("a pull of chunks none of which were held copied %d of %d positions and left %d bytes to fill",
				res.CopiedChunks, len(fx.m.Chunks), filled)
		}
	})

	t.Run("partly held", func(t *testing.T) {
		dst := openStoreWith(t, smallChunks)
		publish(t, dst, fx.sg, nii.DatasetID{Org: "greenwich", Name: "start"}, data[:1<<20])
		res, filled := pull(t, dst)
		if res.HeldChunks == 0 || res.CopiedChunks == 0 || filled == 0 {
			t.Fatalf("held %d, copied %d, filled %d bytes: want some of each", res.HeldChunks, res.CopiedChunks, filled)
		}
	})

	t.Run("all held", func(t *testing.T) {
		dst := openStoreWith(t, smallChunks)
		if _, err := Pull(ctx, fx.pf, dst, fx.request(prov)); err != nil {
			t.Fatal(err)
		}
		res, filled := pull(t, dst)
		if res.Copied != nil || filled != int64(len(data)) {
			t.Fatalf("a version already held: copied %v, filled %d bytes, want all filled", res.Copied != nil, filled)
		}
	})

	t.Run("copy fails", func(t *testing.T) {
		// The pull goes on into the store (other pulls may have joined
		// it) and says the copy failed; the copy is not filled in.
		dst := openStoreWith(t, smallChunks)
		req := fx.request(prov)
		cp := &memCopy{failAt: 1 << 20}
		req.Copy = cp
		res, err := Pull(ctx, fx.pf, dst, req)
		if err != nil {
			t.Fatalf("a pull whose copy failed: %v", err)
		}
		if !errors.Is(res.CopyErr, errCopyFull) || !strings.Contains(res.CopyErr.Error(), "write the output file") {
			t.Fatalf("the failed copy is reported as %v", res.CopyErr)
		}
		if n, _ := copiedOf(fx.m, res.Copied); n != res.CopiedChunks || n == 0 || n == len(fx.m.Chunks) || cp.written > 1<<20 {
			t.Fatalf("%d of %d positions copied (%d reported), %d bytes written, before the copy failed at 1 MiB",
				n, len(fx.m.Chunks), res.CopiedChunks, cp.written)
		}
		fx.checkPulled(t, dst, res)
	})

	t.Run("joined", func(t *testing.T) {
		// Two pulls of the version at once, each with its copy: one
		// fetches and copies, the other joins it, copies nothing and
		// fills its copy from the store.
		dst := openStoreWith(t, smallChunks)
		w := joinedWatch(fx.pf, dst, fx.rec.Manifest, 1)
		copies := [2]*memCopy{{}, {}}
		var results [2]*PullResult
		var errs [2]error
		var wg sync.WaitGroup
		for i := range 2 {
			wg.Go(func() {
				if i == 1 {
					waitFlight(t, dst, fx.rec.Manifest)
				}
				req := fx.request(prov)
				req.Copy = copies[i]
				results[i], errs[i] = Pull(ctx, w, dst, req)
			})
		}
		wg.Wait()
		for i, res := range results {
			if errs[i] != nil {
				t.Fatalf("pull %d: %v", i, errs[i])
			}
			if res.Shared != (res.Copied == nil) || res.Shared != (i == 1) {
				t.Fatalf("pull %d: shared %v, copied %d positions", i, res.Shared, res.CopiedChunks)
			}
			if _, err := dst.WriteAtExcept(ctx, res.Record, copies[i], res.Copied); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(copies[i].b, data) {
				t.Fatalf("pull %d's copy is not the version", i)
			}
		}
	})

	t.Run("copy hangs", func(t *testing.T) {
		// The copy's disk hangs: the fetch still stores the version, and
		// a pull joined to it returns, while the pull whose copy it is
		// waits for its file; once the disk answers, that copy is whole
		// with what the store fills in (the chunks it turned away, with
		// 64 KiB queued at most, once the other pull had joined).
		setCopyQueue(t, 64<<10)
		dst := openStoreWith(t, smallChunks)
		w := joinedWatch(fx.pf, dst, fx.rec.Manifest, 1)
		cp := &memCopy{gate: make(chan struct{})}
		type result struct {
			res *PullResult
			err error
		}
		slow := make(chan result, 1)
		go func() {
			req := fx.request(prov)
			req.Copy = cp
			res, err := Pull(ctx, w, dst, req)
			slow <- result{res, err}
		}()
		waitFlight(t, dst, fx.rec.Manifest)
		// Bounded, so that a joined pull held up by the copy fails
		// rather than hangs.
		jctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		joined, err := Pull(jctx, w, dst, fx.request(prov))
		if err != nil || !joined.Shared {
			close(cp.gate)
			t.Fatalf("the joined pull: %v (shared %v)", err, joined != nil && joined.Shared)
		}
		if _, err := dst.Version(fx.m.Ref()); err != nil {
			close(cp.gate)
			t.Fatalf("the version is not stored while the copy hangs: %v", err)
		}
		select {
		case r := <-slow:
			t.Fatalf("the pull returned (%v) before its copy's first write did", r.err)
		default:
		}
		close(cp.gate)
		r := <-slow
		if r.err != nil {
			t.Fatal(r.err)
		}
		n, size := copiedOf(fx.m, r.res.Copied)
		if n == 0 || n != r.res.CopiedChunks || size != cp.written {
			t.Fatalf("%d positions copied, %d reported, %d bytes written for %d", n, r.res.CopiedChunks, cp.written, size)
		}
		if _, err := dst.WriteAtExcept(ctx, r.res.Record, cp, r.res.Copied); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(cp.b, data) {
			t.Fatal("the copy is not the version")
		}
	})

	t.Run("delta", func(t *testing.T) {
		// v2 is v1 with edits: most of it is held, some assembled by
		// delta sync, the rest fetched whole and copied.
		v1 := randBytes(81, 6<<20)
		v2 := scatter(v1, 8, 20<<10, 9)
		c := newDeltaCase(t, v1, v2)
		req := c.req(c.rec2)
		cp := &memCopy{}
		req.Copy = cp
		res, err := Pull(ctx, c.pf, c.dst, req)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.dst.WriteAtExcept(ctx, res.Record, cp, res.Copied); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(cp.b, v2) || res.DeltaChunks == 0 || res.HeldChunks == 0 {
			t.Fatalf("delta pull with a copy: equal %v, %d delta chunks, %d held, %d copied",
				bytes.Equal(cp.b, v2), res.DeltaChunks, res.HeldChunks, res.CopiedChunks)
		}
	})

	t.Run("reserve refused", func(t *testing.T) {
		dst := openStoreWith(t, smallChunks)
		req := fx.request(prov)
		req.Copy = &memCopy{refuse: true}
		if _, err := Pull(ctx, fx.pf, dst, req); !errors.Is(err, errCopyFull) {
			t.Fatalf("pull into a copy that cannot be reserved: %v", err)
		}
		if st, _ := dst.Stats(); st.Chunks != 0 {
			t.Fatalf("a pull whose copy could not be reserved fetched %d chunks", st.Chunks)
		}
	})
}

// TestCopyTeeTurnsAway: a copy with copyQueueBytes waiting makes a pull
// alone wait for room, and takes the chunks once there is; once another
// pull has joined the fetch, it turns them away instead (the caller keeps
// their buffers and writes them from the store later), and does not mark
// them copied. What it took is written at every offset of the chunk;
// after a failed write it takes nothing more.
func TestCopyTeeTurnsAway(t *testing.T) {
	setCopyQueue(t, 100)
	a, b := Chunk{Data: []byte("first chunk")}, Chunk{Data: []byte("second chunk")}
	a.Hash, b.Hash = nii.HashOf(a.Data), nii.HashOf(b.Data)
	big := Chunk{Data: bytes.Repeat([]byte{7}, 200)}
	big.Hash = nii.HashOf(big.Data)
	m := &nii.Manifest{Chunks: []nii.ChunkRef{
		{Hash: a.Hash, Size: uint32(len(a.Data))},
		{Hash: big.Hash, Size: uint32(len(big.Data))},
		{Hash: a.Hash, Size: uint32(len(a.Data))},
		{Hash: b.Hash, Size: uint32(len(b.Data))},
	}}
	var size int64
	for _, c := range m.Chunks {
		size += int64(c.Size)
	}
	newTee := func(cp *memCopy) (*copyTee, *flight) {
		if err := cp.Reserve(size); err != nil {
			t.Fatal(err)
		}
		f := &flight{done: make(chan struct{}), joins: make(chan struct{}, 1)}
		tee := newCopyTee(context.Background(), cp, m)
		tee.f = f
		tee.start(false)
		return tee, f
	}

	// Alone: the second offer waits for the first group's write.
	cp := &memCopy{gate: make(chan struct{})}
	tee, _ := newTee(cp)
	if !tee.offer([]Chunk{big}) {
		t.Fatal("an empty queue turned away a group larger than its bound")
	}
	took := make(chan bool, 1)
	go func() { took <- tee.offer([]Chunk{b}) }()
	close(cp.gate)
	if !<-took {
		t.Fatal("a pull alone had a chunk turned away when its copy lagged")
	}
	tee.wait()
	if want := []bool{false, true, false, true}; !slices.Equal(tee.copied, want) || tee.chunks != 2 || tee.err != nil {
		t.Fatalf("alone: copied %v (%d chunks, %v), want %v", tee.copied, tee.chunks, tee.err, want)
	}

	// Joined: an offer already waiting for room gives up once a pull
	// joins, though the copy's disk still hangs.
	cp = &memCopy{gate: make(chan struct{})}
	tee, f := newTee(cp)
	waiting := make(chan struct{}, 1)
	tee.waiting = func() { signal(waiting) }
	if !tee.offer([]Chunk{big}) {
		t.Fatal("an empty queue turned a group away")
	}
	go func() { took <- tee.offer([]Chunk{a}) }()
	<-waiting
	f.waiters.Add(1)
	signal(f.joins)
	select {
	case ok := <-took:
		if ok {
			t.Fatal("with a pull joined, a queue past its bound took more")
		}
	case <-time.After(time.Minute):
		close(cp.gate)
		t.Fatal("an offer waiting for room went on waiting after a pull joined")
	}
	close(cp.gate)
	tee.wait()
	if want := []bool{false, true, false, false}; !slices.Equal(tee.copied, want) || tee.chunks != 1 || tee.err != nil {
		t.Fatalf("joined: copied %v (%d chunks, %v), want %v", tee.copied, tee.chunks, tee.err, want)
	}

	// A failed write: nothing more is taken.
	cp = &memCopy{failAt: int64(len(a.Data)) * 2}
	tee, _ = newTee(cp)
	if !tee.offer([]Chunk{a}) || !tee.offer([]Chunk{b}) {
		t.Fatal("a copy with room turned a chunk away")
	}
	deadline := time.Now().Add(10 * time.Second)
	for !tee.refusing() && time.Now().Before(deadline) {
		runtime.Gosched()
	}
	if tee.offer([]Chunk{big}) {
		t.Fatal("a copy whose write failed took more")
	}
	tee.wait()
	if want := []bool{true, false, true, false}; !slices.Equal(tee.copied, want) || !errors.Is(tee.err, errCopyFull) {
		t.Fatalf("copied %v (%v), want %v and the write's error", tee.copied, tee.err, want)
	}
	if !bytes.Equal(cp.b[:len(a.Data)], a.Data) || !bytes.Equal(cp.b[len(a.Data)+len(big.Data):][:len(a.Data)], a.Data) {
		t.Fatal("the chunk taken is not at both its offsets")
	}
}

func (t *copyTee) refusing() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.stopped
}
