package node_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/nii-uk/nii/internal/niitest"
	"github.com/nii-uk/nii/node"
	"github.com/nii-uk/nii/node/nodetest"
)

// BenchmarkPublish1GiB publishes a generated 1 GiB file and, in the same
// iteration, runs the two references on the same file: sha256sum reading
// it, and a raw badger write of the same bytes (64 KiB values in a
// WriteBatch, value threshold 1 KiB — badger's fast configuration). It
// reports each rate and publish's ratio to badger's (the target is ≥ 0.8).
//
//	go test ./node -run XXX -bench Publish1GiB -benchtime 3x
//
// Set NII_BENCH_SIZE (bytes) to change the file size.
func BenchmarkPublish1GiB(b *testing.B) {
	size := int64(1 << 30)
	if s := os.Getenv("NII_BENCH_SIZE"); s != "" {
		fmt.Sscan(s, &size)
	}
	dir := b.TempDir()
	for _, kind := range []string{"random", "csv"} {
		file := filepath.Join(dir, kind+".dat")
		if err := genFile(file, kind, size); err != nil {
			b.Fatal(err)
		}
		b.Run(kind, func(b *testing.B) {
			var pub, raw, sha time.Duration
			for i := range b.N {
				// Alternate the order so page cache and disk state favour no one.
				runs := []func(){
					func() { pub += timed(b, func() error { return publishOnce(b, file) }) },
					func() { raw += timed(b, func() error { return badgerOnce(b, file) }) },
					func() {
						sha += timed(b, func() error { return exec.Command("sha256sum", file).Run() })
					},
				}
				for j := range runs {
					runs[(i+j)%len(runs)]()
				}
			}
			mbs := func(d time.Duration) float64 { return float64(size) * float64(b.N) / d.Seconds() / 1e6 }
			b.ReportMetric(mbs(pub), "publish-MB/s")
			b.ReportMetric(mbs(raw), "badger-MB/s")
			b.ReportMetric(mbs(sha), "sha256sum-MB/s")
			b.ReportMetric(raw.Seconds()/pub.Seconds(), "publish/badger")
		})
	}
}

func timed(b *testing.B, f func() error) time.Duration {
	start := time.Now()
	if err := f(); err != nil {
		b.Fatal(err)
	}
	return time.Since(start)
}

func publishOnce(b *testing.B, file string) error {
	// Any free ports: the defaults may be taken by another node on the machine.
	cfg := nodetest.Config(b.TempDir(), "bench", nodetest.Options{})
	cfg.LowMemory = false // measured as a real node runs
	if _, err := node.Init(cfg); err != nil {
		return err
	}
	n, err := node.New(cfg)
	if err != nil {
		return err
	}
	if err := n.Start(context.Background()); err != nil {
		return err
	}
	defer n.Close()
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = n.Publish(context.Background(), f, node.PublishRequest{Name: "big", Filename: filepath.Base(file)})
	return err
}

func badgerOnce(b *testing.B, file string) error {
	db := niitest.OpenDB(b, b.TempDir())
	defer db.Close()
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	wb := db.NewWriteBatch()
	defer wb.Cancel()
	for i := 0; ; i++ {
		buf := make([]byte, 64<<10)
		n, err := io.ReadFull(f, buf)
		if n > 0 {
			if err := wb.Set([]byte(fmt.Sprintf("c/%016d", i)), buf[:n]); err != nil {
				return err
			}
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			return err
		}
	}
	if err := wb.Flush(); err != nil {
		return err
	}
	return db.Sync()
}

// genFile writes size bytes of random data, or of a transparency-style CSV.
func genFile(path, kind string, size int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	w := bufio.NewWriterSize(f, 1<<20)
	cc := rand.NewChaCha8([32]byte{1})
	r := rand.New(cc)
	var n int64
	if kind == "random" {
		buf := make([]byte, 1<<20)
		for n < size {
			cc.Read(buf)
			k := min(int64(len(buf)), size-n)
			w.Write(buf[:k])
			n += k
		}
	} else {
		w.WriteString("Body,Date,Transaction number,Amount,Supplier Name,Expense Type\n")
		for i := 0; n < size; i++ {
			line := fmt.Sprintf("Greenwich,%02d/%02d/2024,%d,%d.%02d,Supplier %d Ltd,%s\n", 1+r.IntN(28), 1+r.IntN(12),
				1900000000+i, 500+r.IntN(90000), r.IntN(100), r.IntN(50000), []string{"Rent", "Agency staff", "IT"}[r.IntN(3)])
			w.WriteString(line)
			n += int64(len(line))
		}
	}
	if err := w.Flush(); err != nil {
		return err
	}
	return f.Sync()
}
