package exchange

// Direct writes to packs: a pull's and GC's (writeFrames); a publish's
// batches go through the page cache, since what was just published is
// read next (packSet.write).
//
// A pack write through the page cache makes the kernel allocate a page
// for every 4 KiB and copy the bytes into it: in a CPU profile of a 1 GiB
// pull between two daemons that copy (copy_folio_from_iter_atomic) was
// 1.44 of the puller's 3.83 CPU-seconds, more than BLAKE3, TLS and every
// other copy together. The page is then written back, and the cache holds
// a GiB of chunks nothing is about to read. So the page-aligned middle of
// every large write goes to the disk directly (O_DIRECT, from an aligned
// buffer the frames are gathered into: one copy in user space instead of
// the kernel's, and no page allocated for it), and only its unaligned
// head and tail, less than a page each, go through the page cache.
// Frames stay contiguous (no padding, nothing rewritten), the fsync
// before the index commit is the same, and reads (pread through the
// page cache) see what was written either way: Linux keeps the two
// coherent.
//
// Where the file system refuses O_DIRECT (some FUSE and network file
// systems, tmpfs before Linux 6.6: the open or the first write fails with
// EINVAL), the pack is written through the page cache as before; tmpfs
// since 6.6 takes O_DIRECT and writes through its page cache anyway.

import (
	"errors"
	"os"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	// dioAlign is the offset, length and memory alignment of a direct
	// write: the page size, a multiple of every disk's logical block.
	dioAlign = 4096
	// dioMin is the least aligned middle worth writing directly; smaller
	// writes go through the page cache whole.
	dioMin = 64 << 10
	// dioBufSize is the aligned buffer a direct write is gathered into, a
	// piece at a time: a pull's whole group (writeBatchBytes) in one
	// write. Each direct write waits for the disk, so fewer and larger
	// ones are faster: a 1 GiB pull took 2.22–2.57 s with 1 MiB pieces,
	// 1.97–2.20 s with 4 MiB, 1.86–2.13 s with 8 MiB (three each,
	// alternated; docs/benchmarks.md).
	dioBufSize = 8 << 20
)

// dioBufs holds dioBufSize buffers; dioSmallBufs 1 MiB ones, for direct
// writes of a MiB or less, which need not take (and zero) 8 MiB.
var (
	dioBufs      = sync.Pool{New: func() any { return alignedBuf(dioBufSize) }}
	dioSmallBufs = sync.Pool{New: func() any { return alignedBuf(dioSmallSize) }}
)

const dioSmallSize = 1 << 20

// alignedBuf returns n bytes whose address is a multiple of dioAlign.
func alignedBuf(n int) []byte {
	raw := make([]byte, n+dioAlign)
	k := (dioAlign - int(uintptr(unsafe.Pointer(unsafe.SliceData(raw)))%dioAlign)) % dioAlign
	return raw[k : k+n : k+n]
}

// pwriteDirect is the direct write (a var: tests make it fail as a file
// system that refuses O_DIRECT does).
var pwriteDirect = unix.Pwrite

// openDirect opens path for direct writes, or returns nil where the file
// system refuses O_DIRECT.
func openDirect(path string) *os.File {
	f, err := os.OpenFile(path, os.O_WRONLY|unix.O_DIRECT, 0)
	if err != nil {
		return nil
	}
	return f
}

// writeAt writes the buffers one after another at off in p: the aligned
// middle directly when p has a direct descriptor and the write is large
// enough, the rest (or all of it) through the page cache.
// It returns how many bytes went direct.
func (p *packFile) writeAt(iovs [][]byte, off int64) (direct int64, err error) {
	n := sizeOfIovs(iovs)
	wf := p.direct.Load()
	start := (off + dioAlign - 1) &^ (dioAlign - 1)
	end := (off + n) &^ (dioAlign - 1)
	if wf == nil || end-start < dioMin {
		return 0, pwritev(p.f, iovs, off)
	}
	head, rest := splitIovs(iovs, start-off)
	mid, tail := splitIovs(rest, end-start)
	if len(head) > 0 {
		if err := pwritev(p.f, head, off); err != nil {
			return 0, err
		}
	}
	if direct, err = p.writeDirect(wf, mid, start); err != nil {
		return direct, err
	}
	if len(tail) > 0 {
		return direct, pwritev(p.f, tail, end)
	}
	return direct, nil
}

// writeDirect writes iovs, whose total is a multiple of dioAlign, at the
// aligned offset off through wf, gathered into an aligned buffer a piece
// at a time (consuming iovs' buffers as pwritev does), and returns how
// many bytes went direct. If the file system refuses (EINVAL), p's direct
// writes stop and the rest goes through the page cache.
func (p *packFile) writeDirect(wf *os.File, iovs [][]byte, off int64) (direct int64, err error) {
	pool := &dioBufs
	if n := sizeOfIovs(iovs); n <= dioSmallSize {
		pool = &dioSmallBufs
	}
	buf := pool.Get().([]byte)
	defer pool.Put(buf)
	rc, err := wf.SyscallConn()
	if err != nil {
		return 0, err
	}
	for len(iovs) > 0 {
		k := 0
		for k < len(buf) && len(iovs) > 0 {
			c := copy(buf[k:], iovs[0])
			k += c
			if iovs[0] = iovs[0][c:]; len(iovs[0]) == 0 {
				iovs = iovs[1:]
			}
		}
		piece := buf[:k]
		var werr error
		cerr := rc.Control(func(fd uintptr) {
			for len(piece) > 0 && werr == nil {
				w, err := pwriteDirect(int(fd), piece, off)
				switch {
				case errors.Is(err, unix.EINTR):
				case err != nil:
					werr = err
				case w == 0:
					werr = errors.New("direct write wrote nothing")
				default:
					piece, off, direct = piece[w:], off+int64(w), direct+int64(w)
				}
			}
		})
		if cerr != nil {
			return direct, cerr
		}
		if errors.Is(werr, unix.EINVAL) {
			// The file system takes O_DIRECT at open but not this write.
			p.direct.Store(nil)
			if _, err := p.f.WriteAt(piece, off); err != nil {
				return direct, err
			}
			return direct, pwritev(p.f, iovs, off+int64(len(piece)))
		}
		if werr != nil {
			return direct, werr
		}
	}
	return direct, nil
}

// splitIovs cuts iovs after n bytes, without copying: the buffers before
// and the buffers after (the one the cut falls in is sliced in two).
func splitIovs(iovs [][]byte, n int64) (before, after [][]byte) {
	for i, b := range iovs {
		if n == 0 {
			return iovs[:i:i], iovs[i:]
		}
		if int64(len(b)) > n {
			before = append(iovs[:i:i], b[:n])
			after = append([][]byte{b[n:]}, iovs[i+1:]...)
			return before, after
		}
		n -= int64(len(b))
	}
	return iovs, nil
}

func sizeOfIovs(iovs [][]byte) int64 {
	n := int64(0)
	for _, b := range iovs {
		n += int64(len(b))
	}
	return n
}
