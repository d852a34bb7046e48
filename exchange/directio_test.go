package exchange

import (
	"bytes"
	"errors"
	"hash/crc32"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/nii-uk/nii"
)

// packBatches writes batches of chunks of random sizes (small batches
// that go through the page cache whole, and large ones whose middle goes
// direct, at whatever unaligned offset the frames before left) with
// ps.put, and returns them with their pointers.
func packBatches(t *testing.T, ps *packSet, seed uint64) ([]Chunk, []packPtr) {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 7))
	var all []Chunk
	var ptrs []packPtr
	for b := range 24 {
		n := 1 + r.IntN(3)
		if b%3 == 0 {
			n = 20 + r.IntN(100) // several MiB
		}
		var batch []Chunk
		for i := range n {
			data := randBytes(seed<<32|uint64(b)<<16|uint64(i), 1+r.IntN(64<<10))
			batch = append(batch, Chunk{Hash: nii.HashOf(data), Data: data})
		}
		p, pp, err := ps.put(batch)
		if err != nil {
			t.Fatal(err)
		}
		ps.done(p)
		all, ptrs = append(all, batch...), append(ptrs, pp...)
	}
	return all, ptrs
}

func checkPackReads(t *testing.T, ps *packSet, all []Chunk, ptrs []packPtr) {
	t.Helper()
	for i, c := range all {
		b, err := ps.read(c.Hash, ptrs[i], nil, false)
		if err != nil {
			t.Fatalf("chunk %d (%d bytes at %d): %v", i, len(c.Data), ptrs[i].off, err)
		}
		if !bytes.Equal(b, c.Data) {
			t.Fatalf("chunk %d (%d bytes at %d) reads back different", i, len(c.Data), ptrs[i].off)
		}
	}
}

// TestPackDirectWrites: frames written with the aligned middle of each
// large batch direct (O_DIRECT) and the rest through the page cache read
// back byte-identical, through the page cache and again from a new
// packSet on the same files (a reopened store), and the direct path
// carried most of the bytes.
func TestPackDirectWrites(t *testing.T) {
	dir := t.TempDir()
	probe := filepath.Join(dir, "probe")
	os.WriteFile(probe, nil, 0o600)
	if f := openDirect(probe); f == nil {
		t.Skipf("the file system of %s refuses O_DIRECT (some FUSE and network file systems, tmpfs before Linux 6.6): packs there are written through the page cache (TestPackDirectRefused)", dir)
	} else {
		f.Close()
	}
	var direct atomic.Int64
	pwriteDirect = func(fd int, p []byte, off int64) (int, error) {
		if off%dioAlign != 0 || len(p)%dioAlign != 0 {
			t.Errorf("direct write of %d bytes at %d: not aligned to %d", len(p), off, dioAlign)
		}
		n, err := unix.Pwrite(fd, p, off)
		direct.Add(int64(n))
		return n, err
	}
	t.Cleanup(func() { pwriteDirect = unix.Pwrite })

	ps, err := openPacks(filepath.Join(dir, packDirName), false)
	if err != nil {
		t.Fatal(err)
	}
	all, ptrs := packBatches(t, ps, 1)
	checkPackReads(t, ps, all, ptrs)
	total := sizeOfChunks(all)
	if d := direct.Load(); d < total/2 {
		t.Fatalf("%d of %d bytes written direct, want most", d, total)
	}
	// The counts the metrics export: every frame byte once, the direct
	// ones as the direct writes made them.
	frames := total + int64(len(all))*frameHeader
	if d, c := ps.directBytes.Load(), ps.cachedBytes.Load(); d != direct.Load() || d+c != frames {
		t.Fatalf("counted %d direct + %d through the page cache, want %d + %d", d, c, direct.Load(), frames-direct.Load())
	}
	if ps.cur.direct.Load() == nil {
		t.Fatal("direct writes were turned off")
	}
	if err := ps.close(); err != nil {
		t.Fatal(err)
	}
	again, err := openPacks(filepath.Join(dir, packDirName), true)
	if err != nil {
		t.Fatal(err)
	}
	defer again.close()
	checkPackReads(t, again, all, ptrs)
}

