package nii_test

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/internal/niitest"
)

func TestParseRef(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"greenwich/spend", "greenwich/spend", true},
		{"greenwich/spend@1", "greenwich/spend@1", true},
		{"greenwich/spend-2024@12", "greenwich/spend-2024@12", true},
		{"a/b", "a/b", true},
		{"greenwich", "", false},
		{"greenwich/", "", false},
		{"/spend", "", false},
		{"Greenwich/spend", "", false},
		{"greenwich/spend@0", "", false},
		{"greenwich/spend@-1", "", false},
		{"greenwich/spend@x", "", false},
		{"greenwich/spend@", "", false},
		{"greenwich/sp end", "", false},
		{"greenwich/-spend", "", false},
		{"greenwich/spend/extra", "", false},
		{"greenwich/" + strings.Repeat("a", 65), "", false},
	} {
		r, err := nii.ParseRef(tc.in)
		if tc.ok != (err == nil) {
			t.Errorf("ParseRef(%q): err = %v, want ok=%v", tc.in, err, tc.ok)
			continue
		}
		if err != nil {
			if !errors.Is(err, nii.ErrInvalid) {
				t.Errorf("ParseRef(%q): error %v does not wrap ErrInvalid", tc.in, err)
			}
			continue
		}
		if r.String() != tc.want {
			t.Errorf("ParseRef(%q) = %q, want %q", tc.in, r, tc.want)
		}
	}
}

// TestNodeIDMatchesLibp2p checks the standard-library node ID derivation
// against go-libp2p's own peer IDs, both ways.
func TestNodeIDMatchesLibp2p(t *testing.T) {
	for range 20 {
		priv, pub, err := crypto.GenerateEd25519Key(nil)
		if err != nil {
			t.Fatal(err)
		}
		pid, err := peer.IDFromPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := pub.Raw()
		id := nii.NodeIDFromPublicKey(ed25519.PublicKey(raw))
		if string(id) != pid.String() {
			t.Fatalf("node ID %s, libp2p says %s", id, pid)
		}
		back, err := id.PublicKey()
		if err != nil || !bytes.Equal(back, raw) {
			t.Fatalf("PublicKey() = %x, %v; want %x", back, err, raw)
		}
		_ = priv
	}
	for _, bad := range []nii.NodeID{"", "xyz", "12D3KooW", "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N"} {
		if bad.Validate() == nil {
			t.Errorf("NodeID(%q).Validate(): want an error", bad)
		}
	}
}

func testManifest(t *testing.T) (*nii.Manifest, ed25519.PrivateKey) {
	t.Helper()
	priv, id := niitest.Key(t)
	m := &nii.Manifest{
		Dataset:   nii.DatasetID{Org: "greenwich", Name: "spend"},
		Version:   3,
		Publisher: id,
		Created:   time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC),
		Size:      5,
		Chunker:   "fastcdc-v1.0.0/16384/65536/262144",
		Chunks:    []nii.ChunkRef{{Hash: nii.HashOf([]byte("hel")), Size: 3}, {Hash: nii.HashOf([]byte("lo")), Size: 2}},
		Meta:      nii.Metadata{Title: "Spend", Publisher: "greenwich", Access: nii.AccessOpen, Keywords: []string{"spend"}},
	}
	return m, priv
}

func TestManifestSignOpen(t *testing.T) {
	m, priv := testManifest(t)
	sm, h, err := nii.SignManifest(m, priv)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := nii.EncodeSignedManifest(sm)
	if err != nil {
		t.Fatal(err)
	}
	dec, err := nii.DecodeSignedManifest(enc)
	if err != nil {
		t.Fatal(err)
	}
	got, h2, err := dec.Open()
	if err != nil {
		t.Fatal(err)
	}
	if h2 != h || got.Ref() != m.Ref() || len(got.Chunks) != 2 || got.Meta.Title != "Spend" || !got.Created.Equal(m.Created) {
		t.Fatalf("round trip changed the manifest: %+v", got)
	}
	// Signing is deterministic over a canonical encoding.
	sm2, h3, _ := nii.SignManifest(m, priv)
	if h3 != h || !bytes.Equal(sm2.Body, sm.Body) {
		t.Fatal("encoding is not deterministic")
	}
}

