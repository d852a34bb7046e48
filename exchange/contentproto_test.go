package exchange

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/exchange/chunker"
	"github.com/nii-uk/nii/internal/niitest"
)

// testRemote is the node ID the pipe tests' server sees as the client.
const testRemote nii.NodeID = "12D3KooWclient"

// smallChunks cuts content into ~8 KiB chunks, so a few MiB make hundreds of
// chunks and many batches.
var smallChunks = chunker.Params{Min: 2 << 10, Avg: 8 << 10, Max: 32 << 10}

func openStoreWith(t *testing.T, p chunker.Params) *Store {
	t.Helper()
	s, err := NewStore(niitest.DiskDB(t), p)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// publishAccess is publish with the given access level.
func publishAccess(t *testing.T, s *Store, sg signer, d nii.DatasetID, data []byte, access nii.Access) *VersionRecord {
	t.Helper()
	chunks, size, err := s.Ingest(context.Background(), bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	rec, err := s.Publish(d, func(v uint64) (*nii.SignedManifest, error) {
		sm, _, err := nii.SignManifest(&nii.Manifest{
			Dataset: d, Version: v, Publisher: sg.id, Created: time.Now().UTC(), Size: size,
			Chunker: s.ChunkParams().String(), Chunks: chunks, Meta: nii.Metadata{Title: "t", Access: access},
		}, sg.key)
		return sm, err
	})
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

func mustManifest(t *testing.T, s *Store, rec *VersionRecord) *nii.Manifest {
	t.Helper()
	m, err := s.OpenManifest(rec)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// distinctChunks returns m's chunk hashes without repeats, in manifest order.
func distinctChunks(m *nii.Manifest) []nii.Hash {
	seen := map[nii.Hash]bool{}
	var out []nii.Hash
	for _, c := range m.Chunks {
		if !seen[c.Hash] {
			seen[c.Hash] = true
			out = append(out, c.Hash)
		}
	}
	return out
}

// authCall records one Authorizer call.
type authCall struct {
	remote nii.NodeID
	ref    nii.Ref
	action nii.Action
	grant  string
}

// recordingAuth is an Authorizer that records its calls and refuses with
// err if set.
type recordingAuth struct {
	mu    sync.Mutex
	calls []authCall
	err   error
}

func (a *recordingAuth) authorize(r AccessRequest) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls = append(a.calls, authCall{r.Remote, r.Manifest.Ref(), r.Action, r.Grant})
	return a.err
}

func (a *recordingAuth) last() authCall {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.calls) == 0 {
		return authCall{}
	}
	return a.calls[len(a.calls)-1]
}

// pipeManifest runs one manifest exchange over net.Pipe.
func pipeManifest(cs *contentServer, req ManifestRequest) (m *nii.Manifest, h nii.Hash, sm *nii.SignedManifest, err, serverErr error) {
	c, s := net.Pipe()
	defer c.Close()
	errc := make(chan error, 1)
	go func() {
		defer s.Close()
		errc <- serveManifest(s, testRemote, cs)
	}()
	m, h, sm, err = fetchManifest(c, req)
	c.Close()
	return m, h, sm, err, <-errc
}

// pipeChunks runs one chunk exchange over net.Pipe.
func pipeChunks(cs *contentServer, req ChunkRequest, fn func(nii.Hash, []byte) error, missing func(nii.Hash)) (err, serverErr error) {
	c, s := net.Pipe()
	defer c.Close()
	errc := make(chan error, 1)
	go func() {
		defer s.Close()
		errc <- serveChunks(s, testRemote, cs)
	}()
	err = fetchChunks(c, req, fn, missing)
	c.Close()
	return err, <-errc
}

// scripted runs client over net.Pipe against a server that reads one
// request of at most max bytes into req and then runs respond.
func scripted(t *testing.T, max int, req any, respond func(w io.Writer) error, client func(rw io.ReadWriter) error) error {
	t.Helper()
	c, s := net.Pipe()
	defer c.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer s.Close()
		if err := readMsg(s, max, req); err != nil {
			t.Errorf("scripted server: %v", err)
			return
		}
		_ = respond(s)
	}()
	err := client(c)
	c.Close()
	<-done
	return err
}

// wireCode returns the status code of an error status, or "".
func wireCode(err error) string {
	var we *wireError
	if errors.As(err, &we) {
		return we.Code
	}
	return ""
}

// fakeContent is a ContentSource over a real store that can misbehave.
type fakeContent struct {
	*Store
	mu         sync.Mutex
	versionErr error                            // Version fails with this
	record     *VersionRecord                   // Version returns this instead
	corrupt    map[nii.Hash]bool                // Chunk returns these with a byte flipped
	missing    map[nii.Hash]bool                // Chunk says ErrNotFound for these
	chunkErr   error                            // Chunk fails with this
	manifests  int                              // Manifest calls
	chunks     map[nii.Hash]int                 // Chunk calls per hash
	override   map[nii.Hash][]byte              // Chunk returns these bytes instead
	signed     map[nii.Hash]*nii.SignedManifest // Manifest returns these instead
}

func newFakeContent(s *Store) *fakeContent {
	return &fakeContent{Store: s, corrupt: map[nii.Hash]bool{}, missing: map[nii.Hash]bool{}, chunks: map[nii.Hash]int{},
		override: map[nii.Hash][]byte{}, signed: map[nii.Hash]*nii.SignedManifest{}}
}

func (f *fakeContent) Version(r nii.Ref) (*VersionRecord, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.versionErr != nil {
		return nil, f.versionErr
	}
	if f.record != nil {
		return f.record, nil
	}
	return f.Store.Version(r)
}

func (f *fakeContent) Manifest(h nii.Hash) (*nii.SignedManifest, error) {
	f.mu.Lock()
	f.manifests++
	sm := f.signed[h]
	f.mu.Unlock()
	if sm != nil {
		return sm, nil
	}
	return f.Store.Manifest(h)
}

func (f *fakeContent) Chunk(h nii.Hash) ([]byte, error) {
	f.mu.Lock()
	f.chunks[h]++
	corrupt, missing, err, b := f.corrupt[h], f.missing[h], f.chunkErr, f.override[h]
	f.mu.Unlock()
	switch {
	case err != nil:
		return nil, err
	case missing:
		return nil, fmt.Errorf("chunk %s: %w", h, ErrNotFound)
	case b != nil:
		return b, nil
	}
	data, err := f.Store.Chunk(h)
	if err == nil && corrupt {
		data[len(data)/2] ^= 0x01
	}
	return data, err
}

func (f *fakeContent) manifestCalls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.manifests
}

var (
	spend    = nii.DatasetID{Org: "greenwich", Name: "spend"}
	sensors  = nii.DatasetID{Org: "greenwich", Name: "sensors"}
	children = nii.DatasetID{Org: "greenwich", Name: "children-social-care"}
)

