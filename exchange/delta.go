package exchange

// Delta sync: a puller that holds an older version of a dataset fetches,
// of each chunk of the new version it lacks, only the bytes its old
// version does not already have.
//
// Chunks (8/32/128 KiB, content-defined) are the unit of storage and of
// the chunk protocol; an edit of 100 KiB touches four or five of them
// (~200 KiB). Sub-chunks are the same cut with small bounds (256 B / 1 KiB
// / 8 KiB) inside one chunk, named by 8 bytes of their BLAKE3. The puller
// asks the provider for the sub-chunk lists of the chunks it lacks, cuts
// the chunks of its old version that cover the same bytes of the file the
// same way, and asks only for the byte ranges of the sub-chunks it could
// not find. It assembles each chunk from its own bytes and the ranges,
// checks the chunk's full BLAKE3 against the signed manifest, and only
// then stores it. A chunk that does not verify, or whose list or ranges
// could not be had, is fetched whole by the chunk protocol, as before.
// A short sub-chunk hash can therefore cost a whole-chunk fetch, never a
// bad chunk.
//
// /nii/subchunks/1.0.0 — "send me the sub-chunk lists of these chunks of the version with manifest M"
//
//	client → server  chunksRequest {1: manifest, 2: hashes, 3: grant, 4: action, 5: credential} ≤ 24 KiB
//	server → client  status {1: ok, 2: code, 3: message}                             ≤ 4 KiB
//	server → client  subchunkFrame {1: hash, 2: sizes, 3: sums, 4: missing}          ≤ 64 KiB
//	                 (if ok: one per requested hash, in request order)
//
// sizes is the sub-chunks' lengths in order (they add up to the chunk's);
// sums is 8 bytes per sub-chunk, the first 8 bytes of its BLAKE3-256.
//
// /nii/chunkranges/1.0.0 — "send me these byte ranges of these chunks of the version with manifest M"
//
//	client → server  rangesRequest {1: manifest, 2: [{1: hash, 2: [off, len, ...]}], 3: grant, 4: action, 5: credential} ≤ 64 KiB
//	server → client  status {1: ok, 2: code, 3: message}                             ≤ 4 KiB
//	server → client  chunkFrame {1: hash, 2: data, 3: missing}                       ≤ 1 MiB + 256
//	                 (if ok: one per requested chunk, in request order; data is
//	                 the ranges' bytes, concatenated)
//
// Both protocols take 1 to 64 chunks of manifest M per request and are
// admitted and authorised exactly as the chunk protocol is (the same
// Admitter, the same Authorizer with Chunks set, the same membership check
// of every hash against M, the same deadline). docs/protocol.md has the
// details.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/zeebo/blake3"

	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/exchange/chunker"
)

// Protocol IDs of delta sync.
const (
	subchunksProtocol protocol.ID = "/nii/subchunks/1.0.0"
	rangesProtocol    protocol.ID = "/nii/chunkranges/1.0.0"
)

// Delta sync limits.
const (
	// SubchunkSumSize is how many bytes of a sub-chunk's BLAKE3 name it.
	SubchunkSumSize = 8
	// maxSubchunks bounds the sub-chunks of one chunk: the largest chunk
	// cut at the smallest sub-chunk size, and one short tail.
	maxSubchunks = nii.MaxChunkSize/subchunkMin + 1
	// maxSubchunkFrame bounds one sub-chunk list frame: maxSubchunks sizes
	// of at most 3 bytes of CBOR and sums of 8, the hash, the heads.
	maxSubchunkFrame = 64 << 10
	// maxRangesRequest bounds a range request frame; maxRanges bounds the
	// ranges one request names in all.
	maxRangesRequest = 64 << 10
	maxRanges        = 2048

	subchunkMin = 256
)

// SubchunkParams are the bounds sub-chunks are cut with. They are part of
// the protocol: both ends must cut alike for sub-chunks to match.
func SubchunkParams() chunker.Params {
	return chunker.Params{Min: subchunkMin, Avg: 1 << 10, Max: 8 << 10}
}

// Subchunk is one piece of a chunk's sub-chunk list.
type Subchunk struct {
	Size uint32
	Sum  uint64 // the first 8 bytes of its BLAKE3-256, big-endian
}

// subchunkSum is a sub-chunk's short hash.
func subchunkSum(b []byte) uint64 {
	h := blake3.Sum256(b)
	return binary.BigEndian.Uint64(h[:SubchunkSumSize])
}

// Subchunks cuts a chunk into its sub-chunk list.
func Subchunks(data []byte) []Subchunk {
	var out []Subchunk
	_ = chunker.Split(data, SubchunkParams(), func(p []byte) {
		out = append(out, Subchunk{Size: uint32(len(p)), Sum: subchunkSum(p)})
	})
	return out
}

// subchunkFrame is one chunk's sub-chunk list, or Missing if the server
// lacks the chunk.
type subchunkFrame struct {
	Hash    nii.Hash `cbor:"1,keyasint"`
	Sizes   []uint32 `cbor:"2,keyasint,omitempty"`
	Sums    []byte   `cbor:"3,keyasint,omitempty"`
	Missing bool     `cbor:"4,keyasint,omitempty"`
}

