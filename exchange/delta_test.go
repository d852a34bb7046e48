package exchange

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync/atomic"
	"testing"

	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/exchange/chunker"
)

// deltaCase is a publisher holding v1 and v2 of a dataset and a puller
// holding v1, pulled from it over the content protocols' own code.
type deltaCase struct {
	pub, dst   *Store
	sg         signer
	rec1, rec2 *VersionRecord
	provider   nii.NodeID
	pf         *PipeFetcher
	whole      int64 // bytes of v2's chunks the puller lacks
}

func newDeltaCase(t *testing.T, v1, v2 []byte) *deltaCase {
	t.Helper()
	c := &deltaCase{sg: newSigner(t), provider: "12D3KooWprovider"}
	c.pub, _ = openStore(t)
	c.dst, _ = openStore(t)
	c.rec1 = publish(t, c.pub, c.sg, spend, v1)
	c.pf = NewPipeFetcher("12D3KooWpuller")
	c.pf.Serve(c.provider, c.pub, allow)
	if _, err := Pull(context.Background(), c.pf, c.dst, c.req(c.rec1)); err != nil {
		t.Fatal(err)
	}
	c.rec2 = publish(t, c.pub, c.sg, spend, v2)
	need, _, err := c.dst.Missing(mustManifest(t, c.pub, c.rec2).Chunks)
	if err != nil {
		t.Fatal(err)
	}
	c.whole = sizeOf(need)
	return c
}

func (c *deltaCase) req(rec *VersionRecord) PullRequest {
	return PullRequest{Ref: rec.Ref, Manifest: rec.Manifest, Publisher: c.sg.id, Providers: []nii.NodeID{c.provider}}
}

// check pulls v2 through f and checks the content and that every chunk of
// v2 the puller holds verifies.
func (c *deltaCase) pull(t *testing.T, f Fetcher, want []byte) *PullResult {
	t.Helper()
	res, err := Pull(context.Background(), f, c.dst, c.req(c.rec2))
	if err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, c.dst, res.Record); !bytes.Equal(got, want) {
		t.Fatal("pulled content differs")
	}
	return res
}

// scatter overwrites n runs of size random bytes at scattered places.
func scatter(data []byte, n, size int, seed uint64) []byte {
	out := bytes.Clone(data)
	r := rand.New(rand.NewPCG(seed, 2))
	for range n {
		at := r.IntN(len(out) - size)
		for j := at; j < at+size; j++ {
			out[j] = byte(r.Uint32())
		}
	}
	return out
}

// TestDeltaFetchesOnlyEditedBytes: with v1 held, a pull of v2 (scattered
// 20 KiB overwrites) fetches little more than the edited bytes, far less
// than the chunks the edits touch, and the version is intact. Without
// delta sync it fetches every touched chunk whole (c.whole).
func TestDeltaFetchesOnlyEditedBytes(t *testing.T) {
	v1 := randBytes(31, 8<<20)
	const edits, size = 10, 20 << 10
	v2 := scatter(v1, edits, size, 7)
	c := newDeltaCase(t, v1, v2)
	res := c.pull(t, c.pf, v2)
	t.Logf("whole chunks %d bytes; delta %d range bytes + %d list bytes, %d chunks of %d, %d reused",
		c.whole, res.FetchedBytes, res.SubchunkListBytes, res.DeltaChunks, res.FetchedChunks, res.ReusedBytes)
	if res.DeltaChunks == 0 || res.FetchedBytes+res.SubchunkListBytes > c.whole/2 {
		t.Fatalf("fetched %d + %d list bytes (%d delta chunks) where the touched chunks are %d bytes", res.FetchedBytes, res.SubchunkListBytes, res.DeltaChunks, c.whole)
	}
	if res.FetchedBytes < edits*size*9/10 {
		t.Fatalf("fetched %d bytes for %d bytes of edits: the count is wrong", res.FetchedBytes, edits*size)
	}
	if res.ManifestBytes == 0 {
		t.Fatal("the manifest's bytes are not counted")
	}
}