func TestManifestFetch(t *testing.T) {
	s, _ := openStore(t)
	sg := newSigner(t)
	v1 := publish(t, s, sg, spend, randBytes(1, 200<<10))
	v2 := publish(t, s, sg, spend, randBytes(2, 300<<10))
	auth := &recordingAuth{}
	cs := newContentServer(s, auth.authorize, nil)

	for _, tc := range []struct {
		name    string
		req     ManifestRequest
		want    *VersionRecord
		action  nii.Action
		grantIn string
	}{
		{"latest", ManifestRequest{Dataset: spend}, v2, "read", ""},
		{"version 1", ManifestRequest{Dataset: spend, Version: 1}, v1, "read", ""},
		{"version 2 to follow, with a grant", ManifestRequest{Dataset: spend, Version: 2, Action: "sync", Grant: "eyJhbGciOiJFZERTQSJ9.e30.c2ln"}, v2, "sync", "eyJhbGciOiJFZERTQSJ9.e30.c2ln"},
		{"read explicitly", ManifestRequest{Dataset: spend, Action: "read"}, v2, "read", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, h, sm, err, serr := pipeManifest(cs, tc.req)
			if err != nil || serr != nil {
				t.Fatalf("client: %v; server: %v", err, serr)
			}
			if m.Ref() != tc.want.Ref || h != tc.want.Manifest || m.Size != tc.want.Size || len(m.Chunks) != tc.want.Chunks || m.Publisher != sg.id {
				t.Fatalf("got %s (%s, %d bytes, %d chunks), want %s (%s, %d bytes, %d chunks)",
					m.Ref(), shortHash(h), m.Size, len(m.Chunks), tc.want.Ref, shortHash(tc.want.Manifest), tc.want.Size, tc.want.Chunks)
			}
			stored, err := s.Manifest(tc.want.Manifest)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(sm.Body, stored.Body) || !bytes.Equal(sm.Sig, stored.Sig) {
				t.Fatal("signed manifest differs from the stored one")
			}
			if got := auth.last(); got != (authCall{testRemote, tc.want.Ref, tc.action, tc.grantIn}) {
				t.Fatalf("authorizer called with %+v", got)
			}
		})
	}
}

func TestManifestNotFound(t *testing.T) {
	s, _ := openStore(t)
	sg := newSigner(t)
	publish(t, s, sg, spend, randBytes(1, 10<<10))
	cs := newContentServer(s, nil, nil)
	for _, tc := range []struct {
		name string
		req  ManifestRequest
		text string
	}{
		{"unknown dataset", ManifestRequest{Dataset: sensors}, "dataset greenwich/sensors: not found"},
		{"unknown dataset and version", ManifestRequest{Dataset: sensors, Version: 3}, "dataset greenwich/sensors: not found"},
		{"unknown version", ManifestRequest{Dataset: spend, Version: 9}, "version greenwich/spend@9: not found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, _, sm, err, serr := pipeManifest(cs, tc.req)
			if !errors.Is(err, ErrNotFound) || !errors.Is(err, ErrRemote) || m != nil || sm != nil {
				t.Fatalf("err = %v, want a not_found status", err)
			}
			if !strings.Contains(err.Error(), tc.text) {
				t.Fatalf("error %q does not say %q", err, tc.text)
			}
			var ans *answeredError
			if !errors.As(serr, &ans) || ans.code != codeNotFound {
				t.Fatalf("server: %v", serr)
			}
		})
	}
}

func TestManifestRefused(t *testing.T) {
	s, _ := openStore(t)
	sg := newSigner(t)
	publish(t, s, sg, spend, randBytes(1, 10<<10))
	publishAccess(t, s, sg, children, randBytes(2, 10<<10), nii.AccessRestricted)

	auth := &recordingAuth{err: errors.New("grant: no read on greenwich/spend for this node")}
	_, _, sm, err, serr := pipeManifest(newContentServer(s, auth.authorize, nil), ManifestRequest{Dataset: spend, Grant: "tok"})
	if !errors.Is(err, ErrRefused) || !errors.Is(err, ErrRemote) || sm != nil {
		t.Fatalf("err = %v, want refused", err)
	}
	if !strings.Contains(err.Error(), "grant: no read on greenwich/spend for this node") {
		t.Fatalf("error %q does not carry the Authorizer's text", err)
	}
	if !errors.Is(serr, ErrRefused) {
		t.Fatalf("server error %v does not wrap ErrRefused", serr)
	}
	if got := auth.last(); got.grant != "tok" || got.action != "read" || got.ref != (nii.Ref{Dataset: spend, Version: 1}) {
		t.Fatalf("authorizer saw %+v", got)
	}

	// Without an Authorizer, open versions are served and restricted ones
	// refused: a restricted manifest lists chunk hashes.
	cs := newContentServer(s, nil, nil)
	if _, _, _, err, _ := pipeManifest(cs, ManifestRequest{Dataset: spend}); err != nil {
		t.Fatalf("open dataset without an Authorizer: %v", err)
	}
	_, _, _, err, _ = pipeManifest(cs, ManifestRequest{Dataset: children})
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "restricted") {
		t.Fatalf("restricted dataset without an Authorizer: %v", err)
	}
}

func TestManifestServerErrors(t *testing.T) {
	s, _ := openStore(t)
	sg := newSigner(t)
	publish(t, s, sg, spend, randBytes(1, 10<<10))
	other := publish(t, s, sg, sensors, randBytes(2, 10<<10))

	// A store failure is "internal error", with no detail on the wire.
	src := newFakeContent(s)
	src.versionErr = errors.New("badger: value log /var/lib/nii/000001.vlog truncated")
	_, _, _, err, serr := pipeManifest(newContentServer(src, nil, nil), ManifestRequest{Dataset: spend})
	if wireCode(err) != codeInternal || strings.Contains(err.Error(), "vlog") {
		t.Fatalf("store failure: %v", err)
	}
	if serr == nil || !strings.Contains(serr.Error(), "vlog") {
		t.Fatalf("server error %v does not keep the cause for the log", serr)
	}

	// A source whose record names another dataset's manifest is not passed
	// on: the server checks what it serves.
	src = newFakeContent(s)
	src.record = other
	_, _, _, err, serr = pipeManifest(newContentServer(src, nil, nil), ManifestRequest{Dataset: spend})
	if wireCode(err) != codeInternal || !errors.Is(serr, ErrCorrupt) {
		t.Fatalf("mismatched record: client %v, server %v", err, serr)
	}

	// A stored manifest whose signature does not verify is corrupt.
	rec, _ := s.Latest(spend)
	sm, _ := s.Manifest(rec.Manifest)
	forged := &nii.SignedManifest{Body: sm.Body, Sig: bytes.Clone(sm.Sig)}
	forged.Sig[5] ^= 0x10
	src = newFakeContent(s)
	src.signed[rec.Manifest] = forged
	_, _, _, err, serr = pipeManifest(newContentServer(src, nil, nil), ManifestRequest{Dataset: spend})
	if wireCode(err) != codeInternal || !errors.Is(serr, ErrCorrupt) || !strings.Contains(serr.Error(), "signature") {
		t.Fatalf("forged stored manifest: client %v, server %v", err, serr)
	}
}

