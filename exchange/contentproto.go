package exchange

// The content protocols: how a node fetches a version's signed manifest and
// its chunks from a provider (the publisher or any replica). Everything a
// client receives is verified by hash or signature before it is used, so a
// replica is as good as the publisher and a lying provider is caught at its
// first bad byte.
//
// /nii/manifest/1.0.0 — "send me the signed manifest of dataset D, version V"
//
//	client → server  manifestRequest {1: dataset, 2: version, 3: grant, 4: action, 5: credential} ≤ 16 KiB
//	server → client  status {1: ok, 2: code, 3: message}                             ≤ 4 KiB
//	server → client  manifestResponse {1: manifest}    (if ok)                       ≤ 64 MiB + 4 KiB
//
// Version 0 asks for the latest version the server holds. manifest is an
// encoded nii.SignedManifest; the client verifies its signature and that it
// is the dataset (and version) it asked for.
//
// /nii/chunks/1.0.0 — "send me these chunks of the version with manifest M"
//
//	client → server  chunksRequest {1: manifest, 2: hashes, 3: grant, 4: action, 5: credential} ≤ 24 KiB
//	server → client  status {1: ok, 2: code, 3: message}                             ≤ 4 KiB
//	server → client  chunkFrame {1: hash, 2: data, 3: missing}  (if ok: one per      ≤ 1 MiB + 256
//	                 requested hash, in request order)
//
// 1 to 64 hashes per request, each a chunk of manifest M (the server refuses
// any other: access is checked against M, so an open version cannot be used
// to read a restricted one's chunks). A chunk the server lacks comes back
// with missing set and no data. The client checks that each frame names the
// hash it asked for in that position and that the data hashes to it.
//
// Both servers check access with an Authorizer before revealing anything: a
// restricted version's manifest lists its chunk hashes, so it is guarded
// like the chunks. docs/protocol.md has the details.

import (
	"bytes"
	"container/list"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/nii-uk/nii"
)

// Protocol IDs of the content protocols.
const (
	manifestProtocol protocol.ID = "/nii/manifest/1.0.0"
	chunksProtocol   protocol.ID = "/nii/chunks/1.0.0"
)

// MaxChunksPerRequest bounds the chunks one chunk request may ask for.
const MaxChunksPerRequest = 64

// Content protocol limits.
const (
	maxManifestRequest  = 16 << 10                    // manifest request frame (a grant is a few KiB)
	maxChunksRequest    = 24 << 10                    // chunk request frame: 64 hashes, a grant and a credential
	maxManifestResponse = nii.MaxManifestSize + 4<<10 // manifest response frame
	maxChunkFrame       = nii.MaxChunkSize + 256      // one chunk frame: the data and its hash

	// manifestReserve is what a manifest exchange reserves from the
	// resource manager on each side. The frame limit (64 MiB) is above
	// libp2p's per-stream memory cap (16 MiB), so the reservation covers
	// the manifests nodes actually exchange: 4 MiB holds ~100,000 chunk
	// entries, ~6 GiB of data at the default chunk sizes. The buffers of a
	// larger manifest grow with the bytes that actually arrive.
	manifestReserve = 4 << 20
	// chunksReserve is what a chunk exchange reserves on each side: one
	// chunk and its encoded frame.
	chunksReserve = 2 * nii.MaxChunkSize
)

// Chunk stream deadlines: a batch may take chunksTimeoutBase plus
// chunksTimeoutPerChunk for each chunk asked for, 94 s for a full batch of
// 64. That is generous: a full batch of the largest chunks (1 MiB) needs
// 0.7 MiB/s per stream, one of average chunks (32 KiB) 22 KiB/s. Clients on
// slower links should ask for smaller batches.
const (
	chunksTimeoutBase     = requestTimeout
	chunksTimeoutPerChunk = time.Second
)

// chunksTimeout is the deadline of a chunk exchange asking for n chunks.
func chunksTimeout(n int) time.Duration {
	return chunksTimeoutBase + time.Duration(n)*chunksTimeoutPerChunk
}

// Actions a client may ask the server's Authorizer for: nii.ActionRead (a
// pull) and nii.ActionSync (following a dataset). These names remain for
// code written before Action moved to package nii.
const (
	// Deprecated: use nii.ActionRead.
	ActionRead = nii.ActionRead
	// Deprecated: use nii.ActionSync.
	ActionSync = nii.ActionSync
)

// ErrBadChunk is wrapped when a provider sends a chunk that is not what was
// asked for: another hash, out of order, content that does not hash to its
// name, or an impossible size. The error names the provider and the chunk;
// the caller should stop using that provider for the pull.
var ErrBadChunk = errors.New("bad chunk")

