package exchange

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/internal/niitest"
)

// catalogOrigin signs adverts as one origin node.
type catalogOrigin struct {
	key ed25519.PrivateKey
	id  nii.NodeID
}

func newCatalogOrigin(t testing.TB) catalogOrigin {
	t.Helper()
	key, id := niitest.Key(t)
	return catalogOrigin{key, id}
}

// advert returns a real signed advert with the given seq, padded with a
// description of pad bytes.
func (o catalogOrigin) advert(t testing.TB, seq uint64, pad int) *nii.SignedAdvert {
	t.Helper()
	a := &nii.Advert{
		Origin:   o.id,
		Seq:      seq,
		Dataset:  nii.DatasetID{Org: "greenwich", Name: fmt.Sprintf("spend-%d", seq)},
		Version:  1,
		Manifest: nii.HashOf(fmt.Appendf(nil, "manifest %d", seq)),
		Meta: nii.Metadata{
			Title: "Spend over £500", Publisher: "greenwich", Access: nii.AccessOpen,
			Description: strings.Repeat("d", pad),
		},
		Signed: time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC),
	}
	sa, err := nii.SignAdvert(a, o.key)
	if err != nil {
		t.Fatal(err)
	}
	return sa
}

// adverts returns signed adverts with seqs from, from+1, …, to.
func (o catalogOrigin) adverts(t testing.TB, from, to uint64, pad int) []*nii.SignedAdvert {
	var out []*nii.SignedAdvert
	for s := from; s <= to; s++ {
		out = append(out, o.advert(t, s, pad))
	}
	return out
}

// fakeCatalog is an in-memory CatalogSource.
type fakeCatalog struct {
	mu     sync.Mutex
	recs   map[nii.NodeID][]*nii.SignedAdvert // ascending seq
	seqs   map[*nii.SignedAdvert]uint64
	wm     map[nii.NodeID]uint64 // watermark per origin
	err    error
	extra  int // return this many records beyond limit (a misbehaving source)
	limits []int
}

func newFakeCatalog(recs ...*nii.SignedAdvert) *fakeCatalog {
	f := &fakeCatalog{recs: map[nii.NodeID][]*nii.SignedAdvert{}, seqs: map[*nii.SignedAdvert]uint64{}, wm: map[nii.NodeID]uint64{}}
	for _, r := range recs {
		a := mustOpen(r)
		f.recs[a.Origin] = append(f.recs[a.Origin], r)
		f.seqs[r] = a.Seq
		f.wm[a.Origin] = max(f.wm[a.Origin], a.Seq+1000) // distinct from any seq
	}
	return f
}

func mustOpen(r *nii.SignedAdvert) *nii.Advert {
	a, err := r.Open()
	if err != nil {
		panic(err)
	}
	return a
}

func (f *fakeCatalog) CatalogPage(origin nii.NodeID, after uint64, limit int) ([]*nii.SignedAdvert, bool, uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.limits = append(f.limits, limit)
	if f.err != nil {
		return nil, false, 0, f.err
	}
	var out []*nii.SignedAdvert
	for _, r := range f.recs[origin] {
		if f.seqs[r] > after {
			out = append(out, r)
		}
	}
	more := len(out) > limit
	out = out[:min(len(out), limit+f.extra)]
	return out, more, f.wm[origin], nil
}

func (f *fakeCatalog) lastLimit() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.limits) == 0 {
		return -1
	}
	return f.limits[len(f.limits)-1]
}

// pipeFetch runs one catalog exchange over net.Pipe.
func pipeFetch(src CatalogSource, origin nii.NodeID, after uint64, limit int) (recs []*nii.SignedAdvert, more bool, wm uint64, err, serverErr error) {
	c, s := net.Pipe()
	defer c.Close()
	errc := make(chan error, 1)
	go func() {
		defer s.Close()
		errc <- serveCatalog(s, "12D3KooWclient", src, nil)
	}()
	recs, more, wm, err = fetchCatalog(c, origin, after, limit, "")
	c.Close()
	return recs, more, wm, err, <-errc
}