func TestManifestServerRequests(t *testing.T) {
	s, _ := openStore(t)
	publish(t, s, newSigner(t), spend, randBytes(1, 10<<10))
	cs := newContentServer(s, nil, nil)
	big := encodeFrame(t, &manifestRequest{Dataset: spend, Grant: strings.Repeat("g", maxManifestRequest), Action: "read"})
	for _, tc := range []struct {
		name  string
		frame []byte
		code  string
	}{
		{"ok", encodeFrame(t, &manifestRequest{Dataset: spend, Action: "read"}), ""},
		{"no action means read", encodeFrame(t, &manifestRequest{Dataset: spend}), ""},
		{"bad action", encodeFrame(t, &manifestRequest{Dataset: spend, Action: "write"}), codeBadRequest},
		{"bad dataset", encodeFrame(t, &manifestRequest{Dataset: nii.DatasetID{Org: "Greenwich", Name: "spend"}, Action: "read"}), codeBadRequest},
		{"empty dataset", encodeFrame(t, &manifestRequest{Action: "read"}), codeBadRequest},
		{"not CBOR", append(binaryUvarint(3), 0xff, 0xff, 0xff), codeBadRequest},
		{"unknown key", encodeFrame(t, map[int]any{1: spend, 4: "read", 9: 1}), codeBadRequest},
		{"oversized", big[:100], codeBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, srv := net.Pipe()
			defer c.Close()
			errc := make(chan error, 1)
			go func() {
				defer srv.Close()
				errc <- serveManifest(srv, testRemote, cs)
			}()
			go func() { _, _ = c.Write(tc.frame) }()
			var resp manifestResponse
			err := readResponse(newReader(c), maxManifestResponse, &resp)
			c.Close()
			serr := <-errc
			if wireCode(err) != tc.code {
				t.Fatalf("response %v, want code %q", err, tc.code)
			}
			if tc.code == "" {
				if serr != nil || len(resp.Manifest) == 0 {
					t.Fatalf("server %v, %d-byte manifest", serr, len(resp.Manifest))
				}
				return
			}
			var ans *answeredError
			if !errors.As(serr, &ans) {
				t.Fatalf("server error %v is not an answered one", serr)
			}
		})
	}
}

// A lying server's manifests are caught by the client.
func TestManifestClientChecks(t *testing.T) {
	s, _ := openStore(t)
	sg := newSigner(t)
	v1 := publish(t, s, sg, spend, randBytes(1, 10<<10))
	v2 := publish(t, s, sg, spend, randBytes(2, 10<<10))
	other := publish(t, s, sg, sensors, randBytes(3, 10<<10))
	enc := func(rec *VersionRecord) []byte {
		sm, err := s.Manifest(rec.Manifest)
		if err != nil {
			t.Fatal(err)
		}
		b, err := nii.EncodeSignedManifest(sm)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	sm2, _ := s.Manifest(v2.Manifest)
	forged := &nii.SignedManifest{Body: sm2.Body, Sig: bytes.Clone(sm2.Sig)}
	forged.Sig[0] ^= 0x80
	forgedEnc, _ := nii.EncodeSignedManifest(forged)
	// A body altered after signing: signature no longer matches.
	var m2 nii.Manifest
	if err := nii.Unmarshal(sm2.Body, &m2); err != nil {
		t.Fatal(err)
	}
	m2.Meta.Title = "Something else"
	altered, _ := nii.Marshal(&m2)
	alteredEnc, _ := nii.EncodeSignedManifest(&nii.SignedManifest{Body: altered, Sig: sm2.Sig})
	// Signed by another key than the publisher it names.
	impostor := newSigner(t)
	m2.Publisher = impostor.id
	byImpostor, _, err := nii.SignManifest(&m2, impostor.key)
	if err != nil {
		t.Fatal(err)
	}
	byImpostor.Body, _ = nii.Marshal(&nii.Manifest{Dataset: m2.Dataset, Version: m2.Version, Publisher: sg.id, Created: m2.Created, Size: m2.Size, Chunker: m2.Chunker, Chunks: m2.Chunks, Meta: m2.Meta})
	impostorEnc, _ := nii.EncodeSignedManifest(byImpostor)

	ok := func(b []byte) func(io.Writer) error {
		return func(w io.Writer) error { return writeOK(w, &manifestResponse{Manifest: b}) }
	}
	for _, tc := range []struct {
		name    string
		req     ManifestRequest
		respond func(io.Writer) error
		want    error  // errors.Is target, or nil for success
		text    string // in the error
	}{
		{"honest", ManifestRequest{Dataset: spend}, ok(enc(v2)), nil, ""},
		{"wrong dataset", ManifestRequest{Dataset: spend}, ok(enc(other)), ErrMalformed, "greenwich/sensors@1, asked for greenwich/spend"},
		{"wrong version", ManifestRequest{Dataset: spend, Version: 2}, ok(enc(v1)), ErrMalformed, "asked for version 2"},
		{"forged signature", ManifestRequest{Dataset: spend}, ok(forgedEnc), nii.ErrBadSignature, "greenwich/spend@2"},
		{"body altered after signing", ManifestRequest{Dataset: spend}, ok(alteredEnc), nii.ErrBadSignature, ""},
		{"signed by an impostor", ManifestRequest{Dataset: spend}, ok(impostorEnc), nii.ErrBadSignature, ""},
		{"not a signed manifest", ManifestRequest{Dataset: spend}, ok([]byte{0xa1, 0x01, 0x01}), ErrMalformed, ""},
		{"empty", ManifestRequest{Dataset: spend}, ok(nil), ErrMalformed, ""},
		{"body not a manifest", ManifestRequest{Dataset: spend}, ok(func() []byte {
			b, _ := nii.EncodeSignedManifest(&nii.SignedManifest{Body: []byte{0xa0}, Sig: make([]byte, 64)})
			return b
		}()), nii.ErrInvalid, ""},
		{"no response after OK", ManifestRequest{Dataset: spend}, func(w io.Writer) error { return writeMsg(w, &status{OK: true}) }, io.ErrUnexpectedEOF, ""},
		{"nothing", ManifestRequest{Dataset: spend}, func(io.Writer) error { return nil }, io.ErrUnexpectedEOF, ""},
		{"oversized frame", ManifestRequest{Dataset: spend}, func(w io.Writer) error {
			if err := writeMsg(w, &status{OK: true}); err != nil {
				return err
			}
			_, err := w.Write(binaryUvarint(maxManifestResponse + 1))
			return err
		}, ErrFrameTooLarge, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got manifestRequest
			var m *nii.Manifest
			var h nii.Hash
			err := scripted(t, maxManifestRequest, &got, tc.respond, func(rw io.ReadWriter) error {
				var err error
				m, h, _, err = fetchManifest(rw, tc.req)
				return err
			})
			if got.Dataset != tc.req.Dataset || got.Version != tc.req.Version || got.Action != "read" {
				t.Fatalf("server received %+v", got)
			}
			if tc.want == nil {
				if err != nil || m.Ref() != v2.Ref || h != v2.Manifest {
					t.Fatalf("honest server: %v", err)
				}
				return
			}
			if !errors.Is(err, tc.want) || m != nil {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.text) {
				t.Fatalf("error %q does not say %q", err, tc.text)
			}
		})
	}
}

