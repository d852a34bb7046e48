package exchange

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync"

	"github.com/nii-uk/nii"
)

// PipeFetcher is a Fetcher inside one process: each provider is a
// ContentSource served over net.Pipe by the content protocols' own server
// code, and read by their own client code, so a fetch behaves as it does
// over libp2p (framing, limits, status codes, verification) without a
// network. A provider that is not served is unreachable. It is for tests
// of everything that fetches.
type PipeFetcher struct {
	self nii.NodeID // the requesting node, as servers see it

	mu        sync.Mutex
	providers map[nii.NodeID]*contentServer
}

var _ Fetcher = (*PipeFetcher)(nil)

// NewPipeFetcher returns a PipeFetcher whose requests come from node self.
func NewPipeFetcher(self nii.NodeID) *PipeFetcher {
	return &PipeFetcher{self: self, providers: map[nii.NodeID]*contentServer{}}
}

// Serve makes id a provider serving src, with access decided by auth (nil:
// open versions only, as Host.ServeContent). A nil src makes id
// unreachable again.
func (p *PipeFetcher) Serve(id nii.NodeID, src ContentSource, auth Authorizer) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if src == nil {
		delete(p.providers, id)
		return
	}
	p.providers[id] = newContentServer(src, auth, nil)
}

func (p *PipeFetcher) server(id nii.NodeID) (*contentServer, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	cs, ok := p.providers[id]
	if !ok {
		return nil, fmt.Errorf("%w: %s is not served", ErrUnreachable, id.Short())
	}
	return cs, nil
}

// exchange runs serve and client over the two ends of a pipe. The server
// end is closed when serve returns (a reset, if it failed before
// answering), the client end when client returns or ctx ends; it returns
// once both have.
func (p *PipeFetcher) exchange(ctx context.Context, serve func(io.ReadWriter) error, client func(io.ReadWriter) error) error {
	c, s := net.Pipe()
	served := make(chan struct{})
	go func() {
		defer close(served)
		defer s.Close()
		_ = serve(s)
	}()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	err := client(c)
	stop()
	c.Close()
	<-served
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	return err
}

// FetchManifest is Host.FetchManifest over a pipe.
func (p *PipeFetcher) FetchManifest(ctx context.Context, from nii.NodeID, req ManifestRequest) (*nii.Manifest, nii.Hash, *nii.SignedManifest, error) {
	ref := nii.Ref{Dataset: req.Dataset, Version: req.Version}
	if err := checkManifestRequest(req); err != nil {
		return nil, nii.Hash{}, nil, fmt.Errorf("fetch manifest of %s: %w", ref, err)
	}
	cs, err := p.server(from)
	if err != nil {
		return nil, nii.Hash{}, nil, fmt.Errorf("fetch manifest of %s: %w", ref, err)
	}
	var (
		m  *nii.Manifest
		mh nii.Hash
		sm *nii.SignedManifest
	)
	err = p.exchange(ctx,
		func(rw io.ReadWriter) error { return serveManifest(rw, p.self, cs) },
		func(rw io.ReadWriter) error {
			var err error
			m, mh, sm, err = fetchManifest(rw, req)
			return err
		})
	if err != nil {
		return nil, nii.Hash{}, nil, fmt.Errorf("fetch manifest of %s from %s: %w", ref, from.Short(), err)
	}
	return m, mh, sm, nil
}

// FetchChunks is Host.FetchChunks over a pipe.
func (p *PipeFetcher) FetchChunks(ctx context.Context, from nii.NodeID, req ChunkRequest, fn func(nii.Hash, []byte) error, missing func(nii.Hash)) error {
	if err := checkChunkRequest(req, fn); err != nil {
		return fmt.Errorf("fetch chunks from %s: %w", from.Short(), err)
	}
	cs, err := p.server(from)
	if err != nil {
		return fmt.Errorf("fetch chunks from %s: %w", from.Short(), err)
	}
	err = p.exchange(ctx,
		func(rw io.ReadWriter) error { return serveChunks(rw, p.self, cs) },
		func(rw io.ReadWriter) error { return fetchChunks(rw, req, fn, missing) })
	if err != nil {
		return fmt.Errorf("fetch chunks of %s from %s: %w", shortHash(req.Manifest), from.Short(), err)
	}
	return nil
}
