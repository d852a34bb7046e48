package exchange

// The fetch engine: the one way content comes from providers, used by a
// pull (chunks into the store) and by the download relay (chunks, in
// order, to an HTTP client).
//
// A fetch first takes the manifest from the first provider that serves the
// one the catalog expects (CheckManifest), trying every provider again,
// twice, when none could be reached. Then it fetches chunks in batches
// over the providers, round-robin: a provider that fails or sends one bad
// chunk is dropped for the rest of the fetch; chunks a provider lacks go to
// another; a refusal ends the fetch. One coordinator goroutine owns every
// decision and the memory budget; workers (one per batch in flight) only
// talk to providers; one writer hands received chunks to the sink.

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"time"

	"github.com/libp2p/go-libp2p/core/network"

	"github.com/nii-uk/nii"
)

// Fetcher fetches from one provider at a time. *Host is the libp2p
// Fetcher; PipeFetcher serves ContentSources in this process.
type Fetcher interface {
	// FetchManifest asks from for a version's signed manifest (see
	// Host.FetchManifest).
	FetchManifest(ctx context.Context, from nii.NodeID, req ManifestRequest) (*nii.Manifest, nii.Hash, *nii.SignedManifest, error)
	// FetchChunks asks from for a batch of chunks and calls fn with each,
	// verified, in request order (fn keeps the bytes), and missing with
	// each it lacks (see Host.FetchChunks).
	FetchChunks(ctx context.Context, from nii.NodeID, req ChunkRequest, fn func(nii.Hash, []byte) error, missing func(nii.Hash)) error
}

var _ Fetcher = (*Host)(nil)

// Chunk is a chunk's hash and bytes.
type Chunk struct {
	Hash nii.Hash
	Data []byte

	// crc is Data's CRC-32C (the pack frame's checksum) where hasCRC: a
	// fetch computes it right after the hash, while the bytes are still
	// in the CPU's cache, where the pack writer's own pass over them
	// reads memory (about 3.5× slower per GiB: BenchmarkFrameCRC).
	crc    uint32
	hasCRC bool
}

// framingSink is a ChunkSink that writes the chunks into pack frames (a
// pull's storeSink): the fetch computes each chunk's frame CRC for it.
type framingSink interface{ framesChunks() }

// withCRC returns c with its CRC computed.
func (c Chunk) withCRC() Chunk {
	c.crc, c.hasCRC = crc32.Checksum(c.Data, castagnoli), true
	return c
}

// ChunkSink takes the chunks a fetch receives, each verified against its
// hash and its manifest size. Put is called from one goroutine, with
// chunks in the order they arrived (for Fetch.Stream, the manifest's
// order); the sink owns their bytes. Once Put returns, the chunks no
// longer count against the fetch's memory budget. An error from Put ends
// the fetch, which returns it.
type ChunkSink interface {
	Put(chunks []Chunk) error
}

// ErrWrongManifest is wrapped when a provider serves a manifest that is
// not the one the catalog expects: signed by another node than the
// publisher, or not the publisher's advertised manifest.
var ErrWrongManifest = errors.New("not the publisher's manifest")