// rangesRequest asks for byte ranges of chunks of the version whose
// manifest hashes to Manifest.
type rangesRequest struct {
	Manifest nii.Hash      `cbor:"1,keyasint"`
	Chunks   []chunkRanges `cbor:"2,keyasint"`
	Grant    string        `cbor:"3,keyasint,omitempty"`
	Action   nii.Action    `cbor:"4,keyasint"`
	Cred     string        `cbor:"5,keyasint,omitempty"`
}

// chunkRanges names ranges of one chunk: offset, length pairs, ascending
// and not overlapping.
type chunkRanges struct {
	Hash   nii.Hash `cbor:"1,keyasint"`
	Ranges []uint32 `cbor:"2,keyasint"`
}

// Range is a byte range of a chunk.
type Range struct{ Off, Len uint32 }

// ChunkRanges are the ranges asked for of one chunk.
type ChunkRanges struct {
	Hash   nii.Hash
	Size   uint32 // the chunk's size, as the manifest gives it (stays on this side)
	Ranges []Range
}

// RangeRequest says which ranges FetchRanges asks for.
type RangeRequest struct {
	Manifest   nii.Hash
	Chunks     []ChunkRanges // 1 to MaxChunksPerRequest chunks of that version
	Grant      string
	Action     nii.Action
	Credential string
}

// DeltaFetcher is a Fetcher that also speaks delta sync. A fetch whose
// Fetcher is not one fetches whole chunks.
type DeltaFetcher interface {
	// FetchSubchunks asks from for the sub-chunk lists of a batch of
	// chunks (req.Sizes must be set) and calls fn with each, checked
	// against its chunk's size, in request order; missing with each it
	// lacks.
	FetchSubchunks(ctx context.Context, from nii.NodeID, req ChunkRequest, fn func(nii.Hash, []Subchunk) error, missing func(nii.Hash)) error
	// FetchRanges asks from for byte ranges of a batch of chunks and calls
	// fn with each chunk's ranges, concatenated (fn keeps the bytes), in
	// request order; missing with each it lacks.
	FetchRanges(ctx context.Context, from nii.NodeID, req RangeRequest, fn func(nii.Hash, []byte) error, missing func(nii.Hash)) error
}

var (
	_ DeltaFetcher = (*Host)(nil)
	_ DeltaFetcher = (*PipeFetcher)(nil)
)

// checkRanges checks one chunk's ranges: pairs, each non-empty, ascending,
// not overlapping, within a chunk of at most size bytes. It returns the
// bytes they cover.
func checkRanges(rs []uint32, size int) (int, error) {
	if len(rs) == 0 || len(rs)%2 != 0 {
		return 0, fmt.Errorf("%w range request: %d numbers, want offset, length pairs", nii.ErrInvalid, len(rs))
	}
	end, total := 0, 0
	for i := 0; i < len(rs); i += 2 {
		off, n := int(rs[i]), int(rs[i+1])
		switch {
		case n == 0:
			return 0, fmt.Errorf("%w range request: an empty range", nii.ErrInvalid)
		case off < end:
			return 0, fmt.Errorf("%w range request: ranges out of order or overlapping at %d", nii.ErrInvalid, off)
		case off+n > size:
			return 0, fmt.Errorf("%w range request: range %d+%d past %d bytes", nii.ErrInvalid, off, n, size)
		}
		end = off + n
		total += n
	}
	return total, nil
}

func checkRangesRequest(chunks []chunkRanges) error {
	if err := checkHashCount(len(chunks)); err != nil {
		return err
	}
	n := 0
	for _, c := range chunks {
		if _, err := checkRanges(c.Ranges, nii.MaxChunkSize); err != nil {
			return err
		}
		n += len(c.Ranges) / 2
	}
	if n > maxRanges {
		return fmt.Errorf("%w range request: %d ranges, limit %d", nii.ErrInvalid, n, maxRanges)
	}
	return nil
}

// gateChunks is the admission and access check of a request for chunks of
// manifest mh, the chunk protocol's exactly: the Admitter first, then the
// request's form, the batch's deadline, the manifest, the Authorizer, and
// every hash a chunk of the manifest. On failure the client has been
// answered (or the stream failed) and the error says why.
func gateChunks(rw io.ReadWriter, remote nii.NodeID, cs *contentServer, proto string, mh nii.Hash, hashes []nii.Hash,
	grant string, act nii.Action, cred string, form error) (*openedManifest, nii.Action, error) {
	if cs.admit != nil {
		if err := cs.admit(Admission{Remote: remote, Credential: cred, Protocol: proto, What: "manifest " + mh.String()}); err != nil {
			return nil, "", refuseStranger(rw, remote, proto, err)
		}
	}
	if form != nil {
		return nil, "", answer(rw, badRequest("%v", form), fmt.Errorf("%s request from %s: %w", proto, remote.Short(), form))
	}
	action, err := checkAction(act)
	if err != nil {
		return nil, "", answer(rw, badRequest("%v", err), fmt.Errorf("%s request from %s: %w", proto, remote.Short(), err))
	}
	if d, ok := rw.(interface{ SetDeadline(time.Time) error }); ok {
		if err := d.SetDeadline(time.Now().Add(chunksTimeout(len(hashes)))); err != nil {
			return nil, "", err
		}
	}
	om, err := cs.open(mh)
	if err != nil {
		return nil, "", answer(rw, toWireError(err), fmt.Errorf("%s of %s: %w", proto, shortHash(mh), err))
	}
	if err := cs.authorize(AccessRequest{Remote: remote, Manifest: om.m, Action: action, Grant: grant, Credential: cred, Chunks: true}); err != nil {
		return nil, "", refuse(rw, remote, action, om.m, err)
	}
	for _, h := range hashes {
		if !om.has(h) {
			err := fmt.Errorf("chunk %s is not in the manifest of %s", shortHash(h), om.m.Ref())
			return nil, "", answer(rw, badRequest("%v", err), fmt.Errorf("%s request from %s: %w", proto, remote.Short(), err))
		}
	}
	return om, action, nil
}

