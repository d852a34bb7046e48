package exchange

// The chunk frames of /nii/chunks/1.0.0 as the two ends move them: the
// server gathers frames in one buffer and writes it when full (so the
// muxer sends full 64 KiB frames and TLS full records, a few syscalls per
// several chunks, where it used to write each chunk's head and body
// apart); it reads each chunk from its pack straight into that buffer.
// The client reads each chunk's bytes straight into a pooled buffer of
// their size, which the store's sink gives back once the chunk is in a
// pack. The bytes on the wire are unchanged: the frame is the canonical
// CBOR of chunkFrame, as nii.Marshal writes it (a test checks).

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/nii-uk/nii"
)

// frameBufSize is the server's chunk frame buffer: four muxer frames of
// 64 KiB, sixteen TLS records.
const frameBufSize = 256 << 10

var frameBufs = sync.Pool{New: func() any { b := make([]byte, 0, frameBufSize); return &b }}

// chunkFrameHead appends the frame length and the CBOR head of
// chunkFrame{Hash: h, Data: <n bytes>} to b: everything before the data.
func chunkFrameHead(b []byte, h nii.Hash, n int) []byte {
	var cb [48]byte
	head := append(cb[:0], 0xa2, 0x01, 0x58, nii.HashSize) // {1: bytes(32)
	head = append(head, h[:]...)
	head = append(head, 0x02) // 2: bytes(n)
	head = appendBytesHead(head, n)
	var hdr [maxVarintLen]byte
	k := putUvarint(hdr[:], uint64(len(head)+n))
	return append(append(b, hdr[:k]...), head...)
}

// chunkFrameHeadLen is len(chunkFrameHead(nil, h, n)).
func chunkFrameHeadLen(n int) int {
	head := 4 + nii.HashSize + 1 + len(appendBytesHead(nil, n))
	var hdr [maxVarintLen]byte
	return putUvarint(hdr[:], uint64(head+n)) + head
}

// frameWriter gathers a chunk response's frames in one buffer and writes
// it when the next frame does not fit, and at the end (flush).
type frameWriter struct {
	w    io.Writer
	bufp *[]byte
	buf  []byte // frames ready to send

	// The frame being filled (frame): in buf's spare room, or in a buffer
	// of its own (a frame larger than buf, or a chunk too small for the
	// source's scratch to fit before its bytes).
	frame []byte
	head  int // its head's length
	inBuf bool
}

func newFrameWriter(w io.Writer) *frameWriter {
	bp := frameBufs.Get().(*[]byte)
	return &frameWriter{w: w, bufp: bp, buf: (*bp)[:0]}
}

// release gives the buffer back; fw is not used after.
func (fw *frameWriter) release() {
	if fw.bufp != nil {
		*fw.bufp = fw.buf[:0]
		frameBufs.Put(fw.bufp)
		fw.bufp, fw.buf, fw.frame = nil, nil, nil
	}
}

// flush writes what is gathered.
func (fw *frameWriter) flush() error {
	if len(fw.buf) == 0 {
		return nil
	}
	_, err := fw.w.Write(fw.buf)
	fw.buf = fw.buf[:0]
	return err
}

// writeFrame adds one frame of payload (a status, a missing chunk).
func (fw *frameWriter) writeFrame(payload []byte) error {
	var hdr [maxVarintLen]byte
	k := putUvarint(hdr[:], uint64(len(payload)))
	if n := k + len(payload); len(fw.buf)+n > cap(fw.buf) {
		if err := fw.flush(); err != nil {
			return err
		}
		if n > cap(fw.buf) {
			return writeFrame(fw.w, payload)
		}
	}
	fw.buf = append(append(fw.buf, hdr[:k]...), payload...)
	return nil
}

// writeMsg adds v's frame.
func (fw *frameWriter) writeMsg(v any) error {
	b, err := nii.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %T: %w", v, err)
	}
	return fw.writeFrame(b)
}