// CheckManifest is the one check every path that hands out content (pull,
// follow, the download relay and what links to it) applies to a manifest
// received from a provider: it must verify (decode, be consistent, carry a
// valid signature by the node it names as publisher), be of ref's dataset
// (and version, unless 0), be signed by publisher — the publisher the
// catalog chose — and, if manifest is set (the catalog holds the
// publisher's advert of that version), hash to it. At least one of
// publisher and manifest must be given: a check that pins neither would
// accept anything.
func CheckManifest(sm *nii.SignedManifest, ref nii.Ref, publisher nii.NodeID, manifest nii.Hash) (*nii.Manifest, nii.Hash, error) {
	if publisher == "" && manifest.IsZero() {
		return nil, nii.Hash{}, fmt.Errorf("%w fetch of %s: neither the publisher nor the manifest is known", nii.ErrInvalid, ref)
	}
	if sm == nil {
		return nil, nii.Hash{}, fmt.Errorf("%w: no manifest", ErrMalformed)
	}
	m, mh, err := sm.Open()
	if err != nil {
		return nil, nii.Hash{}, fmt.Errorf("received manifest: %w", err)
	}
	switch {
	case m.Dataset != ref.Dataset || (ref.Version != 0 && m.Version != ref.Version):
		return nil, nii.Hash{}, fmt.Errorf("%w: it is the manifest of %s, asked for %s", ErrWrongManifest, m.Ref(), ref)
	case publisher != "" && m.Publisher != publisher:
		return nil, nii.Hash{}, fmt.Errorf("%w: signed by %s, not by the publisher %s", ErrWrongManifest, m.Publisher.Short(), publisher.Short())
	case !manifest.IsZero() && mh != manifest:
		return nil, nii.Hash{}, fmt.Errorf("%w: serves manifest %s, the publisher advertises %s", ErrWrongManifest, shortHash(mh), shortHash(manifest))
	}
	return m, mh, nil
}

// Fetch defaults and bounds.
const (
	// DefaultInFlight is how many chunk batches a fetch has in flight.
	DefaultInFlight = 8
	// DefaultInFlightBytes is how many chunk bytes a fetch holds at once
	// by default: asked for and not yet handed to the sink and put. With
	// the default chunker (32 KiB average) eight full batches need 16 MiB;
	// with a hostile publisher's 1 MiB chunks the bound is what stops
	// eight batches of 64 MiB.
	DefaultInFlightBytes = 32 << 20
	// writeBatchBytes bounds what the writer hands the sink in one Put.
	writeBatchBytes = 8 << 20
)

// Manifest fetch retries: up to manifestRounds rounds over the providers,
// waiting round × manifestRetryWait before each retry.
const (
	manifestRounds    = 3
	manifestRetryWait = time.Second
)

// Fetch is one version being fetched: its manifest, checked, and the
// providers its chunks come from.
type Fetch struct {
	Manifest *nii.Manifest
	Hash     nii.Hash
	Signed   *nii.SignedManifest

	f         Fetcher
	req       PullRequest
	providers []nii.NodeID // the one that served the manifest, then those after it
	log       *slog.Logger

	// Written only by the goroutine running the fetch.
	stats fetchStats
}

// fetchStats is what a fetch did.
type fetchStats struct {
	chunks    int
	bytes     int64
	providers map[nii.NodeID]int64
	// providerChunks counts chunks per provider, as providers counts bytes.
	providerChunks map[nii.NodeID]int
	dropped        []nii.NodeID
	peak           int64 // most bytes in flight at once
}

