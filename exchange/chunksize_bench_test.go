package exchange

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/nii-uk/nii/exchange/chunker"
	"github.com/nii-uk/nii/internal/niitest"
)

// BenchmarkChunkSizes is the measurement behind nii's chunk bounds
// (docs/storage.md). For each candidate average size it publishes a 64 MiB
// transparency-style CSV into a fresh badger store, then a copy with ten
// single-row edits, and reports:
//
//	MB/s              ingest throughput (chunk + hash + badger write)
//	new-KiB/edit      bytes the edited copy adds to the store, per edited row
//	KiB/100KiB-edit   bytes a copy with ten scattered 100 KiB overwrites adds,
//	                  per overwrite (the DeltaSync case, at 64 MiB)
//	manifest-KiB      the manifest's chunk list for the 64 MiB file (36 B a chunk)
//
// go test ./exchange -run XXX -bench ChunkSizes -benchtime 1x
func BenchmarkChunkSizes(b *testing.B) {
	orig, edited := editedCSV(64<<20, 10)
	blocks := bytes.Clone(orig)
	r := rand.New(rand.NewPCG(6, 6))
	for range 10 {
		at := r.IntN(len(blocks) - 100<<10)
		for j := at; j < at+100<<10; j++ {
			blocks[j] = byte(r.Uint32())
		}
	}
	for _, avg := range []int{8 << 10, 16 << 10, 32 << 10, 64 << 10, 128 << 10, 256 << 10} {
		p := chunker.Params{Min: avg / 4, Avg: avg, Max: avg * 4}
		b.Run(fmt.Sprintf("avg=%dKiB", avg>>10), func(b *testing.B) {
			b.SetBytes(int64(len(orig)))
			var newBytes, blockBytes, chunks int64
			for b.Loop() {
				b.StopTimer()
				db := niitest.OpenDB(b, b.TempDir())
				s, _ := NewStore(db, p)
				b.StartTimer()
				refs, _, err := s.Ingest(context.Background(), bytes.NewReader(orig))
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				before, _ := s.Stats()
				if _, _, err := s.Ingest(context.Background(), bytes.NewReader(edited)); err != nil {
					b.Fatal(err)
				}
				after, _ := s.Stats()
				if _, _, err := s.Ingest(context.Background(), bytes.NewReader(blocks)); err != nil {
					b.Fatal(err)
				}
				last, _ := s.Stats()
				newBytes, chunks = after.ChunkBytes-before.ChunkBytes, int64(len(refs))
				blockBytes = last.ChunkBytes - after.ChunkBytes
				db.Close()
				b.StartTimer()
			}
			b.ReportMetric(float64(newBytes)/10/1024, "new-KiB/edit")
			b.ReportMetric(float64(blockBytes)/10/1024, "KiB/100KiB-edit")
			b.ReportMetric(float64(chunks*36)/1024, "manifest-KiB")
		})
	}
}

// editedCSV returns a CSV of about size bytes and a copy with n rows changed
// at scattered places.
func editedCSV(size, n int) (orig, edited []byte) {
	r := rand.New(rand.NewPCG(4, 4))
	var b bytes.Buffer
	b.WriteString("Body,Date,Transaction number,Amount,Supplier Name,Expense Type\n")
	var rowStarts []int
	for i := 0; b.Len() < size; i++ {
		rowStarts = append(rowStarts, b.Len())
		fmt.Fprintf(&b, "Greenwich,%02d/%02d/2024,%d,%d.%02d,Supplier %d Ltd,%s\n", 1+r.IntN(28), 1+r.IntN(12),
			1900000000+i, 500+r.IntN(90000), r.IntN(100), r.IntN(5000), []string{"Rent", "Agency staff", "IT"}[r.IntN(3)])
	}
	orig = b.Bytes()
	edited = bytes.Clone(orig)
	for k := range n {
		at := rowStarts[(k*2+1)*len(rowStarts)/(2*n)]
		copy(edited[at:], "Lewisham") // same length: an in-place change of one field
	}
	return orig, edited
}
