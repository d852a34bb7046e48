package exchange

// The catalog protocol, /nii/catalog/1.0.0: "send me origin O's catalog
// records after sequence number S". It is how a node catches up on the
// records gossip did not bring it (Syncthing's delta index idea: each origin
// numbers what it signs, so one number per origin says what a node has).
//
//	client → server  catalogRequest {1: origin, 2: after, 3: limit,    ≤ 16 KiB
//	                 4: credential (optional)}
//	server → client  status {1: ok, 2: code, 3: message}                ≤ 4 KiB
//	server → client  catalogPage {1: records, 2: more, 3: watermark}   ≤ 2 MiB
//	                 (if ok)
//
// Records are encoded nii.SignedAdverts of the origin, in strictly
// ascending Seq order, all above after; at most limit (clamped to [1, 500])
// of them, and no more than fit in 1 MiB. More says there are further
// records: ask again after the last Seq received. Watermark is the server's
// watermark for the origin: it holds every record of the origin up to that
// seq (or the newer records that superseded them), so a client that has
// fetched every page may adopt it. docs/protocol.md has the details.

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/nii-uk/nii"
)

// catalogProtocol is the protocol ID of the catalog protocol.
const catalogProtocol protocol.ID = "/nii/catalog/1.0.0"

// Catalog protocol limits.
const (
	maxCatalogRequest  = 16 << 10 // request frame: room for a membership credential
	maxCatalogResponse = 2 << 20  // page frame
	// maxCatalogPageBytes is what a server puts in one page at most
	// (records and their CBOR headers); half the frame limit, so an
	// encoder's overhead can never push a page over it.
	maxCatalogPageBytes = 1 << 20
	// maxCatalogLimit and minCatalogLimit bound the records in one page;
	// servers clamp a request's limit to them.
	maxCatalogLimit = 500
	minCatalogLimit = 1
	// catalogRecordOverhead is what one record adds to a page besides its
	// bytes: at most a 9-byte CBOR byte-string header.
	catalogRecordOverhead = 9
	// catalogPageOverhead covers the page's map, keys, array header and
	// More flag.
	catalogPageOverhead = 16
)

// catalogRequest asks for origin's records with Seq > After, at most Limit.
type catalogRequest struct {
	Origin nii.NodeID `cbor:"1,keyasint"`
	After  uint64     `cbor:"2,keyasint"`
	Limit  int        `cbor:"3,keyasint"`
	Cred   string     `cbor:"4,keyasint,omitempty"` // the requester's membership credential
}

// catalogPage is the response: encoded signed adverts in ascending Seq
// order, whether more follow, and the server's watermark for the origin.
type catalogPage struct {
	Records   [][]byte `cbor:"1,keyasint"`
	More      bool     `cbor:"2,keyasint"`
	Watermark uint64   `cbor:"3,keyasint"`
}

// CatalogSource is what a node serves catalog pages from (package node
// wires the registry in).
//
// CatalogPage returns origin's records with Seq > after in ascending Seq
// order, at most limit of them, whether there are more, and the source's
// watermark for origin (every record of origin up to that seq is held, or
// was superseded by one that is). An unknown origin is an empty page with
// watermark 0, not an error. Errors wrapping nii.ErrNotFound,
// nii.ErrRefused or nii.ErrUnavailable reach the client with that code and their
// text; any other error reaches it only as "internal error".
type CatalogSource interface {
	CatalogPage(origin nii.NodeID, after uint64, limit int) (recs []*nii.SignedAdvert, more bool, watermark uint64, err error)
}

// ServeCatalog serves the catalog protocol from src to every peer the
// Admitter admits (the catalog is public inside the federation, not
// outside it; the transport has already authenticated the peer). A nil src
// stops serving it.
func (h *Host) ServeCatalog(src CatalogSource) {
	if src == nil {
		h.removeHandler(catalogProtocol)
		return
	}
	h.setHandler(catalogProtocol, maxCatalogResponse, func(rw io.ReadWriter, remote nii.NodeID) error {
		return serveCatalog(rw, remote, src, h.admission)
	})
}

// FetchCatalogPage asks node from for origin's catalog records with Seq
// greater than after, at most limit (clamped to [1, 500]) of them. more
// reports that further records follow: ask again after the last record's
// Seq. watermark is from's watermark for origin: once every page has been
// fetched (more is false), the caller holds what from held up to it.
//
// The records are checked to decode, to name origin, and to come in
// strictly ascending Seq order above after; anything else is an error
// wrapping ErrMalformed. Their signatures are NOT verified here: the caller
// (the registry) opens each record, verifies it and counts rejects, since
// from may relay another origin's records and only the origin's signature
// makes them true.
//
// The exchange is bounded by ctx and by a 30 s deadline. Errors wrap
// ErrUnreachable (no connection to from), ErrNotSupported (from does not
// serve the catalog), ErrRemote (from answered with an error status, e.g.
// nii.ErrNotFound), ErrMalformed, or the context's error.
func (h *Host) FetchCatalogPage(ctx context.Context, from, origin nii.NodeID, after uint64, limit int) (recs []*nii.SignedAdvert, more bool, watermark uint64, err error) {
	if err := origin.Validate(); err != nil {
		return nil, false, 0, fmt.Errorf("fetch catalog: origin: %w", err)
	}
	err = h.request(ctx, from, catalogProtocol, maxCatalogResponse, func(rw io.ReadWriter) error {
		var err error
		recs, more, watermark, err = fetchCatalog(rw, origin, after, limit, h.ownCredential())
		return err
	})
	if err != nil {
		return nil, false, 0, fmt.Errorf("fetch catalog of %s after %d from %s: %w", origin.Short(), after, from.Short(), err)
	}
	return recs, more, watermark, nil
}