// NewFetch begins fetching req's version: it takes the manifest from the
// first provider that serves the expected one (CheckManifest) and returns
// the fetch, ready for its chunks. A refusal ends it at once (the error
// wraps ErrRefused); when every provider fails, the error wraps
// ErrNoProvider and says what each did. A round in which no provider
// could be reached (a dial or handshake that timed out on a busy host) is
// tried again, twice, after a short wait. Errors do not name the version:
// the caller does.
func NewFetch(ctx context.Context, f Fetcher, req PullRequest) (*Fetch, error) {
	if len(req.Providers) == 0 {
		return nil, fmt.Errorf("%w: the catalog lists no provider", ErrNoProvider)
	}
	if req.Publisher == "" && req.Manifest.IsZero() {
		return nil, fmt.Errorf("%w fetch of %s: neither the publisher nor the manifest is known", nii.ErrInvalid, req.Ref)
	}
	if req.Action == "" {
		req.Action = ActionRead
	}
	if req.InFlight <= 0 {
		req.InFlight = DefaultInFlight
	}
	if req.InFlightBytes <= 0 {
		req.InFlightBytes = DefaultInFlightBytes
	}
	// Any one chunk must fit: the bound is then never exceeded.
	req.InFlightBytes = max(req.InFlightBytes, nii.MaxChunkSize)
	if req.retryWait == 0 {
		req.retryWait = manifestRetryWait
	}
	x := &Fetch{f: f, req: req, log: req.Logger, stats: fetchStats{providers: map[nii.NodeID]int64{}, providerChunks: map[nii.NodeID]int{}}}
	if x.log == nil {
		x.log = slog.New(slog.DiscardHandler)
	}
	var errs []error
	rctx := ctx
	for round := 0; round < manifestRounds; round++ {
		if round > 0 {
			if !allUnreachable(errs) {
				break
			}
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(time.Duration(round) * req.retryWait):
			}
			errs, x.stats.dropped = nil, nil
			// libp2p refuses to redial an address whose dial just failed
			// for a backoff of 5 s and more; a retry round is bounded, and
			// dials again (a busy host's timeout is not a dead peer).
			rctx = network.WithForceDirectDial(ctx, "nii pull retry round")
		}
		for i, p := range req.Providers {
			_, _, sm, err := f.FetchManifest(rctx, p, ManifestRequest{Dataset: req.Ref.Dataset, Version: req.Ref.Version,
				Grant: req.Grant, Action: req.Action, Credential: req.Credential})
			var m *nii.Manifest
			var mh nii.Hash
			if err == nil {
				m, mh, err = CheckManifest(sm, req.Ref, req.Publisher, req.Manifest)
			}
			if err != nil {
				if errors.Is(err, ErrRefused) {
					return nil, err
				}
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				errs = append(errs, fmt.Errorf("%s: %w", p.Short(), err))
				x.stats.dropped = append(x.stats.dropped, p)
				continue
			}
			// Chunks come from this provider and every one after it: a
			// provider serving the wrong content is dropped at its first
			// bad chunk, since every chunk is checked against this manifest.
			x.Manifest, x.Hash, x.Signed = m, mh, sm
			x.providers = append([]nii.NodeID(nil), req.Providers[i:]...)
			return x, nil
		}
	}
	return nil, fmt.Errorf("%w: %w", ErrNoProvider, errors.Join(errs...))
}

// allUnreachable reports whether every error in errs is ErrUnreachable.
func allUnreachable(errs []error) bool {
	for _, err := range errs {
		if !errors.Is(err, ErrUnreachable) {
			return false
		}
	}
	return len(errs) > 0
}

// Stream fetches every chunk of the manifest, in order, into sink (the
// relay's use): one batch in flight, so that chunks reach the sink in the
// manifest's order. If a provider fails mid-batch the next one continues
// from the next chunk.
func (x *Fetch) Stream(ctx context.Context, sink ChunkSink) error {
	return x.run(ctx, x.Manifest.Chunks, sink, true, nil)
}

// batch is a run of chunks asked for in one request, and the providers
// already asked for them.
type batch struct {
	chunks []nii.ChunkRef
	bytes  int64
	tried  map[nii.NodeID]bool
}

type fetchJob struct {
	b    *batch
	from nii.NodeID
}

// jobResult is what a worker reports of one request.
type jobResult struct {
	fetchJob
	got    int            // chunks handed to the writer
	bytes  int64          // their bytes
	rest   []nii.ChunkRef // chunks not handed over, in order
	lacked bool           // the provider lacks some of them (it stays)
	err    error          // the request failed (not for lacking a chunk)
}

// putDone is what the writer reports of one Put.
type putDone struct {
	chunks int
	bytes  int64
	err    error
}

// errLacks stops an ordered batch at the first chunk a provider lacks:
// nothing after it may reach the sink before it.
var errLacks = errors.New("provider lacks a chunk")

