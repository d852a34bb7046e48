package exchange

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"slices"
	"testing"
	"time"

	"github.com/nii-uk/nii"
)

// memContent is an in-memory ContentSource with fixed content, so that fuzz
// seeds are the same on every run (and no badger goroutines allocate in the
// background while the fuzzers measure allocation).
type memContent struct {
	versions  map[nii.Ref]*VersionRecord
	latest    map[nii.DatasetID]uint64
	manifests map[nii.Hash]*nii.SignedManifest
	chunks    map[nii.Hash][]byte
}

func (c *memContent) Version(r nii.Ref) (*VersionRecord, error) {
	if r.Version == 0 {
		r.Version = c.latest[r.Dataset]
	}
	rec, ok := c.versions[r]
	if !ok {
		return nil, fmt.Errorf("version %s: %w", r, ErrNotFound)
	}
	return rec, nil
}

func (c *memContent) Manifest(h nii.Hash) (*nii.SignedManifest, error) {
	sm, ok := c.manifests[h]
	if !ok {
		return nil, fmt.Errorf("manifest %s: %w", h, ErrNotFound)
	}
	return sm, nil
}

func (c *memContent) Chunk(h nii.Hash) ([]byte, error) {
	b, ok := c.chunks[h]
	if !ok {
		return nil, fmt.Errorf("chunk %s: %w", h, ErrNotFound)
	}
	return b, nil
}

// fuzzContent is the fixed content the fuzzers work with: spend@1 and
// spend@2 (open), children-social-care@1 (restricted), all by one
// publisher; the chunks of spend@2 except the last are held.
type fuzzContent struct {
	src            *memContent
	publisher      nii.NodeID
	spend1, spend2 *VersionRecord
	secret         *VersionRecord
	spendChunks    []nii.Hash // spend@2's chunks, in order
	secretChunks   []nii.Hash
}

func newFuzzContent(tb testing.TB) *fuzzContent {
	key := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{9}, ed25519.SeedSize))
	pub := nii.NodeIDFromPublicKey(key.Public().(ed25519.PublicKey))
	fc := &fuzzContent{
		src: &memContent{versions: map[nii.Ref]*VersionRecord{}, latest: map[nii.DatasetID]uint64{},
			manifests: map[nii.Hash]*nii.SignedManifest{}, chunks: map[nii.Hash][]byte{}},
		publisher: pub,
	}
	add := func(d nii.DatasetID, v uint64, access nii.Access, sizes ...int) (*VersionRecord, []nii.Hash) {
		var refs []nii.ChunkRef
		var hashes []nii.Hash
		var total int64
		for i, n := range sizes {
			b := randBytes(uint64(v)*1000+uint64(i)+uint64(len(d.Name)), n)
			h := nii.HashOf(b)
			fc.src.chunks[h] = b
			refs = append(refs, nii.ChunkRef{Hash: h, Size: uint32(n)})
			hashes = append(hashes, h)
			total += int64(n)
		}
		sm, mh, err := nii.SignManifest(&nii.Manifest{
			Dataset: d, Version: v, Publisher: pub, Created: time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC),
			Size: total, Chunker: "fixed", Chunks: refs, Meta: nii.Metadata{Title: "t", Access: access},
		}, key)
		if err != nil {
			tb.Fatal(err)
		}
		rec := &VersionRecord{Ref: nii.Ref{Dataset: d, Version: v}, Manifest: mh, Publisher: pub, Size: total, Chunks: len(refs)}
		fc.src.versions[rec.Ref] = rec
		fc.src.manifests[mh] = sm
		fc.src.latest[d] = max(fc.src.latest[d], v)
		return rec, hashes
	}
	fc.spend1, _ = add(spend, 1, nii.AccessOpen, 10, 300)
	fc.spend2, fc.spendChunks = add(spend, 2, nii.AccessOpen, 1, 100, 5000, 70000, 20)
	fc.secret, fc.secretChunks = add(children, 1, nii.AccessRestricted, 50, 60)
	delete(fc.src.chunks, fc.spendChunks[len(fc.spendChunks)-1])
	return fc
}

// respond runs the server function serve on the request frame req and
// returns what it wrote.
func respond(req []byte, serve func(rw io.ReadWriter) error) []byte {
	var out bytes.Buffer
	_ = serve(struct {
		io.Reader
		io.Writer
	}{bytes.NewReader(req), &out})
	return out.Bytes()
}

