package query

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	osexec "os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nii-uk/nii"
)

// WorkerConfig configures a Worker: the engine's limits, which the worker
// process enforces, and the process's own.
type WorkerConfig struct {
	Config
	// Command starts a worker process: the executable and its arguments.
	// Default: this executable with WorkerArg (see RunWorkerIfAsked).
	Command []string
	// AddressSpace is the worker's RLIMIT_AS in bytes: all the memory it
	// may map, DuckDB's, its allocators' and the Go runtime's. Default
	// MemoryLimit + WorkerOverhead(cfg); -1 sets none.
	AddressSpace int64
	// KillGrace is how long past Timeout the daemon waits for a query's
	// answer before it kills the worker. Default DefaultKillGrace.
	KillGrace time.Duration
	// StartTimeout bounds a worker's start (exec, engine open, sandbox
	// check). Default 30 s.
	StartTimeout time.Duration
	// CPUBudget is the CPU time each query adds to the worker's
	// RLIMIT_CPU soft limit (see limitProcess). Default: every DuckDB
	// thread and the calling one busy for Timeout + KillGrace; -1 sets no
	// CPU limit.
	CPUBudget time.Duration
}

// Worker defaults.
const (
	// DefaultKillGrace: a query's time limit plus this, and the worker is
	// killed. The engine's own interrupt ends almost every query at the
	// time limit; this is for work DuckDB does not interrupt.
	DefaultKillGrace = 2 * time.Second
)

// WorkerOverhead is the address space a worker needs beyond DuckDB's
// memory limit. Measured (docs/query.md, "The worker"): an idle worker maps
// 1.40 GiB plus 8 MiB per DuckDB thread, of which about 1.35 GiB is address
// space the Go runtime reserves (PROT_NONE: its page allocator's summaries)
// and never touches, so it is never resident. On top: 16 MiB per thread
// (stacks, arenas), twice the result byte cap (a result and its encoding)
// and 64 MiB for DuckDB's own allocations outside its buffer manager.
func WorkerOverhead(cfg Config) int64 {
	cfg, _ = cfg.withDefaults()
	return 1400<<20 + int64(cfg.Threads)*(8<<20+16<<20) + 2*cfg.MaxResultBytes + 64<<20
}

// Worker runs the engine in a child process (the same binary re-executed
// with WorkerArg) and speaks to it over the child's stdin and stdout. The
// child sets RLIMIT_AS and RLIMIT_CPU on itself before DuckDB opens, has
// no file or path handed to it (rows come over the pipe), and is killed
// when a query overruns its time limit by KillGrace. A dead worker is
// replaced on the next call; its tables are gone, and Generation says so.
//
// Its methods are those of Engine and are safe for concurrent use.
type Worker struct {
	cfg WorkerConfig
	log *slog.Logger

	loadMu sync.Mutex // one load or drop at a time, as in Engine

	mu       sync.Mutex
	closed   bool
	cur      *workerProc
	starting chan struct{} // closed when a start in progress ends
	gen      uint64
	restarts int64
	lastExit WorkerExit
	tables   map[string]TableInfo // of cur
	wg       sync.WaitGroup       // every process's goroutines
}

// WorkerExit is how a worker process ended.
type WorkerExit struct {
	PID int
	// Reason says why, in words ("killed: a query ran past the time
	// limit", "exit status 2", "signal: killed").
	Reason string
	// PeakRSS is the process's peak resident memory in bytes (ru_maxrss).
	PeakRSS int64
	// CPU is the user and system CPU time the process used.
	CPU time.Duration
	// Wall is how long the process ran.
	Wall time.Duration
}

// WorkerStats describes a Worker.
type WorkerStats struct {
	PID        int   // the running worker's pid, 0 if none
	Generation int64 // processes started so far
	Restarts   int64 // processes that ended other than by Close
	LastExit   WorkerExit
}

