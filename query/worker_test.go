//go:build cgo

package query_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/query"
)

// The SQL worker: the engine in a child process (this test binary, run
// with query.WorkerArg; see TestMain), under RLIMIT_AS and RLIMIT_CPU,
// killed past its time limit.

func newWorker(t testing.TB, cfg query.WorkerConfig) *query.Worker {
	t.Helper()
	w, err := query.NewWorker(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}

// procStatus reads /proc/PID/status's fields in bytes (kB fields) or text.
func procStatus(t testing.TB, pid int) map[string]int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, l := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(l, ":")
		f := strings.Fields(v)
		if len(f) == 2 && f[1] == "kB" {
			n, _ := strconv.ParseInt(f[0], 10, 64)
			out[k] = n << 10
		}
	}
	return out
}

func TestWorkerRoundTrip(t *testing.T) {
	w := newWorker(t, query.WorkerConfig{})
	ctx := context.Background()
	cols := []query.Column{
		{Name: "s", Type: query.TypeString}, {Name: "i", Type: query.TypeInteger}, {Name: "f", Type: query.TypeNumber},
		{Name: "d", Type: query.TypeDecimal, Scale: 2}, {Name: "b", Type: query.TypeBoolean},
		{Name: "day", Type: query.TypeDate}, {Name: "at", Type: query.TypeDatetime},
	}
	day := time.Date(2012, 6, 25, 0, 0, 0, 0, time.UTC)
	at := time.Date(2012, 6, 25, 10, 30, 0, 500, time.UTC)
	rows := [][]any{
		{"Café", int64(-7), 1.5, query.NewDecimal(-123450, 2), true, day, at},
		{nil, nil, nil, "99.5", false, nil, nil},
	}
	// Enough rows for several batches, so flow control is exercised.
	for i := range 50_000 {
		rows = append(rows, []any{strings.Repeat("x", i%50), i, float64(i), query.NewDecimal(int64(i), 2), i%2 == 0, day, at})
	}
	n, mem, err := w.Load(ctx, "t/all-types", cols, query.RowsSource(rows))
	if err != nil || n != int64(len(rows)) || mem <= 0 {
		t.Fatalf("load: %d rows, %d bytes, %v", n, mem, err)
	}
	res, err := w.Query(ctx, `SELECT * FROM 't/all-types' LIMIT 2`)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(res.Rows); got != fmt.Sprint([][]any{
		{"Café", int64(-7), 1.5, query.NewDecimal(-123450, 2), true, day, at.Truncate(time.Microsecond)},
		{nil, nil, nil, query.NewDecimal(9950, 2), false, nil, nil},
	}) {
		t.Errorf("rows: %v", got)
	}
	res, err = w.Query(ctx, `SELECT count(*), sum(d) FROM 't/all-types'`)
	if err != nil || fmt.Sprint(res.Rows) != "[[50002 12498615.00]]" {
		t.Errorf("aggregate: %v %v", res, err)
	}
	if ts := w.Tables(); len(ts) != 1 || ts[0].Rows != int64(len(rows)) || ts[0].Columns[3].SQLType != "DECIMAL(18,2)" {
		t.Errorf("tables: %+v", ts)
	}
	// A bad value fails the load, names it, and keeps the old table.
	_, _, err = w.Load(ctx, "t/all-types", cols, query.RowsSource([][]any{{"ok", "not an integer"}}))
	if !errors.Is(err, nii.ErrInvalid) || !strings.Contains(err.Error(), `row 1, column "i"`) {
		t.Errorf("bad load: %v", err)
	}
	res, err = w.Query(ctx, `SELECT count(*) FROM 't/all-types'`)
	if err != nil || fmt.Sprint(res.Rows) != "[[50002]]" {
		t.Errorf("after the bad load: %v %v", res, err)
	}
	if err := w.Drop(ctx, "t/all-types"); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Query(ctx, `SELECT * FROM 't/all-types'`); !errors.Is(err, nii.ErrInvalid) {
		t.Errorf("after drop: %v", err)
	}
	// The sandbox's refusals come back with their kinds.
	for q, kind := range map[string]error{
		`SELECT * FROM read_csv('/etc/passwd')`: query.ErrRefused,
		`CREATE TABLE x (a INT)`:                query.ErrRefused,
		`SELEC 1`:                               nii.ErrInvalid,
	} {
		if _, err := w.Query(ctx, q); !errors.Is(err, kind) {
			t.Errorf("%s: %v, want %v", q, err, kind)
		}
	}
}