// fetchAll pages through origin's records after after, limit at a time,
// and returns them, the size of each page, and the last page's watermark.
func fetchAll(t *testing.T, fetch func(after uint64) ([]*nii.SignedAdvert, bool, uint64, error), after uint64) (all []*nii.SignedAdvert, pages []int, wm uint64) {
	t.Helper()
	for range 1000 {
		recs, more, w, err := fetch(after)
		if err != nil {
			t.Fatalf("page %d: %v", len(pages), err)
		}
		pages = append(pages, len(recs))
		all = append(all, recs...)
		if !more {
			return all, pages, w
		}
		after = mustOpen(recs[len(recs)-1]).Seq
	}
	t.Fatal("more than 1000 pages")
	return nil, nil, 0
}

func sameRecords(t *testing.T, got, want []*nii.SignedAdvert) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d records, want %d", len(got), len(want))
	}
	for i := range got {
		if !bytes.Equal(got[i].Body, want[i].Body) || !bytes.Equal(got[i].Sig, want[i].Sig) {
			t.Fatalf("record %d differs", i)
		}
		if _, err := got[i].Open(); err != nil {
			t.Fatalf("record %d does not verify: %v", i, err)
		}
	}
}

func TestCatalogExchange(t *testing.T) {
	o := newCatalogOrigin(t)
	other := newCatalogOrigin(t)
	big := newCatalogOrigin(t)
	recs := o.adverts(t, 1, 25, 0)
	bigRecs := big.adverts(t, 1, 200, 8<<10) // ~8.6 KiB each, ~1.7 MiB in all
	src := newFakeCatalog(append(append(slices.Clone(recs), other.adverts(t, 1, 3, 0)...), bigRecs...)...)

	for _, tc := range []struct {
		name      string
		origin    nii.NodeID
		after     uint64
		limit     int
		want      []*nii.SignedAdvert
		wantMore  bool
		wantLimit int // as the source saw it
	}{
		{"empty: unknown origin", newCatalogOrigin(t).id, 0, 10, nil, false, 10},
		{"empty: nothing after", o.id, 25, 10, nil, false, 10},
		{"one page", o.id, 20, 10, recs[20:], false, 10},
		{"exactly limit", o.id, 15, 10, recs[15:], false, 10},
		{"first of several pages", o.id, 0, 10, recs[:10], true, 10},
		{"middle page", o.id, 10, 10, recs[10:20], true, 10},
		{"limit 0 clamps to 1", o.id, 0, 0, recs[:1], true, 1},
		{"negative limit clamps to 1", o.id, 3, -7, recs[3:4], true, 1},
		{"limit clamps to 500", o.id, 0, 100000, recs, false, 500},
		{"other origin", other.id, 1, 10, src.recs[other.id][1:], false, 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, more, wm, err, serr := pipeFetch(src, tc.origin, tc.after, tc.limit)
			if err != nil || serr != nil {
				t.Fatalf("client: %v; server: %v", err, serr)
			}
			if wm != src.wm[tc.origin] {
				t.Fatalf("watermark %d, want %d", wm, src.wm[tc.origin])
			}
			sameRecords(t, got, tc.want)
			if more != tc.wantMore {
				t.Fatalf("more = %v, want %v", more, tc.wantMore)
			}
			if l := src.lastLimit(); l != tc.wantLimit {
				t.Fatalf("source asked for %d records, want %d", l, tc.wantLimit)
			}
		})
	}

	t.Run("multiple pages", func(t *testing.T) {
		all, pages, wm := fetchAll(t, func(after uint64) ([]*nii.SignedAdvert, bool, uint64, error) {
			recs, more, wm, err, serr := pipeFetch(src, o.id, after, 10)
			if serr != nil {
				t.Fatal(serr)
			}
			return recs, more, wm, err
		}, 0)
		sameRecords(t, all, recs)
		if wm != 1025 {
			t.Fatalf("watermark %d", wm)
		}
		if !slices.Equal(pages, []int{10, 10, 5}) {
			t.Fatalf("pages %v", pages)
		}
	})

	t.Run("1 MiB byte cap", func(t *testing.T) {
		got, more, _, err, serr := pipeFetch(src, big.id, 0, 500)
		if err != nil || serr != nil {
			t.Fatalf("client: %v; server: %v", err, serr)
		}
		if !more || len(got) == 0 || len(got) >= len(bigRecs) {
			t.Fatalf("got %d of %d records, more = %v: want a partial page", len(got), len(bigRecs), more)
		}
		size := 0
		for _, r := range got {
			b, _ := nii.EncodeSignedAdvert(r)
			size += len(b)
		}
		if size > maxCatalogPageBytes || size < maxCatalogPageBytes-(20<<10) {
			t.Fatalf("page holds %d bytes of records, want just under %d", size, maxCatalogPageBytes)
		}
		all, pages, _ := fetchAll(t, func(after uint64) ([]*nii.SignedAdvert, bool, uint64, error) {
			recs, more, wm, err, serr := pipeFetch(src, big.id, after, 500)
			if serr != nil {
				t.Fatal(serr)
			}
			return recs, more, wm, err
		}, 0)
		sameRecords(t, all, bigRecs)
		if len(pages) != 2 {
			t.Fatalf("pages %v, want 2", pages)
		}
	})
}