// room is the dst of chunkReader.readChunk: it sets aside the frame of a
// chunk of size bytes, flushing first if the buffer cannot hold it, and
// returns where the source reads: pre bytes of scratch, then the chunk's
// bytes where the frame carries them. Nothing is sent until commit. A
// later call replaces the frame set aside.
func (fw *frameWriter) room(pre, size int) ([]byte, error) {
	hl := chunkFrameHeadLen(size)
	n := hl + size
	fw.head = hl
	if hl >= pre && n <= cap(fw.buf) {
		if len(fw.buf)+n > cap(fw.buf) {
			if err := fw.flush(); err != nil {
				return nil, err
			}
		}
		at := len(fw.buf)
		fw.frame, fw.inBuf = fw.buf[at:at+n], true
		return fw.buf[at+hl-pre : at+n], nil
	}
	lead := max(pre, hl)
	b := make([]byte, lead+size)
	fw.frame, fw.inBuf = b[lead-hl:], false
	return b[lead-pre:], nil
}

// commit completes the frame set aside by room for chunk h, whose bytes
// are now in place, and adds it.
func (fw *frameWriter) commit(h nii.Hash) error {
	f := fw.frame
	fw.frame = nil
	chunkFrameHead(f[:0], h, len(f)-fw.head)
	if fw.inBuf {
		fw.buf = fw.buf[:len(fw.buf)+len(f)]
		return nil
	}
	if len(fw.buf)+len(f) <= cap(fw.buf) {
		fw.buf = append(fw.buf, f...)
		return nil
	}
	if err := fw.flush(); err != nil {
		return err
	}
	_, err := fw.w.Write(f)
	return err
}

// readChunkFrom reads chunk h from src into a frame set aside in fw. A
// *Store reads it there itself (Store.readChunk: checked once, by the CRC
// of a v2 pack frame, else by BLAKE3; no allocation, no copy); any other
// source's Chunk is copied there. (Only a *Store itself: a type that
// embeds one and overrides Chunk gets its Chunk called.) It
// returns the chunk's bytes, to be committed, or src's error (nothing set
// aside then counts).
func (fw *frameWriter) readChunkFrom(src ContentSource, h nii.Hash) ([]byte, error) {
	var roomErr error
	dst := func(pre, size int) []byte {
		b, err := fw.room(pre, size)
		if err != nil {
			roomErr = err
			return make([]byte, pre+size) // read, then dropped
		}
		return b
	}
	if st, ok := src.(*Store); ok {
		data, err := st.readChunk(h, dst)
		if roomErr != nil {
			return nil, roomErr
		}
		return data, err
	}
	data, err := src.Chunk(h)
	if err != nil || len(data) == 0 || len(data) > nii.MaxChunkSize {
		return data, err
	}
	b := dst(0, len(data))
	if roomErr != nil {
		return nil, roomErr
	}
	copy(b, data)
	return b, nil
}

// chunkBufs hold received chunks' bytes: one class per 4 KiB of size up
// to maxPooledChunk, so a buffer wastes less than 4 KiB. Larger chunks get
// buffers of their own.
const (
	chunkBufStep   = 4 << 10
	maxPooledChunk = 256 << 10
)

var chunkBufs [maxPooledChunk / chunkBufStep]sync.Pool

// getChunkBuf returns a buffer of n bytes (not zeroed: every byte is to be
// read into).
func getChunkBuf(n int) []byte {
	if n <= 0 || n > maxPooledChunk {
		return make([]byte, n)
	}
	c := (n + chunkBufStep - 1) / chunkBufStep
	if bp, ok := chunkBufs[c-1].Get().(*[]byte); ok {
		return (*bp)[:n]
	}
	return make([]byte, n, c*chunkBufStep)
}

// putChunkBuf gives back a buffer getChunkBuf returned, once nothing
// refers to its bytes.
func putChunkBuf(b []byte) {
	c := cap(b) / chunkBufStep
	if c == 0 || c > len(chunkBufs) || cap(b)%chunkBufStep != 0 {
		return
	}
	b = b[:0]
	chunkBufs[c-1].Put(&b)
}