func TestManifestClientRefusesBadRequests(t *testing.T) {
	for _, req := range []ManifestRequest{
		{Dataset: nii.DatasetID{Org: "greenwich"}},
		{Dataset: spend, Action: "write"},
		{Dataset: spend, Grant: strings.Repeat("x", maxManifestRequest)},
	} {
		var sent bytes.Buffer
		_, _, _, err := fetchManifest(struct {
			io.Reader
			io.Writer
		}{bytes.NewReader(nil), &sent}, req)
		if !errors.Is(err, nii.ErrInvalid) || sent.Len() != 0 {
			t.Fatalf("%+v: err %v after sending %d bytes", req, err, sent.Len())
		}
	}
}

// fetchVersion fetches every chunk of m through fetch, in batches of at
// most MaxChunksPerRequest, and returns the chunks by hash.
func fetchVersion(t *testing.T, m *nii.Manifest, inFlight int, fetch func(hashes []nii.Hash, fn func(nii.Hash, []byte) error) error) map[nii.Hash][]byte {
	t.Helper()
	hashes := distinctChunks(m)
	var (
		mu   sync.Mutex
		got  = map[nii.Hash][]byte{}
		errs []error
		wg   sync.WaitGroup
	)
	batches := make(chan []nii.Hash)
	for range inFlight {
		wg.Go(func() {
			for b := range batches {
				err := fetch(b, func(h nii.Hash, data []byte) error {
					mu.Lock()
					defer mu.Unlock()
					got[h] = bytes.Clone(data)
					return nil
				})
				if err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		})
	}
	for b := range slices.Chunk(hashes, MaxChunksPerRequest) {
		batches <- b
	}
	close(batches)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	return got
}

// reassemble writes m's chunks in order.
func reassemble(t *testing.T, m *nii.Manifest, chunks map[nii.Hash][]byte) []byte {
	t.Helper()
	var out bytes.Buffer
	for i, c := range m.Chunks {
		b, ok := chunks[c.Hash]
		if !ok {
			t.Fatalf("chunk %d (%s) was not fetched", i, shortHash(c.Hash))
		}
		if len(b) != int(c.Size) {
			t.Fatalf("chunk %d: %d bytes, manifest says %d", i, len(b), c.Size)
		}
		out.Write(b)
	}
	return out.Bytes()
}

func TestChunksFetchWholeVersion(t *testing.T) {
	for _, tc := range []struct {
		name   string
		params chunker.Params
	}{
		{"default chunks", chunker.Default()},
		{"small chunks, many batches", smallChunks},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openStoreWith(t, tc.params)
			sg := newSigner(t)
			data := randBytes(42, 3<<20)
			// A repeated stretch, so the manifest names some chunks twice.
			data = append(data, data[:600<<10]...)
			rec := publishAccess(t, s, sg, spend, data, nii.AccessOpen)
			m := mustManifest(t, s, rec)
			var served atomic.Int64
			auth := &recordingAuth{}
			src := newFakeContent(s)
			cs := newContentServer(src, auth.authorize, &served)
			batches := 0
			got := fetchVersion(t, m, 1, func(hashes []nii.Hash, fn func(nii.Hash, []byte) error) error {
				batches++
				err, serr := pipeChunks(cs, ChunkRequest{Manifest: rec.Manifest, Hashes: hashes, Grant: "g"}, fn, func(h nii.Hash) {
					t.Errorf("chunk %s reported missing", shortHash(h))
				})
				if serr != nil {
					t.Errorf("server: %v", serr)
				}
				return err
			})
			if !bytes.Equal(reassemble(t, m, got), data) {
				t.Fatal("reassembled content differs")
			}
			distinct := distinctChunks(m)
			if len(distinct) == len(m.Chunks) {
				t.Fatal("test data has no repeated chunk")
			}
			var want int64
			for _, h := range distinct {
				want += int64(len(got[h]))
			}
			if served.Load() != want {
				t.Fatalf("served %d bytes, want %d", served.Load(), want)
			}
			if wantBatches := (len(distinct) + MaxChunksPerRequest - 1) / MaxChunksPerRequest; batches != wantBatches {
				t.Fatalf("%d batches, want %d", batches, wantBatches)
			}
			// Every batch was authorized; the manifest was read once.
			if len(auth.calls) != batches || auth.last() != (authCall{testRemote, rec.Ref, "read", "g"}) {
				t.Fatalf("%d authorizer calls for %d batches, last %+v", len(auth.calls), batches, auth.last())
			}
			if n := src.manifestCalls(); n != 1 {
				t.Fatalf("manifest loaded %d times", n)
			}
			t.Logf("%d chunks (%d distinct) in %d batches", len(m.Chunks), len(distinct), batches)
		})
	}
}

