package exchange

// Direct writes: to packs, a pull's and GC's (writeFrames), while a
// publish's batches go through the page cache, since what was just
// published is read next (packSet.write); and a durable export's file
// (Store.WriteDirect, at the end).
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
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/nii-uk/nii"
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

// exportWindow is how much of an export's file one direct write covers
// (WriteDirect): each worker gathers a window's chunks, then writes it.
const exportWindow = 4 << 20

var exportWindows = sync.Pool{New: func() any { return alignedBuf(exportWindow) }}

// WriteDirect is WriteAt for a durable export into f, a new, empty
// regular file that the caller fsyncs once it returns: the file is sized
// first (fallocate, so a full disk fails the export before it writes),
// and its page-aligned bulk is written directly (O_DIRECT, set on f's
// open file description for the export and cleared after), a window of
// exportWindow bytes at a time, so that the fsync after has little left
// to do and no page of the page cache is filled with what no one is
// about to read. What is left over (the last partial page) goes through
// the page cache.
//
// Each of exportWorkers goroutines takes whole windows in order and reads
// a window's chunks from last to first, each straight into the place it
// belongs in the window (the frame header read before a chunk lands in
// bytes the chunk before it fills next): no copy, except for a chunk that
// crosses the window's edge, which is read into a buffer of its own and
// copied, once for each window it is in (so it is also verified twice).
// Every chunk is verified before its window is written, as WriteAt's are.
//
// It returns an error wrapping errors.ErrUnsupported, having written
// nothing, where f's file system refuses O_DIRECT: the caller then uses
// WriteAt. A refusal later (EINVAL from a write) makes the rest go
// through the page cache.
func (s *Store) WriteDirect(ctx context.Context, rec *VersionRecord, f *os.File) (int64, error) {
	m, err := s.OpenManifest(rec)
	if err != nil {
		return 0, err
	}
	offs, end := chunkOffsets(m)
	d := &directFile{f: f}
	if err := d.begin(); err != nil {
		return 0, fmt.Errorf("direct export: %w (%v)", errors.ErrUnsupported, err)
	}
	defer d.end()
	if err := ReserveFile(f, end); err != nil {
		return 0, err
	}
	ctx, failure := startExport(ctx, m)
	defer failure.cancel()
	var (
		next, n   atomic.Int64
		workers   sync.WaitGroup
		tail      []byte // the last partial page, written once O_DIRECT is off
		tailOff   int64
		windows   = (end + exportWindow - 1) / exportWindow
		chunkSize = func(i int) int64 { return int64(m.Chunks[i].Size) }
		// The chunks over window w: from the last that begins at or
		// before its start to the last that begins before its end.
		chunksOf = func(w int64) (first, last int) {
			lo, hi := w*exportWindow, min((w+1)*exportWindow, end)
			first = sort.Search(len(offs), func(i int) bool { return offs[i] > lo }) - 1
			last = sort.Search(len(offs), func(i int) bool { return offs[i] >= hi }) - 1
			return first, last
		}
	)
	for range exportWorkers() {
		workers.Go(func() {
			var own []byte // for the chunks that cross a window's edge
			for ctx.Err() == nil {
				w := next.Add(1) - 1
				if w >= windows {
					return
				}
				lo, hi := w*exportWindow, min((w+1)*exportWindow, end)
				win := exportWindows.Get().([]byte)[:hi-lo]
				first, last := chunksOf(w)
				where := s.prefetch(m, first, last)
				for i := last; i >= first && ctx.Err() == nil; i-- {
					at := offs[i] - lo // where chunk i begins, from the window's start
					inside := at >= 0 && at+chunkSize(i) <= int64(len(win))
					b, err := s.exportChunk(rec, m, i, func(pre, size int) []byte {
						if inside && at >= int64(pre) && int64(size) == chunkSize(i) {
							return win[at-int64(pre) : at+int64(size)]
						}
						if cap(own) < pre+size {
							own = make([]byte, pre+size)
						}
						return own[:pre+size]
					}, where[i-first])
					if err != nil {
						failure.fail(i, err)
						break
					}
					if len(b) > 0 && (!inside || &b[0] != &win[at]) {
						// Read elsewhere: copy the part in this window.
						from := max(0, -at)
						copy(win[at+from:], b[from:min(int64(len(b)), int64(len(win))-at)])
					}
				}
				if ctx.Err() == nil {
					whole := len(win) &^ (dioAlign - 1)
					if whole < len(win) {
						// Only the last window; read after workers.Wait.
						tail, tailOff = bytes.Clone(win[whole:]), lo+int64(whole)
					}
					k, err := d.writeWindow(win[:whole], lo)
					n.Add(k)
					if err != nil {
						failure.fail(len(m.Chunks), fmt.Errorf("writing the export at offset %d: %w", lo+k, err))
					}
				}
				exportWindows.Put(win[:cap(win)])
			}
		})
	}
	workers.Wait()
	if err := failure.result(ctx); err != nil {
		return n.Load(), err
	}
	if len(tail) > 0 {
		if err := d.set(false); err != nil {
			return n.Load(), err
		}
		k, err := f.WriteAt(tail, tailOff)
		n.Add(int64(k))
		if err != nil {
			return n.Load(), err
		}
	}
	return n.Load(), d.end()
}