// NewWorker returns a Worker for cfg. It starts no process: the first call
// that needs one does.
func NewWorker(cfg WorkerConfig) (*Worker, error) {
	ec, err := cfg.Config.withDefaults()
	if err != nil {
		return nil, err
	}
	cfg.Config = ec
	if len(cfg.Command) == 0 {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("sql worker: find this executable: %w", err)
		}
		cfg.Command = []string{exe, WorkerArg}
	}
	if cfg.AddressSpace == 0 {
		cfg.AddressSpace = cfg.MemoryLimit + WorkerOverhead(cfg.Config)
		if raceBuild {
			cfg.AddressSpace = -1
			cfg.Logger.Warn("sql worker: built with the race detector, so running without RLIMIT_AS")
		}
	}
	if cfg.KillGrace <= 0 {
		cfg.KillGrace = DefaultKillGrace
	}
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = 30 * time.Second
	}
	if cfg.CPUBudget == 0 {
		cfg.CPUBudget = time.Duration(cfg.Threads+1) * (cfg.Timeout + cfg.KillGrace)
	}
	return &Worker{cfg: cfg, log: cfg.Logger, tables: map[string]TableInfo{}}, nil
}

// Limits returns the limits the worker runs under, defaults filled in.
func (w *Worker) Limits() WorkerConfig { return w.cfg }

// Generation is the number of the running worker process (they are
// numbered from 1 as they start), or 0 if none is running or the running
// one is being stopped. When it changes, every table loaded before is gone.
func (w *Worker) Generation() int64 {
	w.mu.Lock()
	p := w.cur
	w.mu.Unlock()
	if p == nil || p.dying() {
		return 0
	}
	return int64(p.gen)
}

// Stats returns the worker's pid, generation, restarts and last exit.
func (w *Worker) Stats() WorkerStats {
	w.mu.Lock()
	defer w.mu.Unlock()
	st := WorkerStats{Generation: int64(w.gen), Restarts: w.restarts, LastExit: w.lastExit}
	if w.cur != nil {
		st.PID = w.cur.cmd.Process.Pid
	}
	return st
}

// Tables lists the tables loaded in the current worker process.
func (w *Worker) Tables() []TableInfo {
	w.mu.Lock()
	out := make([]TableInfo, 0, len(w.tables))
	for _, t := range w.tables {
		out = append(out, t)
	}
	w.mu.Unlock()
	sortTables(out)
	return out
}

// Close stops the worker process (closing its stdin, then killing it if it
// has not exited within 5 s) and waits for it. It is idempotent.
func (w *Worker) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	w.closed = true
	p := w.cur
	starting := w.starting
	w.mu.Unlock()
	if starting != nil {
		<-starting
		w.mu.Lock()
		p = w.cur
		w.mu.Unlock()
	}
	if p != nil {
		p.stop("closed")
	}
	w.wg.Wait()
	return nil
}