func TestCatalogSourceErrors(t *testing.T) {
	o := newCatalogOrigin(t)
	for _, tc := range []struct {
		name     string
		err      error
		code     string
		msg      string
		sentinel error
	}{
		{"not found", fmt.Errorf("origin %s: %w", o.id.Short(), ErrNotFound), codeNotFound, "origin " + o.id.Short() + ": not found", ErrNotFound},
		{"refused", fmt.Errorf("not a member: %w", ErrRefused), codeRefused, "not a member: refused", ErrRefused},
		{"unavailable", fmt.Errorf("closing: %w", ErrUnavailable), codeUnavailable, "closing: unavailable", ErrUnavailable},
		{"internal", errors.New("badger: value log truncated at /srv/nii/db"), codeInternal, "internal error", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := newFakeCatalog()
			src.err = tc.err
			_, _, _, err, serr := pipeFetch(src, o.id, 0, 10)
			var we *wireError
			if !errors.As(err, &we) || we.Code != tc.code || we.Message != tc.msg {
				t.Fatalf("client got %v (%#v), want %s %q", err, we, tc.code, tc.msg)
			}
			if !errors.Is(err, ErrRemote) || (tc.sentinel != nil && !errors.Is(err, tc.sentinel)) {
				t.Fatalf("client error %v does not match its sentinels", err)
			}
			// The server reports the source's error, having answered.
			var ans *answeredError
			if !errors.As(serr, &ans) || ans.code != tc.code || !errors.Is(serr, tc.err) {
				t.Fatalf("server returned %v", serr)
			}
		})
	}
}

// A source that returns more records than asked for is cut to the limit.
func TestCatalogServerTrimsSource(t *testing.T) {
	o := newCatalogOrigin(t)
	src := newFakeCatalog(o.adverts(t, 1, 10, 0)...)
	src.extra = 5
	got, more, _, err, serr := pipeFetch(src, o.id, 0, 3)
	if err != nil || serr != nil {
		t.Fatalf("client: %v; server: %v", err, serr)
	}
	if len(got) != 3 || !more {
		t.Fatalf("got %d records, more = %v", len(got), more)
	}
}