// sourceChunk reads a chunk to serve as serveChunks does: nil (answered
// missing) if the source lacks it or finds it corrupt (which is noted).
func sourceChunk(cs *contentServer, om *openedManifest, mh, h nii.Hash, remote nii.NodeID) ([]byte, error) {
	data, err := cs.src.Chunk(h)
	switch {
	case err == nil && (len(data) == 0 || len(data) > nii.MaxChunkSize):
		cs.noteCorrupt(om, h, mh, remote, fmt.Errorf("chunk %s: %w: %d bytes", shortHash(h), nii.ErrCorrupt, len(data)))
		return nil, nil
	case errors.Is(err, nii.ErrCorrupt):
		cs.noteCorrupt(om, h, mh, remote, err)
		return nil, nil
	case errors.Is(err, nii.ErrNotFound):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("chunk %s of %s: %w", shortHash(h), om.m.Ref(), err)
	}
	return data, nil
}

// serveSubchunks answers one sub-chunk list request read from rw.
func serveSubchunks(rw io.ReadWriter, remote nii.NodeID, cs *contentServer) error {
	var req chunksRequest
	if err := readRequest(rw, remote, "subchunks", maxChunksRequest, &req); err != nil {
		return err
	}
	om, _, err := gateChunks(rw, remote, cs, "subchunks", req.Manifest, req.Hashes, req.Grant, req.Action, req.Cred, checkHashCount(len(req.Hashes)))
	if err != nil {
		return err
	}
	if err := writeMsg(rw, &status{OK: true}); err != nil {
		return err
	}
	for _, h := range req.Hashes {
		data, err := sourceChunk(cs, om, req.Manifest, h, remote)
		if err != nil {
			return err
		}
		f := subchunkFrame{Hash: h, Missing: data == nil}
		if data != nil {
			subs := Subchunks(data)
			f.Sizes = make([]uint32, len(subs))
			f.Sums = make([]byte, 0, len(subs)*SubchunkSumSize)
			for i, s := range subs {
				f.Sizes[i] = s.Size
				f.Sums = binary.BigEndian.AppendUint64(f.Sums, s.Sum)
			}
		}
		if err := writeMsg(rw, &f); err != nil {
			return err
		}
	}
	return nil
}

// serveRanges answers one range request read from rw.
func serveRanges(rw io.ReadWriter, remote nii.NodeID, cs *contentServer) error {
	var req rangesRequest
	if err := readRequest(rw, remote, "chunkranges", maxRangesRequest, &req); err != nil {
		return err
	}
	hashes := make([]nii.Hash, len(req.Chunks))
	for i, c := range req.Chunks {
		hashes[i] = c.Hash
	}
	om, _, err := gateChunks(rw, remote, cs, "chunkranges", req.Manifest, hashes, req.Grant, req.Action, req.Cred, checkRangesRequest(req.Chunks))
	if err != nil {
		return err
	}
	if err := writeMsg(rw, &status{OK: true}); err != nil {
		return err
	}
	transport := streamTransport(rw)
	for _, c := range req.Chunks {
		data, err := sourceChunk(cs, om, req.Manifest, c.Hash, remote)
		if err != nil {
			return err
		}
		if data == nil {
			if err := writeMsg(rw, &chunkFrame{Hash: c.Hash, Data: frameBytes{}, Missing: true}); err != nil {
				return err
			}
			continue
		}
		// Checked against the chunk's real size only now (the status has
		// gone): a client that knows the manifest never asks past a
		// chunk's end, so one that does gets a reset.
		n, err := checkRanges(c.Ranges, len(data))
		if err != nil {
			return fmt.Errorf("chunkranges request from %s: %w", remote.Short(), err)
		}
		out := make([]byte, 0, n)
		for i := 0; i < len(c.Ranges); i += 2 {
			out = append(out, data[c.Ranges[i]:c.Ranges[i]+c.Ranges[i+1]]...)
		}
		if err := writeChunkFrame(rw, c.Hash, out); err != nil {
			return err
		}
		if cs.served != nil {
			cs.served.Add(int64(n))
		}
		if cs.servedBy != nil {
			cs.servedBy.add(transport, int64(n))
		}
	}
	return nil
}

// serveDelta serves the delta sync protocols from cs (nil: stops).
func (h *Host) serveDelta(cs *contentServer) {
	if cs == nil {
		h.removeHandler(subchunksProtocol)
		h.removeHandler(rangesProtocol)
		return
	}
	h.setHandler(subchunksProtocol, chunksReserve, func(rw io.ReadWriter, remote nii.NodeID) error {
		return serveSubchunks(rw, remote, cs)
	})
	h.setHandler(rangesProtocol, chunksReserve, func(rw io.ReadWriter, remote nii.NodeID) error {
		return serveRanges(rw, remote, cs)
	})
}