// proc returns the running worker process, starting one if there is none.
func (w *Worker) proc(ctx context.Context) (*workerProc, error) {
	for {
		w.mu.Lock()
		if w.closed {
			w.mu.Unlock()
			return nil, ErrClosed
		}
		if p := w.cur; p != nil {
			w.mu.Unlock()
			if !p.dying() {
				return p, nil
			}
			<-p.dead // exited takes it out of w.cur
			continue
		}
		if ch := w.starting; ch != nil {
			w.mu.Unlock()
			select {
			case <-ch:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		ch := make(chan struct{})
		w.starting = ch
		w.mu.Unlock()

		p, err := w.start()
		w.mu.Lock()
		w.starting = nil
		close(ch)
		if err != nil {
			w.mu.Unlock()
			return nil, err
		}
		if w.closed {
			w.mu.Unlock()
			p.stop("closed")
			return nil, ErrClosed
		}
		w.gen++
		p.gen = w.gen
		w.cur = p
		w.tables = map[string]TableInfo{}
		w.mu.Unlock()
		w.log.Info("sql worker started", "pid", p.cmd.Process.Pid, "generation", p.gen,
			"address_space_mib", w.cfg.AddressSpace>>20, "memory_limit_mib", w.cfg.MemoryLimit>>20)
		return p, nil
	}
}

// start execs a worker and waits for it to say it is ready.
func (w *Worker) start() (*workerProc, error) {
	cmd := osexec.Command(w.cfg.Command[0], w.cfg.Command[1:]...)
	// Nothing of the daemon's environment or working directory: the
	// worker needs no path, and DuckDB finds no home to look in.
	// (GODEBUG: the Go runtime would otherwise keep cgroup files open to
	// follow the CPU quota.)
	cmd.Env = []string{"MALLOC_ARENA_MAX=2", "GODEBUG=containermaxprocs=0,updatemaxprocs=0"}
	cmd.Dir = "/"
	cmd.SysProcAttr = workerSysProcAttr()
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("sql worker: %w", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("sql worker: %w", err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, fmt.Errorf("sql worker: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%w: sql worker: start %s: %v", nii.ErrUnavailable, w.cfg.Command[0], err)
	}
	p := &workerProc{
		w:       w,
		cmd:     cmd,
		stdin:   stdin,
		out:     bufio.NewWriterSize(stdin, 256<<10),
		pending: map[uint64]chan frame{},
		dead:    make(chan struct{}),
		started: time.Now(),

		stderrDone: make(chan struct{}),
	}
	ready := make(chan frame, 1)
	p.pending[0] = ready
	hello := workerHello{cfg: w.cfg.Config, cpuBudget: max(w.cfg.CPUBudget, 0)}
	if w.cfg.AddressSpace > 0 {
		hello.addressSpace = w.cfg.AddressSpace
	}
	w.wg.Add(2)
	go p.logStderr(stderr)
	go p.read(stdout)
	if err := p.send(msgHello, 0, appendHello(nil, hello)); err != nil {
		p.kill("could not send its configuration")
		<-p.dead
		return nil, fmt.Errorf("%w: sql worker did not start: %s", nii.ErrUnavailable, p.exitText())
	}
	timer := time.NewTimer(w.cfg.StartTimeout)
	defer timer.Stop()
	select {
	case f := <-ready:
		if f.typ == msgError {
			p.stop("failed to start")
			return nil, replyError(f)
		}
		if f.typ != msgReady {
			p.kill("sent an unexpected first message")
			return nil, fmt.Errorf("%w: sql worker: unexpected first message %d", nii.ErrUnavailable, f.typ)
		}
		return p, nil
	case <-p.dead:
		return nil, fmt.Errorf("%w: sql worker did not start: %s", nii.ErrUnavailable, p.exitText())
	case <-timer.C:
		p.kill("did not start in time")
		return nil, fmt.Errorf("%w: sql worker did not start within %s", nii.ErrUnavailable, w.cfg.StartTimeout)
	}
}

// exited records a process's end; called once per process.
func (w *Worker) exited(p *workerProc, exit WorkerExit, byClose bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.lastExit = exit
	if w.cur == p {
		w.cur = nil
		w.tables = map[string]TableInfo{}
	}
	if !byClose {
		w.restarts++
	}
}

// Query runs one read-only statement in the worker, as Engine.Query does.
// If the worker has not answered within the time limit plus KillGrace it
// is killed and the query fails with ErrTimeout; other queries running in
// it at that moment fail too, and say why.
func (w *Worker) Query(ctx context.Context, text string) (*Result, error) {
	if len(text) > w.cfg.MaxSQLBytes {
		// Refused here too, so an overlong text is never framed.
		return nil, fmt.Errorf("%w: the query is %d bytes; the limit is %d", ErrRefused, len(text), w.cfg.MaxSQLBytes)
	}
	p, err := w.proc(ctx)
	if err != nil {
		return nil, err
	}
	id, ch := p.register()
	defer p.unregister(id)
	if err := p.send(msgQuery, id, appendStr(nil, text)); err != nil {
		return nil, p.deathError(false)
	}
	limit := w.cfg.Timeout + w.cfg.KillGrace
	timer := time.NewTimer(limit)
	defer timer.Stop()
	select {
	case f := <-ch:
		if f.typ == msgResult {
			res, err := decodeResult(f.payload)
			if err != nil {
				p.kill("sent a malformed result")
				return nil, fmt.Errorf("sql worker: %w", err)
			}
			return res, nil
		}
		return nil, replyError(f)
	case <-ctx.Done():
		p.send(msgCancel, id, nil)
		return nil, fmt.Errorf("sql query cancelled: %w", ctx.Err())
	case <-timer.C:
		p.killFor(fmt.Sprintf("a query ran %s past its %s time limit", w.cfg.KillGrace, w.cfg.Timeout), true)
		<-p.dead
		return nil, fmt.Errorf("%w: the query ran past the %s time limit and did not stop when interrupted, so the SQL worker running it was stopped (it restarts by itself; loaded tables are reloaded on use); narrow the query, or raise [query] timeout in the node's config", ErrTimeout, w.cfg.Timeout)
	case <-p.dead:
		return nil, p.deathError(true)
	}
}

// Load streams rows into a table in the worker, as Engine.Load does, in
// batches of about 256 KiB with at most four in flight. It returns the
// rows loaded and the engine's memory after the load.
func (w *Worker) Load(ctx context.Context, name string, cols []Column, rows RowSource) (n, memory int64, err error) {
	if err := CheckName(name); err != nil {
		return 0, 0, err
	}
	if err := checkColumns(cols); err != nil {
		return 0, 0, fmt.Errorf("sql load %s: %w", name, err)
	}
	w.loadMu.Lock()
	defer w.loadMu.Unlock()
	p, err := w.proc(ctx)
	if err != nil {
		return 0, 0, err
	}
	id, ch := p.register()
	defer p.unregister(id)
	if err := p.send(msgLoadBegin, id, appendColumns(appendStr(nil, name), cols)); err != nil {
		return 0, 0, p.deathError(false)
	}
	credits := loadWindow
	// A batch: room for its row count in front, then the rows.
	const head = binary.MaxVarintLen64
	batch := make([]byte, head, batchBytes+64<<10)
	var inBatch uint64
	row := make([]any, len(cols))
	var sent int64
	// wait takes one reply: a credit, or the load's end.
	var final *frame
	wait := func() error {
		select {
		case f := <-ch:
			if f.typ == msgCredit {
				credits++
				return nil
			}
			final = &f
			return nil
		case <-ctx.Done():
			p.send(msgCancel, id, nil)
			return fmt.Errorf("sql load %s: stopped after %d rows: %w", name, sent, ctx.Err())
		case <-p.dead:
			return fmt.Errorf("sql load %s: %w", name, p.deathError(true))
		}
	}
	flush := func() error {
		for credits == 0 && final == nil {
			if err := wait(); err != nil {
				return err
			}
		}
		if final != nil {
			return nil
		}
		var count [binary.MaxVarintLen64]byte
		k := binary.PutUvarint(count[:], inBatch)
		copy(batch[head-k:head], count[:k])
		payload := batch[head-k:]
		if err := p.send(msgLoadRows, id, payload); err != nil {
			return p.deathError(false)
		}
		credits--
		sent += int64(inBatch)
		batch, inBatch = batch[:head], 0
		return nil
	}
	for final == nil {
		clear(row)
		err := rows.Next(row)
		if err == io.EOF {
			break
		}
		if err != nil {
			p.send(msgCancel, id, nil)
			return 0, 0, fmt.Errorf("sql load %s: reading row %d: %w", name, sent+int64(inBatch)+1, err)
		}
		for i, v := range row {
			if batch, err = appendValue(batch, v); err != nil {
				p.send(msgCancel, id, nil)
				return 0, 0, fmt.Errorf("%w sql load %s: row %d, column %q: %v", nii.ErrInvalid, name, sent+int64(inBatch)+1, cols[i].Name, err)
			}
		}
		inBatch++
		if len(batch) >= batchBytes {
			if err := flush(); err != nil {
				return 0, 0, err
			}
		}
	}
	if final == nil && inBatch > 0 {
		if err := flush(); err != nil {
			return 0, 0, err
		}
	}
	if final == nil {
		if err := p.send(msgLoadEnd, id, nil); err != nil {
			return 0, 0, p.deathError(false)
		}
	}
	for final == nil {
		if err := wait(); err != nil {
			return 0, 0, err
		}
	}
	if final.typ != msgLoaded {
		return 0, 0, replyError(*final)
	}
	d := &decoder{b: final.payload}
	n, memory = d.varint(), d.varint()
	if err := d.done(); err != nil {
		p.kill("sent a malformed reply")
		return 0, 0, fmt.Errorf("sql worker: %w", err)
	}
	info := TableInfo{Name: name, Columns: make([]Column, len(cols)), Rows: n}
	for i, c := range cols {
		c.SQLType = c.sqlType()
		info.Columns[i] = c
	}
	w.mu.Lock()
	if w.cur == p {
		w.tables[name] = info
	}
	w.mu.Unlock()
	return n, memory, nil
}

// Drop removes a table from the worker.
func (w *Worker) Drop(ctx context.Context, name string) error {
	if err := CheckName(name); err != nil {
		return err
	}
	w.loadMu.Lock()
	defer w.loadMu.Unlock()
	w.mu.Lock()
	p := w.cur
	_, ok := w.tables[name]
	w.mu.Unlock()
	if p == nil || !ok {
		return fmt.Errorf("sql drop %s: %w: no table of that name is loaded", name, ErrNotFound)
	}
	id, ch := p.register()
	defer p.unregister(id)
	if err := p.send(msgDrop, id, appendStr(nil, name)); err != nil {
		return p.deathError(false)
	}
	select {
	case f := <-ch:
		if f.typ != msgDone {
			return replyError(f)
		}
	case <-ctx.Done():
		return ctx.Err()
	case <-p.dead:
		return p.deathError(true)
	}
	w.mu.Lock()
	if w.cur == p {
		delete(w.tables, name)
	}
	w.mu.Unlock()
	return nil
}

// Kill stops the running worker process at once, as a runaway query
// would; the next call starts another. For tests and operators.
func (w *Worker) Kill(reason string) {
	w.mu.Lock()
	p := w.cur
	w.mu.Unlock()
	if p != nil {
		p.kill(reason)
		<-p.dead
	}
}

func replyError(f frame) error {
	d := &decoder{b: f.payload}
	kind := d.byte1()
	msg := d.str()
	if d.done() != nil || f.typ != msgError {
		return fmt.Errorf("sql worker: unexpected reply %d", f.typ)
	}
	return kindError(kind, msg)
}

// workerProc is one worker process.
type workerProc struct {
	w       *Worker
	cmd     *osexec.Cmd
	gen     uint64
	started time.Time

	outMu sync.Mutex
	stdin io.WriteCloser
	out   *bufio.Writer

	mu      sync.Mutex
	nextID  uint64
	pending map[uint64]chan frame
	killed  string // why the daemon killed it, if it did
	overrun bool   // killed for a query's overrun of its time limit
	closing bool   // stopped by Close or a failed start
	stderr  []string
	oom     bool // a line of its stderr said it ran out of memory

	stderrDone chan struct{} // closed once its stderr is read to the end

	dead chan struct{} // closed when the process has exited and been waited for
	exit WorkerExit
}

func (p *workerProc) register() (uint64, chan frame) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.nextID++
	ch := make(chan frame, loadWindow+2)
	p.pending[p.nextID] = ch
	return p.nextID, ch
}

func (p *workerProc) unregister(id uint64) {
	p.mu.Lock()
	delete(p.pending, id)
	p.mu.Unlock()
}

func (p *workerProc) send(typ byte, id uint64, payload []byte) error {
	p.outMu.Lock()
	defer p.outMu.Unlock()
	if err := writeFrame(p.out, typ, id, payload); err != nil {
		return err
	}
	return p.out.Flush()
}

// maxFromWorker bounds a frame from the worker: a result of the byte cap,
// with room for its encoding's overhead.
func (p *workerProc) maxFromWorker() int {
	return int(min(p.w.cfg.MaxResultBytes*2+1<<20, 1<<30))
}

// read routes the worker's frames to their requests until it exits.
func (p *workerProc) read(stdout io.Reader) {
	defer p.w.wg.Done()
	r := bufio.NewReaderSize(stdout, 256<<10)
	var buf []byte
	for {
		f, b, err := readFrame(r, p.maxFromWorker(), buf)
		if err != nil {
			if err != io.EOF {
				p.kill("broke the protocol: " + err.Error())
			}
			break
		}
		// The payload is handed over: read the next frame into new memory.
		buf = nil
		_ = b
		p.mu.Lock()
		ch := p.pending[f.id]
		p.mu.Unlock()
		if ch == nil {
			continue // a reply to a request that gave up
		}
		select {
		case ch <- f:
		default:
			p.kill("sent more replies than asked for")
		}
	}
	// Its last words first: cmd.Wait closes the stderr pipe, and the line
	// that says why it died is often the last.
	select {
	case <-p.stderrDone:
	case <-time.After(stopGrace):
		p.kill("kept its stderr open after its stdout closed")
		<-p.stderrDone
	}
	p.wait()
}

// wait reaps the process, once its stdout has ended.
func (p *workerProc) wait() {
	err := p.cmd.Wait()
	exit := WorkerExit{PID: p.cmd.Process.Pid, Wall: time.Since(p.started)}
	p.mu.Lock()
	killed, closing := p.killed, p.closing
	p.mu.Unlock()
	if st := p.cmd.ProcessState; st != nil {
		if ru, ok := st.SysUsage().(*syscall.Rusage); ok {
			exit.PeakRSS = ru.Maxrss << 10
		}
		exit.CPU = st.UserTime() + st.SystemTime()
	}
	switch {
	case killed != "":
		exit.Reason = "killed: " + killed
	case err != nil:
		exit.Reason = err.Error()
		if ee, ok := err.(*osexec.ExitError); ok && ee.ExitCode() == exitCPU {
			exit.Reason = "exit status 4: CPU time limit (RLIMIT_CPU) reached"
		}
	default:
		exit.Reason = "exited"
	}
	p.exit = exit
	p.w.exited(p, exit, closing)
	close(p.dead)
	lvl := slog.LevelWarn
	if closing {
		lvl = slog.LevelInfo
	}
	p.w.log.Log(context.Background(), lvl, "sql worker ended", "pid", exit.PID, "generation", p.gen, "reason", exit.Reason,
		"peak_rss_mib", exit.PeakRSS>>20, "cpu", exit.CPU.Round(time.Millisecond), "stderr", strings.Join(p.lastStderr(), " | "))
}

// maxStderrLines keeps the worker's last lines of stderr for its exit
// report.
const maxStderrLines = 8

func (p *workerProc) logStderr(r io.Reader) {
	defer p.w.wg.Done()
	defer close(p.stderrDone)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), 64<<10)
	for sc.Scan() {
		line := sc.Text()
		if len(line) > 512 {
			line = line[:512] + "…"
		}
		oom := saysOutOfMemory(line)
		p.mu.Lock()
		p.oom = p.oom || oom
		p.stderr = append(p.stderr, line)
		if len(p.stderr) > maxStderrLines {
			p.stderr = p.stderr[1:]
		}
		p.mu.Unlock()
		p.w.log.Debug("sql worker stderr", "pid", p.cmd.Process.Pid, "line", line)
	}
	io.Copy(io.Discard, r)
}