func TestManifestRejects(t *testing.T) {
	m, priv := testManifest(t)
	otherPriv, _ := niitest.Key(t)
	sm, _, _ := nii.SignManifest(m, priv)

	tampered := *sm
	tampered.Body = bytes.Clone(sm.Body)
	tampered.Body[len(tampered.Body)-2] ^= 1

	forgedSig := *sm
	forgedSig.Sig = ed25519.Sign(otherPriv, sm.Body)

	badSize := *m
	badSize.Size = 6

	for name, tc := range map[string]struct {
		sm   *nii.SignedManifest
		want error
	}{
		"tampered body": {&tampered, nil},
		"other key":     {&forgedSig, nii.ErrBadSignature},
		"no signature":  {&nii.SignedManifest{Body: sm.Body}, nii.ErrBadSignature},
		"garbage body":  {&nii.SignedManifest{Body: []byte{0xff, 0x00}, Sig: sm.Sig}, nii.ErrInvalid},
		"empty":         {&nii.SignedManifest{}, nii.ErrInvalid},
	} {
		if _, _, err := tc.sm.Open(); err == nil || (tc.want != nil && !errors.Is(err, tc.want)) {
			t.Errorf("%s: Open() = %v, want %v", name, err, tc.want)
		}
	}
	if _, _, err := nii.SignManifest(&badSize, priv); !errors.Is(err, nii.ErrInvalid) {
		t.Errorf("inconsistent size: SignManifest() = %v, want ErrInvalid", err)
	}
	if _, _, err := nii.SignManifest(m, otherPriv); err == nil {
		t.Error("signing with a key that is not the publisher's: want an error")
	}
}

func FuzzDecodeSignedManifest(f *testing.F) {
	priv, id := niitest.Key(f)
	m := &nii.Manifest{
		Dataset: nii.DatasetID{Org: "o", Name: "n"}, Version: 1, Publisher: id,
		Size: 1, Chunks: []nii.ChunkRef{{Hash: nii.HashOf([]byte("x")), Size: 1}},
	}
	sm, _, _ := nii.SignManifest(m, priv)
	enc, _ := nii.EncodeSignedManifest(sm)
	f.Add(enc)
	f.Add(sm.Body)
	f.Add([]byte{})
	f.Add([]byte{0xa2, 0x01, 0x40, 0x02, 0x40})
	// a merged version, with its lineage
	cite := nii.VersionCite{Dataset: nii.DatasetID{Org: "o", Name: "s"}, Version: 1, Manifest: nii.HashOf([]byte("s"))}
	m.Meta.Kind = nii.KindMerged
	m.Lineage = &nii.Lineage{Standard: cite, Inputs: []nii.LineageInput{{Source: cite, Mapping: cite, Accepted: 1}},
		Missing: []nii.LineageMissing{{Source: cite, Reason: "r"}}}
	if sm, _, err := nii.SignManifest(m, priv); err == nil {
		enc, _ := nii.EncodeSignedManifest(sm)
		f.Add(enc)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := nii.DecodeSignedManifest(b)
		if err != nil {
			return
		}
		m, h, err := s.Open()
		if err != nil {
			return
		}
		// Anything that opens must be self-consistent and re-verifiable.
		if h != nii.HashOf(s.Body) || m.Check() != nil {
			t.Fatalf("opened an inconsistent manifest")
		}
	})
}

func FuzzDecodeSignedAdvert(f *testing.F) {
	priv, id := niitest.Key(f)
	a := &nii.Advert{Origin: id, Seq: 1, Dataset: nii.DatasetID{Org: "o", Name: "n"}, Version: 1,
		Manifest: nii.HashOf([]byte("m")), Meta: nii.Metadata{Title: "t", Publisher: "o"}}
	sa, _ := nii.SignAdvert(a, priv)
	enc, _ := nii.EncodeSignedAdvert(sa)
	f.Add(enc)
	f.Add(sa.Body)
	f.Add([]byte{0xa0})
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := nii.DecodeSignedAdvert(b)
		if err != nil {
			return
		}
		got, err := s.Open()
		if err != nil {
			return
		}
		if got.Check() != nil {
			t.Fatal("an advert that opened fails its own check")
		}
	})
}

func TestHashCBORLength(t *testing.T) {
	h := nii.HashOf([]byte("x"))
	b, err := nii.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	var back nii.Hash
	if err := nii.Unmarshal(b, &back); err != nil || back != h {
		t.Fatalf("round trip: %v %v", back, err)
	}
	for _, bad := range [][]byte{{0x41, 0x01}, append([]byte{0x58, 33}, make([]byte, 33)...)} {
		if err := nii.Unmarshal(bad, &back); !errors.Is(err, nii.ErrInvalid) {
			t.Errorf("a %d-byte hash decoded: %v", len(bad), err)
		}
	}
}

func TestCheckPatternStar(t *testing.T) {
	for _, p := range []string{"*", "**"} {
		err := nii.CheckPattern(p)
		if err == nil || !strings.Contains(err.Error(), "*/*") {
			t.Errorf("CheckPattern(%q) = %v, want a refusal pointing at */*", p, err)
		}
	}
	for _, p := range []string{"*/*", "greenwich/*", "greenwich/spend-*"} {
		if err := nii.CheckPattern(p); err != nil {
			t.Errorf("CheckPattern(%q): %v", p, err)
		}
	}
	if !nii.MatchDataset([]string{"*/*"}, nii.DatasetID{Org: "greenwich", Name: "spend"}) {
		t.Error("*/* does not match greenwich/spend")
	}
}
