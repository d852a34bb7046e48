package exchange

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/dgraph-io/badger/v4"
	"github.com/nii-uk/nii"
	"golang.org/x/sys/unix"
)

// Pack files: where chunk bodies live.
//
// badger keeps the index (c/<hash> → pack, offset, size), the manifests
// and everything else; the bodies are appended to pack files in the
// directory packs/ inside badger's. badger's value log was the ceiling
// for publish and pull (docs/storage.md): every byte went through a
// memory-mapped file that is zero-filled page by page as it grows. A pack
// is written with pwrite(2), its large writes' middles direct (directio.go),
// and read with pread(2).
//
// A pack file is "niipack\x02" and then frames, each the chunk's hash (32
// bytes), its size (4 bytes, big-endian), the CRC-32C (Castagnoli) of its
// bytes (4 bytes, big-endian) and its bytes. Packs written by earlier
// builds begin "niipack\x01" and their frames have no CRC; they are read as
// before. Packs are only
// appended to, by the process that created them (each store instance
// starts a new pack when it first writes, and a new one once a pack passes
// packCap), so the bytes past the last frame the index names — a write
// cut by a crash — are never read and never appended to: they are dead
// space, reclaimed with the rest when the pack is rewritten (gc.go).
//
// The CRC is what lets the content server send a chunk without hashing it
// again (Store.readChunk): a byte damaged on the disk fails the CRC, so the
// server answers "missing" and drops the entry, as a BLAKE3 mismatch did;
// the client's BLAKE3 check against the signed manifest is the end-to-end
// guarantee. Every other reader (export, the store check, GC) still checks
// BLAKE3. A frame from a v1 pack has no CRC and is checked with BLAKE3 on
// every path.
//
// The order that makes a crash harmless: a batch of frames is written and
// the pack fsynced before the badger transaction that records their index
// entries commits, and a version is committed only after that. (A pull's
// syncedWriter syncs once for several batches written meanwhile, then
// commits their entries: the same order, chunks.go.) So an index
// entry never names bytes that are not on the disk, and a version never
// names a chunk without an index entry. Reading checks the frame's hash and
// size against the index and the bytes against the CRC (and, on every path
// but serving, against the hash).
//
// An index entry is a badger value of packPtrSize bytes whose UserMeta is
// metaPacked. A c/ key without it is a chunk stored by an earlier build,
// whose value is the chunk's bytes: those are read as before (a store
// upgraded in place keeps everything), and collected as before.

const (
	packDirName   = "packs"
	packMagic     = "niipack\x02"        // packs this build writes
	frameHeader   = nii.HashSize + 4 + 4 // hash, size, CRC-32C
	frameHeaderV1 = nii.HashSize + 4     // hash, size: packs of earlier builds
	packPtrSize   = 1 + 4 + 8 + 4
	ptrFormat     = 2          // an index entry of a frame with a CRC, in a v2 pack
	ptrFormatV1   = 1          // an index entry of a frame without, in a v1 pack
	metaPacked    = byte(0x70) // badger UserMeta of a c/ entry that points into a pack
	packCap       = 512 << 20  // a pack is closed to new batches past this size
	packFileMode  = 0o600
)

// packPtr locates a frame: the pack's number, the frame's offset in it
// (its header), the chunk's size and the frame's format (ptrFormat, or
// ptrFormatV1 for a frame an earlier build wrote).
type packPtr struct {
	pack   uint32
	off    int64
	size   uint32
	format byte
}

// header is the length of the frame's header.
func (p packPtr) header() int {
	if p.format == ptrFormatV1 {
		return frameHeaderV1
	}
	return frameHeader
}

// frameLen is the bytes the frame takes in its pack.
func (p packPtr) frameLen() int64 { return int64(p.header()) + int64(p.size) }

// hasCRC reports whether the frame carries a CRC of its bytes.
func (p packPtr) hasCRC() bool { return p.format == ptrFormat }

func (p packPtr) encode() []byte {
	b := make([]byte, 0, packPtrSize)
	f := p.format
	if f == 0 {
		f = ptrFormat
	}
	b = append(b, f)
	b = binary.BigEndian.AppendUint32(b, p.pack)
	b = binary.BigEndian.AppendUint64(b, uint64(p.off))
	return binary.BigEndian.AppendUint32(b, p.size)
}