// AccessRequest is what an Authorizer decides on: the authenticated remote
// node asks to perform Action (nii.ActionRead for a pull, nii.ActionSync
// for following) on the version Manifest, presenting a grant and its
// membership credential (either may be "").
type AccessRequest struct {
	Remote     nii.NodeID
	Manifest   *nii.Manifest // shared: must not be modified
	Action     nii.Action
	Grant      string
	Credential string
	// Chunks is set for a chunk request (the manifest request of the same
	// pull was decided already); unset for a manifest request.
	Chunks bool
}

// Authorizer decides an AccessRequest. A nil error allows it. Otherwise
// the error's text reaches the client with the status code "refused" (the
// client's error wraps nii.ErrRefused), so it should say which check failed
// and nothing secret.
type Authorizer func(AccessRequest) error

// ContentSource is what a node serves manifests and chunks from; *Store
// satisfies it. Errors from Version and Manifest wrapping nii.ErrNotFound (or
// nii.ErrRefused, nii.ErrUnavailable) reach the client with that status code and
// their text; any other only as "internal error". A Chunk error wrapping
// nii.ErrNotFound or nii.ErrCorrupt makes the chunk "missing" in the response; any
// other resets the stream.
type ContentSource interface {
	// Version returns the record of a version held; Version 0 means the
	// latest.
	Version(r nii.Ref) (*VersionRecord, error)
	// Manifest returns the signed manifest whose body hashes to h.
	Manifest(h nii.Hash) (*nii.SignedManifest, error)
	// Chunk returns a chunk's bytes, verified against h.
	Chunk(h nii.Hash) ([]byte, error)
}

var _ ContentSource = (*Store)(nil)

// manifestRequest asks for the signed manifest of Dataset at Version (0:
// the latest the server holds).
type manifestRequest struct {
	Dataset nii.DatasetID `cbor:"1,keyasint"`
	Version uint64        `cbor:"2,keyasint"`
	Grant   string        `cbor:"3,keyasint,omitempty"`
	Action  nii.Action    `cbor:"4,keyasint"`
	Cred    string        `cbor:"5,keyasint,omitempty"` // the requester's membership credential
}

// manifestResponse carries an encoded nii.SignedManifest.
type manifestResponse struct {
	Manifest []byte `cbor:"1,keyasint"`
}

// chunksRequest asks for chunks of the version whose manifest hashes to
// Manifest.
type chunksRequest struct {
	Manifest nii.Hash   `cbor:"1,keyasint"`
	Hashes   []nii.Hash `cbor:"2,keyasint"`
	Grant    string     `cbor:"3,keyasint,omitempty"`
	Action   nii.Action `cbor:"4,keyasint"`
	Cred     string     `cbor:"5,keyasint,omitempty"` // the requester's membership credential
}

// chunkFrame is one chunk of a chunk response: its hash and its bytes, or
// Missing and no bytes if the server lacks it.
type chunkFrame struct {
	Hash    nii.Hash   `cbor:"1,keyasint"`
	Data    frameBytes `cbor:"2,keyasint"`
	Missing bool       `cbor:"3,keyasint,omitempty"`
}

// frameBytes is a byte string that, when decoded, points into the frame it
// was decoded from instead of being copied. The client reads each chunk
// frame into a buffer of its own and hands that buffer over with the
// chunk, so a chunk costs one allocation and no copy.
// (encoding.BinaryUnmarshaler's contract asks implementations not to keep
// the bytes; this one does, deliberately, for that buffer alone.)
type frameBytes []byte

func (b *frameBytes) UnmarshalBinary(p []byte) error {
	*b = p
	return nil
}

// ManifestRequest says which manifest FetchManifest asks for.
type ManifestRequest struct {
	Dataset nii.DatasetID
	Version uint64     // 0: the latest the server holds
	Grant   string     // a JWT access grant, or "" for open datasets
	Action  nii.Action // nii.ActionRead (the default if empty) or nii.ActionSync
	// Credential is the requester's membership credential, so a grant to
	// its org can be checked; "" if it has none.
	Credential string
}

// ChunkRequest says which chunks FetchChunks asks for.
type ChunkRequest struct {
	Manifest   nii.Hash   // the version being pulled: access is checked against it
	Hashes     []nii.Hash // 1 to MaxChunksPerRequest chunks of that version
	Grant      string     // a JWT access grant, or "" for open datasets
	Action     nii.Action // nii.ActionRead (the default if empty) or nii.ActionSync
	Credential string     // the requester's membership credential, if any
	// Sizes, if set, are the chunks' sizes as the manifest gives them, one
	// per hash. They stay on this side (nothing is sent): a frame longer
	// than its chunk's size can be, or a chunk of another size, is a bad
	// chunk, so what a provider can make the client hold is bounded by
	// the manifest before a byte is read.
	Sizes []uint32
}

// chunkFrameOverhead bounds a chunk frame's bytes beyond its data (the
// CBOR map, the hash, the byte-string head, a missing flag).
const chunkFrameOverhead = 64

// checkAction returns the action a request names, read if none.
func checkAction(a nii.Action) (nii.Action, error) { return nii.ParseAction(string(a)) }