func requestFrame(tb testing.TB, v any) []byte {
	var buf bytes.Buffer
	if err := writeMsg(&buf, v); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

// allocBound is what a client may allocate handling an n-byte response:
// the response's size several times over (buffers, decoded values), plus a
// constant for buffers sized up front (at most 64 KiB of a frame before its
// bytes arrive, the 4 KiB reader) and the decoder's bookkeeping.
func allocBound(n int) uint64 { return 16*uint64(n) + 1<<20 }

// FuzzManifestResponse feeds arbitrary bytes to fetchManifest as the
// server's response. It must not panic, must allocate in proportion to what
// it is sent, and must accept only a manifest of the dataset (and version)
// asked for that carries its publisher's valid signature.
func FuzzManifestResponse(f *testing.F) {
	fc := newFuzzContent(f)
	serve := func(req manifestRequest, auth Authorizer) []byte {
		cs := newContentServer(fc.src, auth, nil)
		return respond(requestFrame(f, &req), func(rw io.ReadWriter) error { return serveManifest(rw, "12D3KooWclient", cs) })
	}
	refuse := func(AccessRequest) error { return errors.New("no grant") }
	seeds := [][]byte{
		serve(manifestRequest{Dataset: spend, Action: "read"}, nil),
		serve(manifestRequest{Dataset: spend, Version: 1, Action: "read"}, nil),
		serve(manifestRequest{Dataset: children, Action: "read"}, nil),
		serve(manifestRequest{Dataset: spend, Action: "read"}, refuse),
		serve(manifestRequest{Dataset: sensors, Action: "read"}, nil),
	}
	for _, s := range seeds {
		for _, v := range []uint64{0, 1, 2} {
			f.Add(s, v)
		}
		f.Add(s[:len(s)/2], uint64(0))
	}
	f.Add([]byte{}, uint64(0))
	f.Fuzz(func(t *testing.T, data []byte, version uint64) {
		req := ManifestRequest{Dataset: spend, Version: version}
		var (
			m   *nii.Manifest
			h   nii.Hash
			sm  *nii.SignedManifest
			err error
		)
		used := allocatedBytes(func() {
			m, h, sm, err = fetchManifest(fuzzRW{bytes.NewReader(data)}, req)
		})
		if used > allocBound(len(data)) {
			t.Fatalf("a %d-byte response cost %d bytes", len(data), used)
		}
		if err != nil {
			if m != nil || sm != nil || !h.IsZero() {
				t.Fatal("a manifest with an error")
			}
			return
		}
		if m.Dataset != spend || (version != 0 && m.Version != version) {
			t.Fatalf("accepted the manifest of %s for %s", m.Ref(), nii.Ref{Dataset: spend, Version: version})
		}
		m2, h2, err := sm.Open()
		if err != nil || h2 != h || m2.Ref() != m.Ref() {
			t.Fatalf("accepted manifest does not verify: %v", err)
		}
		if m.Publisher != fc.publisher {
			// Every signature in the inputs is the publisher's, and the
			// fuzzer cannot forge one.
			t.Fatalf("accepted a manifest signed by %s", m.Publisher)
		}
	})
}

// FuzzChunksResponse feeds arbitrary bytes to fetchChunks as the server's
// response. It must not panic, must allocate in proportion to what it is
// sent, and must hand fn only chunks that hash to the hash asked for, in
// request order.
func FuzzChunksResponse(f *testing.F) {
	fc := newFuzzContent(f)
	hashes := fc.spendChunks
	serve := func(req chunksRequest) []byte {
		cs := newContentServer(fc.src, nil, nil)
		return respond(requestFrame(f, &req), func(rw io.ReadWriter) error { return serveChunks(rw, "12D3KooWclient", cs) })
	}
	seeds := [][]byte{
		serve(chunksRequest{Manifest: fc.spend2.Manifest, Hashes: hashes, Action: "read"}),
		serve(chunksRequest{Manifest: fc.spend2.Manifest, Hashes: hashes[:2], Action: "read"}),
		serve(chunksRequest{Manifest: fc.spend2.Manifest, Hashes: []nii.Hash{hashes[1], hashes[0]}, Action: "read"}),
		serve(chunksRequest{Manifest: fc.secret.Manifest, Hashes: fc.secretChunks, Action: "read"}),
		serve(chunksRequest{Manifest: fc.spend2.Manifest, Hashes: fc.secretChunks, Action: "read"}),
	}
	for _, s := range seeds {
		f.Add(s)
		f.Add(s[:len(s)/2])
	}
	f.Add([]byte{})
	// The sizes the manifest gives, as the fetch engine passes them.
	sizes := []uint32{1, 100, 5000, 70000, 20} // as newFuzzContent makes spend@2
	var total uint64
	for _, n := range sizes {
		total += uint64(n) + chunkFrameOverhead
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, sized := range []bool{false, true} {
			req := ChunkRequest{Manifest: fc.spend2.Manifest, Hashes: hashes}
			bound := allocBound(len(data))
			if sized {
				// Each frame is allocated at its declared length, at most
				// its chunk's size: the manifest bounds the cost.
				req.Sizes = sizes
				bound += total
			}
			var (
				seen []nii.Hash
				err  error
			)
			used := allocatedBytes(func() {
				err = fetchChunks(fuzzRW{bytes.NewReader(data)}, req,
					func(h nii.Hash, b []byte) error {
						if nii.HashOf(b) != h || len(b) == 0 || len(b) > nii.MaxChunkSize {
							t.Fatalf("fn got %d bytes that are not chunk %s", len(b), shortHash(h))
						}
						if sized && len(b) != int(sizes[len(seen)]) {
							t.Fatalf("fn got %d bytes for a chunk of %d", len(b), sizes[len(seen)])
						}
						seen = append(seen, h)
						return nil
					}, func(h nii.Hash) { seen = append(seen, h) })
			})
			if used > bound {
				t.Fatalf("a %d-byte response cost %d bytes (sized %v)", len(data), used, sized)
			}
			if !slices.Equal(seen, hashes[:len(seen)]) {
				t.Fatal("chunks handed over out of request order")
			}
			if err == nil && len(seen) != len(hashes) {
				t.Fatalf("success after %d of %d chunks", len(seen), len(hashes))
			}
		}
	})
}