// clampCatalogLimit clamps a requested page size to [1, 500].
func clampCatalogLimit(limit int) int {
	return min(max(limit, minCatalogLimit), maxCatalogLimit)
}

// serveCatalog answers one catalog request read from rw with a page from
// src. remote is the authenticated requesting node. It returns an error if
// the exchange failed; an *answeredError if the client was told why.
func serveCatalog(rw io.ReadWriter, remote nii.NodeID, src CatalogSource, admit func(Admission) error) error {
	var req catalogRequest
	if err := readMsg(rw, maxCatalogRequest, &req); err != nil {
		err = fmt.Errorf("catalog request from %s: %w", remote.Short(), err)
		if errors.Is(err, ErrMalformed) || errors.Is(err, ErrFrameTooLarge) {
			return answer(rw, badRequest("%v", err), err)
		}
		return err
	}
	if admit != nil {
		if err := admit(Admission{Remote: remote, Credential: req.Cred, Protocol: "catalog", What: string(req.Origin)}); err != nil {
			return refuseStranger(rw, remote, "catalog", err)
		}
	}
	if err := req.Origin.Validate(); err != nil {
		return answer(rw, badRequest("origin: %v", err), fmt.Errorf("catalog request from %s: %w", remote.Short(), err))
	}
	limit := clampCatalogLimit(req.Limit)
	recs, more, wm, err := src.CatalogPage(req.Origin, req.After, limit)
	if err != nil {
		return answer(rw, toWireError(err), fmt.Errorf("catalog page of %s after %d: %w", req.Origin.Short(), req.After, err))
	}
	page := catalogPage{Records: make([][]byte, 0, min(len(recs), limit)), More: more, Watermark: wm}
	size := catalogPageOverhead
	for i, r := range recs {
		if i == limit {
			page.More = true
			break
		}
		if r == nil {
			return answer(rw, internalError(), fmt.Errorf("catalog page of %s: source returned a nil record", req.Origin.Short()))
		}
		b, err := nii.EncodeSignedAdvert(r)
		if err == nil && len(b) > nii.MaxAdvertSize+128 {
			err = fmt.Errorf("%d bytes is over the advert limit", len(b))
		}
		if err != nil {
			return answer(rw, internalError(), fmt.Errorf("catalog page of %s: record %d: %w", req.Origin.Short(), i, err))
		}
		if size+len(b)+catalogRecordOverhead > maxCatalogPageBytes && len(page.Records) > 0 {
			page.More = true
			break
		}
		size += len(b) + catalogRecordOverhead
		page.Records = append(page.Records, b)
	}
	return writeOK(rw, &page)
}

// fetchCatalog sends one catalog request over rw and reads the page: the
// records, whether more follow, and the server's watermark. It checks that
// each record decodes, names origin and comes in strictly ascending Seq
// order above after, but does not verify signatures.
func fetchCatalog(rw io.ReadWriter, origin nii.NodeID, after uint64, limit int, cred string) ([]*nii.SignedAdvert, bool, uint64, error) {
	if err := origin.Validate(); err != nil {
		return nil, false, 0, err
	}
	limit = clampCatalogLimit(limit)
	if err := writeMsg(rw, &catalogRequest{Origin: origin, After: after, Limit: limit, Cred: cred}); err != nil {
		return nil, false, 0, fmt.Errorf("send catalog request: %w", err)
	}
	if cw, ok := rw.(interface{ CloseWrite() error }); ok {
		// The request is complete. (Failure shows up in the read below.)
		_ = cw.CloseWrite()
	}
	var page catalogPage
	if err := readResponse(newReader(rw), maxCatalogResponse, &page); err != nil {
		return nil, false, 0, err
	}
	if len(page.Records) > limit {
		return nil, false, 0, fmt.Errorf("%w: catalog page has %d records, asked for %d", ErrMalformed, len(page.Records), limit)
	}
	if page.More && len(page.Records) == 0 {
		return nil, false, 0, fmt.Errorf("%w: empty catalog page says there is more", ErrMalformed)
	}
	recs := make([]*nii.SignedAdvert, 0, len(page.Records))
	prev := after
	for i, b := range page.Records {
		sa, err := nii.DecodeSignedAdvert(b)
		if err != nil {
			return nil, false, 0, fmt.Errorf("%w: catalog record %d: %v", ErrMalformed, i, err)
		}
		var a nii.Advert
		if len(sa.Body) > nii.MaxAdvertSize {
			return nil, false, 0, fmt.Errorf("%w: catalog record %d: body of %d bytes", ErrMalformed, i, len(sa.Body))
		}
		if err := nii.Unmarshal(sa.Body, &a); err != nil {
			return nil, false, 0, fmt.Errorf("%w: catalog record %d: advert: %v", ErrMalformed, i, err)
		}
		if a.Origin != origin {
			return nil, false, 0, fmt.Errorf("%w: catalog record %d is from %s, asked for %s", ErrMalformed, i, a.Origin.Short(), origin.Short())
		}
		if a.Seq <= prev {
			return nil, false, 0, fmt.Errorf("%w: catalog record %d has seq %d after %d: not ascending", ErrMalformed, i, a.Seq, prev)
		}
		prev = a.Seq
		recs = append(recs, sa)
	}
	return recs, page.More, page.Watermark, nil
}