// A chunk of a version the requester may not read cannot be had by naming
// a version it may read: every hash must be a chunk of the manifest.
func TestChunksMustBelongToManifest(t *testing.T) {
	s, _ := openStore(t)
	sg := newSigner(t)
	open := publishAccess(t, s, sg, spend, randBytes(1, 300<<10), nii.AccessOpen)
	secret := publishAccess(t, s, sg, children, randBytes(2, 300<<10), nii.AccessRestricted)
	om, sm := mustManifest(t, s, open), mustManifest(t, s, secret)
	auth := func(r AccessRequest) error {
		if r.Manifest.Meta.Access == nii.AccessRestricted {
			return errors.New("no grant")
		}
		return nil
	}
	src := newFakeContent(s)
	cs := newContentServer(src, auth, nil)
	for _, tc := range []struct {
		name   string
		req    ChunkRequest
		code   string
		text   string
		served bool
	}{
		{"open chunks", ChunkRequest{Manifest: open.Manifest, Hashes: []nii.Hash{om.Chunks[0].Hash, om.Chunks[1].Hash}}, "", "", true},
		{"a restricted chunk via the open manifest", ChunkRequest{Manifest: open.Manifest, Hashes: []nii.Hash{om.Chunks[0].Hash, sm.Chunks[0].Hash}}, codeBadRequest, "not in the manifest of greenwich/spend@1", false},
		{"the restricted manifest itself", ChunkRequest{Manifest: secret.Manifest, Hashes: []nii.Hash{sm.Chunks[0].Hash}}, codeRefused, "no grant", false},
		{"a made-up hash", ChunkRequest{Manifest: open.Manifest, Hashes: []nii.Hash{nii.HashOf([]byte("x"))}}, codeBadRequest, "not in the manifest", false},
		{"an unknown manifest", ChunkRequest{Manifest: nii.HashOf([]byte("no such manifest")), Hashes: []nii.Hash{om.Chunks[0].Hash}}, codeNotFound, "not found", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src.mu.Lock()
			before := src.chunks[sm.Chunks[0].Hash]
			src.mu.Unlock()
			n := 0
			err, serr := pipeChunks(cs, tc.req, func(nii.Hash, []byte) error { n++; return nil }, nil)
			if wireCode(err) != tc.code || !strings.Contains(fmt.Sprint(err), tc.text) {
				t.Fatalf("err = %v, want code %q saying %q", err, tc.code, tc.text)
			}
			if tc.served != (n == len(tc.req.Hashes)) || (!tc.served && n != 0) {
				t.Fatalf("%d chunks received", n)
			}
			if tc.code != "" && serr == nil {
				t.Fatal("server reports no error")
			}
			src.mu.Lock()
			after := src.chunks[sm.Chunks[0].Hash]
			src.mu.Unlock()
			if after != before {
				t.Fatal("the server read a restricted chunk from its store")
			}
		})
	}
}

func TestChunksFromLyingSource(t *testing.T) {
	s, _ := openStore(t)
	sg := newSigner(t)
	rec := publish(t, s, sg, spend, randBytes(7, 1<<20))
	m := mustManifest(t, s, rec)
	hashes := distinctChunks(m)[:6]

	t.Run("corrupt chunk", func(t *testing.T) {
		src := newFakeContent(s)
		src.corrupt[hashes[3]] = true
		var got []nii.Hash
		err, serr := pipeChunks(newContentServer(src, nil, nil), ChunkRequest{Manifest: rec.Manifest, Hashes: hashes},
			func(h nii.Hash, b []byte) error { got = append(got, h); return nil }, nil)
		if !errors.Is(err, ErrBadChunk) {
			t.Fatalf("err = %v, want ErrBadChunk", err)
		}
		if !strings.Contains(err.Error(), "4 of 6 ("+shortHash(hashes[3])+")") || !strings.Contains(err.Error(), "does not match its hash") {
			t.Fatalf("error %q does not name the chunk", err)
		}
		if !slices.Equal(got, hashes[:3]) {
			t.Fatalf("fn got %d chunks before the bad one, want 3", len(got))
		}
		if serr == nil {
			t.Fatal("the server finished writing to a client that hung up")
		}
	})

	t.Run("missing chunks", func(t *testing.T) {
		src := newFakeContent(s)
		src.missing[hashes[0]] = true
		src.missing[hashes[4]] = true
		src.override[hashes[2]] = make([]byte, nii.MaxChunkSize+1) // impossible: treated as lacking
		var got, missing []nii.Hash
		var served atomic.Int64
		err, serr := pipeChunks(newContentServer(src, nil, &served), ChunkRequest{Manifest: rec.Manifest, Hashes: hashes},
			func(h nii.Hash, b []byte) error {
				if nii.HashOf(b) != h {
					t.Errorf("fn got bytes that do not hash to %s", shortHash(h))
				}
				got = append(got, h)
				return nil
			}, func(h nii.Hash) { missing = append(missing, h) })
		if err != nil || serr != nil {
			t.Fatalf("client %v, server %v", err, serr)
		}
		if !slices.Equal(missing, []nii.Hash{hashes[0], hashes[2], hashes[4]}) || !slices.Equal(got, []nii.Hash{hashes[1], hashes[3], hashes[5]}) {
			t.Fatalf("missing %d, got %d", len(missing), len(got))
		}
		var want int64
		for _, i := range []int{1, 3, 5} {
			want += int64(m.Chunks[slices.IndexFunc(m.Chunks, func(c nii.ChunkRef) bool { return c.Hash == hashes[i] })].Size)
		}
		if served.Load() != want {
			t.Fatalf("served %d bytes, want %d", served.Load(), want)
		}
		// A nil missing callback is allowed.
		if err, _ := pipeChunks(newContentServer(src, nil, nil), ChunkRequest{Manifest: rec.Manifest, Hashes: hashes}, func(nii.Hash, []byte) error { return nil }, nil); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("store failure", func(t *testing.T) {
		src := newFakeContent(s)
		src.chunkErr = errors.New("disk on fire")
		err, serr := pipeChunks(newContentServer(src, nil, nil), ChunkRequest{Manifest: rec.Manifest, Hashes: hashes}, func(nii.Hash, []byte) error { return nil }, nil)
		if err == nil || !strings.Contains(fmt.Sprint(serr), "disk on fire") || strings.Contains(err.Error(), "disk on fire") {
			t.Fatalf("client %v, server %v", err, serr)
		}
		var ans *answeredError
		if errors.As(serr, &ans) {
			t.Fatal("a failure after the status is reported as answered (the stream would be closed, not reset)")
		}
	})

	t.Run("fn fails", func(t *testing.T) {
		stop := errors.New("disk full")
		calls := 0
		err, _ := pipeChunks(newContentServer(s, nil, nil), ChunkRequest{Manifest: rec.Manifest, Hashes: hashes},
			func(nii.Hash, []byte) error { calls++; return stop }, nil)
		if !errors.Is(err, stop) || calls != 1 {
			t.Fatalf("err %v after %d calls", err, calls)
		}
	})
}

// A lying server's chunk frames are caught by the client.
func TestChunksClientChecks(t *testing.T) {
	a, b, c := []byte("alpha chunk"), []byte("bravo chunk"), []byte("charlie chunk")
	ha, hb, hc := nii.HashOf(a), nii.HashOf(b), nii.HashOf(c)
	mh := nii.HashOf([]byte("manifest"))
	frames := func(fs ...chunkFrame) func(io.Writer) error {
		return func(w io.Writer) error {
			if err := writeMsg(w, &status{OK: true}); err != nil {
				return err
			}
			for _, f := range fs {
				if err := writeMsg(w, &f); err != nil {
					return err
				}
			}
			return nil
		}
	}
	flipped := bytes.Clone(b)
	flipped[0] ^= 1
	for _, tc := range []struct {
		name    string
		respond func(io.Writer) error
		want    error // nil: success
		text    string
		got     int // chunks handed to fn
	}{
		{"honest", frames(chunkFrame{Hash: ha, Data: a}, chunkFrame{Hash: hb, Data: b}, chunkFrame{Hash: hc, Data: c}), nil, "", 3},
		{"honest, one missing", frames(chunkFrame{Hash: ha, Data: a}, chunkFrame{Hash: hb, Data: frameBytes{}, Missing: true}, chunkFrame{Hash: hc, Data: c}), nil, "", 2},
		{"out of order", frames(chunkFrame{Hash: ha, Data: a}, chunkFrame{Hash: hc, Data: c}, chunkFrame{Hash: hb, Data: b}), ErrBadChunk, "2 of 3 (" + shortHash(hb) + "): received " + shortHash(hc), 1},
		{"corrupted", frames(chunkFrame{Hash: ha, Data: a}, chunkFrame{Hash: hb, Data: flipped}), ErrBadChunk, "2 of 3 (" + shortHash(hb) + "): content does not match", 1},
		{"another chunk's bytes under the right hash", frames(chunkFrame{Hash: ha, Data: b}), ErrBadChunk, "1 of 3", 0},
		{"empty data", frames(chunkFrame{Hash: ha, Data: frameBytes{}}), ErrBadChunk, "empty", 0},
		{"missing with data", frames(chunkFrame{Hash: ha, Data: a, Missing: true}), ErrBadChunk, "marked missing", 0},
		{"too few", frames(chunkFrame{Hash: ha, Data: a}), io.ErrUnexpectedEOF, "read chunk 2 of 3", 1},
		{"truncated frame", func(w io.Writer) error {
			var buf bytes.Buffer
			_ = frames(chunkFrame{Hash: ha, Data: a})(&buf)
			_, err := w.Write(buf.Bytes()[:buf.Len()-2])
			return err
		}, io.ErrUnexpectedEOF, "chunk 1 of 3", 0},
		{"oversized frame", func(w io.Writer) error {
			_ = writeMsg(w, &status{OK: true})
			_, err := w.Write(binaryUvarint(maxChunkFrame + 1))
			return err
		}, ErrFrameTooLarge, "", 0},
		{"undecodable frame", func(w io.Writer) error {
			_ = writeMsg(w, &status{OK: true})
			return writeFrame(w, []byte{0xa1, 0x09, 0x01})
		}, ErrMalformed, "chunk 1 of 3", 0},
		{"error status", func(w io.Writer) error { return writeError(w, &wireError{Code: codeUnavailable, Message: "busy"}) }, ErrUnavailable, "busy", 0},
		{"no status", func(io.Writer) error { return nil }, io.ErrUnexpectedEOF, "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var req chunksRequest
			n := 0
			err := scripted(t, maxChunksRequest, &req, tc.respond, func(rw io.ReadWriter) error {
				return fetchChunks(rw, ChunkRequest{Manifest: mh, Hashes: []nii.Hash{ha, hb, hc}, Action: "sync"},
					func(h nii.Hash, data []byte) error {
						n++
						if nii.HashOf(data) != h {
							t.Errorf("fn got unverified bytes for %s", shortHash(h))
						}
						return nil
					}, nil)
			})
			if req.Manifest != mh || !slices.Equal(req.Hashes, []nii.Hash{ha, hb, hc}) || req.Action != "sync" {
				t.Fatalf("server received %+v", req)
			}
			if n != tc.got {
				t.Fatalf("fn called %d times, want %d", n, tc.got)
			}
			if tc.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.text) {
				t.Fatalf("err = %v, want %v saying %q", err, tc.want, tc.text)
			}
		})
	}
}