// rawCatalogRequest sends payload as the request frame and returns the
// server's status, and its page if OK.
func rawCatalogRequest(t *testing.T, src CatalogSource, frame []byte) (*catalogPage, error, error) {
	t.Helper()
	c, s := net.Pipe()
	defer c.Close()
	errc := make(chan error, 1)
	go func() {
		defer s.Close()
		errc <- serveCatalog(s, "12D3KooWclient", src, nil)
	}()
	go func() { _, _ = c.Write(frame) }()
	var page catalogPage
	err := readResponse(newReader(c), maxCatalogResponse, &page)
	c.Close()
	serr := <-errc
	if err != nil {
		return nil, err, serr
	}
	return &page, nil, serr
}

func encodeFrame(t *testing.T, v any) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := writeMsg(&buf, v); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestCatalogServerRequests(t *testing.T) {
	o := newCatalogOrigin(t)
	src := newFakeCatalog(o.adverts(t, 1, 600, 0)...)

	// The server clamps whatever limit a client sends.
	for _, tc := range []struct{ sent, seen, records int }{
		{0, 1, 1}, {-1000, 1, 1}, {1, 1, 1}, {500, 500, 500}, {501, 500, 500}, {1 << 40, 500, 500},
	} {
		page, err, serr := rawCatalogRequest(t, src, encodeFrame(t, &catalogRequest{Origin: o.id, Limit: tc.sent}))
		if err != nil || serr != nil {
			t.Fatalf("limit %d: client %v, server %v", tc.sent, err, serr)
		}
		if l := src.lastLimit(); l != tc.seen || len(page.Records) != tc.records || !page.More {
			t.Fatalf("limit %d: source saw %d, page has %d records, more %v", tc.sent, l, len(page.Records), page.More)
		}
	}

	// Bad requests get bad_request.
	big := append(binaryUvarint(maxCatalogRequest+1), make([]byte, maxCatalogRequest+1)...)
	for _, tc := range []struct {
		name  string
		frame []byte
	}{
		{"garbage", append([]byte{5}, "hello"...)},
		{"unknown field", encodeFrame(t, &struct {
			Origin nii.NodeID `cbor:"1,keyasint"`
			X      int        `cbor:"9,keyasint"`
		}{o.id, 1})},
		{"bad origin", encodeFrame(t, &catalogRequest{Origin: "greenwich", Limit: 5})},
		{"no origin", encodeFrame(t, &catalogRequest{Limit: 5})},
		{"negative after", encodeFrame(t, &struct {
			Origin nii.NodeID `cbor:"1,keyasint"`
			After  int        `cbor:"2,keyasint"`
		}{o.id, -1})},
		{"too large", big},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err, serr := rawCatalogRequest(t, src, tc.frame)
			var we *wireError
			if !errors.As(err, &we) || we.Code != codeBadRequest || we.Message == "" {
				t.Fatalf("client got %v", err)
			}
			var ans *answeredError
			if !errors.As(serr, &ans) {
				t.Fatalf("server returned %v", serr)
			}
		})
	}

	// A client that hangs up without a request is no answer, just an error.
	c, s := net.Pipe()
	c.Close()
	if err := serveCatalog(s, "12D3KooWclient", src, nil); err == nil || errors.As(err, new(*answeredError)) {
		t.Fatalf("hang-up: %v", err)
	}
}

func binaryUvarint(x uint64) []byte {
	var b [maxVarintLen]byte
	return b[:putUvarint(b[:], x)]
}

// scriptedServer answers one request with the given status and page.
func scriptedFetch(t *testing.T, origin nii.NodeID, after uint64, limit int, respond func(w io.Writer) error) ([]*nii.SignedAdvert, bool, error) {
	t.Helper()
	c, s := net.Pipe()
	defer c.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer s.Close()
		var req catalogRequest
		if err := readMsg(s, maxCatalogRequest, &req); err != nil {
			t.Errorf("scripted server: %v", err)
			return
		}
		_ = respond(s)
	}()
	recs, more, _, err := fetchCatalog(c, origin, after, limit, "")
	c.Close()
	<-done
	return recs, more, err
}