// chunkHeadMax is the longest CBOR head of a chunk frame with data: the
// map, the hash, key 2 and a 5-byte byte-string head.
const chunkHeadMax = 4 + nii.HashSize + 1 + 5

// readChunkFrame reads one chunk frame of at most max bytes from r. A
// frame in the form a server writes ({1: hash, 2: bytes}, canonical) has
// its bytes read straight into a pooled buffer of their size (pooled is
// then true: the caller may give it back with putChunkBuf once done with
// it); any other (a missing chunk, a frame some other encoder wrote) is
// read whole and decoded by nii.Unmarshal. With exact, a frame's buffer is
// allocated at its declared length at once (the caller bounded max by the
// chunk's size); otherwise it grows as the bytes arrive.
func readChunkFrame(r io.Reader, max int, exact bool) (f chunkFrame, pooled bool, err error) {
	br, ok := r.(*bufio.Reader)
	if !ok {
		buf, err := readOwnFrame(r, max, exact)
		if err != nil {
			return chunkFrame{}, false, err
		}
		err = decodeChunkFrame(buf, &f)
		return f, false, err
	}
	n, err := readUvarint(br)
	if err != nil {
		return chunkFrame{}, false, err
	}
	if n > uint64(max) {
		return chunkFrame{}, false, fmt.Errorf("%w: %d bytes declared, limit %d", ErrFrameTooLarge, n, max)
	}
	if head, err := br.Peek(min(int(n), chunkHeadMax)); err == nil {
		if h, hl, size, ok := parseChunkHead(head); ok && uint64(hl+size) == n {
			if _, err := br.Discard(hl); err != nil {
				return chunkFrame{}, false, err
			}
			data := getChunkBuf(size)
			if _, err := io.ReadFull(br, data); err != nil {
				putChunkBuf(data)
				if errors.Is(err, io.EOF) {
					err = io.ErrUnexpectedEOF
				}
				return chunkFrame{}, false, err
			}
			return chunkFrame{Hash: h, Data: data}, true, nil
		}
	}
	var buf []byte
	if exact {
		buf = make([]byte, n)
		_, err = io.ReadFull(br, buf)
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
	} else {
		buf, err = readPayload(br, int(n))
	}
	if err != nil {
		return chunkFrame{}, false, err
	}
	err = decodeChunkFrame(buf, &f)
	return f, false, err
}

func decodeChunkFrame(buf []byte, f *chunkFrame) error {
	if err := nii.Unmarshal(buf, f); err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return nil
}

// parseChunkHead parses the head of a chunk frame with data in the
// canonical form: a2 01 58 20 <hash> 02 <byte-string head>. It returns the
// hash, the head's length and the data's size, and ok only if b is that
// form with a minimally encoded, non-empty size (anything else is for
// nii.Unmarshal to judge).
func parseChunkHead(b []byte) (h nii.Hash, hl, size int, ok bool) {
	const fixed = 4 + nii.HashSize + 1
	if len(b) < fixed+1 || b[0] != 0xa2 || b[1] != 0x01 || b[2] != 0x58 || b[3] != nii.HashSize || b[4+nii.HashSize] != 0x02 {
		return h, 0, 0, false
	}
	copy(h[:], b[4:4+nii.HashSize])
	t := b[fixed:]
	switch {
	case t[0] > 0x40 && t[0] < 0x58:
		return h, fixed + 1, int(t[0] & 0x1f), true
	case t[0] == 0x58 && len(t) >= 2 && t[1] >= 24:
		return h, fixed + 2, int(t[1]), true
	case t[0] == 0x59 && len(t) >= 3 && (int(t[1])<<8|int(t[2])) > 0xff:
		return h, fixed + 3, int(t[1])<<8 | int(t[2]), true
	case t[0] == 0x5a && len(t) >= 5:
		n := int(t[1])<<24 | int(t[2])<<16 | int(t[3])<<8 | int(t[4])
		if n > 0xffff {
			return h, fixed + 5, n, true
		}
	}
	return h, 0, 0, false
}