func TestChunksClientRefusesBadRequests(t *testing.T) {
	hashes := func(n int) []nii.Hash {
		out := make([]nii.Hash, n)
		for i := range out {
			out[i] = nii.HashOf([]byte{byte(i), byte(i >> 8)})
		}
		return out
	}
	fn := func(nii.Hash, []byte) error { return nil }
	for _, tc := range []struct {
		name string
		req  ChunkRequest
		fn   func(nii.Hash, []byte) error
	}{
		{"65 hashes", ChunkRequest{Hashes: hashes(MaxChunksPerRequest + 1)}, fn},
		{"1000 hashes", ChunkRequest{Hashes: hashes(1000)}, fn},
		{"no hashes", ChunkRequest{}, fn},
		{"bad action", ChunkRequest{Hashes: hashes(1), Action: "delete"}, fn},
		{"grant too long", ChunkRequest{Hashes: hashes(64), Grant: strings.Repeat("x", 22<<10)}, fn},
		{"no fn", ChunkRequest{Hashes: hashes(1)}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var sent bytes.Buffer
			err := fetchChunks(struct {
				io.Reader
				io.Writer
			}{bytes.NewReader(nil), &sent}, tc.req, tc.fn, nil)
			if err == nil || sent.Len() != 0 {
				t.Fatalf("err %v after sending %d bytes", err, sent.Len())
			}
			if tc.fn != nil && !errors.Is(err, nii.ErrInvalid) {
				t.Fatalf("err = %v, want nii.ErrInvalid", err)
			}
		})
	}
	// 64 hashes and an ordinary grant fit.
	var sent bytes.Buffer
	_ = fetchChunks(struct {
		io.Reader
		io.Writer
	}{bytes.NewReader(nil), &sent}, ChunkRequest{Hashes: hashes(64), Grant: strings.Repeat("x", 8<<10)}, fn, nil)
	if sent.Len() == 0 || sent.Len() > maxChunksRequest+3 {
		t.Fatalf("a full request sent %d bytes", sent.Len())
	}
}

