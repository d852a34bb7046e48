package exchange

import (
	"bufio"
	"bytes"
	"testing"

	"github.com/nii-uk/nii"
)

// FuzzReadChunkFrame: the client's fast path for chunk frames (the head
// parsed by hand, the bytes read into a pooled buffer) agrees with the
// strict decoder on every input: the same frame when both accept it, an
// error from the fast path whenever the decoder refuses it.
func FuzzReadChunkFrame(f *testing.F) {
	for _, n := range []int{0, 1, 23, 24, 255, 256, 300, 65535, 65536} {
		data := randBytes(uint64(n), n)
		var b bytes.Buffer
		writeChunkFrame(&b, nii.HashOf(data), data)
		f.Add(b.Bytes())
	}
	var b bytes.Buffer
	writeMsg(&b, &chunkFrame{Hash: nii.Hash{1}, Data: frameBytes{}, Missing: true})
	f.Add(b.Bytes())
	// A non-minimal byte-string head, a truncated frame, a wrong key.
	f.Add([]byte{0x27, 0xa2, 0x01, 0x58, 0x20, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 0x02, 0x58, 0x01, 0xaa})
	f.Add([]byte{0x30, 0xa2, 0x01, 0x58, 0x20, 1, 2, 3})
	f.Add([]byte{0x27, 0xa2, 0x01, 0x58, 0x20, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 0x03, 0x41, 0xaa})
	f.Fuzz(func(t *testing.T, in []byte) {
		const max = 1 << 20
		fast, _, ferr := readChunkFrame(bufio.NewReaderSize(bytes.NewReader(in), 4<<10), max, false)
		// The reference: the whole frame read, then nii.Unmarshal.
		var ref chunkFrame
		buf, rerr := readFrame(bytes.NewReader(in), max)
		if rerr == nil {
			rerr = decodeChunkFrame(buf, &ref)
		}
		if (ferr == nil) != (rerr == nil) {
			t.Fatalf("fast path %v, decoder %v", ferr, rerr)
		}
		if ferr == nil && (fast.Hash != ref.Hash || fast.Missing != ref.Missing || !bytes.Equal(fast.Data, ref.Data)) {
			t.Fatalf("fast path %x/%d/%v, decoder %x/%d/%v", fast.Hash[:4], len(fast.Data), fast.Missing, ref.Hash[:4], len(ref.Data), ref.Missing)
		}
	})
}