func (p *workerProc) lastStderr() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.stderr...)
}

// dying reports whether the daemon has killed or is stopping the process.
func (p *workerProc) dying() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.killed != "" || p.closing
}

// kill ends the process at once (SIGKILL), noting why.
func (p *workerProc) kill(reason string) { p.killFor(reason, false) }

// killFor is kill, noting too whether it is for a query's overrun of its
// time limit (the other requests in flight are not to blame).
func (p *workerProc) killFor(reason string, overrun bool) {
	p.mu.Lock()
	if p.killed == "" && !p.closing {
		p.killed, p.overrun = reason, overrun
	}
	p.mu.Unlock()
	p.cmd.Process.Kill()
}

// stopGrace is how long a worker has to exit once its stdin is closed.
const stopGrace = 5 * time.Second

// stop ends the process gently: stdin closed, so the worker closes its
// engine and exits; killed if it has not within stopGrace.
func (p *workerProc) stop(why string) {
	p.mu.Lock()
	p.closing = true
	p.mu.Unlock()
	p.outMu.Lock()
	p.stdin.Close()
	p.outMu.Unlock()
	select {
	case <-p.dead:
	case <-time.After(stopGrace):
		p.w.log.Warn("sql worker did not exit when asked; killing it", "pid", p.cmd.Process.Pid, "why", why)
		p.cmd.Process.Kill()
		<-p.dead
	}
}