// run fetches want into sink. ordered keeps want's order (one batch in
// flight); otherwise InFlight batches run at once, each of at most
// MaxChunksPerRequest chunks and an InFlight-th of the byte budget. A
// batch is asked for only if its bytes fit in what the budget has left
// (or nothing is in flight), so received chunks never hold more than
// InFlightBytes. progress, if set, is called with the bytes put so far.
func (x *Fetch) run(ctx context.Context, want []nii.ChunkRef, sink ChunkSink, ordered bool, progress func(int64)) error {
	_, frames := sink.(framingSink)
	if len(want) == 0 {
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	budget := x.req.InFlightBytes
	workers := x.req.InFlight
	if ordered {
		workers = 1
	}
	queue := makeBatches(want, max(budget/int64(workers), 1))

	jobs := make(chan fetchJob, workers)
	results := make(chan jobResult, workers)
	// Room for every batch in flight: while the sink writes one group,
	// the workers go on reading their streams into this queue instead of
	// stalling the providers. Memory stays within the byte budget, which
	// bounds what is asked for (and so what can queue here).
	chunks := make(chan Chunk, workers*MaxChunksPerRequest)
	puts := make(chan putDone, 1)
	workersDone := make(chan struct{})
	writerDone := make(chan struct{})
	go func() {
		defer close(workersDone)
		done := make(chan struct{})
		for range workers {
			go func() {
				defer func() { done <- struct{}{} }()
				for j := range jobs {
					results <- x.request(ctx, j, chunks, ordered, frames)
				}
			}()
		}
		for range workers {
			<-done
		}
		close(chunks)
	}()
	go func() {
		defer close(writerDone)
		writeChunks(ctx, sink, chunks, puts)
	}()

	var (
		alive     = append([]nii.NodeID(nil), x.providers...)
		next      int
		idle      = workers
		reserved  int64 // bytes asked for and not yet put, or released
		remaining = len(want)
		put       int64
		failErr   error
	)
	// Unordered batches go round-robin over the providers; an ordered
	// stream stays with one provider until it fails or lacks a chunk.
	pick := func(avoid map[nii.NodeID]bool) (nii.NodeID, bool) {
		for k := range alive {
			p := alive[(next+k)%len(alive)]
			if !avoid[p] {
				next += k
				if !ordered {
					next++
				}
				return p, true
			}
		}
		return "", false
	}
	drop := func(p nii.NodeID, why error) {
		for i, a := range alive {
			if a == p {
				alive = append(alive[:i], alive[i+1:]...)
				x.stats.dropped = append(x.stats.dropped, p)
				x.log.Warn("provider dropped for this fetch", slog.String("provider", p.Short()), slog.String("err", why.Error()))
				return
			}
		}
	}
	fail := func(err error) {
		if failErr == nil {
			failErr = err
			cancel()
		}
	}
	for remaining > 0 && failErr == nil {
		// Ask for what the budget allows, oldest work first.
		for idle > 0 && len(queue) > 0 {
			b := queue[0]
			if reserved > 0 && reserved+b.bytes > budget {
				break
			}
			p, ok := pick(b.tried)
			if !ok {
				fail(fmt.Errorf("%w: every provider failed or lacks some chunks", ErrNoProvider))
				break
			}
			queue = queue[1:]
			reserved += b.bytes
			x.stats.peak = max(x.stats.peak, reserved)
			idle--
			jobs <- fetchJob{b, p}
		}
		if failErr != nil {
			break
		}
		select {
		case <-ctx.Done():
			fail(ctx.Err())
		case r := <-results:
			idle++
			x.account(r)
			reserved -= r.b.bytes - r.bytes // what never arrived
			switch {
			case errors.Is(r.err, ErrRefused):
				fail(r.err)
				continue
			case r.err != nil && ctx.Err() == nil:
				drop(r.from, r.err)
			}
			if len(r.rest) > 0 {
				// Whatever did not arrive goes to another provider, first.
				rb := &batch{chunks: r.rest, bytes: sizeOf(r.rest), tried: r.b.tried}
				rb.tried[r.from] = true
				queue = append([]*batch{rb}, queue...)
			}
		case d := <-puts:
			if d.err != nil {
				fail(d.err)
				continue
			}
			reserved -= d.bytes
			remaining -= d.chunks
			put += d.bytes
			if progress != nil {
				progress(put)
			}
		}
	}
	cancel()
	close(jobs)
	<-workersDone
	<-writerDone
	// The last chunks can be put before their request's result is read:
	// count what the workers reported after the loop ended.
	for len(results) > 0 {
		x.account(<-results)
	}
	if failErr != nil {
		return failErr
	}
	return nil
}

// account adds one request's chunks to the fetch's figures.
func (x *Fetch) account(r jobResult) {
	x.stats.chunks += r.got
	x.stats.bytes += r.bytes
	x.stats.providers[r.from] += r.bytes
	if r.got > 0 {
		x.stats.providerChunks[r.from] += r.got
	}
}

// request asks one provider for one batch, handing each chunk to the
// writer as it arrives.
func (x *Fetch) request(ctx context.Context, j fetchJob, out chan<- Chunk, ordered, frames bool) jobResult {
	n := len(j.b.chunks)
	hashes := make([]nii.Hash, n)
	sizes := make([]uint32, n)
	for i, c := range j.b.chunks {
		hashes[i], sizes[i] = c.Hash, c.Size
	}
	r := jobResult{fetchJob: j}
	handed := make([]bool, n)
	pos := 0
	err := x.f.FetchChunks(ctx, j.from, ChunkRequest{Manifest: x.Hash, Hashes: hashes, Sizes: sizes,
		Grant: x.req.Grant, Action: x.req.Action, Credential: x.req.Credential},
		func(h nii.Hash, data []byte) error {
			i := pos
			pos++
			if ordered && r.lacked {
				return errLacks
			}
			c := Chunk{Hash: h, Data: data}
			if frames {
				c = c.withCRC()
			}
			select {
			case out <- c:
			case <-ctx.Done():
				return ctx.Err()
			}
			handed[i] = true
			r.got++
			r.bytes += int64(len(data))
			return nil
		},
		func(nii.Hash) {
			pos++
			r.lacked = true
		})
	if !errors.Is(err, errLacks) {
		r.err = err
	}
	for i, c := range j.b.chunks {
		if !handed[i] {
			r.rest = append(r.rest, c)
		}
	}
	return r
}

// writeChunks hands chunks to sink, several at a time when they queue up,
// and reports each Put. After a failed Put, or once ctx ends, it only
// drains.
func writeChunks(ctx context.Context, sink ChunkSink, in <-chan Chunk, puts chan<- putDone) {
	failed := false
	for c := range in {
		group := []Chunk{c}
		size := int64(len(c.Data))
	more:
		for size < writeBatchBytes {
			select {
			case c, ok := <-in:
				if !ok {
					break more
				}
				group = append(group, c)
				size += int64(len(c.Data))
			default:
				break more
			}
		}
		if failed || ctx.Err() != nil {
			continue
		}
		err := sink.Put(group)
		failed = err != nil
		select {
		case puts <- putDone{chunks: len(group), bytes: size, err: err}:
		case <-ctx.Done():
		}
	}
}

// makeBatches cuts want into batches of at most MaxChunksPerRequest chunks
// and maxBytes bytes (a larger chunk goes alone).
func makeBatches(want []nii.ChunkRef, maxBytes int64) []*batch {
	var out []*batch
	for len(want) > 0 {
		k, size := 0, int64(0)
		for k < len(want) && k < MaxChunksPerRequest && (k == 0 || size+int64(want[k].Size) <= maxBytes) {
			size += int64(want[k].Size)
			k++
		}
		out = append(out, &batch{chunks: want[:k], bytes: size, tried: map[nii.NodeID]bool{}})
		want = want[k:]
	}
	return out
}

func sizeOf(cs []nii.ChunkRef) int64 {
	var n int64
	for _, c := range cs {
		n += int64(c.Size)
	}
	return n
}