func decodePackPtr(b []byte) (packPtr, error) {
	if len(b) != packPtrSize || (b[0] != ptrFormat && b[0] != ptrFormatV1) {
		return packPtr{}, fmt.Errorf("%w: pack index entry of %d bytes, format %v", nii.ErrCorrupt, len(b), b[:min(1, len(b))])
	}
	return packPtr{
		pack:   binary.BigEndian.Uint32(b[1:]),
		off:    int64(binary.BigEndian.Uint64(b[5:])),
		size:   binary.BigEndian.Uint32(b[13:]),
		format: b[0],
	}, nil
}

// frameLen is the bytes a chunk of size n takes in a pack this build
// writes.
func frameLen(n int) int64 { return int64(frameHeader + n) }

// castagnoli is the CRC-32C table (SSE 4.2 and ARMv8 compute it in
// hardware, at many GB/s).
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// appendFrame adds c's frame to buf.
func appendFrame(buf []byte, c Chunk) []byte {
	buf = appendFrameHeader(buf, c)
	return append(buf, c.Data...)
}

// appendFrameHeader adds the header of c's frame to buf.
func appendFrameHeader(buf []byte, c Chunk) []byte {
	buf = append(buf, c.Hash[:]...)
	buf = binary.BigEndian.AppendUint32(buf, uint32(len(c.Data)))
	if !c.hasCRC {
		c = c.withCRC()
	}
	return binary.BigEndian.AppendUint32(buf, c.crc)
}

// errPackGone is a read of a pack removed (by a rewrite) since its index
// entry was read: the reader looks the chunk up again.
var errPackGone = errors.New("pack removed")

// packSet is a store's pack files.
type packSet struct {
	dir string

	mu      sync.Mutex
	cur     *packFile            // where new batches go; nil until the first
	mine    map[uint32]*packFile // packs this instance created
	firstID uint32               // packs numbered below existed when the store opened
	readers map[uint32]*os.File  // open for reading, by number
	gone    map[uint32]bool      // removed by this instance

	syncErr func() error // tests: a sync fails with what it returns
	// buffered turns direct writes off (directio.go): every write goes
	// through the page cache.
	buffered bool

	// Bytes written to packs directly and through the page cache.
	directBytes, cachedBytes atomic.Int64
}

type packFile struct {
	id      uint32
	f       *os.File
	size    int64 // bytes reserved, header included
	writers int   // batches reserved and not yet committed (or abandoned)

	// wf is the pack opened for direct writes (directio.go), nil where
	// the file system refuses them; direct is wf until a write is refused.
	wf     *os.File
	direct atomic.Pointer[os.File]
}

func packName(id uint32) string { return fmt.Sprintf("%08x.pack", id) }

func parsePackName(name string) (uint32, bool) {
	hex, ok := strings.CutSuffix(name, ".pack")
	if !ok || len(hex) != 8 {
		return 0, false
	}
	id, err := strconv.ParseUint(hex, 16, 32)
	return uint32(id), err == nil
}

// openPacks prepares the pack directory dir (creating it, 0700) and notes
// the packs already there; nothing is written until the first batch.
func openPacks(dir string, readOnly bool) (*packSet, error) {
	if !readOnly {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("pack directory: %w", err)
		}
	}
	ps := &packSet{dir: dir, mine: map[uint32]*packFile{}, readers: map[uint32]*os.File{}, gone: map[uint32]bool{}}
	ids, err := ps.list()
	if err != nil && !(readOnly && errors.Is(err, os.ErrNotExist)) {
		return nil, err
	}
	ps.firstID = 1
	if len(ids) > 0 {
		ps.firstID = ids[len(ids)-1] + 1
	}
	return ps, nil
}

