package exchange

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/nii-uk/nii"
)

// FuzzReadFrame feeds arbitrary bytes to readFrame. It must not panic, must
// respect the limit, and whatever it accepts must be exactly the canonical
// encoding of what it returns.
func FuzzReadFrame(f *testing.F) {
	for _, seed := range [][]byte{
		nil, {0}, {1, 'x'}, {0x7f}, {0x80, 0x01}, {0x80, 0x00}, {0xff, 0xff, 0xff, 0xff, 0x0f},
		append([]byte{0x05}, "hello"...),
		append(binaryUvarint(300), make([]byte, 300)...),
		bytes.Repeat([]byte{0xff}, 11),
	} {
		f.Add(seed, uint16(1000))
	}
	f.Fuzz(func(t *testing.T, data []byte, limit uint16) {
		max := int(limit)
		r := bytes.NewReader(data)
		payload, err := readFrame(r, max)
		// The same bytes through a reader without ReadByte, one byte per
		// Read, give the same answer.
		payload2, err2 := readFrame(iotest.OneByteReader(bytes.NewReader(data)), max)
		if (err == nil) != (err2 == nil) || !bytes.Equal(payload, payload2) {
			t.Fatalf("byte reader: %v; plain reader: %v", err, err2)
		}
		if err != nil {
			if payload != nil {
				t.Fatal("payload with an error")
			}
			if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) &&
				!errors.Is(err, ErrFrameTooLarge) && !errors.Is(err, ErrMalformed) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		if len(payload) > max {
			t.Fatalf("%d-byte payload over the %d limit", len(payload), max)
		}
		consumed := len(data) - r.Len()
		var buf bytes.Buffer
		if err := writeFrame(&buf, payload); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf.Bytes(), data[:consumed]) {
			t.Fatalf("accepted %x, re-encodes as %x", data[:consumed], buf.Bytes())
		}
	})
}

// fuzzRW is a stream whose reads come from a fixed response and whose
// writes are dropped.
type fuzzRW struct {
	io.Reader
}

func (fuzzRW) Write(p []byte) (int, error) { return len(p), nil }

// catalogResponseSeeds returns real server responses to seed the fuzzer.
func catalogResponseSeeds(f *testing.F, o catalogOrigin) [][]byte {
	var seeds [][]byte
	respond := func(src CatalogSource, req catalogRequest) []byte {
		var in, out bytes.Buffer
		if err := writeMsg(&in, &req); err != nil {
			f.Fatal(err)
		}
		_ = serveCatalog(struct {
			io.Reader
			io.Writer
		}{&in, &out}, "12D3KooWclient", src, nil)
		return out.Bytes()
	}
	src := newFakeCatalog(o.adverts(f, 1, 4, 0)...)
	seeds = append(seeds,
		respond(src, catalogRequest{Origin: o.id, Limit: 10}),
		respond(src, catalogRequest{Origin: o.id, Limit: 2}),
		respond(src, catalogRequest{Origin: o.id, After: 4, Limit: 2}),
		respond(src, catalogRequest{Origin: "bad"}),
	)
	src.err = ErrNotFound
	seeds = append(seeds, respond(src, catalogRequest{Origin: o.id, Limit: 10}))
	return seeds
}

