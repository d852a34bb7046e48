package node_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/node"
	"github.com/nii-uk/nii/node/nodetest"
)

// BenchmarkPull1GiB pulls a 1 GiB file between two nodes on loopback
// (verified and stored), and in the same run fetches the same file with
// curl from a Go http.FileServer and with rsync from an rsync daemon (a
// full copy: no destination file), reporting each rate.
//
//	go test ./node -run XXX -bench 'Pull1GiB|DeltaSync' -benchtime 1x -timeout 30m
//
// NII_BENCH_SIZE (bytes) changes the size. Needs curl and rsync.
func BenchmarkPull1GiB(b *testing.B) {
	size := benchSize()
	dir := b.TempDir()
	file := filepath.Join(dir, "data", "big.bin")
	os.MkdirAll(filepath.Dir(file), 0o755)
	if err := genFile(file, "random", size); err != nil {
		b.Fatal(err)
	}
	pub, puller := benchPair(b)
	ref := publishFile(b, pub, "big", file)
	waitSeen(b, puller, ref)

	var nii_, curl, rsync time.Duration
	for i := range b.N {
		// nii: a fresh puller each time, so everything moves.
		if i > 0 {
			_, puller = benchPair(b)
			waitSeen(b, puller, ref)
		}
		start := time.Now()
		res, err := puller.Pull(context.Background(), ref, node.PullOptions{})
		if err != nil {
			b.Fatal(err)
		}
		nii_ += time.Since(start)
		if res.FetchedBytes != size {
			b.Fatalf("pulled %d bytes, want %d", res.FetchedBytes, size)
		}
		curl += timed(b, func() error { return curlOnce(b, filepath.Dir(file), "big.bin") })
		rsync += timed(b, func() error {
			_, err := rsyncOnce(b, filepath.Dir(file), "big.bin", filepath.Join(b.TempDir(), "copy.bin"))
			return err
		})
	}
	mbs := func(d time.Duration) float64 { return float64(size) * float64(b.N) / d.Seconds() / 1e6 }
	b.ReportMetric(mbs(nii_), "nii-MB/s")
	b.ReportMetric(mbs(curl), "curl-MB/s")
	b.ReportMetric(mbs(rsync), "rsync-MB/s")
	b.ReportMetric(curl.Seconds()/nii_.Seconds(), "nii/curl")
	b.ReportMetric(rsync.Seconds()/nii_.Seconds(), "nii/rsync")
}

// BenchmarkDeltaSync updates a 1 GiB file on the publisher — 100 scattered
// 100 KiB edits, or a 1% append — and measures a puller holding the old
// version fetching the new one, beside an rsync daemon transfer from the
// old file to the new (delta transfer): bytes sent and wall time.
func BenchmarkDeltaSync(b *testing.B) {
	size := benchSize()
	for _, kind := range []string{"edits", "append"} {
		b.Run(kind, func(b *testing.B) {
			dir := b.TempDir()
			v1 := filepath.Join(dir, "v1", "big.bin")
			v2 := filepath.Join(dir, "v2", "big.bin")
			os.MkdirAll(filepath.Dir(v1), 0o755)
			os.MkdirAll(filepath.Dir(v2), 0o755)
			if err := genFile(v1, "random", size); err != nil {
				b.Fatal(err)
			}
			data, _ := os.ReadFile(v1)
			r := rand.New(rand.NewPCG(5, 5))
			if kind == "edits" {
				for range 100 {
					at := r.IntN(len(data) - 100<<10)
					for j := at; j < at+100<<10; j++ {
						data[j] = byte(r.Uint32())
					}
				}
			} else {
				extra := make([]byte, size/100)
				for j := range extra {
					extra[j] = byte(r.Uint32())
				}
				data = append(data, extra...)
			}
			os.WriteFile(v2, data, 0o644)
			data = nil

			var niiTime, rsyncTime time.Duration
			var niiBytes, rsyncLiteral, rsyncWire int64
			for range b.N {
				pub, puller := benchPair(b)
				ref1 := publishFile(b, pub, "big", v1)
				waitSeen(b, puller, ref1)
				if _, err := puller.Pull(context.Background(), ref1, node.PullOptions{}); err != nil {
					b.Fatal(err)
				}
				ref2 := publishFile(b, pub, "big", v2)
				waitSeen(b, puller, ref2)
				start := time.Now()
				res, err := puller.Pull(context.Background(), ref2, node.PullOptions{})
				if err != nil {
					b.Fatal(err)
				}
				niiTime += time.Since(start)
				niiBytes += res.FetchedBytes

				dst := filepath.Join(b.TempDir(), "big.bin")
				copyFile(b, v1, dst)
				start = time.Now()
				st, err := rsyncOnce(b, filepath.Dir(v2), "big.bin", dst)
				if err != nil {
					b.Fatal(err)
				}
				rsyncTime += time.Since(start)
				rsyncLiteral += st.literal
				rsyncWire += st.received
			}
			n := float64(b.N)
			b.ReportMetric(float64(niiBytes)/n/1e6, "nii-MB-sent")
			b.ReportMetric(float64(rsyncLiteral)/n/1e6, "rsync-literal-MB")
			b.ReportMetric(float64(rsyncWire)/n/1e6, "rsync-wire-MB")
			b.ReportMetric(niiTime.Seconds()/n, "nii-s")
			b.ReportMetric(rsyncTime.Seconds()/n, "rsync-s")
		})
	}
}

