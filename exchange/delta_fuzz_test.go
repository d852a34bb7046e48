package exchange

import (
	"bytes"
	"errors"
	"io"
	"slices"
	"testing"

	"github.com/nii-uk/nii"
)

// spendSizes are the sizes of spend@2's chunks, as newFuzzContent makes it.
var spendSizes = []uint32{1, 100, 5000, 70000, 20}

// FuzzSubchunksResponse feeds arbitrary bytes to fetchSubchunks as the
// server's response. It must not panic, must allocate in proportion to
// what it is sent, and must hand fn only lists of the chunk asked for in
// that position that add up to its size, within the sub-chunk bounds.
func FuzzSubchunksResponse(f *testing.F) {
	fc := newFuzzContent(f)
	cs := newContentServer(fc.src, nil, nil)
	serve := func(req chunksRequest) []byte {
		return respond(requestFrame(f, &req), func(rw io.ReadWriter) error { return serveSubchunks(rw, "12D3KooWclient", cs) })
	}
	for _, s := range [][]byte{
		serve(chunksRequest{Manifest: fc.spend2.Manifest, Hashes: fc.spendChunks, Action: "read"}),
		serve(chunksRequest{Manifest: fc.spend2.Manifest, Hashes: fc.spendChunks[2:4], Action: "read"}),
		serve(chunksRequest{Manifest: fc.secret.Manifest, Hashes: fc.secretChunks, Action: "read"}),
	} {
		f.Add(s)
		f.Add(s[:len(s)/2])
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		req := ChunkRequest{Manifest: fc.spend2.Manifest, Hashes: fc.spendChunks, Sizes: spendSizes}
		next := 0
		var err error
		used := allocatedBytes(func() {
			err = fetchSubchunks(fuzzRW{bytes.NewReader(data)}, req, func(h nii.Hash, subs []Subchunk) error {
				i := slices.Index(req.Hashes[next:], h)
				if i < 0 {
					t.Fatalf("list of %s out of order", shortHash(h))
				}
				next += i + 1
				var total uint32
				for _, s := range subs {
					if s.Size == 0 || s.Size > uint32(SubchunkParams().Max) {
						t.Fatalf("a sub-chunk of %d bytes", s.Size)
					}
					total += s.Size
				}
				if total != req.Sizes[next-1] {
					t.Fatalf("a list of %d bytes for a chunk of %d", total, req.Sizes[next-1])
				}
				return nil
			}, func(nii.Hash) { next++ })
		})
		_ = err
		if used > allocBound(len(data)) {
			t.Fatalf("a %d-byte response cost %d bytes", len(data), used)
		}
	})
}

// FuzzRangesResponse feeds arbitrary bytes to fetchRanges as the server's
// response. It must not panic, must allocate in proportion to what it is
// sent, and must hand fn exactly the bytes asked for of each chunk, in
// request order.
func FuzzRangesResponse(f *testing.F) {
	fc := newFuzzContent(f)
	cs := newContentServer(fc.src, nil, nil)
	chunks := []ChunkRanges{
		{Hash: fc.spendChunks[2], Size: 5000, Ranges: []Range{{0, 10}, {100, 900}}},
		{Hash: fc.spendChunks[3], Size: 70000, Ranges: []Range{{69000, 1000}}},
		{Hash: fc.spendChunks[4], Size: 20, Ranges: []Range{{0, 20}}},
	}
	wire, err := checkRangeRequest(RangeRequest{Chunks: chunks}, func(nii.Hash, []byte) error { return nil })
	if err != nil {
		f.Fatal(err)
	}
	serve := func(req rangesRequest) []byte {
		return respond(requestFrame(f, &req), func(rw io.ReadWriter) error { return serveRanges(rw, "12D3KooWclient", cs) })
	}
	for _, s := range [][]byte{
		serve(rangesRequest{Manifest: fc.spend2.Manifest, Chunks: wire, Action: "read"}),
		serve(rangesRequest{Manifest: fc.spend2.Manifest, Chunks: wire[1:], Action: "read"}),
		serve(rangesRequest{Manifest: fc.secret.Manifest, Chunks: wire, Action: "read"}),
	} {
		f.Add(s)
		f.Add(s[:len(s)/2])
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		req := RangeRequest{Manifest: fc.spend2.Manifest, Chunks: chunks}
		next := 0
		used := allocatedBytes(func() {
			_ = fetchRanges(fuzzRW{bytes.NewReader(data)}, req, func(h nii.Hash, b []byte) error {
				for next < len(chunks) && chunks[next].Hash != h {
					next++
				}
				if next == len(chunks) {
					t.Fatalf("ranges of %s out of order", shortHash(h))
				}
				var want uint32
				for _, r := range chunks[next].Ranges {
					want += r.Len
				}
				if uint32(len(b)) != want {
					t.Fatalf("%d bytes for ranges of %d", len(b), want)
				}
				next++
				return nil
			}, nil)
		})
		if used > allocBound(len(data))+2*nii.MaxChunkSize {
			t.Fatalf("a %d-byte response cost %d bytes", len(data), used)
		}
	})
}