func (p *workerProc) exitText() string {
	<-p.dead
	s := p.exit.Reason
	if lines := p.lastStderr(); len(lines) > 0 {
		s += " (" + strings.Join(lines, " | ") + ")"
	}
	return s
}

// deathError says why a request failed because the worker ended. mine is
// false when the request could not even be sent.
func (p *workerProc) deathError(mine bool) error {
	select {
	case <-p.dead:
	case <-time.After(5 * time.Second):
		p.kill("stopped answering")
		<-p.dead
	}
	p.mu.Lock()
	killed, overrun, oom := p.killed, p.overrun, p.oom
	p.mu.Unlock()
	cfg := p.w.cfg
	if killed != "" {
		err := fmt.Errorf("%w: the SQL worker was stopped while running this query (%s); it restarts by itself: run the query again", nii.ErrUnavailable, killed)
		if overrun {
			// Another query's overrun: this one is not to blame.
			return workerStopped{err}
		}
		return err // a protocol fault, which this request may have caused
	}
	text := p.exitText()
	if oom {
		return fmt.Errorf("%w: the SQL worker ran out of its %d MiB of address space and stopped (%s); narrow the query, or raise [query] memory_limit in the node's config", ErrMemory, cfg.AddressSpace>>20, text)
	}
	if strings.Contains(text, "RLIMIT_CPU") {
		return fmt.Errorf("%w: the SQL worker used more CPU time than its queries' budget (%s) and stopped; narrow the query, or raise [query] timeout in the node's config", ErrTimeout, text)
	}
	return workerStopped{fmt.Errorf("%w: the SQL worker stopped (%s); it restarts by itself: run the query again", nii.ErrUnavailable, text)}
}

// saysOutOfMemory reports whether a line of the worker's stderr says an
// allocation failed.
func saysOutOfMemory(s string) bool {
	lower := strings.ToLower(s)
	return strings.Contains(lower, "out of memory") || strings.Contains(lower, "bad_alloc") || strings.Contains(lower, "cannot allocate")
}

// ErrWorkerStopped marks a request that failed because its worker ended
// under it for a reason other than running out of memory or CPU time, a
// time-limit kill of this request, or a protocol fault: a crash, or a
// kill for another query's overrun. The same request may well succeed on
// the next worker (or, if it crashed the worker itself, crash the next).
var ErrWorkerStopped = errors.New("the SQL worker stopped under the request")

// workerStopped is an error that is ErrWorkerStopped as well as itself.
type workerStopped struct{ error }

func (e workerStopped) Is(target error) bool { return target == ErrWorkerStopped }
func (e workerStopped) Unwrap() error        { return e.error }