// TestWorkerHasNoPath: the worker starts in /, with nothing of the
// daemon's environment, and holds no file open but its pipes.
func TestWorkerHasNoPath(t *testing.T) {
	w := newWorker(t, query.WorkerConfig{})
	if _, err := w.Query(context.Background(), "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	pid := strconv.Itoa(w.Stats().PID)
	if cwd, err := os.Readlink("/proc/" + pid + "/cwd"); err != nil || cwd != "/" {
		t.Errorf("cwd %q %v", cwd, err)
	}
	env, err := os.ReadFile("/proc/" + pid + "/environ")
	if err != nil || string(env) != "MALLOC_ARENA_MAX=2\x00GODEBUG=containermaxprocs=0,updatemaxprocs=0\x00" {
		t.Errorf("environment %q %v", env, err)
	}
	fds, err := os.ReadDir("/proc/" + pid + "/fd")
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		target, _ := os.Readlink("/proc/" + pid + "/fd/" + fd.Name())
		if strings.HasPrefix(target, "/") && target != "/dev/null" {
			t.Errorf("the worker holds fd %s open on %s", fd.Name(), target)
		}
	}
}

// TestWorkerMemoryBombsBounded: the expressions whose memory DuckDB's own
// limit does not count fail under RLIMIT_AS, within the time limit, and
// the worker's peak resident memory stays below its address-space limit.
func TestWorkerMemoryBombsBounded(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector's shadow memory does not fit under RLIMIT_AS")
	}
	cfg := query.WorkerConfig{Config: query.Config{MemoryLimit: 256 << 20, Timeout: 5 * time.Second}}
	w := newWorker(t, cfg)
	lim := w.Limits()
	ctx := context.Background()
	if _, err := w.Query(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	pid := w.Stats().PID
	idle := procStatus(t, pid)
	// The stated bound is the kernel's: nothing the worker maps, resident
	// or not, passes RLIMIT_AS (MemoryLimit + WorkerOverhead).
	bound := lim.AddressSpace
	t.Logf("address space %d MiB (memory limit %d MiB + overhead); idle: mapped %d MiB, resident %d MiB",
		lim.AddressSpace>>20, lim.MemoryLimit>>20, idle["VmSize"]>>20, idle["VmRSS"]>>20)
	for _, q := range []string{
		`SELECT length(repeat('x', 1000000000))`,
		`SELECT max(length(repeat('x', 2000000 + range))) FROM range(2000)`,
	} {
		start := time.Now()
		_, err := w.Query(ctx, q)
		took := time.Since(start)
		if !errors.Is(err, query.ErrMemory) && !errors.Is(err, query.ErrTimeout) || errors.Is(err, query.ErrWorkerStopped) {
			t.Errorf("%s: %v, want the memory (or time) limit, and not a worker stopped under it", q, err)
		}
		if took > lim.Timeout+lim.KillGrace {
			t.Errorf("%s: took %s, past the %s time limit and the %s grace", q, took, lim.Timeout, lim.KillGrace)
		}
		st := procStatus(t, pid)
		t.Logf("%s: %s after %s; worker peak resident %d MiB", q, firstLine(err), took.Round(time.Millisecond), st["VmHWM"]>>20)
		if st["VmHWM"] > bound {
			t.Errorf("%s: peak resident %d MiB, above %d MiB", q, st["VmHWM"]>>20, bound>>20)
		}
	}
	if st := w.Stats(); st.PID != pid || st.Restarts != 0 {
		t.Errorf("the worker did not survive: %+v", st)
	}
}

func firstLine(err error) string {
	if err == nil {
		return "no error"
	}
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}

// uninterruptible is work DuckDB does while binding the statement (it
// folds the constant), which its interrupt does not reach: about 10^10
// steps, with little memory.
const uninterruptible = `SELECT levenshtein(repeat('a', 100000), repeat('b', 100000))`