func TestChunksServerRequests(t *testing.T) {
	s, _ := openStore(t)
	rec := publish(t, s, newSigner(t), spend, randBytes(1, 300<<10))
	m := mustManifest(t, s, rec)
	cs := newContentServer(s, nil, nil)
	many := make([]nii.Hash, MaxChunksPerRequest+1)
	for i := range many {
		many[i] = m.Chunks[0].Hash
	}
	for _, tc := range []struct {
		name  string
		frame []byte
		code  string
	}{
		{"ok", encodeFrame(t, &chunksRequest{Manifest: rec.Manifest, Hashes: []nii.Hash{m.Chunks[1].Hash}, Action: "read"}), ""},
		{"64 of the same", encodeFrame(t, &chunksRequest{Manifest: rec.Manifest, Hashes: many[:64]}), ""},
		{"65 hashes", encodeFrame(t, &chunksRequest{Manifest: rec.Manifest, Hashes: many, Action: "read"}), codeBadRequest},
		{"no hashes", encodeFrame(t, &chunksRequest{Manifest: rec.Manifest, Action: "read"}), codeBadRequest},
		{"bad action", encodeFrame(t, &chunksRequest{Manifest: rec.Manifest, Hashes: many[:1], Action: "admin"}), codeBadRequest},
		{"unknown manifest", encodeFrame(t, &chunksRequest{Hashes: many[:1]}), codeNotFound},
		{"short hash", encodeFrame(t, map[int]any{1: rec.Manifest[:], 2: [][]byte{{1, 2, 3}}, 4: "read"}), codeBadRequest},
		{"not CBOR", append(binaryUvarint(2), 0xff, 0xff), codeBadRequest},
		{"oversized", binaryUvarint(maxChunksRequest + 1), codeBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, srv := net.Pipe()
			defer c.Close()
			errc := make(chan error, 1)
			go func() {
				defer srv.Close()
				errc <- serveChunks(srv, testRemote, cs)
			}()
			go func() { _, _ = c.Write(tc.frame) }()
			r := newReader(c)
			err := readStatus(r)
			if wireCode(err) != tc.code {
				t.Fatalf("status %v, want code %q", err, tc.code)
			}
			if tc.code == "" {
				var f chunkFrame
				if err := readMsg(r, maxChunkFrame, &f); err != nil || f.Missing || nii.HashOf(f.Data) != f.Hash {
					t.Fatalf("first chunk frame: %v", err)
				}
				_, _ = io.Copy(io.Discard, r)
			}
			c.Close()
			serr := <-errc
			if tc.code == "" && serr != nil {
				t.Fatalf("server: %v", serr)
			}
			var ans *answeredError
			if tc.code != "" && !errors.As(serr, &ans) {
				t.Fatalf("server error %v is not an answered one", serr)
			}
		})
	}
}

// writeChunkFrame's hand-made CBOR head must be what nii.Marshal makes.
func TestWriteChunkFrame(t *testing.T) {
	for _, n := range []int{1, 23, 24, 255, 256, 65535, 65536, smallFrame, smallFrame + 1, nii.MaxChunkSize} {
		data := randBytes(uint64(n), n)
		h := nii.HashOf(data)
		var got bytes.Buffer
		if err := writeChunkFrame(&got, h, data); err != nil {
			t.Fatal(err)
		}
		want := encodeFrame(t, &chunkFrame{Hash: h, Data: data})
		if !bytes.Equal(got.Bytes(), want) {
			t.Fatalf("%d bytes: frame differs from nii.Marshal's", n)
		}
		if got.Len() > maxChunkFrame+maxVarintLen {
			t.Fatalf("%d bytes: %d-byte frame", n, got.Len())
		}
	}
	// The missing frame carries an empty byte string, not null.
	f := encodeFrame(t, &chunkFrame{Hash: nii.Hash{1}, Data: frameBytes{}, Missing: true})
	if !bytes.Contains(f, []byte{0x02, 0x40, 0x03, 0xf5}) {
		t.Fatalf("missing frame % x", f)
	}
}

func TestManifestCache(t *testing.T) {
	c := newManifestCache(10 << 10)
	entry := func(n int) *openedManifest {
		return &openedManifest{m: &nii.Manifest{}, enc: make([]byte, n)}
	}
	loads := 0
	get := func(i byte, n int) *openedManifest {
		om, err := c.get(nii.Hash{i}, func() (*openedManifest, error) { loads++; return entry(n), nil })
		if err != nil {
			t.Fatal(err)
		}
		return om
	}
	a := get(1, 3<<10)
	get(2, 3<<10)
	if get(1, 3<<10) != a || loads != 2 {
		t.Fatalf("cached entry not reused (%d loads)", loads)
	}
	get(3, 3<<10) // over budget: 2, least recently used, goes
	if c.count() != 2 {
		t.Fatalf("%d entries", c.count())
	}
	get(1, 0)
	if loads != 3 {
		t.Fatalf("entry 1 was evicted (%d loads)", loads)
	}
	get(2, 3<<10)
	if loads != 4 {
		t.Fatalf("entry 2 was not evicted (%d loads)", loads)
	}
	// An entry over the whole budget is kept, alone.
	get(4, 64<<10)
	if c.count() != 1 || get(4, 0) == nil || loads != 5 {
		t.Fatalf("%d entries, %d loads", c.count(), loads)
	}
	// Failures are not cached; concurrent gets share one load.
	fail := errors.New("nope")
	if _, err := c.get(nii.Hash{5}, func() (*openedManifest, error) { return nil, fail }); !errors.Is(err, fail) {
		t.Fatal(err)
	}
	// In a synctest bubble, synctest.Wait returns once all eight gets are
	// blocked (one in the load, seven on its ready channel), so the load is
	// released only when every get has joined it: no sleep standing in.
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		var shared atomic.Int32
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				om, err := c.get(nii.Hash{5}, func() (*openedManifest, error) {
					shared.Add(1)
					<-release
					return entry(1), nil
				})
				if err != nil || om == nil {
					t.Error(err)
				}
			})
		}
		synctest.Wait()
		close(release)
		wg.Wait()
		if shared.Load() != 1 {
			t.Fatalf("%d loads for concurrent gets", shared.Load())
		}
	})
}