// TestDeltaSingleRowEdit: one row of a CSV changed (and longer: the bytes
// after it move) costs a few KiB, not the ~40 KiB of the chunks it touches.
func TestDeltaSingleRowEdit(t *testing.T) {
	v1, _ := editedCSV(4<<20, 1)
	at := bytes.Index(v1[len(v1)/2:], []byte("Supplier ")) + len(v1)/2
	v2 := append(append(append([]byte{}, v1[:at]...), "Renamed Supplier Group "...), v1[at:]...)
	c := newDeltaCase(t, v1, v2)
	res := c.pull(t, c.pf, v2)
	t.Logf("whole chunks %d bytes; delta %d + %d list bytes, %d chunks", c.whole, res.FetchedBytes, res.SubchunkListBytes, res.FetchedChunks)
	if res.FetchedChunks < 1 || res.FetchedChunks > 3 || res.FetchedBytes+res.SubchunkListBytes > 8<<10 {
		t.Fatalf("a one-row edit fetched %d chunks, %d + %d bytes (the chunks it touches: %d bytes)", res.FetchedChunks, res.FetchedBytes, res.SubchunkListBytes, c.whole)
	}
}

// TestDeltaAfterInsert: 300 KiB inserted near the start moves everything
// after it; the chunks around the insertion are still found in v1.
func TestDeltaAfterInsert(t *testing.T) {
	v1 := randBytes(32, 4<<20)
	v2 := append(append(append([]byte{}, v1[:1<<20]...), randBytes(33, 300<<10)...), v1[1<<20:]...)
	c := newDeltaCase(t, v1, v2)
	res := c.pull(t, c.pf, v2)
	if res.FetchedBytes > 300<<10+32<<10 {
		t.Fatalf("a 300 KiB insertion fetched %d bytes (touched chunks %d)", res.FetchedBytes, c.whole)
	}
}

// lyingDelta tampers with a provider's delta answers.
type lyingDelta struct {
	*PipeFetcher
	lists, ranges bool
	asked         *atomic.Int64 // delta requests made
}

func (l lyingDelta) FetchSubchunks(ctx context.Context, from nii.NodeID, req ChunkRequest, fn func(nii.Hash, []Subchunk) error, missing func(nii.Hash)) error {
	l.asked.Add(1)
	return l.PipeFetcher.FetchSubchunks(ctx, from, req, func(h nii.Hash, subs []Subchunk) error {
		if l.lists && len(subs) > 1 {
			// Same sizes in all, in another order: every sub-chunk is
			// one the puller may hold, the chunk is not the one named.
			subs = append(subs[1:], subs[0])
		}
		return fn(h, subs)
	}, missing)
}

func (l lyingDelta) FetchRanges(ctx context.Context, from nii.NodeID, req RangeRequest, fn func(nii.Hash, []byte) error, missing func(nii.Hash)) error {
	return l.PipeFetcher.FetchRanges(ctx, from, req, func(h nii.Hash, data []byte) error {
		if l.ranges {
			data[len(data)/2] ^= 1
		}
		return fn(h, data)
	}, missing)
}

// TestDeltaLyingProviderCannotStoreBadChunk: sub-chunk lists or ranges
// that do not make the chunk the manifest names are caught by the chunk's
// full hash; those chunks are fetched whole, and the version is intact.
func TestDeltaLyingProviderCannotStoreBadChunk(t *testing.T) {
	v1 := randBytes(34, 4<<20)
	v2 := scatter(v1, 5, 10<<10, 8)
	for _, lie := range []lyingDelta{{lists: true}, {ranges: true}, {lists: true, ranges: true}} {
		t.Run(fmt.Sprintf("lists=%v,ranges=%v", lie.lists, lie.ranges), func(t *testing.T) {
			c := newDeltaCase(t, v1, v2)
			lie.PipeFetcher, lie.asked = c.pf, new(atomic.Int64)
			res := c.pull(t, lie, v2)
			if lie.asked.Load() == 0 {
				t.Fatal("no delta was tried")
			}
			// Only chunks assembled without the lying part can verify:
			// permuted lists never do; with lying ranges, only chunks
			// that needed no range (found whole in v1) are assembled.
			if (lie.lists && res.DeltaChunks != 0) || res.DeltaChunks >= res.FetchedChunks {
				t.Fatalf("%d of %d chunks assembled from lies", res.DeltaChunks, res.FetchedChunks)
			}
			m := mustManifest(t, c.dst, res.Record)
			for _, ch := range m.Chunks {
				if _, err := c.dst.Chunk(ch.Hash); err != nil {
					t.Fatalf("chunk %s: %v", shortHash(ch.Hash), err)
				}
			}
		})
	}
}

