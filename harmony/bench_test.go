package harmony

import (
	"bufio"
	"context"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
	"testing"

	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/harmony/spendgen"
)

func generatedSources(t testing.TB, files []spendgen.File) []Source {
	t.Helper()
	var srcs []Source
	for _, f := range files {
		b, err := os.ReadFile(f.Mapping)
		if err != nil {
			t.Fatal(err)
		}
		m, err := ParseMapping(b)
		if err != nil {
			t.Fatalf("%s: %v", f.Mapping, err)
		}
		h := nii.Hasher()
		fh, err := os.Open(f.CSV)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(h, fh); err != nil {
			t.Fatal(err)
		}
		fh.Close()
		var man nii.Hash
		copy(man[:], h.Sum(nil))
		path := f.CSV
		srcs = append(srcs, Source{Dataset: nii.DatasetID{Org: f.Org, Name: "spend"}, Version: 1, Manifest: man,
			Open: func(context.Context) (io.ReadCloser, error) { return os.Open(path) }, Mapping: m})
	}
	return srcs
}

// TestGeneratedLayouts merges a small run of every generated layout: each
// row is accepted and each total matches the generator's.
func TestGeneratedLayouts(t *testing.T) {
	files, err := spendgen.Write(t.TempDir(), len(spendgen.Layouts)*2, 500, 1)
	if err != nil {
		t.Fatal(err)
	}
	merged, err := Merge(context.Background(), lgaStandard(t), generatedSources(t, files), MergeOptions{CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]spendgen.File{}
	for _, f := range files {
		want[f.Org] = f
	}
	for _, s := range merged.Sources {
		f := want[s.Dataset.Org]
		if s.Report.Accepted != int64(f.Rows) || s.Report.Rejected != 0 {
			t.Errorf("%s (%s): accepted %d of %d: %+v", f.Org, f.Layout, s.Report.Accepted, f.Rows, s.Report.Failures)
		}
		if int64(s.Amount) != f.TotalPence*100 {
			t.Errorf("%s (%s): total %s, generated %d pence", f.Org, f.Layout, s.Amount, f.TotalPence)
		}
	}
}

// benchFiles generates (or reuses, in $NII_SPENDGEN_DIR) 33 sources of
// 100,000 rows.
func benchFiles(b *testing.B) []spendgen.File {
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
	return files
}

// BenchmarkMerge33 maps and merges 33 generated sources from scratch and
// writes the merged CSV; then (BenchmarkMerge33/incremental) changes one
// source and re-merges.
func BenchmarkMerge33(b *testing.B) {
	files := benchFiles(b)
	std := lgaStandard(b)
	srcs := generatedSources(b, files)
	var rows int64
	for _, f := range files {
		rows += int64(f.Rows)
	}
	writeOut := func(m *Merged) {
		out, err := os.Create(filepath.Join(b.TempDir(), "merged.csv"))
		if err != nil {
			b.Fatal(err)
		}
		bw := bufio.NewWriter(out)
		if err := m.WriteCSV(bw, CSVOptions{}); err != nil {
			b.Fatal(err)
		}
		bw.Flush()
		out.Close()
	}
	b.Run("full", func(b *testing.B) {
		cpu0 := cpuSeconds()
		for b.Loop() {
			m, err := Merge(context.Background(), std, srcs, MergeOptions{CacheDir: b.TempDir()})
			if err != nil {
				b.Fatal(err)
			}
			writeOut(m)
		}
		b.ReportMetric(float64(rows)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
		b.ReportMetric((cpuSeconds()-cpu0)/float64(b.N), "cpu-s/op")
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		b.ReportMetric(float64(ms.Sys)/(1<<20), "MiB-sys")
	})
	b.Run("incremental", func(b *testing.B) {
		cache := b.TempDir()
		if _, err := Merge(context.Background(), std, srcs, MergeOptions{CacheDir: cache}); err != nil {
			b.Fatal(err)
		}
		changed := append([]Source(nil), srcs...)
		cpu0 := cpuSeconds()
		for b.Loop() {
			changed[0].Version++
			changed[0].Manifest[0]++
			m, err := Merge(context.Background(), std, changed, MergeOptions{CacheDir: cache})
			if err != nil {
				b.Fatal(err)
			}
			if m.Remapped != 1 {
				b.Fatalf("remapped %d", m.Remapped)
			}
			writeOut(m)
		}
		b.ReportMetric((cpuSeconds()-cpu0)/float64(b.N), "cpu-s/op")
	})
}

// cpuSeconds is the process's user + system CPU time so far: on a shared
// machine it says what a merge costs better than the wall clock does.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}