// Two real hosts on loopback: a full pull of a 5 MiB version, the manifest
// then every chunk in batches of 64, four batches in flight.
func TestHostContentPull(t *testing.T) {
	serverStore := openStoreWith(t, smallChunks)
	clientStore := openStoreWith(t, smallChunks)
	sg := newSigner(t)
	data := randBytes(5, 5<<20)
	rec := publishAccess(t, serverStore, sg, spend, data, nii.AccessOpen)

	server := newTestHost(t, nil, loopTCP)
	client := newTestHost(t, nil, loopTCP)
	auth := &recordingAuth{}
	server.ServeContent(serverStore, auth.authorize)
	client.AddPeerAddrs(server.ID(), server.Addrs())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	m, mh, sm, err := client.FetchManifest(ctx, server.ID(), ManifestRequest{Dataset: spend, Grant: "tok"})
	if err != nil {
		t.Fatal(err)
	}
	if mh != rec.Manifest || m.Ref() != rec.Ref {
		t.Fatalf("manifest of %s (%s), want %s (%s)", m.Ref(), shortHash(mh), rec.Ref, shortHash(rec.Manifest))
	}
	if got := auth.last(); got != (authCall{client.ID(), rec.Ref, "read", "tok"}) {
		t.Fatalf("authorizer saw %+v", got)
	}
	distinct := distinctChunks(m)
	if len(distinct) <= 4*MaxChunksPerRequest {
		t.Fatalf("only %d chunks: not enough batches to keep 4 in flight", len(distinct))
	}

	var inFlight, peak atomic.Int32
	got := fetchVersion(t, m, 4, func(hashes []nii.Hash, fn func(nii.Hash, []byte) error) error {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		return client.FetchChunks(ctx, server.ID(), ChunkRequest{Manifest: mh, Hashes: hashes, Grant: "tok"}, func(h nii.Hash, b []byte) error {
			if err := clientStore.PutChunk(h, b); err != nil {
				return err
			}
			return fn(h, b)
		}, func(h nii.Hash) { t.Errorf("chunk %s missing", shortHash(h)) })
	})
	if !bytes.Equal(reassemble(t, m, got), data) {
		t.Fatal("pulled content differs")
	}
	if peak.Load() < 2 {
		t.Fatalf("at most %d batches were in flight", peak.Load())
	}
	// The pulled version commits and exports byte for byte.
	crec, err := clientStore.Commit(sm)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(readAll(t, clientStore, crec), data) {
		t.Fatal("exported content differs")
	}

	var want int64
	for _, h := range distinct {
		want += int64(len(got[h]))
	}
	deadline := time.Now().Add(5 * time.Second)
	for server.ServedBytes() != want && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if server.ServedBytes() != want || client.ServedBytes() != 0 {
		t.Fatalf("server served %d bytes, want %d; client %d", server.ServedBytes(), want, client.ServedBytes())
	}
	t.Logf("%d chunks in %d batches, up to %d in flight", len(distinct), (len(distinct)+63)/64, peak.Load())
}

func TestHostContentErrors(t *testing.T) {
	s, _ := openStore(t)
	sg := newSigner(t)
	rec := publish(t, s, sg, spend, randBytes(9, 1<<20))
	restricted := publishAccess(t, s, sg, children, randBytes(10, 100<<10), nii.AccessRestricted)
	m := mustManifest(t, s, rec)
	src := newFakeContent(s)
	server := newTestHost(t, nil, loopTCP)
	client := newTestHost(t, nil, loopTCP)
	server.ServeContent(src, nil)
	client.AddPeerAddrs(server.ID(), server.Addrs())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	keep := func(nii.Hash, []byte) error { return nil }

	if _, _, _, err := client.FetchManifest(ctx, server.ID(), ManifestRequest{Dataset: sensors}); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), server.ID().Short()) {
		t.Fatalf("unknown dataset: %v", err)
	}
	if _, _, _, err := client.FetchManifest(ctx, server.ID(), ManifestRequest{Dataset: children}); !errors.Is(err, ErrRefused) {
		t.Fatalf("restricted dataset, no Authorizer: %v", err)
	}
	if err := client.FetchChunks(ctx, server.ID(), ChunkRequest{Manifest: restricted.Manifest, Hashes: []nii.Hash{m.Chunks[0].Hash}}, keep, nil); !errors.Is(err, ErrRefused) {
		t.Fatalf("restricted chunks, no Authorizer: %v", err)
	}

	// A provider that sends a bad chunk is named in the error.
	src.mu.Lock()
	src.corrupt[m.Chunks[1].Hash] = true
	src.mu.Unlock()
	err := client.FetchChunks(ctx, server.ID(), ChunkRequest{Manifest: rec.Manifest, Hashes: distinctChunks(m)[:4]}, keep, nil)
	if !errors.Is(err, ErrBadChunk) || !strings.Contains(err.Error(), server.ID().Short()) || !strings.Contains(err.Error(), shortHash(m.Chunks[1].Hash)) {
		t.Fatalf("bad chunk: %v", err)
	}

	// Too many hashes fail before any stream is opened, even to a peer
	// that cannot be reached.
	nowhere := newCatalogOrigin(t).id
	if err := client.FetchChunks(ctx, nowhere, ChunkRequest{Manifest: rec.Manifest, Hashes: make([]nii.Hash, 65)}, keep, nil); !errors.Is(err, nii.ErrInvalid) {
		t.Fatalf("65 hashes: %v", err)
	}

	// ServeContent(nil) stops serving both protocols.
	server.ServeContent(nil, nil)
	if _, _, _, err := client.FetchManifest(ctx, server.ID(), ManifestRequest{Dataset: spend}); !errors.Is(err, ErrNotSupported) {
		t.Fatalf("manifest after ServeContent(nil): %v", err)
	}
	if err := client.FetchChunks(ctx, server.ID(), ChunkRequest{Manifest: rec.Manifest, Hashes: []nii.Hash{m.Chunks[0].Hash}}, keep, nil); !errors.Is(err, ErrNotSupported) {
		t.Fatalf("chunks after ServeContent(nil): %v", err)
	}
}

// deadlineRW is a stream over fixed bytes that records the deadlines set
// on it.
type deadlineRW struct {
	io.Reader
	io.Writer
	deadlines []time.Time
}

func (d *deadlineRW) SetDeadline(t time.Time) error {
	d.deadlines = append(d.deadlines, t)
	return nil
}

// Once the request is in, the server gives the exchange the batch's
// deadline: 30 s plus 1 s per chunk.
func TestChunksDeadline(t *testing.T) {
	if chunksTimeout(1) != 31*time.Second || chunksTimeout(MaxChunksPerRequest) != 94*time.Second {
		t.Fatalf("deadlines %v and %v", chunksTimeout(1), chunksTimeout(MaxChunksPerRequest))
	}
	s, _ := openStore(t)
	rec := publish(t, s, newSigner(t), spend, randBytes(1, 300<<10))
	m := mustManifest(t, s, rec)
	hashes := distinctChunks(m)[:3]
	rw := &deadlineRW{Reader: bytes.NewReader(encodeFrame(t, &chunksRequest{Manifest: rec.Manifest, Hashes: hashes, Action: "read"})), Writer: io.Discard}
	start := time.Now()
	if err := serveChunks(rw, testRemote, newContentServer(s, nil, nil)); err != nil {
		t.Fatal(err)
	}
	if len(rw.deadlines) != 1 {
		t.Fatalf("%d deadlines set", len(rw.deadlines))
	}
	if d := rw.deadlines[0].Sub(start); d < 33*time.Second || d > 34*time.Second {
		t.Fatalf("deadline %v after the start, want 33 s", d)
	}
	// A request refused before any chunk is read keeps the stream's own
	// deadline.
	rw = &deadlineRW{Reader: bytes.NewReader(encodeFrame(t, &chunksRequest{Manifest: rec.Manifest, Action: "read"})), Writer: io.Discard}
	_ = serveChunks(rw, testRemote, newContentServer(s, nil, nil))
	if len(rw.deadlines) != 0 {
		t.Fatal("a bad request extended the deadline")
	}
}