// FuzzCatalogResponse feeds arbitrary bytes to fetchCatalog as the server's
// response. It must not panic, and whatever it accepts must obey the
// protocol: at most limit records, each a signed advert of the origin, in
// ascending order after after.
func FuzzCatalogResponse(f *testing.F) {
	// A fixed origin, so that seeds and fuzzed inputs agree on it.
	o := catalogOrigin{key: ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))}
	o.id = nii.NodeIDFromPublicKey(o.key.Public().(ed25519.PublicKey))
	for _, seed := range catalogResponseSeeds(f, o) {
		f.Add(seed, uint64(0), uint16(10))
		f.Add(seed[:len(seed)/2], uint64(0), uint16(10))
	}
	f.Add([]byte{}, uint64(0), uint16(10))
	f.Fuzz(func(t *testing.T, data []byte, after uint64, limit uint16) {
		recs, more, wm, err := fetchCatalog(fuzzRW{bytes.NewReader(data)}, o.id, after, int(limit), "")
		if err != nil {
			if recs != nil || more || wm != 0 {
				t.Fatal("records with an error")
			}
			return
		}
		if len(recs) > clampCatalogLimit(int(limit)) {
			t.Fatalf("%d records, limit %d", len(recs), limit)
		}
		if more && len(recs) == 0 {
			t.Fatal("more without records")
		}
		prev := after
		for i, r := range recs {
			var a nii.Advert
			if err := nii.Unmarshal(r.Body, &a); err != nil {
				t.Fatalf("record %d accepted but does not decode: %v", i, err)
			}
			if a.Origin != o.id || a.Seq <= prev {
				t.Fatalf("record %d: origin %s seq %d after %d", i, a.Origin, a.Seq, prev)
			}
			prev = a.Seq
		}
	})
}

// The worst page a hostile server can send within the 2 MiB frame limit is
// one of tiny records, each of which costs a slice header and an allocation.
// fetchCatalog refuses it (more records than asked for), and what decoding
// it costs is bounded by a small multiple of the frame.
func TestCatalogResponseWorstCaseMemory(t *testing.T) {
	var page bytes.Buffer
	n := (maxCatalogResponse - 16) / 2
	page.Write([]byte{0xa2, 0x01, 0x9a}) // {1: array(n) ...
	page.Write([]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)})
	for range n {
		page.Write([]byte{0x41, 0x00}) // 1-byte byte string
	}
	page.Write([]byte{0x02, 0xf4}) // 2: false}
	var resp bytes.Buffer
	if err := writeMsg(&resp, &status{OK: true}); err != nil {
		t.Fatal(err)
	}
	if err := writeFrame(&resp, page.Bytes()); err != nil {
		t.Fatal(err)
	}
	var err error
	used := allocatedBytes(func() {
		_, _, _, err = fetchCatalog(fuzzRW{bytes.NewReader(resp.Bytes())}, newCatalogOrigin(t).id, 0, 500, "")
	})
	if !errors.Is(err, ErrMalformed) {
		t.Fatalf("err = %v, want ErrMalformed", err)
	}
	t.Logf("a %d-byte page of %d records cost %d MiB to refuse", page.Len(), n, used>>20)
	if used > 40*maxCatalogResponse {
		t.Fatalf("refusing the page allocated %d MiB", used>>20)
	}
}

// FuzzCatalogRequest feeds arbitrary bytes to the catalog server as a
// request, with an Admitter that admits only a credential "member". It
// must not panic, must ask the Admitter before anything else, and must
// answer a status (or fail the exchange) without serving a stranger.
func FuzzCatalogRequest(f *testing.F) {
	o := newCatalogOrigin(f)
	for _, req := range []catalogRequest{
		{Origin: o.id, Limit: 10, Cred: "member"},
		{Origin: o.id, Limit: 10},
		{Origin: "bad", Cred: "member"},
		{Origin: o.id, After: 2, Limit: 1, Cred: strings.Repeat("x", 9000)},
	} {
		var b bytes.Buffer
		if err := writeMsg(&b, &req); err != nil {
			f.Fatal(err)
		}
		f.Add(b.Bytes())
	}
	src := newFakeCatalog(o.adverts(f, 1, 3, 0)...)
	f.Fuzz(func(t *testing.T, data []byte) {
		var out bytes.Buffer
		asked := false
		admit := func(a Admission) error {
			asked = true
			if a.Credential != "member" || a.Protocol != "catalog" {
				return errors.New("not a member")
			}
			return nil
		}
		err := serveCatalog(struct {
			io.Reader
			io.Writer
		}{bytes.NewReader(data), &out}, "12D3KooWclient", src, admit)
		var req catalogRequest
		if readMsg(bytes.NewReader(data), maxCatalogRequest, &req) == nil && !asked {
			t.Fatal("a decodable request was served without asking the Admitter")
		}
		if asked && req.Cred != "member" && err == nil {
			t.Fatal("a stranger's request was answered OK")
		}
	})
}