func checkSubchunkRequest(req ChunkRequest, fn func(nii.Hash, []Subchunk) error) error {
	if err := checkHashCount(len(req.Hashes)); err != nil {
		return err
	}
	if _, err := checkAction(req.Action); err != nil {
		return err
	}
	if fn == nil {
		return errors.New("fetch sub-chunks: no function to take the lists")
	}
	if len(req.Sizes) != len(req.Hashes) {
		return fmt.Errorf("%w sub-chunk request: %d sizes for %d hashes", nii.ErrInvalid, len(req.Sizes), len(req.Hashes))
	}
	return nil
}

// fetchSubchunks sends one sub-chunk list request over rw and reads the
// lists, checking each names the chunk asked for in its position and
// adds up to its size.
func fetchSubchunks(rw io.ReadWriter, req ChunkRequest, fn func(nii.Hash, []Subchunk) error, missing func(nii.Hash)) error {
	if err := checkSubchunkRequest(req, fn); err != nil {
		return err
	}
	r, err := sendChunkRequest(rw, req)
	if err != nil {
		return err
	}
	n := len(req.Hashes)
	for i, want := range req.Hashes {
		var f subchunkFrame
		if err := readMsg(r, maxSubchunkFrame, &f); err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return fmt.Errorf("read sub-chunk list %d of %d: %w", i+1, n, err)
		}
		subs, err := checkSubchunkFrame(&f, want, req.Sizes[i])
		if err != nil {
			return fmt.Errorf("%w: sub-chunk list %d of %d (%s): %v", ErrBadChunk, i+1, n, shortHash(want), err)
		}
		if subs == nil {
			if missing != nil {
				missing(want)
			}
			continue
		}
		if err := fn(want, subs); err != nil {
			return err
		}
	}
	return nil
}

// checkSubchunkFrame checks a sub-chunk list frame for chunk want of size
// bytes: nil, nil if it says missing.
func checkSubchunkFrame(f *subchunkFrame, want nii.Hash, size uint32) ([]Subchunk, error) {
	max := uint32(SubchunkParams().Max)
	switch {
	case f.Hash != want:
		return nil, fmt.Errorf("received %s in its place", shortHash(f.Hash))
	case f.Missing && (len(f.Sizes) > 0 || len(f.Sums) > 0):
		return nil, errors.New("marked missing but carries a list")
	case f.Missing:
		return nil, nil
	case len(f.Sizes) == 0 || len(f.Sizes) > maxSubchunks:
		return nil, fmt.Errorf("%d sub-chunks", len(f.Sizes))
	case len(f.Sums) != len(f.Sizes)*SubchunkSumSize:
		return nil, fmt.Errorf("%d bytes of sums for %d sub-chunks", len(f.Sums), len(f.Sizes))
	}
	subs := make([]Subchunk, len(f.Sizes))
	var total uint64
	for i, s := range f.Sizes {
		if s == 0 || s > max {
			return nil, fmt.Errorf("sub-chunk %d of %d bytes", i, s)
		}
		total += uint64(s)
		subs[i] = Subchunk{Size: s, Sum: binary.BigEndian.Uint64(f.Sums[i*SubchunkSumSize:])}
	}
	if total != uint64(size) {
		return nil, fmt.Errorf("sub-chunks add up to %d bytes, the chunk has %d", total, size)
	}
	return subs, nil
}

func checkRangeRequest(req RangeRequest, fn func(nii.Hash, []byte) error) ([]chunkRanges, error) {
	if fn == nil {
		return nil, errors.New("fetch ranges: no function to take the bytes")
	}
	if _, err := checkAction(req.Action); err != nil {
		return nil, err
	}
	out := make([]chunkRanges, len(req.Chunks))
	for i, c := range req.Chunks {
		rs := make([]uint32, 0, 2*len(c.Ranges))
		for _, r := range c.Ranges {
			rs = append(rs, r.Off, r.Len)
		}
		if _, err := checkRanges(rs, int(c.Size)); err != nil {
			return nil, err
		}
		out[i] = chunkRanges{Hash: c.Hash, Ranges: rs}
	}
	return out, checkRangesRequest(out)
}

// fetchRanges sends one range request over rw and reads the ranges,
// checking each frame names the chunk asked for in its position and
// carries exactly the bytes asked for.
func fetchRanges(rw io.ReadWriter, req RangeRequest, fn func(nii.Hash, []byte) error, missing func(nii.Hash)) error {
	chunks, err := checkRangeRequest(req, fn)
	if err != nil {
		return err
	}
	action, _ := checkAction(req.Action)
	if err := writeRequest(rw, maxRangesRequest, &rangesRequest{Manifest: req.Manifest, Chunks: chunks, Grant: req.Grant, Action: action, Cred: req.Credential}); err != nil {
		return err
	}
	r := newReader(rw)
	if err := readStatus(r); err != nil {
		return err
	}
	n := len(chunks)
	for i, c := range chunks {
		want, _ := checkRanges(c.Ranges, nii.MaxChunkSize)
		buf, err := readOwnFrame(r, want+chunkFrameOverhead, false)
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			if errors.Is(err, ErrFrameTooLarge) {
				return fmt.Errorf("%w: ranges %d of %d (%s): %v, for %d bytes", ErrBadChunk, i+1, n, shortHash(c.Hash), err, want)
			}
			return fmt.Errorf("read ranges %d of %d: %w", i+1, n, err)
		}
		var f chunkFrame
		if err := nii.Unmarshal(buf, &f); err != nil {
			return fmt.Errorf("%w: ranges %d of %d: %v", ErrMalformed, i+1, n, err)
		}
		var why string
		switch {
		case f.Hash != c.Hash:
			why = "received " + shortHash(f.Hash) + " in its place"
		case f.Missing && len(f.Data) > 0:
			why = fmt.Sprintf("marked missing but carries %d bytes", len(f.Data))
		case f.Missing:
			if missing != nil {
				missing(c.Hash)
			}
			continue
		case len(f.Data) != want:
			why = fmt.Sprintf("%d bytes, asked for %d", len(f.Data), want)
		}
		if why != "" {
			return fmt.Errorf("%w: ranges %d of %d (%s): %s", ErrBadChunk, i+1, n, shortHash(c.Hash), why)
		}
		if err := fn(c.Hash, f.Data); err != nil {
			return err
		}
	}
	return nil
}