// checkHashCount checks the number of chunks a request asks for.
func checkHashCount(n int) error {
	if n < 1 || n > MaxChunksPerRequest {
		return fmt.Errorf("%w chunk request: %d hashes, want 1 to %d", nii.ErrInvalid, n, MaxChunksPerRequest)
	}
	return nil
}

// ServeContent serves the manifest and chunk protocols from src to peers
// that auth allows. A nil auth allows every peer to read open versions and
// refuses restricted ones. A nil src stops serving both protocols. Calling
// it again replaces the source and the Authorizer.
func (h *Host) ServeContent(src ContentSource, auth Authorizer) {
	if src == nil {
		h.removeHandler(manifestProtocol)
		h.removeHandler(chunksProtocol)
		h.serveDelta(nil)
		return
	}
	cs := newContentServer(src, auth, &h.served)
	cs.servedChunks = &h.servedChunks
	cs.servedBy = &h.servedBy
	cs.admit = h.admission
	cs.corrupt = h.noteCorrupt
	h.setHandler(manifestProtocol, manifestReserve, func(rw io.ReadWriter, remote nii.NodeID) error {
		return serveManifest(rw, remote, cs)
	})
	h.setHandler(chunksProtocol, chunksReserve, func(rw io.ReadWriter, remote nii.NodeID) error {
		return serveChunks(rw, remote, cs)
	})
	h.serveDelta(cs) // delta.go: sub-chunk lists and byte ranges
}

// ServedBytes returns how many chunk bytes this host has sent to peers.
func (h *Host) ServedBytes() int64 { return h.served.Load() }

// ServedChunks returns how many chunks this host has sent to peers.
func (h *Host) ServedChunks() int64 { return h.servedChunks.Load() }

// CorruptChunk is a chunk the chunk protocol was asked for and found
// corrupt (or unreadable) in its source: it was answered as missing.
type CorruptChunk struct {
	Ref      nii.Ref  // the version being served
	Manifest nii.Hash // its manifest
	Hash     nii.Hash // the chunk
	Remote   nii.NodeID
	Err      error
}

// OnCorruptChunk registers f to be told of every corrupt chunk found while
// serving (after it is logged and counted). f must not block.
func (h *Host) OnCorruptChunk(f func(CorruptChunk)) { h.onCorrupt.Store(&f) }

// CorruptChunks returns how many chunks serving found corrupt.
func (h *Host) CorruptChunks() int64 { return h.corrupt.Load() }

func (h *Host) noteCorrupt(c CorruptChunk) {
	h.corrupt.Add(1)
	h.log.Error("corrupt chunk found while serving: answered missing, never sent",
		slog.String(nii.LogDataset, c.Ref.String()), slog.String("chunk", c.Hash.String()),
		slog.String(nii.LogNodeID, string(c.Remote)), slog.String(nii.LogErr, c.Err.Error()))
	if f := h.onCorrupt.Load(); f != nil && *f != nil {
		(*f)(c)
	}
}

// FetchManifest asks node from for a version's signed manifest and verifies
// it: the signature must be the publisher's, the manifest consistent, and
// for req.Dataset (and req.Version, unless 0). It returns the manifest, its
// hash (which names the version's content) and the signed manifest as
// received (to store).
//
// The exchange is bounded by ctx and by a 30 s deadline. Errors wrap
// nii.ErrInvalid (a request that cannot be sent: invalid dataset or action,
// a grant too long), ErrUnreachable, ErrNotSupported, ErrRemote (with
// nii.ErrNotFound, nii.ErrRefused or nii.ErrUnavailable according to the status code),
// nii.ErrBadSignature or nii.ErrInvalid (a manifest that does not verify),
// ErrMalformed (the wrong manifest, or bytes that are not one), or the
// context's error.
func (h *Host) FetchManifest(ctx context.Context, from nii.NodeID, req ManifestRequest) (*nii.Manifest, nii.Hash, *nii.SignedManifest, error) {
	var (
		m  *nii.Manifest
		mh nii.Hash
		sm *nii.SignedManifest
	)
	ref := nii.Ref{Dataset: req.Dataset, Version: req.Version}
	if err := checkManifestRequest(req); err != nil {
		return nil, nii.Hash{}, nil, fmt.Errorf("fetch manifest of %s: %w", ref, err)
	}
	err := h.request(ctx, from, manifestProtocol, manifestReserve, func(rw io.ReadWriter) error {
		var err error
		m, mh, sm, err = fetchManifest(rw, req)
		return err
	})
	if err != nil {
		return nil, nii.Hash{}, nil, fmt.Errorf("fetch manifest of %s from %s: %w", ref, from.Short(), err)
	}
	return m, mh, sm, nil
}

