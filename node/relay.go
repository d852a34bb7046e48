package node

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/exchange"
)

// The download endpoint behind the open-data formats' resource URLs. A
// CKAN or DCAT client reading the catalog from a registry-only node (which
// holds no data) still needs a URL that returns the bytes, and publishers'
// APIs are usually on loopback. So:
//
//	GET /api/v1/datasets/{org}/{name}/versions/{version}/download
//
// serves the version from this node's store if it holds it (exactly as
// .../content does), and otherwise streams it from the version's providers
// (the catalog policy's, registry.Sources) through the fetch engine: the
// manifest first, accepted only if the publisher the policy chose signed it
// and, where the catalog holds the publisher's advert of that version, it
// hashes to the advertised manifest (exchange.CheckManifest, the check a
// pull makes); then the chunks in order, each verified by hash and size
// before it is written. Nothing is stored. If a provider fails mid-stream
// the next one continues from the next chunk; if all fail, the response
// carries the Nii-Error trailer, as .../content does. Only open datasets
// are relayed: a restricted one needs a grant, which a relay neither has
// nor should forward.

// errClientGone marks a failure to write to the HTTP client: the relay
// stops rather than trying another provider.
type errClientGone struct{ err error }

func (e errClientGone) Error() string { return "writing to client: " + e.err.Error() }

// clientSink writes a relayed version's chunks, in order, to the client.
type clientSink struct {
	w    io.Writer
	done int // chunks written
}

func (c *clientSink) Put(chunks []exchange.Chunk) error {
	for _, ch := range chunks {
		if _, err := c.w.Write(ch.Data); err != nil {
			return errClientGone{err}
		}
		c.done++
	}
	return nil
}

func (n *Node) handleDownload(w http.ResponseWriter, r *http.Request) {
	ref, err := refFromPath(r)
	if err != nil {
		writeErr(w, err)
		return
	}
	if _, err := n.store.Version(ref); err == nil {
		n.handleContent(w, r)
		return
	}
	src, err := n.sources(ref)
	if err != nil {
		writeErr(w, err)
		return
	}
	pub := src.Publisher.Advert
	if pub.Withdrawn {
		writeErr(w, fmt.Errorf("dataset %s: %w: withdrawn by its publisher", ref.Dataset, exchange.ErrNotFound))
		return
	}
	if pub.Meta.Access != nii.AccessOpen && pub.Meta.Access != "" {
		writeError(w, http.StatusForbidden, "refused", fmt.Sprintf("%s is restricted: pull it with a grant ('nii pull %s --grant …') on a node that is allowed it", ref.Dataset, ref.Dataset))
		return
	}
	req := n.fetchRequest(src)
	if len(req.Providers) == 0 {
		writeErr(w, fmt.Errorf("%s: %w: the catalog lists no provider", req.Ref, exchange.ErrNoProvider))
		return
	}
	ctx := r.Context()
	x, err := exchange.NewFetch(ctx, n.host, req)
	if err != nil {
		if errors.Is(err, exchange.ErrNotFound) && src.Version != pub.Version {
			writeErr(w, fmt.Errorf("%s: %w at any provider (%v)", req.Ref, exchange.ErrNotFound, err))
			return
		}
		writeErr(w, fmt.Errorf("%s: %w", req.Ref, err))
		return
	}
	m := x.Manifest
	h := w.Header()
	h.Set("Trailer", TrailerError)
	h.Set("Content-Type", m.Meta.MediaType)
	h.Set("Nii-Ref", m.Ref().String())
	h.Set("Nii-Size", strconv.FormatInt(m.Size, 10))
	h.Set("Nii-Manifest", x.Hash.String())
	setDisposition(h, m.Ref(), m.Meta)
	w.WriteHeader(http.StatusOK)

	sink := &clientSink{w: n.streaming(w)}
	err = x.Stream(ctx, sink)
	var gone errClientGone
	switch {
	case err == nil, errors.As(err, &gone), ctx.Err() != nil:
		return
	}
	n.log.Warn("relay failed", slog.String(LogDataset, m.Ref().String()), slog.String(LogErr, err.Error()))
	h.Set(TrailerError, fmt.Sprintf("relay of %s stopped after %d of %d chunks: every provider failed; last: %v", m.Ref(), sink.done, len(m.Chunks), err))
}