// FuzzDeltaRequest feeds arbitrary bytes as a request to the sub-chunk
// and range servers. They must not panic, must answer with a well-formed
// status (or reset), never an internal error for a request, and must never
// serve anything of a restricted version (no Authorizer) or of a chunk
// outside the manifest named; ranges served are the chunk's own bytes.
func FuzzDeltaRequest(f *testing.F) {
	fc := newFuzzContent(f)
	cs := newContentServer(fc.src, nil, nil)
	wire := []chunkRanges{{Hash: fc.spendChunks[3], Ranges: []uint32{0, 10, 500, 1000}}}
	for _, req := range []any{
		&chunksRequest{Manifest: fc.spend2.Manifest, Hashes: fc.spendChunks, Action: "read"},
		&chunksRequest{Manifest: fc.secret.Manifest, Hashes: fc.secretChunks, Action: "read"},
		&rangesRequest{Manifest: fc.spend2.Manifest, Chunks: wire, Action: "read"},
		&rangesRequest{Manifest: fc.spend2.Manifest, Chunks: []chunkRanges{{Hash: fc.spendChunks[0], Ranges: []uint32{0, 5}}}, Action: "read"},
		&rangesRequest{Manifest: fc.secret.Manifest, Chunks: []chunkRanges{{Hash: fc.secretChunks[0], Ranges: []uint32{0, 5}}}, Action: "read"},
	} {
		b := requestFrame(f, req)
		f.Add(b, false)
		f.Add(b, true)
		f.Add(b[:len(b)/2], true)
	}
	f.Fuzz(func(t *testing.T, data []byte, ranges bool) {
		var out []byte
		var serr error
		if ranges {
			out = respond(data, func(rw io.ReadWriter) error { serr = serveRanges(rw, "12D3KooWclient", cs); return serr })
		} else {
			out = respond(data, func(rw io.ReadWriter) error { serr = serveSubchunks(rw, "12D3KooWclient", cs); return serr })
		}
		var ans *answeredError
		if serr != nil && !errors.As(serr, &ans) && len(out) == 0 {
			return // reset without an answer
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
			return
		}
		if !ranges {
			var req chunksRequest
			if err := readMsg(bytes.NewReader(data), maxChunksRequest, &req); err != nil {
				t.Fatalf("served lists for a request that does not decode: %v", err)
			}
			if req.Manifest != fc.spend2.Manifest && req.Manifest != fc.spend1.Manifest {
				t.Fatalf("served lists of manifest %s", shortHash(req.Manifest))
			}
			for i := range req.Hashes {
				var fr subchunkFrame
				if err := readMsg(r, maxSubchunkFrame, &fr); err != nil {
					t.Fatalf("list frame %d: %v", i, err)
				}
				if fr.Hash != req.Hashes[i] || slices.Contains(fc.secretChunks, fr.Hash) {
					t.Fatalf("list frame %d is %s", i, shortHash(fr.Hash))
				}
			}
			return
		}
		var req rangesRequest
		if err := readMsg(bytes.NewReader(data), maxRangesRequest, &req); err != nil {
			t.Fatalf("served ranges for a request that does not decode: %v", err)
		}
		if req.Manifest != fc.spend2.Manifest && req.Manifest != fc.spend1.Manifest {
			t.Fatalf("served ranges of manifest %s", shortHash(req.Manifest))
		}
		for i, c := range req.Chunks {
			var fr chunkFrame
			if err := readMsg(r, maxChunkFrame, &fr); err != nil {
				if serr != nil {
					return // reset part way: a range past the chunk's end
				}
				t.Fatalf("range frame %d: %v", i, err)
			}
			if fr.Hash != c.Hash || slices.Contains(fc.secretChunks, fr.Hash) {
				t.Fatalf("range frame %d is %s", i, shortHash(fr.Hash))
			}
			if fr.Missing {
				continue
			}
			chunk := fc.src.chunks[c.Hash]
			var want []byte
			for k := 0; k < len(c.Ranges); k += 2 {
				want = append(want, chunk[c.Ranges[k]:c.Ranges[k]+c.Ranges[k+1]]...)
			}
			if !bytes.Equal(fr.Data, want) {
				t.Fatalf("range frame %d: not the chunk's bytes", i)
			}
		}
	})
}
