package exchange

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/dgraph-io/badger/v4"
	"github.com/nii-uk/nii"
)

// TestServeChecksPackCRC: a chunk in a v2 pack is served on the strength of
// its frame's CRC. A flipped byte of the CRC itself (the chunk's bytes
// intact, so BLAKE3 alone would pass them) makes the server's read fail as
// corrupt: the CRC is what is checked. A flipped byte of the data is
// caught the same way, answered "missing" and never sent.
func TestServeChecksPackCRC(t *testing.T) {
	s, _ := openStore(t)
	sg := newSigner(t)
	rec := publish(t, s, sg, spend, randBytes(31, 1<<20))
	m := mustManifest(t, s, rec)
	crcOf, dataOf := m.Chunks[1].Hash, m.Chunks[3].Hash

	path, _, _, err := s.ChunkFile(crcOf)
	if err != nil {
		t.Fatal(err)
	}
	magic := make([]byte, len(packMagic))
	if f, err := os.Open(path); err != nil {
		t.Fatal(err)
	} else {
		f.ReadAt(magic, 0)
		f.Close()
	}
	if string(magic) != packMagic {
		t.Fatalf("pack begins %q, want %q", magic, packMagic)
	}
	flipChunkByte(t, s, crcOf, -1) // the CRC's last byte, just before the data
	flipChunkByte(t, s, dataOf, 7)

	for _, h := range []nii.Hash{crcOf, dataOf} {
		_, err := s.readChunk(h, func(pre, size int) []byte { return make([]byte, pre+size) })
		if !errors.Is(err, nii.ErrCorrupt) {
			t.Fatalf("serve read of %s: %v, want ErrCorrupt", shortHash(h), err)
		}
		if ok, _ := s.HasChunk(h); ok {
			t.Fatalf("%s is still held after its serve read found it corrupt", shortHash(h))
		}
	}
	// Over the protocol: answered missing, the bytes never sent.
	var sent, missing int
	err, serr := pipeChunks(newContentServer(s, nil, nil), ChunkRequest{Manifest: rec.Manifest, Hashes: []nii.Hash{m.Chunks[0].Hash, crcOf, dataOf}},
		func(h nii.Hash, b []byte) error { sent++; return nil }, func(nii.Hash) { missing++ })
	if err != nil || serr != nil || sent != 1 || missing != 2 {
		t.Fatalf("client %v, server %v: %d sent, %d missing; want 1 and 2", err, serr, sent, missing)
	}
}