// FetchChunks streams the requested chunks from node from, verifying each,
// and calls fn(hash, data) for each in request order; data is fn's to keep
// (it is read into a buffer of its own, never reused). Chunks from lacks are reported by calling missing(hash)
// (missing may be nil). It returns on the first error, which may be fn's.
//
// A request must ask for 1 to MaxChunksPerRequest hashes, or it fails
// without contacting from. The exchange is bounded by ctx and by a deadline
// of 30 s plus 1 s per chunk asked for. Errors wrap ErrBadChunk (from sent
// a chunk that is not what was asked for: drop it as a provider),
// ErrUnreachable, ErrNotSupported, ErrRemote (with nii.ErrNotFound,
// nii.ErrRefused or nii.ErrUnavailable according to the status code; "bad_request"
// if a hash is not a chunk of the manifest), ErrMalformed, or the context's
// error.
func (h *Host) FetchChunks(ctx context.Context, from nii.NodeID, req ChunkRequest, fn func(nii.Hash, []byte) error, missing func(nii.Hash)) error {
	if err := checkChunkRequest(req, fn); err != nil {
		return fmt.Errorf("fetch chunks from %s: %w", from.Short(), err)
	}
	err := h.requestWithin(ctx, from, chunksProtocol, chunksReserve, chunksTimeout(len(req.Hashes)), func(rw io.ReadWriter) error {
		return fetchChunks(rw, req, h.countFetched(rw, fn), missing)
	})
	if err != nil {
		return fmt.Errorf("fetch chunks of %s from %s: %w", shortHash(req.Manifest), from.Short(), err)
	}
	return nil
}

// countFetched wraps fn so that each chunk's bytes handed over (verified)
// are counted by the transport the stream rw crossed.
func (h *Host) countFetched(rw io.ReadWriter, fn func(nii.Hash, []byte) error) func(nii.Hash, []byte) error {
	tr := streamTransport(rw)
	return func(c nii.Hash, data []byte) error {
		h.fetchedBy.add(tr, int64(len(data)))
		return fn(c, data)
	}
}

// shortHash is the first 12 hex digits of h, for messages.
func shortHash(h nii.Hash) string { return h.String()[:12] }

func checkManifestRequest(req ManifestRequest) error {
	if err := req.Dataset.Validate(); err != nil {
		return err
	}
	_, err := checkAction(req.Action)
	return err
}

func checkChunkRequest(req ChunkRequest, fn func(nii.Hash, []byte) error) error {
	if err := checkHashCount(len(req.Hashes)); err != nil {
		return err
	}
	if _, err := checkAction(req.Action); err != nil {
		return err
	}
	if fn == nil {
		return errors.New("fetch chunks: no function to take the chunks")
	}
	if req.Sizes != nil && len(req.Sizes) != len(req.Hashes) {
		return fmt.Errorf("%w chunk request: %d sizes for %d hashes", nii.ErrInvalid, len(req.Sizes), len(req.Hashes))
	}
	return nil
}

// writeRequest encodes a request and writes it as one frame, refusing one
// longer than max (an oversized grant) before anything is sent, and then
// closes the write side if rw can.
func writeRequest(rw io.ReadWriter, max int, v any) error {
	b, err := nii.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode request: %w", err)
	}
	if len(b) > max {
		return fmt.Errorf("%w request: %d bytes is over the %d limit (is the grant that long?)", nii.ErrInvalid, len(b), max)
	}
	if err := writeFrame(rw, b); err != nil {
		return fmt.Errorf("send request: %w", err)
	}
	if cw, ok := rw.(interface{ CloseWrite() error }); ok {
		// The request is complete. (Failure shows up in the read after.)
		_ = cw.CloseWrite()
	}
	return nil
}

