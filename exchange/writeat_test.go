package exchange

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/nii-uk/nii"
	"golang.org/x/sys/unix"
)

// Both exports put every chunk at its offset: the file is the content,
// byte for byte, whatever the size against WriteDirect's window and the
// page (empty, under a page, a page, a window either side, several
// windows with a partial page at the end), with recent chunks read from
// their hints or every one through the index. After WriteDirect the
// file's O_DIRECT is as it was opened.
func TestExportRoundTrip(t *testing.T) {
	s, _ := openStore(t)
	sg := newSigner(t)
	direct := func(rec *VersionRecord, f *os.File) (int64, error) {
		return s.WriteDirect(context.Background(), rec, f)
	}
	writers := []struct {
		name   string
		write  func(*VersionRecord, *os.File) (int64, error)
		openFl int // extra open flags of the file; O_DIRECT must be as they say after
	}{
		{"WriteAt", func(rec *VersionRecord, f *os.File) (int64, error) { return s.WriteAt(context.Background(), rec, f) }, 0},
		{"WriteDirect", direct, 0},
		{"WriteDirect, no hints", func(rec *VersionRecord, f *os.File) (int64, error) {
			// Every chunk read where the index says, as after a restart.
			for _, c := range mustManifest(t, s, rec).Chunks {
				s.locs.forget(c.Hash)
			}
			return direct(rec, f)
		}, 0},
		{"WriteDirect, opened O_DIRECT", direct, unix.O_DIRECT},
	}
	for i, n := range []int{0, 1, dioAlign - 1, dioAlign, exportWindow - 1, exportWindow + 1, 2*exportWindow + 5<<20 + 3} {
		data := randBytes(uint64(40+i), n)
		rec := publish(t, s, sg, nii.DatasetID{Org: "greenwich", Name: "f" + string(rune('a'+i))}, data)
		for _, w := range writers {
			path := filepath.Join(t.TempDir(), "out")
			f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL|w.openFl, 0o644)
			if err != nil {
				t.Fatal(err)
			}
			k, err := w.write(rec, f)
			if errors.Is(err, errors.ErrUnsupported) {
				f.Close()
				t.Skipf("the file system of %s refuses O_DIRECT (%v): exports there go through WriteAt (TestWriteDirectRefused)", path, err)
			}
			fl, ferr := unix.FcntlInt(f.Fd(), unix.F_GETFL, 0)
			f.Close()
			if err != nil || k != int64(n) {
				t.Fatalf("%s, size %d: wrote %d, %v", w.name, n, k, err)
			}
			if ferr != nil || fl&unix.O_DIRECT != w.openFl&unix.O_DIRECT {
				t.Fatalf("%s, size %d: O_DIRECT not as it was opened after the export (flags %#x, %v)", w.name, n, fl, ferr)
			}
			if got, _ := os.ReadFile(path); !bytes.Equal(got, data) {
				t.Fatalf("%s, size %d: the file is not the content", w.name, n)
			}
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

// A file system that takes O_DIRECT at fcntl but refuses a direct write
// (EINVAL) gets the rest of the export through the page cache, and the
// file is still the content; one that refuses O_DIRECT outright (fcntl's
// EINVAL) gets ErrUnsupported with nothing written, for the caller to use
// WriteAt.
func TestWriteDirectRefused(t *testing.T) {
	s, _ := openStore(t)
	sg := newSigner(t)
	data := randBytes(70, 3*exportWindow+12345)
	rec := publish(t, s, sg, nii.DatasetID{Org: "greenwich", Name: "refused"}, data)

	var calls atomic.Int64
	oldWrite := exportWriteAt
	t.Cleanup(func() { exportWriteAt = oldWrite })
	exportWriteAt = func(f *os.File, b []byte, off int64) (int, error) {
		if calls.Add(1) == 2 {
			return 0, unix.EINVAL
		}
		return f.WriteAt(b, off)
	}
	exportsExactly(t, s, rec, data, "after a refused direct write")
	if calls.Load() < 2 {
		t.Fatalf("%d direct writes: the refusal was never met", calls.Load())
	}

	oldSetfl := setfl
	setfl = func(uintptr, int) error { return unix.EINVAL }
	t.Cleanup(func() { setfl = oldSetfl })
	f, err := os.Create(filepath.Join(t.TempDir(), "out2"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	k, err := s.WriteDirect(context.Background(), rec, f)
	if !errors.Is(err, errors.ErrUnsupported) || k != 0 {
		t.Fatalf("O_DIRECT refused: wrote %d, %v; want nothing written and ErrUnsupported", k, err)
	}
	if st, _ := f.Stat(); st.Size() != 0 {
		t.Fatalf("O_DIRECT refused: the file has %d bytes, want none", st.Size())
	}
}

// A chunk damaged on disk stops WriteDirect as it stops WriteAt: ErrCorrupt
// naming the chunk, and the chunk dropped once.
func TestWriteDirectCorruptChunk(t *testing.T) {
	s, _ := openStore(t)
	sg := newSigner(t)
	rec := publish(t, s, sg, nii.DatasetID{Org: "greenwich", Name: "spend"}, randBytes(23, 2*exportWindow))
	m := mustManifest(t, s, rec)
	victim := m.Chunks[len(m.Chunks)/2].Hash
	flipChunkByte(t, s, victim, 10)
	for _, want := range []string{"do not match", "found damaged"} {
		f, err := os.Create(filepath.Join(t.TempDir(), "out"))
		if err != nil {
			t.Fatal(err)
		}
		_, err = s.WriteDirect(context.Background(), rec, f)
		fl, ferr := unix.FcntlInt(f.Fd(), unix.F_GETFL, 0)
		f.Close()
		if !errors.Is(err, nii.ErrCorrupt) || !strings.Contains(err.Error(), want) {
			t.Fatalf("WriteDirect over a corrupt chunk: %v, want corrupt, %q", err, want)
		}
		if ferr != nil || fl&unix.O_DIRECT != 0 {
			t.Fatalf("O_DIRECT left set on the descriptor after a failed export (flags %#x, %v)", fl, ferr)
		}
	}
	if ok, _ := s.HasChunk(victim); ok {
		t.Fatal("the corrupt chunk is still held")
	}
}

// WriteDirect reads recent chunks where they were written (locs.go), but
// takes nothing from a hint that does not read and hash right: with one
// chunk's hint pointing at another chunk's frame, and another's at a
// frame damaged on disk whose indexed copy is good, the file is still the
// content and nothing is dropped.
func TestWriteDirectStaleHints(t *testing.T) {
	s, _ := openStore(t)
	sg := newSigner(t)
	data := randBytes(81, exportWindow+777)
	rec := publish(t, s, sg, nii.DatasetID{Org: "greenwich", Name: "hinted"}, data)
	m := mustManifest(t, s, rec)
	a, b, c := m.Chunks[1], m.Chunks[2], m.Chunks[3]
	pa, ok := s.locs.get(a.Hash)
	if !ok {
		t.Fatal("a chunk just published has no location hint")
	}
	s.locs.putAll(s.locs.since(), 1, func(int) (nii.Hash, packPtr) { return b.Hash, pa })

	// c's hint names a later frame that says it is c but whose bytes are
	// not (a damaged copy); the index still names the good one.
	p, ptrs, err := s.packs.put([]Chunk{{Hash: c.Hash, Data: randBytes(82, int(c.Size))}})
	if err != nil {
		t.Fatal(err)
	}
	s.packs.done(p)
	s.locs.putAll(s.locs.since(), 1, func(int) (nii.Hash, packPtr) { return c.Hash, ptrs[0] })

	exportsExactly(t, s, rec, data, "a stale hint was taken")
	for _, h := range []nii.Hash{b.Hash, c.Hash} {
		if ok, _ := s.HasChunk(h); !ok {
			t.Fatalf("chunk %s was dropped over a stale hint", h)
		}
	}
}

// exportsExactly checks that WriteDirect of rec into a new file makes it
// data, byte for byte.
func exportsExactly(t *testing.T, s *Store, rec *VersionRecord, data []byte, what string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "out")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	k, err := s.WriteDirect(context.Background(), rec, f)
	f.Close()
	if err != nil || k != int64(len(data)) {
		t.Fatalf("%s: wrote %d of %d: %v", what, k, len(data), err)
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, data) {
		t.Fatalf("%s: the file is not the content", what)
	}
}