// TestLegacyPackFrameHashed: a frame in a pack an earlier build wrote
// (v1: no CRC) is still read, and checked with BLAKE3 when served.
func TestLegacyPackFrameHashed(t *testing.T) {
	s, db := openStore(t)
	good, bad := randBytes(41, 40<<10), randBytes(42, 40<<10)
	gh, bh := nii.HashOf(good), nii.HashOf(bad)
	buf := []byte("niipack\x01")
	var ptrs []packPtr
	for _, b := range [][]byte{good, bad} {
		ptrs = append(ptrs, packPtr{pack: 0xfff0, off: int64(len(buf)), size: uint32(len(b)), format: ptrFormatV1})
		h := nii.HashOf(b)
		buf = append(buf, h[:]...)
		buf = binary.BigEndian.AppendUint32(buf, uint32(len(b)))
		buf = append(buf, b...)
	}
	buf[ptrs[1].off+frameHeaderV1+100] ^= 1 // damage bad's bytes
	if err := os.WriteFile(filepath.Join(s.packs.dir, packName(0xfff0)), buf, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(txn *badger.Txn) error {
		for i, h := range []nii.Hash{gh, bh} {
			if err := setPacked(txn, h, ptrs[i]); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	dst := func(pre, size int) []byte { return make([]byte, pre+size) }
	if b, err := s.readChunk(gh, dst); err != nil || !bytes.Equal(b, good) {
		t.Fatalf("legacy frame: %v", err)
	}
	if b, err := s.Chunk(gh); err != nil || !bytes.Equal(b, good) {
		t.Fatalf("legacy frame by Chunk: %v", err)
	}
	if _, err := s.readChunk(bh, dst); !errors.Is(err, nii.ErrCorrupt) {
		t.Fatalf("damaged legacy frame served: %v, want ErrCorrupt", err)
	}
}

// countWriter records each Write.
type countWriter struct {
	bytes.Buffer
	writes []int
}

func (w *countWriter) Write(p []byte) (int, error) {
	w.writes = append(w.writes, len(p))
	return w.Buffer.Write(p)
}

// TestFrameWriterGathers: the frame writer sends exactly the frames the
// one-write-per-frame encoders make, in order, holds them until its buffer
// is full or it is flushed (nothing is written before the end of a batch
// that fits), and writes a full buffer at a time; a chunk larger than the
// buffer, and one too small for the source's scratch, still come out right.
func TestFrameWriterGathers(t *testing.T) {
	sizes := []int{1, 23, 300, 40 << 10, 32 << 10, frameBufSize + 1, 70 << 10, 5, 128 << 10, 128 << 10}
	var want bytes.Buffer
	if err := writeMsg(&want, &status{OK: true}); err != nil {
		t.Fatal(err)
	}
	var w countWriter
	fw := newFrameWriter(&w)
	defer fw.release()
	if err := fw.writeMsg(&status{OK: true}); err != nil {
		t.Fatal(err)
	}
	for i, n := range sizes {
		data := randBytes(uint64(50+i), n)
		h := nii.HashOf(data)
		if err := writeChunkFrame(&want, h, data); err != nil {
			t.Fatal(err)
		}
		if i == 2 {
			// A missing chunk's frame goes in between, in order.
			if err := writeMsg(&want, &chunkFrame{Hash: h, Data: frameBytes{}, Missing: true}); err != nil {
				t.Fatal(err)
			}
		}
		// The source asks for its scratch (a v2 frame header) before the
		// bytes, and may ask again (a retry) before it fills them.
		fw.room(frameHeader, n)
		b, err := fw.room(frameHeader, n)
		if err != nil || len(b) != frameHeader+n {
			t.Fatalf("room: %d bytes, %v", len(b), err)
		}
		copy(b[frameHeader:], data)
		for k := range frameHeader {
			b[k] = 0xee // scratch: must not reach the wire
		}
		if err := fw.commit(h); err != nil {
			t.Fatal(err)
		}
		if i == 2 {
			if err := fw.writeMsg(&chunkFrame{Hash: h, Data: frameBytes{}, Missing: true}); err != nil {
				t.Fatal(err)
			}
		}
		if i == 1 && len(w.writes) != 0 {
			t.Fatalf("%d writes before the buffer filled", len(w.writes))
		}
	}
	if err := fw.flush(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(w.Bytes(), want.Bytes()) {
		t.Fatalf("%d bytes gathered differ from the %d the frame encoders make", w.Len(), want.Len())
	}
	if max := want.Len()/(frameBufSize/2) + 2; len(w.writes) > max {
		t.Fatalf("%d writes for %d bytes, want at most %d", len(w.writes), want.Len(), max)
	}
	// And the client reads them back, each chunk into a buffer of its own.
	r := bufio.NewReaderSize(bytes.NewReader(w.Bytes()), 4<<10)
	if err := readStatus(r); err != nil {
		t.Fatal(err)
	}
	for i, n := range sizes {
		f, pooled, err := readChunkFrame(r, maxChunkFrame, false)
		if err != nil || len(f.Data) != n || nii.HashOf(f.Data) != f.Hash || f.Missing || pooled != (n > 0) {
			t.Fatalf("chunk %d: %d bytes, pooled %v, %v", i, len(f.Data), pooled, err)
		}
		if i == 2 {
			if f, _, err := readChunkFrame(r, maxChunkFrame, false); err != nil || !f.Missing {
				t.Fatalf("missing frame: %+v %v", f, err)
			}
		}
	}
}

// TestPackPutGathers: a batch of more frames than one pwritev takes is
// written whole, every chunk reading back.
func TestPackPutGathers(t *testing.T) {
	s, _ := openStore(t)
	var chunks []Chunk
	for i := range maxIovecs {
		b := randBytes(uint64(1000+i), 100+i)
		chunks = append(chunks, Chunk{Hash: nii.HashOf(b), Data: b})
	}
	if err := s.putChunks(chunks); err != nil {
		t.Fatal(err)
	}
	for i, c := range chunks {
		b, err := s.Chunk(c.Hash)
		if err != nil || !bytes.Equal(b, c.Data) {
			t.Fatalf("chunk %d: %v", i, err)
		}
	}
}

// TestPullRecyclesIntoPool: a pull through the real protocol code stores
// every chunk right while the buffers go round the pool.
func TestPullRecyclesIntoPool(t *testing.T) {
	s, _ := openStore(t)
	sg := newSigner(t)
	data := randBytes(61, 3<<20)
	rec := publish(t, s, sg, spend, data)
	pf := NewPipeFetcher(sg.id)
	pf.Serve(sg.id, s, nil)
	for range 2 {
		dst, _ := openStore(t)
		if _, err := Pull(context.Background(), pf, dst, PullRequest{Ref: rec.Ref, Manifest: rec.Manifest, Publisher: sg.id, Providers: []nii.NodeID{sg.id}}); err != nil {
			t.Fatal(err)
		}
		got, _ := dst.Version(rec.Ref)
		if b := readAll(t, dst, got); !bytes.Equal(b, data) {
			t.Fatal("pulled version differs")
		}
	}
}
