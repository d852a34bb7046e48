package node

import (
	"errors"
	"fmt"
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
// over the content protocol: the signed manifest first (its hash must
// match the advert's for the latest version), then the chunks in order, 64
// per request, each verified by hash before it is written. Nothing is
// stored. If a provider fails mid-stream the next one continues from the
// next chunk; if all fail, the response carries the Nii-Error trailer, as
// .../content does. Only open datasets are relayed: a restricted one needs
// a grant, which a relay neither has nor should forward.

// errClientGone marks a failure to write to the HTTP client: the relay
// stops rather than trying another provider.
type errClientGone struct{ err error }

func (e errClientGone) Error() string { return "writing to client: " + e.err.Error() }

var errChunkMissing = errors.New("provider lacks a chunk")

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
	e, ok := n.published(ref.Dataset)
	if !ok {
		writeErr(w, fmt.Errorf("dataset %s: %w in the federated catalog", ref.Dataset, exchange.ErrNotFound))
		return
	}
	pub := e.Advert
	v := ref.Version
	if v == 0 {
		v = pub.Version
	}
	if pub.Meta.Access != nii.AccessOpen && pub.Meta.Access != "" {
		writeError(w, http.StatusForbidden, "refused", fmt.Sprintf("%s is restricted: pull it with a grant ('nii pull %s --grant …') on a node that is allowed it", ref.Dataset, ref.Dataset))
		return
	}
	provs := n.providers(n.catalog.Lookup(ref.Dataset), pub, v)
	if len(provs) == 0 {
		writeErr(w, fmt.Errorf("%s@%d: %w: the catalog lists no provider", ref.Dataset, v, exchange.ErrNoProvider))
		return
	}
	ctx := r.Context()
	var (
		m    *nii.Manifest
		mh   nii.Hash
		cur  int
		errs []error
	)
	for i, p := range provs {
		mm, h, _, err := n.host.FetchManifest(ctx, p, exchange.ManifestRequest{Dataset: ref.Dataset, Version: v})
		switch {
		case err != nil:
			errs = append(errs, err)
			continue
		case v == pub.Version && h != pub.Manifest:
			errs = append(errs, fmt.Errorf("%s served manifest %s, the advert says %s", p.Short(), h, pub.Manifest))
			continue
		}
		m, mh, cur = mm, h, i
		break
	}
	if m == nil {
		if errors.Is(errors.Join(errs...), exchange.ErrNotFound) && v != pub.Version {
			writeErr(w, fmt.Errorf("%s@%d: %w at any provider", ref.Dataset, v, exchange.ErrNotFound))
			return
		}
		writeErr(w, fmt.Errorf("%s@%d: %w: %w", ref.Dataset, v, exchange.ErrNoProvider, errors.Join(errs...)))
		return
	}
	rref := nii.Ref{Dataset: ref.Dataset, Version: m.Version}
	h := w.Header()
	h.Set("Trailer", TrailerError)
	h.Set("Content-Type", m.Meta.MediaType)
	h.Set("Nii-Ref", rref.String())
	h.Set("Nii-Size", strconv.FormatInt(m.Size, 10))
	h.Set("Nii-Manifest", mh.String())
	w.WriteHeader(http.StatusOK)

	done, failures := 0, 0
	for done < len(m.Chunks) {
		batch := m.Chunks[done:min(done+exchange.MaxChunksPerRequest, len(m.Chunks))]
		hashes := make([]nii.Hash, len(batch))
		for i, c := range batch {
			hashes[i] = c.Hash
		}
		missing := false
		err := n.host.FetchChunks(ctx, provs[cur], exchange.ChunkRequest{Manifest: mh, Hashes: hashes},
			func(_ nii.Hash, data []byte) error {
				if missing {
					return errChunkMissing // later chunks may not be written out of order
				}
				if _, err := w.Write(data); err != nil {
					return errClientGone{err}
				}
				done++
				return nil
			},
			func(nii.Hash) { missing = true })
		if err == nil && missing {
			err = errChunkMissing
		}
		if err == nil {
			failures = 0
			continue
		}
		var gone errClientGone
		if errors.As(err, &gone) || ctx.Err() != nil {
			return
		}
		n.log.Warn("relay: provider failed", slog.String(LogDataset, rref.String()), slog.String(LogErr, err.Error()))
		failures++
		if failures >= len(provs) {
			h.Set(TrailerError, fmt.Sprintf("relay of %s stopped after %d of %d chunks: every provider failed; last: %v", rref, done, len(m.Chunks), err))
			return
		}
		cur = (cur + 1) % len(provs)
	}
}