// TestWorkerKilledPastTimeLimit: a query DuckDB cannot interrupt is cut
// off at its time limit plus the grace by killing the worker; a query
// running beside it is told why it failed; the next query gets a new
// worker.
func TestWorkerKilledPastTimeLimit(t *testing.T) {
	w := newWorker(t, query.WorkerConfig{Config: query.Config{Timeout: time.Second}, KillGrace: time.Second})
	lim := w.Limits()
	ctx := context.Background()
	if _, _, err := w.Load(ctx, "t/x", []query.Column{{Name: "a", Type: query.TypeInteger}}, query.RowsSource([][]any{{1}})); err != nil {
		t.Fatal(err)
	}
	first := w.Stats().PID
	var wg sync.WaitGroup
	var besideErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		// Waits on the engine's other slot until the worker dies.
		_, besideErr = w.Query(ctx, uninterruptible)
	}()
	start := time.Now()
	_, err := w.Query(ctx, uninterruptible)
	took := time.Since(start)
	wg.Wait()
	if !errors.Is(err, query.ErrTimeout) || !strings.Contains(err.Error(), "did not stop when interrupted") || !strings.Contains(err.Error(), "[query] timeout") {
		t.Errorf("runaway query: %v", err)
	}
	// The margin: the kill and the reaping, given as much again as the grace.
	if took > lim.Timeout+2*lim.KillGrace {
		t.Errorf("runaway query stopped after %s, past %s + 2 × %s", took, lim.Timeout, lim.KillGrace)
	}
	if besideErr == nil || !(errors.Is(besideErr, query.ErrTimeout) || strings.Contains(besideErr.Error(), "was stopped while running this query")) {
		t.Errorf("the query beside it: %v", besideErr)
	}
	// The overrunner's own kill is not "stopped under it" (it is not to
	// be run again); the query beside it, killed for the other's overrun,
	// is.
	if errors.Is(err, query.ErrWorkerStopped) {
		t.Errorf("the runaway query's own kill says the worker stopped under it: %v", err)
	}
	if besideErr != nil && !errors.Is(besideErr, query.ErrTimeout) && !errors.Is(besideErr, query.ErrWorkerStopped) {
		t.Errorf("the query beside the runaway, killed for its overrun: %v, want ErrWorkerStopped", besideErr)
	}
	st := w.Stats()
	if !strings.Contains(st.LastExit.Reason, "time limit") || st.LastExit.PID != first || st.LastExit.Wall > took+lim.KillGrace {
		t.Errorf("last exit %+v", st.LastExit)
	}
	t.Logf("stopped after %s; the worker ran %s, used %s CPU, peak resident %d MiB", took.Round(time.Millisecond),
		st.LastExit.Wall.Round(time.Millisecond), st.LastExit.CPU.Round(time.Millisecond), st.LastExit.PeakRSS>>20)
	// Its tables went with it; the next call starts a fresh worker.
	if _, err := w.Query(ctx, `SELECT * FROM 't/x'`); !errors.Is(err, nii.ErrInvalid) {
		t.Errorf("old table after the restart: %v", err)
	}
	if st := w.Stats(); st.PID == first || st.Generation != 2 || st.Restarts != 1 {
		t.Errorf("after the restart: %+v", st)
	}
}

// TestWorkerCPULimit: RLIMIT_CPU ends a worker whose query uses more CPU
// than its budget, even when the daemon's timer would wait longer.
func TestWorkerCPULimit(t *testing.T) {
	w := newWorker(t, query.WorkerConfig{Config: query.Config{Timeout: 30 * time.Second}, KillGrace: 30 * time.Second, CPUBudget: time.Second})
	start := time.Now()
	_, err := w.Query(context.Background(), uninterruptible)
	if !errors.Is(err, query.ErrTimeout) || !strings.Contains(err.Error(), "CPU time") {
		t.Fatalf("%v", err)
	}
	st := w.Stats()
	t.Logf("stopped after %s: %s (CPU %s)", time.Since(start).Round(time.Millisecond), st.LastExit.Reason, st.LastExit.CPU.Round(time.Millisecond))
	// RLIMIT_CPU counts whole seconds: the budget, rounded up, and the
	// second SIGXCPU takes to arrive.
	if st.LastExit.CPU > 3*time.Second {
		t.Errorf("the worker used %s of CPU on a 1 s budget", st.LastExit.CPU)
	}
}

// TestWorkerCrashRestarts: a worker that dies (here, killed from outside)
// is replaced on the next call.
func TestWorkerCrashRestarts(t *testing.T) {
	w := newWorker(t, query.WorkerConfig{})
	ctx := context.Background()
	if _, err := w.Query(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	pid := w.Stats().PID
	p, _ := os.FindProcess(pid)
	p.Kill()
	// The next query either finds the old worker gone or fails with it.
	_, err := w.Query(ctx, "SELECT 2")
	if err != nil && (!strings.Contains(err.Error(), "SQL worker stopped") || !errors.Is(err, query.ErrWorkerStopped)) {
		t.Fatalf("query as the worker died: %v", err)
	}
	if err != nil {
		if _, err := w.Query(ctx, "SELECT 2"); err != nil {
			t.Fatal(err)
		}
	}
	if st := w.Stats(); st.PID == pid || st.Restarts != 1 || !strings.Contains(st.LastExit.Reason, "killed") {
		t.Fatalf("%+v", st)
	}
}

// TestWorkerClose: Close stops the process and is idempotent; calls after
// it fail with ErrClosed.
func TestWorkerClose(t *testing.T) {
	w, err := query.NewWorker(query.WorkerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Query(context.Background(), "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	pid := w.Stats().PID
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	if _, err := w.Query(context.Background(), "SELECT 1"); !errors.Is(err, query.ErrClosed) {
		t.Errorf("after close: %v", err)
	}
	if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); err == nil {
		t.Errorf("worker %d still running", pid)
	}
	if st := w.Stats(); st.Restarts != 0 || st.LastExit.Reason != "exited" {
		t.Errorf("stats after close: %+v", st)
	}
}
