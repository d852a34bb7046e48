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
	"reflect"
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
// old file to the new (delta transfer): bytes sent and wall time. Each
// iteration runs nii and rsync in turn, the order alternating.
//
//	go test ./node -run XXX -bench DeltaSync -benchtime 3x -timeout 30m
//
// nii's bytes: the chunk bytes the pull reports (FetchedBytes: whole chunks
// and, with delta sync, byte ranges), the signed manifest (its encoded
// size, taken from the puller's store), the sub-chunk lists, and, as an
// independent check, the TCP payload bytes the puller's sockets to and from
// the publisher's p2p port received during the pull (ss -ti bytes_received:
// TLS, yamux and every protocol on the connection included). Times: the
// pull into the store, and the pull plus writing the file out as the daemon
// does for nii pull -o (Node.ExportInto, the export socket's), durable
// (fsynced before the rename, the default) and with --no-fsync (as rsync
// leaves its file: rsync does not fsync unless asked with --fsync).
// rsync's literal data and bytes received come from its own --stats.
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

			var niiTime, fileTime, fileNoSync, rsyncTime []float64
			var chunkB, manifestB, listB, wireB, rsyncLiteral, rsyncWire []float64
			for i := range b.N {
				runNii := func() {
					pub, puller := benchPair(b)
					ref1 := publishFile(b, pub, "big", v1)
					waitSeen(b, puller, ref1)
					if _, err := puller.Pull(context.Background(), ref1, node.PullOptions{}); err != nil {
						b.Fatal(err)
					}
					ref2 := publishFile(b, pub, "big", v2)
					waitSeen(b, puller, ref2)
					port := p2pPort(b, pub)
					before := tcpReceived(port)
					start := time.Now()
					res, err := puller.Pull(context.Background(), ref2, node.PullOptions{})
					if err != nil {
						b.Fatal(err)
					}
					niiTime = append(niiTime, time.Since(start).Seconds())
					wireB = append(wireB, float64(tcpReceived(port)-before))
					pulled := time.Since(start)
					// As the daemon writes for nii pull -o FILE (the export
					// socket: Node.ExportInto, then fsync and rename), and
					// with --no-fsync (into the page cache, no fsync, as
					// rsync leaves its file), each timed as the pull plus
					// its write.
					toFile := func(d node.Durability) float64 {
						out := filepath.Join(b.TempDir(), "out.bin")
						t0 := time.Now()
						err := node.FillFileAtomic(out, 0o644, d, func(f *os.File) error {
							_, err := puller.ExportInto(context.Background(), res.Record.Ref, f, d == node.PageCache)
							return err
						})
						if err != nil {
							b.Fatal(err)
						}
						took := (pulled + time.Since(t0)).Seconds()
						os.Remove(out)
						return took
					}
					fileTime = append(fileTime, toFile(node.Durable))
					fileNoSync = append(fileNoSync, toFile(node.PageCache))
					sm, err := puller.Store().Manifest(res.Record.Manifest)
					if err != nil {
						b.Fatal(err)
					}
					enc, _ := nii.EncodeSignedManifest(sm)
					chunkB = append(chunkB, float64(res.FetchedBytes))
					manifestB = append(manifestB, float64(len(enc)))
					// Absent before delta sync (the base commit): 0.
					var list int64
					if f := reflect.ValueOf(res).Elem().FieldByName("SubchunkListBytes"); f.IsValid() {
						list = f.Int()
					}
					listB = append(listB, float64(list))
				}
				runRsync := func() {
					dst := filepath.Join(b.TempDir(), "big.bin")
					copyFile(b, v1, dst)
					start := time.Now()
					st, err := rsyncOnce(b, filepath.Dir(v2), "big.bin", dst)
					if err != nil {
						b.Fatal(err)
					}
					rsyncTime = append(rsyncTime, time.Since(start).Seconds())
					rsyncLiteral = append(rsyncLiteral, float64(st.literal))
					rsyncWire = append(rsyncWire, float64(st.received))
				}
				if i%2 == 0 {
					runNii()
					runRsync()
				} else {
					runRsync()
					runNii()
				}
				load, _ := os.ReadFile("/proc/loadavg")
				total := chunkB[i] + manifestB[i] + listB[i]
				b.Logf("%s run %d: nii chunk %.2f MB + manifest %.2f MB + lists %.2f MB = %.2f MB (TCP received %.2f MB), %.2f s to store, %.2f s to a durable file, %.2f s to a file with --no-fsync; rsync literal %.2f MB, received %.2f MB, %.2f s; bytes %.2fx rsync literal, time to file %.2fx rsync (durable), %.2fx (--no-fsync, as rsync); loadavg %s",
					kind, i, chunkB[i]/1e6, manifestB[i]/1e6, listB[i]/1e6, total/1e6, wireB[i]/1e6, niiTime[i], fileTime[i], fileNoSync[i],
					rsyncLiteral[i]/1e6, rsyncWire[i]/1e6, rsyncTime[i], total/rsyncLiteral[i], fileTime[i]/rsyncTime[i], fileNoSync[i]/rsyncTime[i], strings.TrimSpace(string(load)))
			}
			mean := func(xs []float64) float64 {
				var s float64
				for _, x := range xs {
					s += x
				}
				return s / float64(len(xs))
			}
			b.ReportMetric(mean(chunkB)/1e6, "nii-chunk-MB")
			b.ReportMetric((mean(chunkB)+mean(manifestB)+mean(listB))/1e6, "nii-total-MB")
			b.ReportMetric(mean(wireB)/1e6, "nii-tcp-MB")
			b.ReportMetric(mean(rsyncLiteral)/1e6, "rsync-literal-MB")
			b.ReportMetric(mean(rsyncWire)/1e6, "rsync-wire-MB")
			b.ReportMetric(mean(niiTime), "nii-s")
			b.ReportMetric(mean(fileTime), "nii-file-s")
			b.ReportMetric(mean(fileNoSync), "nii-file-nofsync-s")
			b.ReportMetric(mean(rsyncTime), "rsync-s")
		})
	}
}

// p2pPort is the TCP port n's libp2p host listens on.
func p2pPort(b *testing.B, n *node.Node) int {
	for _, a := range n.P2PAddrs() {
		if m := regexp.MustCompile(`/tcp/(\d+)`).FindStringSubmatch(a); m != nil {
			p, _ := strconv.Atoi(m[1])
			return p
		}
	}
	b.Fatal("the publisher listens on no TCP port")
	return 0
}

// tcpReceived sums bytes_received (ss -ti) over the established TCP
// sockets whose peer is port: the puller's side of its connections to the
// publisher's libp2p listener.
func tcpReceived(port int) int64 {
	out, err := exec.Command("ss", "-Htin", "state", "established", fmt.Sprintf("( dport = :%d )", port)).Output()
	if err != nil {
		return 0
	}
	var n int64
	for _, m := range regexp.MustCompile(`bytes_received:(\d+)`).FindAllSubmatch(out, -1) {
		v, _ := strconv.ParseInt(string(m[1]), 10, 64)
		n += v
	}
	return n
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