// TestDeltaCorruptProviderStoresNothing: a provider whose chunks are all
// corrupt (its lists and ranges computed from the bad bytes) gets nothing
// into the store by either path; the pull fails and v2 is not visible.
func TestDeltaCorruptProviderStoresNothing(t *testing.T) {
	v1 := randBytes(35, 2<<20)
	v2 := scatter(v1, 3, 10<<10, 9)
	c := newDeltaCase(t, v1, v2)
	c.pf.Serve(c.provider, evilSource{c.pub}, allow)
	_, err := Pull(context.Background(), c.pf, c.dst, c.req(c.rec2))
	if !errors.Is(err, ErrNoProvider) {
		t.Fatalf("pull from a corrupting provider: %v", err)
	}
	if ok, _ := c.dst.HasVersion(c.rec2.Ref); ok {
		t.Fatal("v2 is visible")
	}
	need, _, _ := c.dst.Missing(mustManifest(t, c.pub, c.rec2).Chunks)
	if sizeOf(need) != c.whole {
		t.Fatalf("the puller now lacks %d bytes of v2's chunks, %d before: a chunk from a corrupting provider was stored", sizeOf(need), c.whole)
	}
}

// TestDeltaWireChecks: a range frame of the wrong length, or a sub-chunk
// list that does not add up to the chunk, is a bad chunk.
func TestDeltaWireChecks(t *testing.T) {
	h := nii.HashOf([]byte("x"))
	mh := nii.HashOf([]byte("m"))
	ok := func(w io.Writer) error { return writeMsg(w, &status{OK: true}) }
	err := scripted(t, maxRangesRequest, &rangesRequest{}, func(w io.Writer) error {
		ok(w)
		return writeChunkFrame(w, h, make([]byte, 11))
	}, func(rw io.ReadWriter) error {
		return fetchRanges(rw, RangeRequest{Manifest: mh, Chunks: []ChunkRanges{{Hash: h, Size: 100, Ranges: []Range{{0, 10}}}}},
			func(nii.Hash, []byte) error { t.Error("took a wrong-length range"); return nil }, nil)
	})
	if !errors.Is(err, ErrBadChunk) {
		t.Fatalf("wrong-length range: %v", err)
	}
	err = scripted(t, maxChunksRequest, &chunksRequest{}, func(w io.Writer) error {
		ok(w)
		return writeMsg(w, &subchunkFrame{Hash: h, Sizes: []uint32{40, 50}, Sums: make([]byte, 16)})
	}, func(rw io.ReadWriter) error {
		return fetchSubchunks(rw, ChunkRequest{Manifest: mh, Hashes: []nii.Hash{h}, Sizes: []uint32{100}},
			func(nii.Hash, []Subchunk) error { t.Error("took a list that does not add up"); return nil }, nil)
	})
	if !errors.Is(err, ErrBadChunk) {
		t.Fatalf("list not adding up: %v", err)
	}
	for _, bad := range [][]uint32{{}, {1}, {0, 0}, {5, 5, 7, 1}, {0, 101}} {
		if _, err := checkRanges(bad, 100); err == nil {
			t.Errorf("ranges %v accepted", bad)
		}
	}
}