// FuzzContentRequest feeds arbitrary bytes as a request to the manifest and
// chunk servers. They must not panic, must always answer with a
// well-formed status, and must never serve a restricted version (no
// Authorizer: restricted versions are refused) or a chunk outside the
// manifest named.
func FuzzContentRequest(f *testing.F) {
	fc := newFuzzContent(f)
	cs := newContentServer(fc.src, nil, nil)
	for _, req := range []any{
		&manifestRequest{Dataset: spend, Action: "read"},
		&manifestRequest{Dataset: spend, Version: 1, Grant: "g", Action: "sync"},
		&manifestRequest{Dataset: children, Action: "read"},
		&chunksRequest{Manifest: fc.spend2.Manifest, Hashes: fc.spendChunks, Action: "read"},
		&chunksRequest{Manifest: fc.spend2.Manifest, Hashes: fc.secretChunks, Action: "read"},
		&chunksRequest{Manifest: fc.secret.Manifest, Hashes: fc.secretChunks, Action: "read"},
	} {
		b := requestFrame(f, req)
		f.Add(b, false)
		f.Add(b, true)
		f.Add(b[:len(b)/2], true)
	}
	f.Add([]byte{}, false)
	f.Fuzz(func(t *testing.T, data []byte, chunks bool) {
		var out []byte
		var serr error
		if chunks {
			out = respond(data, func(rw io.ReadWriter) error { serr = serveChunks(rw, "12D3KooWclient", cs); return serr })
		} else {
			out = respond(data, func(rw io.ReadWriter) error { serr = serveManifest(rw, "12D3KooWclient", cs); return serr })
		}
		var ans *answeredError
		if serr != nil && !errors.As(serr, &ans) {
			// A stream that fails (here: a request cut short) is reset
			// without an answer.
			if len(out) != 0 {
				t.Fatalf("%d bytes written before failing with %v", len(out), serr)
			}
			return
		}
		r := bytes.NewReader(out)
		if err := readStatus(r); err != nil {
			var we *wireError
			if !errors.As(err, &we) {
				t.Fatalf("the server's status does not decode: %v", err)
			}
			if we.Code == codeInternal {
				t.Fatalf("internal error for a request: %v", we)
			}
			if r.Len() != 0 {
				t.Fatal("bytes after an error status")
			}
			return
		}
		if !chunks {
			var resp manifestResponse
			if err := readMsg(r, maxManifestResponse, &resp); err != nil {
				t.Fatal(err)
			}
			sm, err := nii.DecodeSignedManifest(resp.Manifest)
			if err != nil {
				t.Fatal(err)
			}
			m, _, err := sm.Open()
			if err != nil || m.Meta.Access != nii.AccessOpen {
				t.Fatalf("served the manifest of %v (%v)", m, err)
			}
			return
		}
		// Decode the request as the server did.
		var req chunksRequest
		if err := readMsg(bytes.NewReader(data), maxChunksRequest, &req); err != nil {
			t.Fatalf("served chunks for a request that does not decode: %v", err)
		}
		if req.Manifest != fc.spend2.Manifest && req.Manifest != fc.spend1.Manifest {
			t.Fatalf("served chunks of manifest %s", shortHash(req.Manifest))
		}
		for i := range req.Hashes {
			var fr chunkFrame
			if err := readMsg(r, maxChunkFrame, &fr); err != nil {
				t.Fatalf("chunk frame %d: %v", i, err)
			}
			if fr.Hash != req.Hashes[i] || slices.Contains(fc.secretChunks, fr.Hash) {
				t.Fatalf("chunk frame %d is %s", i, shortHash(fr.Hash))
			}
			if !fr.Missing && nii.HashOf(fr.Data) != fr.Hash {
				t.Fatalf("chunk frame %d: bytes do not match", i)
			}
		}
		if r.Len() != 0 {
			t.Fatal("bytes after the last chunk frame")
		}
	})
}