// list returns the numbers of the pack files on disk, ascending.
func (ps *packSet) list() ([]uint32, error) {
	ents, err := os.ReadDir(ps.dir)
	if err != nil {
		return nil, fmt.Errorf("pack directory: %w", err)
	}
	var ids []uint32
	for _, e := range ents {
		if id, ok := parsePackName(e.Name()); ok && e.Type().IsRegular() {
			ids = append(ids, id)
		}
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	return ids, nil
}

func (ps *packSet) path(id uint32) string { return filepath.Join(ps.dir, packName(id)) }

// newPackLocked creates the next pack file: exclusive, 0600, its header
// written, the directory synced so that the file outlives a crash.
func (ps *packSet) newPackLocked() (*packFile, error) {
	id := ps.firstID
	for _, p := range ps.mine {
		id = max(id, p.id+1)
	}
	for range 1000 {
		f, err := os.OpenFile(ps.path(id), os.O_RDWR|os.O_CREATE|os.O_EXCL, packFileMode)
		if errors.Is(err, os.ErrExist) {
			id++ // another store instance on the same directory took it
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("create pack: %w", err)
		}
		if _, err := f.WriteAt([]byte(packMagic), 0); err != nil {
			f.Close()
			os.Remove(f.Name())
			return nil, fmt.Errorf("create pack: %w", err)
		}
		if err := syncDir(ps.dir); err != nil {
			f.Close()
			os.Remove(f.Name())
			return nil, fmt.Errorf("create pack: %w", err)
		}
		p := &packFile{id: id, f: f, size: int64(len(packMagic))}
		if !ps.buffered {
			p.wf = openDirect(f.Name())
			p.direct.Store(p.wf)
		}
		ps.mine[id] = p
		ps.readers[id] = f
		return p, nil
	}
	return nil, errors.New("create pack: no free pack number")
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// reserve sets aside n bytes at the end of the current pack (a new one if
// it is past packCap) for one batch; the caller writes there, syncs, and
// calls done once the batch's index entries are committed or abandoned.
func (ps *packSet) reserve(n int64) (*packFile, int64, error) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.cur == nil || (ps.cur.size+n > packCap && ps.cur.size > int64(len(packMagic))) {
		p, err := ps.newPackLocked()
		if err != nil {
			return nil, 0, err
		}
		if old := ps.cur; old != nil && old.writers == 0 {
			old.closeDirect()
		}
		ps.cur = p
	}
	p := ps.cur
	off := p.size
	p.size += n
	p.writers++
	return p, off, nil
}

func (ps *packSet) done(p *packFile) {
	ps.mu.Lock()
	if p.writers--; p.writers == 0 && p != ps.cur {
		p.closeDirect() // sealed: nothing writes to it again
	}
	ps.mu.Unlock()
}

// closeDirect closes p's direct descriptor. ps.mu held, and no batch in
// flight on p.
func (p *packFile) closeDirect() {
	if p.wf != nil {
		p.direct.Store(nil)
		p.wf.Close()
		p.wf = nil
	}
}

// write writes a batch of frames at off in p and syncs p: once it returns
// nil, the frames survive a crash. It returns the batch's pointers.
func (ps *packSet) write(p *packFile, off int64, buf []byte, chunks []Chunk) ([]packPtr, error) {
	// A publish's batches go through the page cache (not writeAt): what
	// was just published is what followers pull and exports read next,
	// and reading it back from the disk made an export after a publish
	// 0.6 s per GiB slower (docs/storage.md, "Direct writes").
	if _, err := p.f.WriteAt(buf, off); err != nil {
		return nil, fmt.Errorf("write pack %s: %w", packName(p.id), err)
	}
	ps.cachedBytes.Add(int64(len(buf)))
	return ps.synced(p, off, chunks)
}

// synced syncs p, to which chunks were written at off, and returns their
// pointers.
func (ps *packSet) synced(p *packFile, off int64, chunks []Chunk) ([]packPtr, error) {
	if err := p.f.Sync(); err != nil {
		return nil, fmt.Errorf("sync pack %s: %w", packName(p.id), err)
	}
	ptrs := make([]packPtr, len(chunks))
	at := off
	for i, c := range chunks {
		ptrs[i] = packPtr{pack: p.id, off: at, size: uint32(len(c.Data)), format: ptrFormat}
		at += frameLen(len(c.Data))
	}
	return ptrs, nil
}

// put writes chunks as one batch: framed, written and synced. The caller
// records the pointers in badger, then calls ps.done(p). The chunks' bytes
// are written from where they are (one pwritev(2) gathers the frame
// headers and the bytes), not copied into a batch buffer first.
func (ps *packSet) put(chunks []Chunk) (*packFile, []packPtr, error) {
	p, ptrs, err := ps.writeFrames(chunks)
	if err != nil {
		return nil, nil, err
	}
	if err := ps.sync(p); err != nil {
		ps.done(p)
		return nil, nil, err
	}
	return p, ptrs, nil
}

// writeFrames writes chunks as one batch, framed, at the end of the
// current pack, and returns where, without syncing: the frames may not
// survive a crash until p.sync returns, so no index entry may name them
// before (syncedWriter). The caller calls ps.done(p) once their index
// entries are committed or abandoned.
func (ps *packSet) writeFrames(chunks []Chunk) (*packFile, []packPtr, error) {
	var n int64
	for _, c := range chunks {
		n += frameLen(len(c.Data))
	}
	heads := make([]byte, 0, len(chunks)*frameHeader)
	iovs := make([][]byte, 0, 2*len(chunks))
	for _, c := range chunks {
		at := len(heads)
		heads = appendFrameHeader(heads, c)
		iovs = append(iovs, heads[at:], c.Data)
	}
	p, off, err := ps.reserve(n)
	if err != nil {
		return nil, nil, err
	}
	direct, err := p.writeAt(iovs, off)
	if err != nil {
		ps.done(p)
		return nil, nil, fmt.Errorf("write pack %s: %w", packName(p.id), err)
	}
	ps.directBytes.Add(direct)
	ps.cachedBytes.Add(n - direct)
	ptrs := make([]packPtr, len(chunks))
	at := off
	for i, c := range chunks {
		ptrs[i] = packPtr{pack: p.id, off: at, size: uint32(len(c.Data)), format: ptrFormat}
		at += frameLen(len(c.Data))
	}
	return p, ptrs, nil
}

// sync makes everything written to p so far survive a crash.
func (ps *packSet) sync(p *packFile) error {
	if ps.syncErr != nil {
		if err := ps.syncErr(); err != nil {
			return fmt.Errorf("sync pack %s: %w", packName(p.id), err)
		}
	}
	if err := p.f.Sync(); err != nil {
		return fmt.Errorf("sync pack %s: %w", packName(p.id), err)
	}
	return nil
}

// maxIovecs is how many buffers one pwritev(2) takes (Linux's IOV_MAX).
const maxIovecs = 1024

// pwritev writes the buffers one after another at off in f, as many at a
// time as one call takes, until all are written.
func pwritev(f *os.File, iovs [][]byte, off int64) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var werr error
	cerr := rc.Control(func(fd uintptr) {
		for len(iovs) > 0 {
			k, err := unix.Pwritev(int(fd), iovs[:min(len(iovs), maxIovecs)], off)
			if errors.Is(err, unix.EINTR) {
				continue
			}
			if err != nil {
				werr = err
				return
			}
			if k == 0 {
				werr = io.ErrShortWrite
				return
			}
			off += int64(k)
			for k > 0 {
				if k < len(iovs[0]) {
					iovs[0] = iovs[0][k:]
					break
				}
				k -= len(iovs[0])
				iovs = iovs[1:]
			}
			for len(iovs) > 0 && len(iovs[0]) == 0 {
				iovs = iovs[1:]
			}
		}
	})
	if cerr != nil {
		return cerr
	}
	return werr
}