// fetchManifest sends one manifest request over rw, reads the response and
// verifies the manifest: it must decode, carry its publisher's signature,
// be consistent, and be for the dataset (and version, unless 0) asked for.
func fetchManifest(rw io.ReadWriter, req ManifestRequest) (*nii.Manifest, nii.Hash, *nii.SignedManifest, error) {
	if err := checkManifestRequest(req); err != nil {
		return nil, nii.Hash{}, nil, err
	}
	action, _ := checkAction(req.Action)
	if err := writeRequest(rw, maxManifestRequest, &manifestRequest{Dataset: req.Dataset, Version: req.Version, Grant: req.Grant, Action: action, Cred: req.Credential}); err != nil {
		return nil, nii.Hash{}, nil, err
	}
	var resp manifestResponse
	if err := readResponse(newReader(rw), maxManifestResponse, &resp); err != nil {
		return nil, nii.Hash{}, nil, err
	}
	sm, err := nii.DecodeSignedManifest(resp.Manifest)
	if err != nil {
		return nil, nii.Hash{}, nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	m, mh, err := sm.Open()
	if err != nil {
		return nil, nii.Hash{}, nil, fmt.Errorf("received manifest: %w", err)
	}
	if m.Dataset != req.Dataset {
		return nil, nii.Hash{}, nil, fmt.Errorf("%w: received the manifest of %s, asked for %s", ErrMalformed, m.Ref(), req.Dataset)
	}
	if req.Version != 0 && m.Version != req.Version {
		return nil, nii.Hash{}, nil, fmt.Errorf("%w: received the manifest of %s, asked for version %d", ErrMalformed, m.Ref(), req.Version)
	}
	return m, mh, sm, nil
}

// sendChunkRequest sends req as a chunk request over rw and reads the
// server's status: how every exchange over a manifest's chunks starts
// (chunks, and delta.go's sub-chunk lists). The reader is for the answer.
func sendChunkRequest(rw io.ReadWriter, req ChunkRequest) (io.Reader, error) {
	action, _ := checkAction(req.Action)
	if err := writeRequest(rw, maxChunksRequest, &chunksRequest{Manifest: req.Manifest, Hashes: req.Hashes, Grant: req.Grant, Action: action, Cred: req.Credential}); err != nil {
		return nil, err
	}
	r := newReader(rw)
	if err := readStatus(r); err != nil {
		return nil, err
	}
	return r, nil
}

// fetchChunks sends one chunk request over rw and reads the chunks, checking
// each against the hash asked for in its position before handing it to fn.
func fetchChunks(rw io.ReadWriter, req ChunkRequest, fn func(nii.Hash, []byte) error, missing func(nii.Hash)) error {
	if err := checkChunkRequest(req, fn); err != nil {
		return err
	}
	r, err := sendChunkRequest(rw, req)
	if err != nil {
		return err
	}
	n := len(req.Hashes)
	for i, want := range req.Hashes {
		limit := maxChunkFrame
		if req.Sizes != nil {
			limit = int(req.Sizes[i]) + chunkFrameOverhead
		}
		// Each chunk's bytes get a buffer of their own, which fn keeps:
		// handing the chunk over costs no copy.
		f, pooled, err := readChunkFrame(r, limit, req.Sizes != nil)
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			if req.Sizes != nil && errors.Is(err, ErrFrameTooLarge) {
				return fmt.Errorf("%w %d of %d (%s): %v, for a chunk of %d bytes", ErrBadChunk, i+1, n, shortHash(want), err, req.Sizes[i])
			}
			if errors.Is(err, ErrMalformed) {
				return fmt.Errorf("chunk %d of %d: %w", i+1, n, err)
			}
			return fmt.Errorf("read chunk %d of %d: %w", i+1, n, err)
		}
		var why string
		switch {
		case f.Hash != want:
			why = "received " + shortHash(f.Hash) + " in its place"
		case f.Missing && len(f.Data) > 0:
			why = fmt.Sprintf("marked missing but carries %d bytes", len(f.Data))
		case f.Missing:
			if missing != nil {
				missing(want)
			}
			continue
		case len(f.Data) == 0:
			why = "empty"
		case len(f.Data) > nii.MaxChunkSize:
			why = fmt.Sprintf("%d bytes is over the %d limit", len(f.Data), nii.MaxChunkSize)
		case req.Sizes != nil && len(f.Data) != int(req.Sizes[i]):
			why = fmt.Sprintf("%d bytes, the manifest says %d", len(f.Data), req.Sizes[i])
		case nii.HashOf(f.Data) != want:
			why = "content does not match its hash"
		}
		if why != "" {
			if pooled {
				putChunkBuf(f.Data)
			}
			return fmt.Errorf("%w %d of %d (%s): %s", ErrBadChunk, i+1, n, shortHash(want), why)
		}
		if err := fn(want, f.Data); err != nil {
			return err
		}
	}
	return nil
}