// FetchSubchunks asks node from for the sub-chunk lists of a batch of
// chunks of manifest req.Manifest (req.Sizes set, from the manifest). Its
// errors are FetchChunks'.
func (h *Host) FetchSubchunks(ctx context.Context, from nii.NodeID, req ChunkRequest, fn func(nii.Hash, []Subchunk) error, missing func(nii.Hash)) error {
	if err := checkSubchunkRequest(req, fn); err != nil {
		return fmt.Errorf("fetch sub-chunks from %s: %w", from.Short(), err)
	}
	err := h.requestWithin(ctx, from, subchunksProtocol, chunksReserve, chunksTimeout(len(req.Hashes)), func(rw io.ReadWriter) error {
		return fetchSubchunks(rw, req, fn, missing)
	})
	if err != nil {
		return fmt.Errorf("fetch sub-chunks of %s from %s: %w", shortHash(req.Manifest), from.Short(), err)
	}
	return nil
}

// FetchRanges asks node from for byte ranges of a batch of chunks of
// manifest req.Manifest. Its errors are FetchChunks'.
func (h *Host) FetchRanges(ctx context.Context, from nii.NodeID, req RangeRequest, fn func(nii.Hash, []byte) error, missing func(nii.Hash)) error {
	if _, err := checkRangeRequest(req, fn); err != nil {
		return fmt.Errorf("fetch ranges from %s: %w", from.Short(), err)
	}
	err := h.requestWithin(ctx, from, rangesProtocol, chunksReserve, chunksTimeout(len(req.Chunks)), func(rw io.ReadWriter) error {
		return fetchRanges(rw, req, h.countFetched(rw, fn), missing)
	})
	if err != nil {
		return fmt.Errorf("fetch ranges of %s from %s: %w", shortHash(req.Manifest), from.Short(), err)
	}
	return nil
}

// FetchSubchunks is Host.FetchSubchunks over a pipe.
func (p *PipeFetcher) FetchSubchunks(ctx context.Context, from nii.NodeID, req ChunkRequest, fn func(nii.Hash, []Subchunk) error, missing func(nii.Hash)) error {
	if err := checkSubchunkRequest(req, fn); err != nil {
		return fmt.Errorf("fetch sub-chunks from %s: %w", from.Short(), err)
	}
	cs, err := p.server(from)
	if err != nil {
		return fmt.Errorf("fetch sub-chunks from %s: %w", from.Short(), err)
	}
	return p.exchange(ctx,
		func(rw io.ReadWriter) error { return serveSubchunks(rw, p.self, cs) },
		func(rw io.ReadWriter) error { return fetchSubchunks(rw, req, fn, missing) })
}

// FetchRanges is Host.FetchRanges over a pipe.
func (p *PipeFetcher) FetchRanges(ctx context.Context, from nii.NodeID, req RangeRequest, fn func(nii.Hash, []byte) error, missing func(nii.Hash)) error {
	if _, err := checkRangeRequest(req, fn); err != nil {
		return fmt.Errorf("fetch ranges from %s: %w", from.Short(), err)
	}
	cs, err := p.server(from)
	if err != nil {
		return fmt.Errorf("fetch ranges from %s: %w", from.Short(), err)
	}
	return p.exchange(ctx,
		func(rw io.ReadWriter) error { return serveRanges(rw, p.self, cs) },
		func(rw io.ReadWriter) error { return fetchRanges(rw, req, fn, missing) })
}

// The puller's side.

// Delta sync tuning.
const (
	// deltaSlack widens the window of the old version searched for a
	// chunk's sub-chunks on each side, beyond where the nearest shared
	// chunks place it: room for rows that grew or shrank.
	deltaSlack = 64 << 10
	// deltaTightSlack is the slack where the shared chunks either side
	// agree on the shift (nothing grew or shrank between them).
	deltaTightSlack = 8 << 10
	// deltaBatchBytes bounds the new chunk bytes of one delta batch.
	deltaBatchBytes = 4 << 20
	// deltaWorkers is how many delta batches run at once.
	deltaWorkers = 4
	// maxDeltaWindow bounds the old bytes one chunk is matched against.
	maxDeltaWindow = 8 << 20
)

// deltaStats is what the delta phase of a pull did.
type deltaStats struct {
	chunks    int   // chunks assembled and stored
	bytes     int64 // range bytes received for them
	listBytes int64 // sub-chunk list bytes received (sizes and sums)
	reused    int64 // bytes taken from the old version
	fallback  int   // chunks tried and left to the whole-chunk fetch
	providers map[nii.NodeID]int64
}

