package node_test

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/harmony"
	"github.com/nii-uk/nii/harmony/spendgen"
	"github.com/nii-uk/nii/node"
	"github.com/nii-uk/nii/node/api"
	"github.com/nii-uk/nii/node/nodetest"
)

// BenchmarkNodeMerge33 is issue 11's merge benchmark through the node: 33
// sources of 100,000 generated spend rows each (harmony/spendgen, six
// layouts), held in the node's store with a mapping each, merged by
// node.Merge and written out as the merged CSV (what 'nii merge -o' does);
// then published as a merged dataset, and re-merged and re-published after
// one source's new version. $NII_SPENDGEN_DIR keeps the generated files
// between runs (the DuckDB script in package query reads the same files);
// $NII_SPENDGEN_ROWS changes the rows per source.
//
//	NII_SPENDGEN_DIR=/tmp/spendgen go test ./node -run XXX -bench NodeMerge33 -benchtime 1x
func BenchmarkNodeMerge33(b *testing.B) {
	rows := 100_000
	if s := os.Getenv("NII_SPENDGEN_ROWS"); s != "" {
		rows, _ = strconv.Atoi(s)
	}
	dir := os.Getenv("NII_SPENDGEN_DIR")
	if dir == "" {
		dir = b.TempDir()
	}
	files, err := spendgen.Write(dir, 33, rows, 1)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	cfg := nodetest.Config(b.TempDir(), "lga", nodetest.Options{})
	cfg.Harmony.TrustedHarmonisers = []string{"lga"}
	n := nodetest.Start(b, cfg)
	publishStandard(b, n)
	var total int64
	for _, f := range files {
		data, err := os.ReadFile(f.CSV)
		if err != nil {
			b.Fatal(err)
		}
		d := nii.DatasetID{Org: f.Org, Name: "spend"}
		rec, err := n.ForgeVersionForTest(ctx, d, 1, data)
		if err != nil {
			b.Fatal(err)
		}
		if err := n.AdvertiseForTest(rec); err != nil {
			b.Fatal(err)
		}
		m, err := os.ReadFile(f.Mapping)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := n.PublishMapping(ctx, api.MappingPublishRequest{Dataset: d.String(), Mapping: string(m)}); err != nil {
			b.Fatal(err)
		}
		total += int64(f.Rows)
	}
	std := nii.Ref{Dataset: lgaStd}
	cache := filepath.Join(n.Config().Home, node.MergeCacheDir)
	writeOut := func(o *node.MergeOutcome) int64 {
		out, err := os.Create(filepath.Join(b.TempDir(), "merged.csv"))
		if err != nil {
			b.Fatal(err)
		}
		defer out.Close()
		bw := bufio.NewWriterSize(out, 1<<20)
		if err := o.Merged.WriteCSV(bw, harmony.CSVOptions{}); err != nil {
			b.Fatal(err)
		}
		if err := bw.Flush(); err != nil {
			b.Fatal(err)
		}
		st, _ := out.Stat()
		return st.Size()
	}
	var full time.Duration
	b.Run("full", func(b *testing.B) {
		stop := trackRSS(b)
		defer stop()
		cpu0 := cpuSeconds()
		var size int64
		for b.Loop() {
			if err := os.RemoveAll(cache); err != nil {
				b.Fatal(err)
			}
			o, err := n.Merge(ctx, std, node.MergeOptions{})
			if err != nil {
				b.Fatal(err)
			}
			if o.Merged.Remapped != len(files) {
				b.Fatalf("remapped %d of %d", o.Merged.Remapped, len(files))
			}
			size = writeOut(o)
		}
		full = b.Elapsed() / time.Duration(b.N)
		b.ReportMetric(float64(total)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
		b.ReportMetric((cpuSeconds()-cpu0)/float64(b.N), "cpu-s/op")
		b.ReportMetric(float64(size)/(1<<20), "MiB-out")
	})
	// The same as 'nii merge -o FILE' does it: through the local API, the
	// table streamed to the client, which writes the file.
	b.Run("api", func(b *testing.B) {
		stop := trackRSS(b)
		defer stop()
		cl := &api.Client{Base: n.APIAddr(), Token: n.AdminToken()}
		cpu0 := cpuSeconds()
		for b.Loop() {
			if err := os.RemoveAll(cache); err != nil {
				b.Fatal(err)
			}
			res, err := cl.Merge(ctx, api.MergeRequest{Standard: std.String()})
			if err != nil {
				b.Fatal(err)
			}
			out, err := os.Create(filepath.Join(b.TempDir(), "merged.csv"))
			if err != nil {
				b.Fatal(err)
			}
			if _, err := cl.MergeTable(ctx, res.ID, api.FormatCSV, false, false, out); err != nil {
				b.Fatal(err)
			}
			out.Close()
		}
		b.ReportMetric((cpuSeconds()-cpu0)/float64(b.N), "cpu-s/op")
	})
	b.Run("publish", func(b *testing.B) {
		stop := trackRSS(b)
		defer stop()
		cpu0 := cpuSeconds()
		for i := 0; b.Loop(); i++ {
			o, err := n.Merge(ctx, std, node.MergeOptions{})
			if err != nil {
				b.Fatal(err)
			}
			if _, err := n.PublishMerged(ctx, o, "london-spend-"+strconv.Itoa(i), ""); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric((cpuSeconds()-cpu0)/float64(b.N), "cpu-s/op")
	})
	b.Run("incremental", func(b *testing.B) {
		stop := trackRSS(b)
		defer stop()
		o, err := n.Merge(ctx, std, node.MergeOptions{})
		if err != nil {
			b.Fatal(err)
		}
		prev, err := n.PublishMerged(ctx, o, "london-spend", "")
		if err != nil {
			b.Fatal(err)
		}
		first, err := os.ReadFile(files[0].CSV)
		if err != nil {
			b.Fatal(err)
		}
		lines := bytes.SplitAfter(first, []byte("\n"))
		d := nii.DatasetID{Org: files[0].Org, Name: "spend"}
		cpu0 := cpuSeconds()
		var shared, chunks int
		var pub, mergeOnly time.Duration
		for v := uint64(2); b.Loop(); v++ {
			b.StopTimer()
			// The source's next version: its first rows less 1,000 per version.
			rec, err := n.ForgeVersionForTest(ctx, d, v, bytes.Join(lines[:len(lines)-1000*int(v-1)], nil))
			if err == nil {
				err = n.AdvertiseForTest(rec)
			}
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			t0 := time.Now()
			o, err := n.Merge(ctx, std, node.MergeOptions{})
			if err != nil {
				b.Fatal(err)
			}
			if o.Merged.Remapped != 1 {
				b.Fatalf("remapped %d sources, want 1", o.Merged.Remapped)
			}
			mergeOnly = time.Since(t0)
			writeOut(o)
			b.StopTimer()
			// Publishing the next version is timed apart: 'nii merge -o'
			// does not publish, and the full run above does not either.
			t0 = time.Now()
			rec2, err := n.PublishMerged(ctx, o, "london-spend", "")
			if err != nil {
				b.Fatal(err)
			}
			pub = time.Since(t0)
			m1, _ := n.Store().OpenManifest(prev)
			m2, _ := n.Store().OpenManifest(rec2)
			in := map[nii.Hash]bool{}
			for _, c := range m1.Chunks {
				in[c.Hash] = true
			}
			shared, chunks = 0, len(m2.Chunks)
			for _, c := range m2.Chunks {
				if in[c.Hash] {
					shared++
				}
			}
			prev = rec2
			b.StartTimer()
		}
		per := b.Elapsed() / time.Duration(b.N)
		b.ReportMetric((cpuSeconds()-cpu0)/float64(b.N), "cpu-s/op")
		b.ReportMetric(100*float64(shared)/float64(chunks), "%chunks-shared")
		b.ReportMetric(pub.Seconds(), "s-publish-next")
		b.ReportMetric(mergeOnly.Seconds(), "s-merge-only")
		if full > 0 {
			b.ReportMetric(100*per.Seconds()/full.Seconds(), "%of-full")
		}
	})
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b.Logf("peak RSS %.0f MiB, Go heap sys %.0f MiB", maxRSS(), float64(ms.Sys)/(1<<20))
}

func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

// trackRSS reports, when the returned function is called, the peak
// resident set since trackRSS (VmHWM: it counts the pages of badger's
// memory-mapped files read or written, which the kernel may drop at any
// time) and the peak anonymous memory (RssAnon, sampled every 20 ms:
// the heap, stacks and buffers the merge itself holds).
func trackRSS(b *testing.B) func() {
	resetPeakRSS()
	done, stopped := make(chan struct{}), make(chan struct{})
	var anon float64
	go func() {
		defer close(stopped)
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			anon = max(anon, statusMiB("RssAnon:"))
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() {
		close(done)
		<-stopped
		b.ReportMetric(peakRSS(), "MiB-peak-rss")
		b.ReportMetric(anon, "MiB-peak-anon")
	}
}

// statusMiB reads one kB figure of /proc/self/status, in MiB.
func statusMiB(key string) float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == key {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}

// resetPeakRSS resets the kernel's record of the process's peak resident
// set (Linux: clear_refs 5), so the next peakRSS is of what follows.
func resetPeakRSS() { os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) }

// peakRSS is the process's peak resident set since resetPeakRSS, in MiB
// (VmHWM), or since it started where that cannot be read.
func peakRSS() float64 {
	if m := statusMiB("VmHWM:"); m > 0 {
		return m
	}
	return maxRSS()
}

// maxRSS is the process's peak resident set, in MiB.
func maxRSS() float64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return float64(ru.Maxrss) / 1024
}
