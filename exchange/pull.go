package exchange

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nii-uk/nii"
)

// PullRequest says what to pull and from whom.
type PullRequest struct {
	Ref nii.Ref // Version 0: the latest a provider holds
	// Manifest, if set, is the manifest hash the catalog advertises for
	// this version: anything else is refused.
	Manifest nii.Hash
	// Publisher, if set, is the node whose signature the manifest must
	// carry (the advert's origin).
	Publisher nii.NodeID
	// Providers to try, best first (the publisher and replicas).
	Providers []nii.NodeID
	Grant     string
	Action    nii.Action // nii.ActionRead (default) or nii.ActionSync
	// Credential is this node's membership credential, presented with the
	// grant so providers can check a grant made out to its org.
	Credential string
	// InFlight is how many chunk requests run at once (default 8).
	InFlight int
	// Progress, if set, is called as chunks are stored.
	Progress func(done, total int64)
	Logger   *slog.Logger
}

// PullResult reports what a pull did.
type PullResult struct {
	Record        *VersionRecord
	Manifest      *nii.Manifest
	FetchedChunks int                  // chunks fetched over the network
	FetchedBytes  int64                // their bytes
	HeldChunks    int                  // chunks already in the store (earlier versions, an interrupted pull)
	Providers     map[nii.NodeID]int64 // bytes fetched per provider
	Dropped       []nii.NodeID         // providers dropped for bad data or errors
}

// ErrNoProvider is returned when no provider could serve the pull. It is of
// kind nii.ErrUnavailable.
var ErrNoProvider = nii.Errorf(nii.ErrUnavailable, "no reachable provider")

// Pull fetches a version into the store: the manifest first (verified
// against the publisher's signature and the advertised hash), then only the
// chunks the store lacks, several batches in flight across all providers,
// each chunk verified before it is stored. The version becomes visible only
// when every chunk is stored. Chunks are kept as they arrive, so a pull that
// is interrupted resumes where it stopped.
func Pull(ctx context.Context, h *Host, s *Store, req PullRequest) (*PullResult, error) {
	log := req.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if len(req.Providers) == 0 {
		return nil, fmt.Errorf("pull %s: %w: the catalog lists no provider", req.Ref, ErrNoProvider)
	}
	if req.Action == "" {
		req.Action = "read"
	}
	res := &PullResult{Providers: map[nii.NodeID]int64{}}

	// 1. The manifest, from the first provider that serves the right one.
	var (
		m      *nii.Manifest
		mh     nii.Hash
		sm     *nii.SignedManifest
		errs   []error
		usable []nii.NodeID
	)
	// A round that fails only because no provider could be reached (a dial
	// or handshake that timed out on a busy host) is tried again, twice,
	// after a short wait: those failures are usually transient.
	for round := 0; m == nil && round < manifestRounds; round++ {
		if round > 0 {
			if !allUnreachable(errs) {
				break
			}
			select {
			case <-ctx.Done():
				return nil, fmt.Errorf("pull %s: %w", req.Ref, ctx.Err())
			case <-time.After(time.Duration(round) * manifestRetryWait):
			}
			errs, res.Dropped = nil, nil
		}
		for _, p := range req.Providers {
			pm, ph, psm, err := h.FetchManifest(ctx, p, ManifestRequest{Dataset: req.Ref.Dataset, Version: req.Ref.Version, Grant: req.Grant, Action: req.Action, Credential: req.Credential})
			if err == nil && !req.Manifest.IsZero() && ph != req.Manifest {
				err = fmt.Errorf("serves manifest %s, the catalog advertises %s", ph.String()[:12], req.Manifest.String()[:12])
			}
			if err == nil && req.Publisher != "" && pm.Publisher != req.Publisher {
				err = fmt.Errorf("manifest signed by %s, not the publisher %s", pm.Publisher.Short(), req.Publisher.Short())
			}
			if err != nil {
				if errors.Is(err, ErrRefused) {
					return nil, fmt.Errorf("pull %s: %w", req.Ref, err)
				}
				errs = append(errs, fmt.Errorf("%s: %w", p.Short(), err))
				res.Dropped = append(res.Dropped, p)
				continue
			}
			// Chunks come from this provider and every one after it: a
			// provider serving the wrong content is dropped at its first bad
			// chunk, since every chunk is checked against this manifest.
			m, mh, sm = pm, ph, psm
			usable = append([]nii.NodeID{p}, remaining(req.Providers, p)...)
			break
		}
	}
	if m == nil {
		return nil, fmt.Errorf("pull %s: %w: %w", req.Ref, ErrNoProvider, errors.Join(errs...))
	}
	res.Manifest = m
	if rec, err := s.Version(m.Ref()); err == nil && rec.Manifest == mh {
		res.Record = rec
		res.HeldChunks = len(m.Chunks)
		return res, nil
	}

	// 2. The chunks the store lacks.
	var need []nii.Hash
	seen := map[nii.Hash]bool{}
	var total int64
	sizes := map[nii.Hash]uint32{}
	for _, c := range m.Chunks {
		if seen[c.Hash] {
			continue
		}
		seen[c.Hash] = true
		sizes[c.Hash] = c.Size
		has, err := s.HasChunk(c.Hash)
		if err != nil {
			return nil, err
		}
		if has {
			res.HeldChunks++
			continue
		}
		need = append(need, c.Hash)
		total += int64(c.Size)
	}

	// 3. Fetch in batches, several in flight, spread over providers.
	if len(need) > 0 {
		if err := fetchMissing(ctx, h, s, req, mh, need, sizes, total, usable, res, log); err != nil {
			return res, fmt.Errorf("pull %s: %w", m.Ref(), err)
		}
	}

	// 4. Commit: visible only now, and only if every chunk is there.
	rec, err := s.Commit(sm)
	if err != nil {
		return res, fmt.Errorf("pull %s: %w", m.Ref(), err)
	}
	res.Record = rec
	return res, nil
}