func benchSize() int64 {
	size := int64(1 << 30)
	if s := os.Getenv("NII_BENCH_SIZE"); s != "" {
		fmt.Sscan(s, &size)
	}
	return size
}

func benchPair(b *testing.B) (*node.Node, *node.Node) {
	nodes := nodetest.Federation(b, 2, nodetest.Options{Configure: func(i int, c *node.Config) { c.LowMemory = false }})
	return nodes[0], nodes[1]
}

func publishFile(b *testing.B, n *node.Node, name, file string) nii.Ref {
	f, err := os.Open(file)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	rec, err := n.Publish(context.Background(), f, node.PublishRequest{Name: name, Filename: filepath.Base(file)})
	if err != nil {
		b.Fatal(err)
	}
	return rec.Ref
}

func waitSeen(b *testing.B, n *node.Node, ref nii.Ref) {
	nodetest.WaitFor(b, 30*time.Second, "the puller lists "+ref.String(), func() bool { return sees(n, ref.Dataset.String(), ref.Version) })
}

func copyFile(b *testing.B, src, dst string) {
	data, err := os.ReadFile(src)
	if err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(dst, data, 0o644); err != nil {
		b.Fatal(err)
	}
}

func curlOnce(b *testing.B, dir, name string) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: http.FileServer(http.Dir(dir))}
	go srv.Serve(ln)
	defer srv.Close()
	out := filepath.Join(b.TempDir(), name)
	cmd := exec.Command("curl", "-sf", "-o", out, "http://"+ln.Addr().String()+"/"+name)
	if o, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("curl: %v %s", err, o)
	}
	return nil
}

type rsyncStats struct{ literal, received int64 }

var (
	literalRE  = regexp.MustCompile(`Literal data: ([\d,]+) bytes`)
	receivedRE = regexp.MustCompile(`Total bytes received: ([\d,]+)`)
)

// rsyncOnce starts an rsync daemon on loopback serving dir and fetches
// name into dst with the rsync protocol (delta transfer when dst exists).
func rsyncOnce(b *testing.B, dir, name, dst string) (rsyncStats, error) {
	conf := filepath.Join(b.TempDir(), "rsyncd.conf")
	os.WriteFile(conf, []byte(fmt.Sprintf("use chroot = no\nuid = root\ngid = root\n[data]\npath = %s\nread only = true\n", dir)), 0o644)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	d := exec.Command("rsync", "--daemon", "--no-detach", "--config="+conf, "--address=127.0.0.1", "--port="+strconv.Itoa(port))
	if err := d.Start(); err != nil {
		return rsyncStats{}, err
	}
	defer func() { d.Process.Kill(); d.Wait() }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			return rsyncStats{}, fmt.Errorf("rsync daemon did not start")
		}
		time.Sleep(10 * time.Millisecond)
	}
	out, err := exec.Command("rsync", "--stats", fmt.Sprintf("rsync://127.0.0.1:%d/data/%s", port, name), dst).CombinedOutput()
	if err != nil {
		return rsyncStats{}, fmt.Errorf("rsync: %v %s", err, out)
	}
	num := func(re *regexp.Regexp) int64 {
		m := re.FindSubmatch(out)
		if m == nil {
			return -1
		}
		v, _ := strconv.ParseInt(strings.ReplaceAll(string(m[1]), ",", ""), 10, 64)
		return v
	}
	return rsyncStats{literal: num(literalRE), received: num(receivedRE)}, nil
}