// reader returns pack id's file, opening it if needed.
func (ps *packSet) reader(id uint32) (*os.File, error) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.gone[id] {
		return nil, errPackGone
	}
	if f, ok := ps.readers[id]; ok {
		return f, nil
	}
	f, err := os.Open(ps.path(id))
	if errors.Is(err, os.ErrNotExist) && !ps.gone[id] {
		return nil, fmt.Errorf("%w: pack %s is missing", nii.ErrCorrupt, packName(id))
	}
	if err != nil {
		return nil, err
	}
	ps.readers[id] = f
	return f, nil
}

// willNeed asks the kernel to read pack id's bytes [off, off+n) into the
// page cache in the background (POSIX_FADV_WILLNEED): for a reader about
// to read many adjacent frames from several goroutines, whose reads of
// one descriptor defeat the kernel's readahead (WriteDirect).
func (ps *packSet) willNeed(id uint32, off, n int64) {
	f, err := ps.reader(id)
	if err != nil {
		return
	}
	// Through Control, which holds the descriptor open for the call: a
	// pack removed meanwhile (GC) closes its reader, and a bare Fd could
	// name another file by then.
	if rc, err := f.SyscallConn(); err == nil {
		rc.Control(func(fd uintptr) { unix.Fadvise(int(fd), off, n, unix.FADV_WILLNEED) })
	}
}