// oldVersion is the version a delta is taken from: its chunks and where
// each starts in its file.
type oldVersion struct {
	chunks []nii.ChunkRef
	offs   []int64 // len(chunks)+1
	where  map[nii.Hash][]int
}

func newOldVersion(m *nii.Manifest) *oldVersion {
	o := &oldVersion{chunks: m.Chunks, offs: make([]int64, len(m.Chunks)+1), where: make(map[nii.Hash][]int, len(m.Chunks))}
	for i, c := range m.Chunks {
		o.offs[i+1] = o.offs[i] + int64(c.Size)
		o.where[c.Hash] = append(o.where[c.Hash], i)
	}
	return o
}

// shiftOf returns how far a chunk held at new offset off sits in the old
// version (old offset − new), choosing of its places the one nearest
// off+guess; ok is false if the old version lacks it.
func (o *oldVersion) shiftOf(h nii.Hash, off, guess int64) (int64, bool) {
	idx, ok := o.where[h]
	if !ok {
		return 0, false
	}
	best, bestD := int64(0), int64(-1)
	for _, i := range idx {
		s := o.offs[i] - off
		d := s - guess
		if d < 0 {
			d = -d
		}
		if bestD < 0 || d < bestD {
			best, bestD = s, d
		}
	}
	return best, true
}

// deltaItem is a chunk to assemble and the old bytes to match it against.
type deltaItem struct {
	ref    nii.ChunkRef
	off    int64 // where it starts in the new file
	shift  int64 // where its bytes most likely are in the old: off+shift,
	shift2 int64 // or off+shift2 (from the shared chunk after it)
	lo, hi int64 // the window of the old version's file
}

// olderVersion returns the manifest of the version of m's dataset that a
// delta is best taken from: the newest held below m's version (else the
// newest held), other than m itself; nil if none is held.
func (s *Store) olderVersion(m *nii.Manifest, mh nii.Hash) (*nii.Manifest, error) {
	d := m.Dataset
	recs, err := s.Versions(&d)
	if err != nil {
		return nil, err
	}
	var below, newest *VersionRecord
	for _, r := range recs { // in version order
		if r.Manifest == mh {
			continue
		}
		if r.Ref.Version < m.Version {
			below = r
		}
		newest = r
	}
	pick := below
	if pick == nil {
		pick = newest
	}
	if pick == nil {
		return nil, nil
	}
	return s.OpenManifest(pick)
}

// planDelta places each chunk of need (chunks of m) in the old version: the
// window of the old file its content most likely came from, found from the
// nearest chunks on either side that both versions hold.
func planDelta(m *nii.Manifest, old *oldVersion, need []nii.ChunkRef) []deltaItem {
	want := make(map[nii.Hash]bool, len(need))
	for _, c := range need {
		want[c.Hash] = true
	}
	n := len(m.Chunks)
	offs := make([]int64, n+1)
	for i, c := range m.Chunks {
		offs[i+1] = offs[i] + int64(c.Size)
	}
	// The shift before each chunk (from the last held chunk before it)
	// and after it (from the next held chunk after it).
	before := make([]int64, n)
	after := make([]int64, n)
	var shift int64
	for i, c := range m.Chunks {
		if !want[c.Hash] {
			if s, ok := old.shiftOf(c.Hash, offs[i], shift); ok {
				shift = s
			}
		}
		before[i] = shift
	}
	shift = before[n-1]
	for i := n - 1; i >= 0; i-- {
		c := m.Chunks[i]
		if !want[c.Hash] {
			if s, ok := old.shiftOf(c.Hash, offs[i], shift); ok {
				shift = s
			}
		}
		after[i] = shift
	}
	var items []deltaItem
	seen := make(map[nii.Hash]bool, len(need))
	for i, c := range m.Chunks {
		if !want[c.Hash] || seen[c.Hash] {
			continue
		}
		seen[c.Hash] = true
		// Shared chunks on both sides at the same shift (an overwrite):
		// the old bytes are where the chunk is, give or take a sub-chunk.
		slack := int64(deltaSlack)
		if before[i] == after[i] {
			slack = deltaTightSlack
		}
		lo := offs[i] + min(before[i], after[i]) - slack
		hi := offs[i+1] + max(before[i], after[i]) + slack
		if hi-lo > maxDeltaWindow {
			lo, hi = offs[i]+before[i]-deltaSlack, offs[i+1]+before[i]+deltaSlack
		}
		items = append(items, deltaItem{ref: c, off: offs[i], shift: before[i], shift2: after[i], lo: max(lo, 0), hi: min(hi, old.offs[len(old.offs)-1])})
	}
	return items
}

