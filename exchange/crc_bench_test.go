package exchange

import (
	"hash/crc32"
	"testing"

	"github.com/nii-uk/nii"
)

// BenchmarkFrameCRC: the CRC-32C of a pack frame computed right after
// the chunk's BLAKE3 check (as a fetch now does, the bytes in the CPU's
// cache) against over a 64 MiB group of chunks later (as the pack writer
// did, reading memory). Only the CRC is timed.
//
//	go test ./exchange -run XXX -bench FrameCRC
func BenchmarkFrameCRC(b *testing.B) {
	const chunk, group = 36 << 10, 64 << 20
	bufs := make([][]byte, group/chunk)
	for i := range bufs {
		bufs[i] = randBytes(uint64(i), chunk)
	}
	var sink uint32
	b.Run("after-hash", func(b *testing.B) {
		b.SetBytes(group)
		for b.Loop() {
			for _, c := range bufs {
				b.StopTimer()
				h := nii.HashOf(c)
				sink += uint32(h[0])
				b.StartTimer()
				sink += crc32.Checksum(c, castagnoli)
			}
		}
	})
	b.Run("group-later", func(b *testing.B) {
		b.SetBytes(group)
		for b.Loop() {
			b.StopTimer()
			for _, c := range bufs {
				h := nii.HashOf(c)
				sink += uint32(h[0])
			}
			b.StartTimer()
			for _, c := range bufs {
				sink += crc32.Checksum(c, castagnoli)
			}
		}
	})
	_ = sink
}
