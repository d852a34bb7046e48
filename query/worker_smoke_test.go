//go:build cgo

package query_test

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/nii-uk/nii/query"
)

func procStatus(t testing.TB, pid int) map[string]string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(l, ":")
		out[k] = strings.TrimSpace(v)
	}
	return out
}

func TestWorkerSmoke(t *testing.T) {
	th, _ := strconv.Atoi(os.Getenv("TH"))
	w, err := query.NewWorker(query.WorkerConfig{Config: query.Config{MemoryLimit: 256 << 20, Threads: th}, AddressSpace: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	ctx := context.Background()
	res, err := w.Query(ctx, "SELECT 42 AS x, 'a' AS s, 1.50::DECIMAL(10,2) d, DATE '2024-01-02' dt")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", res)
	st := procStatus(t, w.Stats().PID)
	t.Logf("idle: VmSize %s VmRSS %s VmPeak %s threads %s", st["VmSize"], st["VmRSS"], st["VmPeak"], st["Threads"])
	n, mem, err := w.Load(ctx, "lga/spend-over-500", benchCols, newSpendSource(100_000))
	t.Logf("loaded %d mem %d err %v", n, mem, err)
	res, err = w.Query(ctx, `SELECT _publisher, date_trunc('month', date) m, sum(amount) FROM 'lga/spend-over-500' GROUP BY ALL ORDER BY 1,2 LIMIT 3`)
	if err != nil {
		t.Fatal(err)
	}
	res.WriteTable(os.Stderr)
	st = procStatus(t, w.Stats().PID)
	t.Logf("loaded: VmSize %s VmRSS %s VmPeak %s threads %s", st["VmSize"], st["VmRSS"], st["VmPeak"], st["Threads"])
}

func TestWorkerMaps(t *testing.T) {
	w, err := query.NewWorker(query.WorkerConfig{Config: query.Config{MemoryLimit: 256 << 20}, AddressSpace: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := w.Query(context.Background(), "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile("/proc/" + strconv.Itoa(w.Stats().PID) + "/maps")
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		a, bb, _ := strings.Cut(f[0], "-")
		x, _ := strconv.ParseUint(a, 16, 64)
		y, _ := strconv.ParseUint(bb, 16, 64)
		if y-x >= 16<<20 {
			t.Logf("%6d MiB %s", (y-x)>>20, l)
		}
	}
}