// TestPackDirectRefused: where the file system takes O_DIRECT at open but
// refuses the write (EINVAL, as some do), the write goes through the page
// cache instead, nothing is lost, and the pack stops trying direct writes.
func TestPackDirectRefused(t *testing.T) {
	var tried atomic.Int64
	pwriteDirect = func(int, []byte, int64) (int, error) {
		tried.Add(1)
		return 0, unix.EINVAL
	}
	t.Cleanup(func() { pwriteDirect = unix.Pwrite })
	ps, err := openPacks(filepath.Join(t.TempDir(), packDirName), false)
	if err != nil {
		t.Fatal(err)
	}
	defer ps.close()
	all, ptrs := packBatches(t, ps, 2)
	checkPackReads(t, ps, all, ptrs)
	if ps.cur.wf != nil && tried.Load() != 1 {
		t.Fatalf("%d direct writes tried, want 1 (then the page cache)", tried.Load())
	}
	if ps.cur.direct.Load() != nil {
		t.Fatal("direct writes still on after EINVAL")
	}
}

// TestSplitIovs cuts buffers at every byte and checks the halves.
func TestSplitIovs(t *testing.T) {
	iovs := [][]byte{[]byte("abc"), nil, []byte("defgh"), []byte("i")}
	whole := "abcdefghi"
	for n := range len(whole) + 2 {
		before, after := splitIovs(append([][]byte(nil), iovs...), int64(n))
		if got := string(bytes.Join(before, nil)) + "|" + string(bytes.Join(after, nil)); got != whole[:min(n, len(whole))]+"|"+whole[min(n, len(whole)):] {
			t.Fatalf("split at %d: %q", n, got)
		}
	}
}

// TestStoreBufferedWrites: [store] buffered_writes (SetBufferedWrites)
// writes packs through the page cache only: no direct descriptor, no
// direct write, and everything reads back.
func TestStoreBufferedWrites(t *testing.T) {
	var direct atomic.Int64
	pwriteDirect = func(fd int, p []byte, off int64) (int, error) {
		direct.Add(1)
		return unix.Pwrite(fd, p, off)
	}
	t.Cleanup(func() { pwriteDirect = unix.Pwrite })
	s, _ := openStore(t)
	s.SetBufferedWrites()
	all, ptrs := packBatches(t, s.packs, 3)
	checkPackReads(t, s.packs, all, ptrs)
	if s.packs.cur.wf != nil || direct.Load() != 0 {
		t.Fatalf("buffered writes: direct descriptor %v, %d direct writes", s.packs.cur.wf != nil, direct.Load())
	}
}

// TestFrameCRCFromTheFetch: a chunk whose CRC the fetch computed is
// framed with that CRC, not one computed again, and the frame reads back;
// a CRC that does not match its bytes is caught on the read, never
// returned as the chunk.
func TestFrameCRCFromTheFetch(t *testing.T) {
	ps, err := openPacks(t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	defer ps.close()
	good := randBytes(1, 40<<10)
	bad := randBytes(2, 40<<10)
	c := Chunk{Hash: nii.HashOf(good), Data: good}.withCRC()
	if !c.hasCRC || c.crc != crc32.Checksum(good, castagnoli) {
		t.Fatalf("withCRC: %08x, want %08x", c.crc, crc32.Checksum(good, castagnoli))
	}
	wrong := Chunk{Hash: nii.HashOf(bad), Data: bad, crc: c.crc, hasCRC: true}
	p, ptrs, err := ps.put([]Chunk{c, wrong})
	if err != nil {
		t.Fatal(err)
	}
	ps.done(p)
	if got, err := ps.read(c.Hash, ptrs[0], nil, false); err != nil || !bytes.Equal(got, good) {
		t.Fatalf("read of the chunk framed with the fetch's CRC: %v", err)
	}
	if got, err := ps.read(wrong.Hash, ptrs[1], nil, false); !errors.Is(err, nii.ErrCorrupt) || got != nil {
		t.Fatalf("read of a frame whose CRC does not match: %d bytes, %v; want ErrCorrupt", len(got), err)
	}
}