// Manifest fetch retries: up to manifestRounds rounds over the providers,
// waiting round × manifestRetryWait before each retry.
const (
	manifestRounds    = 3
	manifestRetryWait = time.Second
)

// allUnreachable reports whether every error in errs is ErrUnreachable.
func allUnreachable(errs []error) bool {
	for _, err := range errs {
		if !errors.Is(err, ErrUnreachable) {
			return false
		}
	}
	return len(errs) > 0
}

// remaining returns the providers after the one given, in order.
func remaining(all []nii.NodeID, after nii.NodeID) []nii.NodeID {
	for i, p := range all {
		if p == after {
			return append([]nii.NodeID(nil), all[i+1:]...)
		}
	}
	return nil
}

// fetchAll fetches need from the providers. A provider that sends a bad
// chunk or fails is dropped for the rest of this pull and its batch goes to
// another.
func fetchMissing(ctx context.Context, h *Host, s *Store, req PullRequest, mh nii.Hash, need []nii.Hash,
	sizes map[nii.Hash]uint32, total int64, providers []nii.NodeID, res *PullResult, log *slog.Logger) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	var (
		mu      sync.Mutex
		alive   = append([]nii.NodeID(nil), providers...)
		next    int
		done    atomic.Int64
		failErr error
	)
	pick := func(avoid map[nii.NodeID]bool) (nii.NodeID, bool) {
		mu.Lock()
		defer mu.Unlock()
		for range alive {
			p := alive[next%len(alive)]
			next++
			if !avoid[p] {
				return p, true
			}
		}
		return "", false
	}
	drop := func(p nii.NodeID, why error) {
		mu.Lock()
		defer mu.Unlock()
		for i, a := range alive {
			if a == p {
				alive = append(alive[:i], alive[i+1:]...)
				res.Dropped = append(res.Dropped, p)
				log.Warn("provider dropped for this pull", slog.String("provider", p.Short()), slog.String("err", why.Error()))
				break
			}
		}
	}

	type batch struct {
		hashes []nii.Hash
		tried  map[nii.NodeID]bool
	}
	queue := make(chan batch, len(need)/MaxChunksPerRequest+1)
	var pending sync.WaitGroup
	for i := 0; i < len(need); i += MaxChunksPerRequest {
		pending.Add(1)
		queue <- batch{hashes: need[i:min(i+MaxChunksPerRequest, len(need))], tried: map[nii.NodeID]bool{}}
	}
	go func() { pending.Wait(); close(queue) }()

	inFlight := req.InFlight
	if inFlight <= 0 {
		inFlight = 8
	}
	var workers sync.WaitGroup
	for range inFlight {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for b := range queue {
				if ctx.Err() != nil {
					pending.Done()
					continue
				}
				p, ok := pick(b.tried)
				if !ok {
					mu.Lock()
					if failErr == nil {
						failErr = fmt.Errorf("%w: every provider failed or lacks some chunks", ErrNoProvider)
					}
					mu.Unlock()
					cancel()
					pending.Done()
					continue
				}
				b.tried[p] = true
				var got []chunkData
				var missing []nii.Hash
				err := h.FetchChunks(ctx, p, ChunkRequest{Manifest: mh, Hashes: b.hashes, Grant: req.Grant, Action: req.Action, Credential: req.Credential},
					func(hh nii.Hash, data []byte) error {
						got = append(got, chunkData{hh, append([]byte(nil), data...)})
						return nil
					}, func(hh nii.Hash) { missing = append(missing, hh) })
				if len(got) > 0 {
					if werr := s.putVerified(got); werr != nil {
						mu.Lock()
						if failErr == nil {
							failErr = fmt.Errorf("store chunks: %w", werr)
						}
						mu.Unlock()
						cancel()
						pending.Done()
						continue
					}
					var n int64
					for _, c := range got {
						n += int64(len(c.data))
					}
					mu.Lock()
					res.FetchedChunks += len(got)
					res.FetchedBytes += n
					res.Providers[p] += n
					mu.Unlock()
					d := done.Add(n)
					if req.Progress != nil {
						req.Progress(d, total)
					}
				}
				if err != nil {
					if errors.Is(err, ErrRefused) {
						mu.Lock()
						if failErr == nil {
							failErr = err
						}
						mu.Unlock()
						cancel()
						pending.Done()
						continue
					}
					if ctx.Err() == nil {
						drop(p, err)
					}
				}
				// Whatever did not arrive goes back on the queue for
				// another provider.
				rest := unfetched(b.hashes, got)
				if len(rest) > 0 && ctx.Err() == nil {
					pending.Add(1)
					queue <- batch{hashes: rest, tried: b.tried}
				}
				pending.Done()
			}
		}()
	}
	workers.Wait()
	if failErr != nil {
		return failErr
	}
	return ctx.Err()
}

type chunkData struct {
	h    nii.Hash
	data []byte
}

func unfetched(want []nii.Hash, got []chunkData) []nii.Hash {
	if len(got) == len(want) {
		return nil
	}
	have := make(map[nii.Hash]bool, len(got))
	for _, c := range got {
		have[c.h] = true
	}
	var rest []nii.Hash
	for _, h := range want {
		if !have[h] {
			rest = append(rest, h)
		}
	}
	return rest
}

// putVerified stores chunks whose hashes the caller has already checked
// (FetchChunks verifies every chunk before handing it over).
func (s *Store) putVerified(chunks []chunkData) error { return s.putChunks(chunks) }