func TestCatalogClientChecks(t *testing.T) {
	o := newCatalogOrigin(t)
	other := newCatalogOrigin(t)
	enc := func(rs ...*nii.SignedAdvert) [][]byte {
		out := [][]byte{}
		for _, r := range rs {
			b, err := nii.EncodeSignedAdvert(r)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, b)
		}
		return out
	}
	page := func(p catalogPage) func(io.Writer) error {
		return func(w io.Writer) error { return writeOK(w, &p) }
	}
	a1, a2, a3 := o.advert(t, 1, 0), o.advert(t, 2, 0), o.advert(t, 3, 0)
	forged := *a2
	forged.Sig = bytes.Clone(a2.Sig)
	forged.Sig[0] ^= 1
	notAdvert, _ := nii.EncodeSignedAdvert(&nii.SignedAdvert{Body: []byte("not cbor"), Sig: a1.Sig})

	for _, tc := range []struct {
		name    string
		after   uint64
		limit   int
		respond func(io.Writer) error
		want    error // nil: must succeed
	}{
		{"good", 0, 10, page(catalogPage{Records: enc(a1, a2, a3)}), nil},
		{"bad signature passes (the registry verifies)", 0, 10, page(catalogPage{Records: enc(a1, &forged)}), nil},
		{"out of order", 0, 10, page(catalogPage{Records: enc(a1, a3, a2)}), ErrMalformed},
		{"duplicate seq", 0, 10, page(catalogPage{Records: enc(a1, a1)}), ErrMalformed},
		{"not after after", 1, 10, page(catalogPage{Records: enc(a1, a2)}), ErrMalformed},
		{"another origin", 0, 10, page(catalogPage{Records: enc(a1, other.advert(t, 2, 0))}), ErrMalformed},
		{"record not a signed advert", 0, 10, page(catalogPage{Records: [][]byte{[]byte("junk")}}), ErrMalformed},
		{"body not an advert", 0, 10, page(catalogPage{Records: [][]byte{notAdvert}}), ErrMalformed},
		{"more records than asked", 0, 2, page(catalogPage{Records: enc(a1, a2, a3)}), ErrMalformed},
		{"more without records", 0, 10, page(catalogPage{More: true}), ErrMalformed},
		{"garbage page", 0, 10, func(w io.Writer) error {
			if err := writeMsg(w, &status{OK: true}); err != nil {
				return err
			}
			return writeFrame(w, []byte{0xa1, 0x01, 0x05})
		}, ErrMalformed},
		{"page over 2 MiB", 0, 10, func(w io.Writer) error {
			if err := writeMsg(w, &status{OK: true}); err != nil {
				return err
			}
			_, err := w.Write(binaryUvarint(maxCatalogResponse + 1))
			return err
		}, ErrFrameTooLarge},
		{"hang up before status", 0, 10, func(io.Writer) error { return nil }, io.ErrUnexpectedEOF},
		{"hang up before page", 0, 10, func(w io.Writer) error { return writeMsg(w, &status{OK: true}) }, io.ErrUnexpectedEOF},
		{"error status", 0, 10, func(w io.Writer) error {
			return writeError(w, &wireError{Code: codeRefused, Message: "no"})
		}, ErrRefused},
	} {
		t.Run(tc.name, func(t *testing.T) {
			recs, _, err := scriptedFetch(t, o.id, tc.after, tc.limit, tc.respond)
			if tc.want == nil {
				if err != nil || len(recs) == 0 {
					t.Fatalf("got %d records, %v", len(recs), err)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if recs != nil {
				t.Fatal("records returned with an error")
			}
		})
	}

	if _, _, _, err := fetchCatalog(&bytes.Buffer{}, "greenwich", 0, 10, ""); !errors.Is(err, nii.ErrInvalid) {
		t.Fatalf("invalid origin: %v", err)
	}
}
