package exchange

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nii-uk/nii"
)

// WriteAt puts every chunk at its offset: the file is the content, byte
// for byte, for a version of many chunks and for an empty one.
func TestWriteAtRoundTrip(t *testing.T) {
	s, _ := openStore(t)
	sg := newSigner(t)
	for i, n := range []int{0, 1, 5<<20 + 3} {
		data := randBytes(uint64(40+i), n)
		rec := publish(t, s, sg, nii.DatasetID{Org: "greenwich", Name: "f" + string(rune('a'+i))}, data)
		path := filepath.Join(t.TempDir(), "out")
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		k, err := s.WriteAt(context.Background(), rec, f)
		f.Close()
		if err != nil || k != int64(n) {
			t.Fatalf("size %d: wrote %d, %v", n, k, err)
		}
		if got, _ := os.ReadFile(path); !bytes.Equal(got, data) {
			t.Fatalf("size %d: the file is not the content", n)
		}
	}
}

// A chunk damaged on disk stops WriteAt with ErrCorrupt naming the chunk,
// and is caught once: dropped, and the next export is told it was found
// damaged.
func TestWriteAtCorruptChunk(t *testing.T) {
	s, _ := openStore(t)
	sg := newSigner(t)
	rec := publish(t, s, sg, nii.DatasetID{Org: "greenwich", Name: "spend"}, randBytes(22, 2<<20))
	m := mustManifest(t, s, rec)
	victim := m.Chunks[len(m.Chunks)/2].Hash
	flipChunkByte(t, s, victim, 10)
	f, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := s.WriteAt(context.Background(), rec, f); !errors.Is(err, nii.ErrCorrupt) || !strings.Contains(err.Error(), "do not match") {
		t.Fatalf("WriteAt over a corrupt chunk: %v, want corrupt", err)
	}
	if ok, _ := s.HasChunk(victim); ok {
		t.Fatal("the corrupt chunk is still held")
	}
	if _, err := s.WriteAt(context.Background(), rec, f); !errors.Is(err, nii.ErrCorrupt) || !strings.Contains(err.Error(), "found damaged") {
		t.Fatalf("WriteAt after the drop: %v, want corrupt, found damaged", err)
	}
}
