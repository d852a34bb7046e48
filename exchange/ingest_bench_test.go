package exchange

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/nii-uk/nii/exchange/chunker"
	"github.com/nii-uk/nii/internal/niitest"
)

// BenchmarkIngestFile ingests a 256 MiB random file from disk (page cache
// warm) into a fresh store and syncs it, as a publish does before its
// commit, alternating with sha256sum of the same file, and reports both
// rates and their ratio.
//
//	go test ./exchange -run XXX -bench IngestFile -benchtime 3x -cpuprofile /tmp/ingest.prof
func BenchmarkIngestFile(b *testing.B) {
	file := filepath.Join(b.TempDir(), "big.bin")
	const size = 256 << 20
	if err := os.WriteFile(file, randBytes(7, size), 0o600); err != nil {
		b.Fatal(err)
	}
	var ingest, sha time.Duration
	for i := 0; b.Loop(); i++ {
		runs := []func(){
			func() {
				b.StopTimer()
				db := niitest.OpenDB(b, b.TempDir())
				s, err := NewStore(db, chunker.Default())
				if err != nil {
					b.Fatal(err)
				}
				f, _ := os.Open(file)
				b.StartTimer()
				t0 := time.Now()
				if _, _, err := s.Ingest(context.Background(), f); err != nil {
					b.Fatal(err)
				}
				if err := db.Sync(); err != nil {
					b.Fatal(err)
				}
				ingest += time.Since(t0)
				b.StopTimer()
				f.Close()
				db.Close()
				b.StartTimer()
			},
			func() {
				t0 := time.Now()
				if err := exec.Command("sha256sum", file).Run(); err != nil {
					b.Fatal(err)
				}
				sha += time.Since(t0)
			},
		}
		runs[i%2]()
		runs[(i+1)%2]()
	}
	mbs := func(d time.Duration) float64 { return float64(size) * float64(b.N) / d.Seconds() / 1e6 }
	b.ReportMetric(mbs(ingest), "ingest-MB/s")
	b.ReportMetric(mbs(sha), "sha256sum-MB/s")
	b.ReportMetric(sha.Seconds()/ingest.Seconds(), "ingest/sha256sum")
}