// ReserveFile sizes f, an export's or a pull's copy, to size bytes and
// reserves them on its disk (fallocate), so that a disk without the room
// fails now, before anything is written, with an error that says so.
// Where the file system has no fallocate, f is only sized.
func ReserveFile(f *os.File, size int64) error {
	if size <= 0 {
		return nil
	}
	err := fallocate(f, size)
	if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOSYS) {
		err = f.Truncate(size) // no fallocate here: sized, not reserved
	}
	if err != nil {
		return fmt.Errorf("the file needs %d bytes on its disk: reserving them: %w", size, err)
	}
	return nil
}

// fallocate reserves f's first size bytes, as a retry on EINTR.
func fallocate(f *os.File, size int64) error {
	for {
		if err := unix.Fallocate(int(f.Fd()), 0, 0, size); !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

// directFile is an export's destination with O_DIRECT set on it.
type directFile struct {
	f      *os.File
	mu     sync.Mutex
	direct bool // O_DIRECT is set
	was    bool // it was set before begin: end leaves it so
}

// begin sets O_DIRECT, noting whether the descriptor had it already.
func (d *directFile) begin() error {
	fl, err := unix.FcntlInt(d.f.Fd(), unix.F_GETFL, 0)
	if err != nil {
		return err
	}
	d.was = fl&unix.O_DIRECT != 0
	d.direct = d.was
	return d.set(true)
}

// end puts O_DIRECT back as begin found it (idempotent).
func (d *directFile) end() error { return d.set(d.was) }

// set turns O_DIRECT on or off on d's open file description.
func (d *directFile) set(on bool) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.direct == on {
		return nil
	}
	fl, err := unix.FcntlInt(d.f.Fd(), unix.F_GETFL, 0)
	if err != nil {
		return err
	}
	if on {
		fl |= unix.O_DIRECT
	} else {
		fl &^= unix.O_DIRECT
	}
	if err := setfl(d.f.Fd(), fl); err != nil {
		return err
	}
	d.direct = on
	return nil
}

// writeWindow writes win, whole pages, at off: directly, unless the file
// system has refused a direct write, which turns O_DIRECT off and is made
// again through the page cache.
func (d *directFile) writeWindow(win []byte, off int64) (int64, error) {
	if len(win) == 0 {
		return 0, nil
	}
	d.mu.Lock()
	direct := d.direct
	d.mu.Unlock()
	if !direct {
		k, err := d.f.WriteAt(win, off)
		return int64(k), err
	}
	k, err := exportWriteAt(d.f, win, off)
	if errors.Is(err, unix.EINVAL) {
		if err = d.set(false); err == nil {
			var k2 int
			k2, err = d.f.WriteAt(win[k:], off+int64(k))
			k += k2
		}
	}
	return int64(k), err
}

// setfl sets a descriptor's file status flags (a var: tests make it fail
// as Linux does where the file system has no O_DIRECT).
var setfl = func(fd uintptr, fl int) error {
	_, err := unix.FcntlInt(fd, unix.F_SETFL, fl)
	return err
}

// exportWriteAt is WriteDirect's write of a window (a var: tests make it
// fail as a file system that refuses a direct write does).
var exportWriteAt = (*os.File).WriteAt

// prefetch finds where chunks first..last of m are (chunkPtr) and starts
// the kernel reading them from their packs (packSet.willNeed), a run of
// adjacent frames at a time: a worker's window at once, in large reads.
// It returns the locations, nil for a chunk it did not find, for the
// reads to use. Without it a durable export of a GiB whose packs were not
// in the page cache took 1.80 / 2.10 / 3.43 s against 1.47 / 1.62 /
// 1.76 s with it, the workers' reads of windows 4 MiB apart defeating the
// kernel's readahead (docs/benchmarks.md).
func (s *Store) prefetch(m *nii.Manifest, first, last int) []*packPtr {
	var (
		where    = make([]*packPtr, last-first+1)
		run      bool
		pack     uint32
		from, to int64
	)
	for i := first; i <= last; i++ {
		p, ok := s.chunkPtr(m.Chunks[i].Hash)
		if !ok {
			continue
		}
		where[i-first] = &p
		if run && p.pack == pack && p.off >= from && p.off <= to+dioMin {
			to = max(to, p.off+p.frameLen())
			continue
		}
		if run {
			s.packs.willNeed(pack, from, to-from)
		}
		run, pack, from, to = true, p.pack, p.off, p.off+p.frameLen()
	}
	if run {
		s.packs.willNeed(pack, from, to-from)
	}
	return where
}