// delta is the delta phase of a pull into s: of the chunks in need it
// assembles, verifies and stores those it can from the store's older
// version of the dataset and byte ranges from the providers, and returns
// the rest, for the whole-chunk fetch. Nothing it fails at fails the
// pull: those chunks are simply fetched whole. done is told the bytes of
// each chunk stored.
func (x *Fetch) delta(ctx context.Context, s *Store, need []nii.ChunkRef, done func(int64)) ([]nii.ChunkRef, deltaStats) {
	st := deltaStats{providers: map[nii.NodeID]int64{}}
	df, ok := x.f.(DeltaFetcher)
	if !ok || len(need) == 0 || len(x.providers) == 0 {
		return need, st
	}
	om, err := s.olderVersion(x.Manifest, x.Hash)
	if err != nil || om == nil {
		if err != nil {
			x.log.Warn("delta sync: no older version to take a delta from", slog.String(nii.LogErr, err.Error()))
		}
		return need, st
	}
	old := newOldVersion(om)
	items := planDelta(x.Manifest, old, need)
	var batches [][]deltaItem
	for len(items) > 0 {
		k, size := 0, int64(0)
		for k < len(items) && k < MaxChunksPerRequest && (k == 0 || size+int64(items[k].ref.Size) <= deltaBatchBytes) {
			size += int64(items[k].ref.Size)
			k++
		}
		batches = append(batches, items[:k])
		items = items[k:]
	}

	var (
		mu      sync.Mutex // guards st, stored, next and noDelta
		stored  = map[nii.Hash]bool{}
		next    int
		wg      sync.WaitGroup
		putMu   sync.Mutex // one Put at a time
		noDelta = map[nii.NodeID]bool{}
	)
	worker := func() {
		defer wg.Done()
		for {
			mu.Lock()
			if next >= len(batches) || ctx.Err() != nil {
				mu.Unlock()
				return
			}
			b, i := batches[next], next
			next++
			var from nii.NodeID
			for k := range x.providers {
				if p := x.providers[(i+k)%len(x.providers)]; !noDelta[p] {
					from = p
					break
				}
			}
			mu.Unlock()
			if from == "" {
				continue
			}
			r, err := x.deltaBatch(ctx, df, s, old, from, b)
			if err == nil && len(r.chunks) > 0 {
				putMu.Lock()
				if err = s.putChunks(r.chunks); err != nil {
					err = fmt.Errorf("store chunks: %w", err)
				}
				putMu.Unlock()
			}
			var size int64
			mu.Lock()
			st.listBytes += r.listBytes
			st.bytes += r.bytes
			st.providers[from] += r.bytes
			if err == nil {
				for _, c := range r.chunks {
					stored[c.Hash] = true
					size += int64(len(c.Data))
				}
				st.chunks += len(r.chunks)
				st.reused += r.reused
			} else if errors.Is(err, ErrNotSupported) || errors.Is(err, ErrBadChunk) || errors.Is(err, ErrRefused) {
				noDelta[from] = true
			}
			if size > 0 && done != nil {
				done(size) // under mu: one call at a time
			}
			mu.Unlock()
			if err != nil && ctx.Err() == nil {
				x.log.Warn("delta sync: a batch falls back to whole chunks", slog.String("provider", from.Short()), slog.String(nii.LogErr, err.Error()))
			}
		}
	}
	for range min(deltaWorkers, len(batches)) {
		wg.Add(1)
		go worker()
	}
	wg.Wait()
	var rest []nii.ChunkRef
	tried := 0
	for _, b := range batches {
		tried += len(b)
	}
	for _, c := range need {
		if !stored[c.Hash] {
			rest = append(rest, c)
		}
	}
	st.fallback = tried - st.chunks
	return rest, st
}

// batchResult is what one delta batch got.
type batchResult struct {
	chunks    []Chunk // assembled and verified
	bytes     int64   // range bytes received
	listBytes int64
	reused    int64
}