// TestSubchunksOverLibp2p: the delta protocols between real hosts, with
// the chunk protocol's access checks: a restricted version's lists and
// ranges are refused without a grant, a hash not of the manifest is a bad
// request, and a pull of v2 over libp2p assembles chunks from v1.
func TestSubchunksOverLibp2p(t *testing.T) {
	pubStore, _ := openStore(t)
	sg := newSigner(t)
	v1 := randBytes(36, 2<<20)
	v2 := scatter(v1, 4, 8<<10, 10)
	rec1 := publish(t, pubStore, sg, spend, v1)
	secret := publishAccess(t, pubStore, sg, children, randBytes(37, 200<<10), nii.AccessRestricted)
	pub, puller := newPullHost(t), newPullHost(t)
	pub.ServeContent(pubStore, nil) // open versions only
	puller.AddPeerAddrs(pub.ID(), pub.Addrs())
	ctx := context.Background()

	sm := mustManifest(t, pubStore, secret)
	err := puller.FetchSubchunks(ctx, pub.ID(), ChunkRequest{Manifest: secret.Manifest, Hashes: []nii.Hash{sm.Chunks[0].Hash}, Sizes: []uint32{sm.Chunks[0].Size}},
		func(nii.Hash, []Subchunk) error { return nil }, nil)
	if !errors.Is(err, nii.ErrRefused) {
		t.Fatalf("sub-chunks of a restricted version without a grant: %v", err)
	}
	err = puller.FetchRanges(ctx, pub.ID(), RangeRequest{Manifest: secret.Manifest, Chunks: []ChunkRanges{{Hash: sm.Chunks[0].Hash, Size: sm.Chunks[0].Size, Ranges: []Range{{0, 1}}}}},
		func(nii.Hash, []byte) error { return nil }, nil)
	if !errors.Is(err, nii.ErrRefused) {
		t.Fatalf("ranges of a restricted version without a grant: %v", err)
	}
	m1 := mustManifest(t, pubStore, rec1)
	err = puller.FetchSubchunks(ctx, pub.ID(), ChunkRequest{Manifest: rec1.Manifest, Hashes: []nii.Hash{sm.Chunks[0].Hash}, Sizes: []uint32{sm.Chunks[0].Size}},
		func(nii.Hash, []Subchunk) error { return nil }, nil)
	if wireCode(err) != codeBadRequest {
		t.Fatalf("sub-chunks of a chunk of another version: %v", err)
	}
	var subs []Subchunk
	err = puller.FetchSubchunks(ctx, pub.ID(), ChunkRequest{Manifest: rec1.Manifest, Hashes: []nii.Hash{m1.Chunks[0].Hash}, Sizes: []uint32{m1.Chunks[0].Size}},
		func(_ nii.Hash, s []Subchunk) error { subs = s; return nil }, nil)
	if err != nil || len(subs) < 2 {
		t.Fatalf("sub-chunks of an open chunk: %d, %v", len(subs), err)
	}

	dst, _ := openStore(t)
	req := func(rec *VersionRecord) PullRequest {
		return PullRequest{Ref: rec.Ref, Manifest: rec.Manifest, Publisher: sg.id, Providers: []nii.NodeID{pub.ID()}}
	}
	if _, err := Pull(ctx, puller, dst, req(rec1)); err != nil {
		t.Fatal(err)
	}
	rec2 := publish(t, pubStore, sg, spend, v2)
	res, err := Pull(ctx, puller, dst, req(rec2))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(readAll(t, dst, res.Record), v2) {
		t.Fatal("pulled content differs")
	}
	if res.DeltaChunks == 0 || res.FetchedBytes > 4*8<<10*2 {
		t.Fatalf("over libp2p: %d delta chunks, %d bytes for 4 edits of 8 KiB", res.DeltaChunks, res.FetchedBytes)
	}
}

// TestSplitCutsAsChunker: chunker.Split cuts where a Chunker reading the
// same bytes does, with the sub-chunk bounds.
func TestSplitCutsAsChunker(t *testing.T) {
	data := randBytes(38, 300<<10)
	var split []int
	if err := chunker.Split(data, SubchunkParams(), func(p []byte) { split = append(split, len(p)) }); err != nil {
		t.Fatal(err)
	}
	ch, err := chunker.New(bytes.NewReader(data), SubchunkParams())
	if err != nil {
		t.Fatal(err)
	}
	var stream []int
	for {
		b, err := ch.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		stream = append(stream, len(b))
	}
	if fmt.Sprint(split) != fmt.Sprint(stream) {
		t.Fatalf("Split cuts %v, a Chunker %v", split, stream)
	}
}