// read returns chunk h's bytes from where ptr says, checking the frame's
// header (hash and size) and, in a v2 pack, the bytes against the frame's
// CRC, but not against the hash: Store.Chunk hashes those.
//
// If dst is set, the frame is read into dst(header, size), a buffer of
// header+size bytes the caller gives (its first header bytes are scratch
// for the frame's header), and the chunk's bytes are its last size bytes.
// If hashed, the caller hashes the bytes next (an export, GC's rewrite),
// a stronger check than the CRC, which is then not computed.
func (ps *packSet) read(h nii.Hash, ptr packPtr, dst func(pre, size int) []byte, hashed bool) ([]byte, error) {
	f, err := ps.reader(ptr.pack)
	if err != nil {
		return nil, err
	}
	hl := ptr.header()
	var buf []byte
	if dst != nil {
		buf = dst(hl, int(ptr.size))
	} else {
		buf = make([]byte, ptr.frameLen())
	}
	k, err := f.ReadAt(buf, ptr.off)
	if errors.Is(err, os.ErrClosed) {
		return nil, errPackGone
	}
	if k < len(buf) && err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("pack %s: %w", packName(ptr.pack), err) // the disk, not the bytes
	}
	if k < len(buf) {
		return nil, fmt.Errorf("%w: pack %s ends at the chunk (%d of %d bytes at offset %d): %v", nii.ErrCorrupt, packName(ptr.pack), k, len(buf), ptr.off, err)
	}
	if nii.Hash(buf[:nii.HashSize]) != h || binary.BigEndian.Uint32(buf[nii.HashSize:]) != ptr.size {
		return nil, fmt.Errorf("%w: pack %s at offset %d holds another frame than the index says", nii.ErrCorrupt, packName(ptr.pack), ptr.off)
	}
	data := buf[hl:]
	if ptr.hasCRC() && !hashed && crc32.Checksum(data, castagnoli) != binary.BigEndian.Uint32(buf[nii.HashSize+4:]) {
		return nil, fmt.Errorf("%w: pack %s at offset %d: the chunk's bytes do not match their CRC", nii.ErrCorrupt, packName(ptr.pack), ptr.off)
	}
	return data, nil
}

// remove deletes pack id (a rewrite moved or GC dropped all it held).
func (ps *packSet) remove(id uint32) error {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if f, ok := ps.readers[id]; ok {
		f.Close()
		delete(ps.readers, id)
	}
	if p, ok := ps.mine[id]; ok {
		p.closeDirect()
	}
	delete(ps.mine, id)
	ps.gone[id] = true
	if err := os.Remove(ps.path(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// sealed returns the packs nothing will write to again: those that existed
// when the store opened, and those this instance created that are no
// longer current and have no batch in flight. Only sealed packs are
// rewritten or removed.
func (ps *packSet) sealed() (map[uint32]bool, error) {
	ids, err := ps.list()
	if err != nil {
		return nil, err
	}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	out := map[uint32]bool{}
	for _, id := range ids {
		if p, ok := ps.mine[id]; ok {
			if p != ps.cur && p.writers == 0 {
				out[id] = true
			}
			continue
		}
		if id < ps.firstID {
			out[id] = true
		}
	}
	return out, nil
}

// sizes returns each pack file's size on disk, and their count and total.
func (ps *packSet) sizes() (map[uint32]int64, error) {
	ids, err := ps.list()
	if err != nil {
		return nil, err
	}
	out := make(map[uint32]int64, len(ids))
	for _, id := range ids {
		fi, err := os.Stat(ps.path(id))
		if err != nil {
			continue // removed meanwhile
		}
		out[id] = fi.Size()
	}
	return out, nil
}

// close closes every file not being written; a later read or write opens
// what it needs again.
func (ps *packSet) close() error {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	var first error
	for id, f := range ps.readers {
		p, mine := ps.mine[id]
		if mine && p.writers > 0 {
			continue // its batch still writes through it
		}
		if err := f.Close(); err != nil && first == nil {
			first = err
		}
		if mine {
			p.closeDirect()
		}
		delete(ps.readers, id)
		if mine && p == ps.cur {
			ps.cur = nil
		}
	}
	return first
}

// ChunkFile says where chunk h's bytes are on disk: the pack file and the
// offset of its bytes in it. A chunk stored in badger by an earlier build
// has no file of its own (path ""). It is for diagnosis (and tests that
// damage a chunk behind the store's back).
func (s *Store) ChunkFile(h nii.Hash) (path string, offset int64, size int, err error) {
	err = s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(chunkKey(h))
		if err != nil {
			return err
		}
		if item.UserMeta() != metaPacked {
			size = int(item.ValueSize())
			return nil
		}
		return item.Value(func(v []byte) error {
			p, err := decodePackPtr(v)
			path, offset, size = s.packs.path(p.pack), p.off+int64(p.header()), int(p.size)
			return err
		})
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		err = fmt.Errorf("chunk %s: %w", h, nii.ErrNotFound)
	}
	return path, offset, size, err
}