// deltaBatch assembles what it can of one batch of chunks.
func (x *Fetch) deltaBatch(ctx context.Context, df DeltaFetcher, s *Store, old *oldVersion, from nii.NodeID, items []deltaItem) (batchResult, error) {
	var r batchResult
	hashes := make([]nii.Hash, len(items))
	sizes := make([]uint32, len(items))
	for i, it := range items {
		hashes[i], sizes[i] = it.ref.Hash, it.ref.Size
	}
	lists := make(map[nii.Hash][]Subchunk, len(items))
	err := df.FetchSubchunks(ctx, from, ChunkRequest{Manifest: x.Hash, Hashes: hashes, Sizes: sizes,
		Grant: x.req.Grant, Action: x.req.Action, Credential: x.req.Credential},
		func(h nii.Hash, subs []Subchunk) error {
			lists[h] = subs
			r.listBytes += int64(len(subs)) * (SubchunkSumSize + 2)
			return nil
		}, nil)
	if err != nil {
		return r, err
	}
	// The old version's sub-chunks in the batch's windows.
	have := x.oldSubchunks(s, old, items)

	type plan struct {
		it     deltaItem
		subs   []Subchunk
		src    []int64
		ranges []Range
	}
	var plans []plan
	var req []ChunkRanges
	nranges := 0
	carry, carryEnd := int64(-1), int64(-1) // where the last item's bytes ended, in the old file and the new
	for _, it := range items {
		subs, ok := lists[it.ref.Hash]
		if !ok {
			continue
		}
		var rs []Range
		var off uint32
		matched := false
		src := make([]int64, len(subs)) // where each sub-chunk is in the old file; -1: fetched
		// Where the next sub-chunk should be in the old file if the bytes
		// run on as they did: the chunk's place to begin with, then just
		// after the last one found. A sub-chunk not found by name is
		// tried there (an overwrite keeps places, and a chunk cut where
		// the old version has no cut starts its sub-chunks out of step).
		expect := it.off + it.shift
		if carryEnd == it.off && carry >= 0 {
			expect = carry // the chunk before it ran on to here
		}
		for i, sc := range subs {
			k := subKey{sc.Sum, sc.Size}
			at, ok := have.where[k]
			if !ok || !have.same(at, k) {
				at, ok = expect, have.same(expect, k)
			}
			if !ok && i == 0 {
				at = it.off + it.shift2
				ok = have.same(at, k)
			}
			if ok {
				matched = true
				src[i] = at
				expect = at + int64(sc.Size)
			} else {
				src[i] = -1
				expect += int64(sc.Size)
				if k := len(rs); k > 0 && rs[k-1].Off+rs[k-1].Len == off {
					rs[k-1].Len += sc.Size
				} else {
					rs = append(rs, Range{off, sc.Size})
				}
			}
			off += sc.Size
		}
		carry, carryEnd = expect, it.off+int64(it.ref.Size)
		if !matched || nranges+len(rs) > maxRanges {
			continue // whole: nothing to gain, or no room
		}
		nranges += len(rs)
		plans = append(plans, plan{it, subs, src, rs})
		if len(rs) > 0 {
			req = append(req, ChunkRanges{Hash: it.ref.Hash, Size: it.ref.Size, Ranges: rs})
		}
	}
	got := make(map[nii.Hash][]byte, len(req))
	if len(req) > 0 {
		err := df.FetchRanges(ctx, from, RangeRequest{Manifest: x.Hash, Chunks: req, Grant: x.req.Grant, Action: x.req.Action, Credential: x.req.Credential},
			func(h nii.Hash, data []byte) error {
				got[h] = data
				r.bytes += int64(len(data))
				return nil
			}, nil)
		if err != nil {
			return r, err
		}
	}
	for _, p := range plans {
		data, ok := got[p.it.ref.Hash]
		if !ok && len(p.ranges) > 0 {
			continue // missing there
		}
		buf := make([]byte, 0, p.it.ref.Size)
		var reused int64
		for i, sc := range p.subs {
			if p.src[i] < 0 {
				buf = append(buf, data[:sc.Size]...)
				data = data[sc.Size:]
				continue
			}
			buf = append(buf, have.at(p.src[i], int(sc.Size))...)
			reused += int64(sc.Size)
		}
		// The one check that matters: the chunk the manifest names, whole.
		if len(buf) != int(p.it.ref.Size) || nii.HashOf(buf) != p.it.ref.Hash {
			x.log.Debug("delta sync: an assembled chunk does not verify; fetched whole", slog.String("chunk", shortHash(p.it.ref.Hash)))
			continue
		}
		r.chunks = append(r.chunks, Chunk{Hash: p.it.ref.Hash, Data: buf})
		r.reused += reused
	}
	return r, nil
}

// subKey names a sub-chunk: its short hash and size.
type subKey struct {
	sum  uint64
	size uint32
}

// oldBytes is what a delta batch holds of the old version: the bytes of
// its windows, as contiguous segments of the old file, and where each
// sub-chunk of the old chunks in them starts, by name.
type oldBytes struct {
	segs  []oldSeg // by offset, not overlapping
	where map[subKey]int64
}

type oldSeg struct {
	off  int64
	data []byte
}

// at returns the old file's bytes [off, off+n) if held in one segment.
func (o *oldBytes) at(off int64, n int) []byte {
	i := sort.Search(len(o.segs), func(i int) bool { return o.segs[i].off+int64(len(o.segs[i].data)) > off })
	if i == len(o.segs) || off < o.segs[i].off || off+int64(n) > o.segs[i].off+int64(len(o.segs[i].data)) {
		return nil
	}
	d := o.segs[i].data[off-o.segs[i].off:]
	return d[:n:n]
}

// same reports whether the old bytes at off are the sub-chunk k.
func (o *oldBytes) same(off int64, k subKey) bool {
	b := o.at(off, int(k.size))
	return b != nil && subchunkSum(b) == k.sum
}

// oldSubchunks reads the old version's chunks overlapping the items'
// windows and cuts each into sub-chunks. Chunks that cannot be read (gone,
// damaged) end a segment.
func (x *Fetch) oldSubchunks(s *Store, old *oldVersion, items []deltaItem) *oldBytes {
	type span struct{ lo, hi int64 }
	spans := make([]span, 0, len(items))
	for _, it := range items {
		if it.hi > it.lo {
			spans = append(spans, span{it.lo, it.hi})
		}
	}
	slices.SortFunc(spans, func(a, b span) int { return int(a.lo - b.lo) })
	o := &oldBytes{where: map[subKey]int64{}}
	last := -1
	var cur *oldSeg
	for _, sp := range spans {
		// The first old chunk ending after sp.lo.
		i := sort.Search(len(old.chunks), func(i int) bool { return old.offs[i+1] > sp.lo })
		for ; i < len(old.chunks) && old.offs[i] < sp.hi; i++ {
			if i <= last {
				continue
			}
			data, err := s.Chunk(old.chunks[i].Hash)
			if err != nil || len(data) != int(old.chunks[i].Size) {
				cur = nil
				continue
			}
			if cur == nil || i != last+1 {
				o.segs = append(o.segs, oldSeg{off: old.offs[i]})
				cur = &o.segs[len(o.segs)-1]
			}
			last = i
			cur.data = append(cur.data, data...)
			pos := old.offs[i]
			_ = chunker.Split(data, SubchunkParams(), func(p []byte) {
				o.where[subKey{subchunkSum(p), uint32(len(p))}] = pos
				pos += int64(len(p))
			})
		}
	}
	return o
}