// readOwnFrame reads one frame of at most max bytes into a new buffer.
// With exact, the buffer is allocated at the declared length at once (the
// caller has bounded max by what it expects, and accounted for it);
// otherwise it grows as the bytes arrive, not from the declared length.
func readOwnFrame(r io.Reader, max int, exact bool) ([]byte, error) {
	br, ok := r.(io.ByteReader)
	if !ok {
		br = &oneByteReader{r: r}
	}
	n, err := readUvarint(br)
	if err != nil {
		return nil, err
	}
	if n > uint64(max) {
		return nil, fmt.Errorf("%w: %d bytes declared, limit %d", ErrFrameTooLarge, n, max)
	}
	if !exact {
		return readPayload(r, int(n))
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(r, buf); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return buf, nil
}

// contentServer is what the content protocol handlers share: the source,
// the access check, a cache of opened manifests and the byte counter.
type contentServer struct {
	src    ContentSource
	auth   Authorizer
	admit  func(Admission) error // may be nil: everyone is admitted
	served *atomic.Int64         // may be nil
	cache  *manifestCache

	servedChunks *atomic.Int64      // may be nil
	servedBy     *transportBytes    // may be nil: chunk bytes sent, by the stream's transport
	corrupt      func(CorruptChunk) // may be nil: told of each corrupt chunk found
}

func newContentServer(src ContentSource, auth Authorizer, served *atomic.Int64) *contentServer {
	return &contentServer{src: src, auth: auth, served: served, cache: newManifestCache(manifestCacheBudget)}
}

// authorize asks the Authorizer whether remote may perform action on m. With
// no Authorizer, open versions are allowed and restricted ones refused.
func (cs *contentServer) authorize(req AccessRequest) error {
	if cs.auth == nil {
		if m := req.Manifest; m.Meta.Access == "" || m.Meta.Access == nii.AccessOpen {
			return nil
		}
		return fmt.Errorf("%s is restricted and this node checks no grants", req.Manifest.Dataset)
	}
	return cs.auth(req)
}

func (cs *contentServer) noteCorrupt(om *openedManifest, h nii.Hash, manifest nii.Hash, remote nii.NodeID, err error) {
	if cs.corrupt != nil {
		cs.corrupt(CorruptChunk{Ref: om.m.Ref(), Manifest: manifest, Hash: h, Remote: remote, Err: err})
	}
}

// refuse answers a refused status carrying the Authorizer's text.
func refuse(w io.Writer, remote nii.NodeID, action nii.Action, m *nii.Manifest, err error) error {
	return answer(w, &wireError{Code: codeRefused, Message: err.Error()},
		fmt.Errorf("%s %s by %s: %w: %w", action, m.Ref(), remote.Short(), nii.ErrRefused, err))
}

// readRequest reads a request of at most max bytes into v, answering
// bad_request to one that is oversized or does not decode.
func readRequest(rw io.ReadWriter, remote nii.NodeID, what string, max int, v any) error {
	if err := readMsg(rw, max, v); err != nil {
		err = fmt.Errorf("%s request from %s: %w", what, remote.Short(), err)
		if errors.Is(err, ErrMalformed) || errors.Is(err, ErrFrameTooLarge) {
			return answer(rw, badRequest("%v", err), err)
		}
		return err
	}
	return nil
}

// serveManifest answers one manifest request read from rw. remote is the
// authenticated requesting node. It returns an error if the exchange
// failed; an *answeredError if the client was told why.
func serveManifest(rw io.ReadWriter, remote nii.NodeID, cs *contentServer) error {
	var req manifestRequest
	if err := readRequest(rw, remote, "manifest", maxManifestRequest, &req); err != nil {
		return err
	}
	if cs.admit != nil {
		// Before anything is looked up: a stranger learns not even
		// whether this node holds the version.
		a := Admission{Remote: remote, Credential: req.Cred, Protocol: "manifest", What: nii.Ref{Dataset: req.Dataset, Version: req.Version}.String()}
		if err := cs.admit(a); err != nil {
			return refuseStranger(rw, remote, "manifest", err)
		}
	}
	ref := nii.Ref{Dataset: req.Dataset, Version: req.Version}
	if err := req.Dataset.Validate(); err != nil {
		return answer(rw, badRequest("dataset: %v", err), fmt.Errorf("manifest request from %s: %w", remote.Short(), err))
	}
	action, err := checkAction(req.Action)
	if err != nil {
		return answer(rw, badRequest("%v", err), fmt.Errorf("manifest request from %s: %w", remote.Short(), err))
	}
	rec, err := cs.src.Version(ref)
	if err == nil && rec == nil {
		err = errors.New("source returned no record")
	}
	if err != nil {
		return answer(rw, toWireError(err), fmt.Errorf("manifest of %s: %w", ref, err))
	}
	om, err := cs.open(rec.Manifest)
	if err != nil {
		if errors.Is(err, nii.ErrCorrupt) && cs.corrupt != nil {
			// The version is listed but its manifest is unreadable or does
			// not verify: damaged, as much as a chunk that fails its hash.
			cs.corrupt(CorruptChunk{Ref: rec.Ref, Manifest: rec.Manifest, Hash: rec.Manifest, Remote: remote, Err: err})
		}
		return answer(rw, toWireError(err), fmt.Errorf("manifest of %s: %w", ref, err))
	}
	if om.m.Dataset != req.Dataset || (req.Version != 0 && om.m.Version != req.Version) {
		return answer(rw, internalError(), fmt.Errorf("manifest of %s: %w: the source's record names the manifest of %s", ref, nii.ErrCorrupt, om.m.Ref()))
	}
	if err := cs.authorize(AccessRequest{Remote: remote, Manifest: om.m, Action: action, Grant: req.Grant, Credential: req.Cred}); err != nil {
		return refuse(rw, remote, action, om.m, err)
	}
	return writeOK(rw, &manifestResponse{Manifest: om.enc})
}

// serveChunks answers one chunk request read from rw: a status, then one
// frame per requested chunk. remote is the authenticated requesting node.
// It returns an error if the exchange failed; an *answeredError if the
// client was told why.
func serveChunks(rw io.ReadWriter, remote nii.NodeID, cs *contentServer) error {
	var req chunksRequest
	if err := readRequest(rw, remote, "chunk", maxChunksRequest, &req); err != nil {
		return err
	}
	if cs.admit != nil {
		if err := cs.admit(Admission{Remote: remote, Credential: req.Cred, Protocol: "chunks", What: "manifest " + req.Manifest.String()}); err != nil {
			return refuseStranger(rw, remote, "chunk", err)
		}
	}
	if err := checkHashCount(len(req.Hashes)); err != nil {
		return answer(rw, badRequest("%v", err), fmt.Errorf("chunk request from %s: %w", remote.Short(), err))
	}
	action, err := checkAction(req.Action)
	if err != nil {
		return answer(rw, badRequest("%v", err), fmt.Errorf("chunk request from %s: %w", remote.Short(), err))
	}
	// The request is in: the rest of the exchange gets the batch's deadline.
	if d, ok := rw.(interface{ SetDeadline(time.Time) error }); ok {
		if err := d.SetDeadline(time.Now().Add(chunksTimeout(len(req.Hashes)))); err != nil {
			return err
		}
	}
	om, err := cs.open(req.Manifest)
	if err != nil {
		return answer(rw, toWireError(err), fmt.Errorf("chunks of %s: %w", shortHash(req.Manifest), err))
	}
	if err := cs.authorize(AccessRequest{Remote: remote, Manifest: om.m, Action: action, Grant: req.Grant, Credential: req.Cred, Chunks: true}); err != nil {
		return refuse(rw, remote, action, om.m, err)
	}
	for _, h := range req.Hashes {
		if !om.has(h) {
			err := fmt.Errorf("chunk %s is not in the manifest of %s", shortHash(h), om.m.Ref())
			return answer(rw, badRequest("%v", err), fmt.Errorf("chunk request from %s: %w", remote.Short(), err))
		}
	}
	// The status and the frames go out through one buffer, written when
	// full and at the end: full muxer frames and TLS records, a few
	// syscalls for several chunks.
	fw := newFrameWriter(rw)
	defer fw.release()
	if err := fw.writeMsg(&status{OK: true}); err != nil {
		return err
	}
	transport := streamTransport(rw)
	for _, h := range req.Hashes {
		data, err := fw.readChunkFrom(cs.src, h)
		switch {
		case err == nil && (len(data) == 0 || len(data) > nii.MaxChunkSize):
			// Not a chunk a manifest can name: the source is corrupt.
			cs.noteCorrupt(om, h, req.Manifest, remote, fmt.Errorf("chunk %s: %w: %d bytes", shortHash(h), nii.ErrCorrupt, len(data)))
			data = nil
		case errors.Is(err, nii.ErrCorrupt):
			// Logged and counted, and the client told "missing" (it tries
			// another provider); the bad bytes are never sent.
			data = nil
			cs.noteCorrupt(om, h, req.Manifest, remote, err)
		case errors.Is(err, nii.ErrNotFound):
			data = nil
		case err != nil:
			// The status has gone: all the client can be told is a reset,
			// after the chunks read before (it asks another provider for
			// the rest, from the next chunk on).
			_ = fw.flush()
			return fmt.Errorf("chunk %s of %s: %w", shortHash(h), om.m.Ref(), err)
		}
		if data == nil {
			if err := fw.writeMsg(&chunkFrame{Hash: h, Data: frameBytes{}, Missing: true}); err != nil {
				return err
			}
			continue
		}
		if err := fw.commit(h); err != nil {
			return err
		}
		if cs.served != nil {
			cs.served.Add(int64(len(data)))
		}
		if cs.servedChunks != nil {
			cs.servedChunks.Add(1)
		}
		if cs.servedBy != nil {
			cs.servedBy.add(transport, int64(len(data)))
		}
	}
	return fw.flush()
}

// writeChunkFrame writes the frame of chunkFrame{Hash: h, Data: data} in
// one write: the CBOR head is encoded by hand (canonically, exactly as
// nii.Marshal would; a test checks it) and data follows it. (The chunk
// server gathers its frames in a frameWriter instead.)
func writeChunkFrame(w io.Writer, h nii.Hash, data []byte) error {
	b := chunkFrameHead(make([]byte, 0, maxVarintLen+chunkHeadMax+len(data)), h, len(data))
	_, err := w.Write(append(b, data...))
	return err
}

// appendBytesHead appends the canonical CBOR head of a byte string of n
// bytes (n < 2³²).
func appendBytesHead(b []byte, n int) []byte {
	switch {
	case n < 24:
		return append(b, 0x40|byte(n))
	case n <= 0xff:
		return append(b, 0x58, byte(n))
	case n <= 0xffff:
		return append(b, 0x59, byte(n>>8), byte(n))
	}
	return append(b, 0x5a, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
}

// openedManifest is a manifest as the server serves it: verified, encoded
// for the wire, and with its chunk hashes sorted for membership checks.
type openedManifest struct {
	m      *nii.Manifest
	enc    []byte     // nii.EncodeSignedManifest of the stored manifest
	chunks []nii.Hash // m's distinct chunk hashes, sorted
}

// has reports whether h is one of the manifest's chunks.
func (om *openedManifest) has(h nii.Hash) bool {
	_, ok := slices.BinarySearchFunc(om.chunks, h, func(a, b nii.Hash) int { return bytes.Compare(a[:], b[:]) })
	return ok
}

// cost estimates the memory an openedManifest holds.
func (om *openedManifest) cost() int {
	const chunkRef = 40 // nii.ChunkRef in memory, padded
	return 1<<10 + len(om.enc) + len(om.m.Chunks)*chunkRef + len(om.chunks)*nii.HashSize
}

// open returns the manifest stored under h, opened, from the cache or the
// source. A stored manifest that does not verify, or does not hash to h,
// is nii.ErrCorrupt.
func (cs *contentServer) open(h nii.Hash) (*openedManifest, error) {
	return cs.cache.get(h, func() (*openedManifest, error) {
		sm, err := cs.src.Manifest(h)
		if err == nil && sm == nil {
			err = errors.New("source returned no manifest")
		}
		if err != nil {
			return nil, err
		}
		m, mh, err := sm.Open()
		if err != nil {
			return nil, fmt.Errorf("manifest %s: %w: %v", shortHash(h), nii.ErrCorrupt, err)
		}
		if mh != h {
			return nil, fmt.Errorf("manifest %s: %w: it hashes to %s", shortHash(h), nii.ErrCorrupt, shortHash(mh))
		}
		enc, err := nii.EncodeSignedManifest(sm)
		if err != nil {
			return nil, fmt.Errorf("manifest %s: encode: %w", shortHash(h), err)
		}
		if len(enc) > maxManifestResponse-16 {
			return nil, fmt.Errorf("manifest %s: %w: %d bytes encoded", shortHash(h), nii.ErrCorrupt, len(enc))
		}
		chunks := make([]nii.Hash, len(m.Chunks))
		for i, c := range m.Chunks {
			chunks[i] = c.Hash
		}
		slices.SortFunc(chunks, func(a, b nii.Hash) int { return bytes.Compare(a[:], b[:]) })
		return &openedManifest{m: m, enc: enc, chunks: slices.Clip(slices.Compact(chunks))}, nil
	})
}

// manifestCacheBudget bounds the memory the manifest cache holds (its
// newest entry is kept whatever its size). A pull asks for the same
// manifest once per batch of chunks; decoding a large manifest each time
// would cost more than sending the chunks.
const manifestCacheBudget = 32 << 20

// manifestCache keeps recently opened manifests by hash, least recently
// used evicted first. Manifests are immutable (named by their hash), so an
// entry never goes stale; access is still checked on every request.
// Concurrent requests for a manifest not yet cached share one load.
type manifestCache struct {
	budget int

	mu      sync.Mutex
	entries map[nii.Hash]*cacheEntry
	lru     *list.List // of *cacheEntry, most recently used at the front
	size    int        // sum of the loaded entries' costs
}

type cacheEntry struct {
	h     nii.Hash
	elem  *list.Element
	ready chan struct{} // closed once loaded (or failed)
	om    *openedManifest
	err   error
	cost  int // 0 until loaded
}

func newManifestCache(budget int) *manifestCache {
	return &manifestCache{budget: budget, entries: make(map[nii.Hash]*cacheEntry), lru: list.New()}
}

// get returns the entry for h, calling load to fill it if it is not cached.
// Failed loads are not cached.
func (c *manifestCache) get(h nii.Hash, load func() (*openedManifest, error)) (*openedManifest, error) {
	c.mu.Lock()
	if e, ok := c.entries[h]; ok {
		c.lru.MoveToFront(e.elem)
		c.mu.Unlock()
		<-e.ready
		return e.om, e.err
	}
	e := &cacheEntry{h: h, ready: make(chan struct{})}
	e.elem = c.lru.PushFront(e)
	c.entries[h] = e
	c.mu.Unlock()

	e.om, e.err = load()

	c.mu.Lock()
	if e.err != nil {
		c.lru.Remove(e.elem)
		delete(c.entries, h)
	} else {
		e.cost = e.om.cost()
		c.size += e.cost
		// Evict the least recently used loaded entries until within budget,
		// never the one just loaded.
		for el := c.lru.Back(); el != nil && c.size > c.budget; {
			prev := el.Prev()
			if old := el.Value.(*cacheEntry); old != e && old.cost > 0 {
				c.lru.Remove(el)
				delete(c.entries, old.h)
				c.size -= old.cost
			}
			el = prev
		}
	}
	c.mu.Unlock()
	close(e.ready)
	return e.om, e.err
}

// count returns the number of cached entries (for tests).
func (c *manifestCache) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}
