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
	"sync"
)

// WorkerArg is the hidden first argument that makes nii (or a test binary)
// run as a SQL worker instead of its usual self. A Worker starts its
// processes as "EXECUTABLE __sql-worker".
const WorkerArg = "__sql-worker"

// Worker exit codes, besides 0 (stdin closed) and the Go runtime's 2.
const (
	exitProtocol = 3 // the daemon sent something the worker could not read
	exitCPU      = 4 // RLIMIT_CPU's soft limit was reached (SIGXCPU)
)

// RunWorkerIfAsked makes the process a SQL worker when its first argument
// is WorkerArg: it serves the daemon on stdin and stdout, logs to stderr,
// and exits when stdin closes. Otherwise it returns at once. Call it first
// thing in main, and in TestMain of any package whose tests start a Worker
// with the default command.
func RunWorkerIfAsked() {
	if len(os.Args) < 2 || os.Args[1] != WorkerArg {
		return
	}
	err := ServeWorker(os.Stdin, os.Stdout, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "sql worker:", err)
		os.Exit(exitProtocol)
	}
	os.Exit(0)
}

// ServeWorker is the worker process's side of the wire protocol
// (wire.go): it reads the daemon's hello, limits the process (address
// space, CPU), opens the engine, says it is ready and serves requests
// until in ends. It returns nil when in ends cleanly.
func ServeWorker(in io.Reader, out io.Writer, logw io.Writer) error {
	r := bufio.NewReaderSize(in, 1<<20)
	s := &workerServer{
		out:   bufio.NewWriterSize(out, 256<<10),
		reqs:  make(map[uint64]context.CancelFunc),
		loads: make(map[uint64]chan []byte),
	}
	f, buf, err := readFrame(r, maxToWorker, nil)
	if err != nil {
		return fmt.Errorf("read hello: %w", err)
	}
	if f.typ != msgHello {
		return fmt.Errorf("%w: want hello first, got message %d", errFrame, f.typ)
	}
	h, err := decodeHello(f.payload)
	if err != nil {
		return fmt.Errorf("hello: %w", err)
	}
	if err := limitProcess(h, logw); err != nil {
		s.send(msgError, 0, appendStr([]byte{kindOther}, "sql worker: "+err.Error()))
		return nil
	}
	cfg := h.cfg
	cfg.Logger = slog.New(slog.NewTextHandler(logw, &slog.HandlerOptions{Level: slog.LevelWarn}))
	eng, err := Open(cfg)
	if err != nil {
		s.send(msgError, 0, appendStr([]byte{errorKind(err)}, err.Error()))
		return nil
	}
	s.eng = eng
	s.cpuBudget = int64(h.cpuBudget)
	defer eng.Close()
	ready := binary.AppendUvarint(nil, uint64(os.Getpid()))
	ready = binary.AppendVarint(ready, h.addressSpace)
	if err := s.send(msgReady, 0, ready); err != nil {
		return nil
	}
	base, cancel := context.WithCancel(context.Background())
	defer func() {
		cancel()
		s.wg.Wait()
	}()
	for {
		f, buf, err = readFrame(r, maxToWorker, buf)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := s.dispatch(base, f); err != nil {
			return err
		}
	}
}

type workerServer struct {
	eng       *Engine
	cpuBudget int64 // unused when 0; see raiseCPULimit
	wg        sync.WaitGroup

	outMu sync.Mutex
	out   *bufio.Writer

	mu    sync.Mutex
	reqs  map[uint64]context.CancelFunc // running queries, loads and drops
	loads map[uint64]chan []byte        // batches for running loads
}

func (s *workerServer) send(typ byte, id uint64, payload []byte) error {
	s.outMu.Lock()
	defer s.outMu.Unlock()
	if err := writeFrame(s.out, typ, id, payload); err != nil {
		return err
	}
	return s.out.Flush()
}

func (s *workerServer) sendErr(id uint64, err error) {
	s.send(msgError, id, appendStr([]byte{errorKind(err)}, err.Error()))
}

// start registers request id and runs fn on its own goroutine with a
// context that msgCancel (or the end of the daemon's stdin) cancels.
func (s *workerServer) start(base context.Context, id uint64, fn func(ctx context.Context)) {
	ctx, cancel := context.WithCancel(base)
	s.mu.Lock()
	s.reqs[id] = cancel
	s.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer func() {
			s.mu.Lock()
			delete(s.reqs, id)
			delete(s.loads, id)
			s.mu.Unlock()
			cancel()
		}()
		fn(ctx)
	}()
}

func (s *workerServer) dispatch(base context.Context, f frame) error {
	d := &decoder{b: f.payload}
	switch f.typ {
	case msgQuery:
		text := d.str()
		if err := d.done(); err != nil {
			return err
		}
		s.start(base, f.id, func(ctx context.Context) {
			raiseCPULimit(s.cpuBudget)
			res, err := s.eng.Query(ctx, text)
			if err != nil {
				s.sendErr(f.id, err)
				return
			}
			b, err := appendResult(make([]byte, 0, 4096), res)
			if err != nil {
				s.sendErr(f.id, err)
				return
			}
			s.send(msgResult, f.id, b)
		})
	case msgLoadBegin:
		name := d.str()
		cols := d.columns()
		if err := d.done(); err != nil {
			return err
		}
		ch := make(chan []byte, loadWindow+1)
		s.mu.Lock()
		s.loads[f.id] = ch
		s.mu.Unlock()
		s.start(base, f.id, func(ctx context.Context) {
			src := &wireRows{ctx: ctx, ch: ch, credit: func() { s.send(msgCredit, f.id, nil) }}
			n, err := s.eng.Load(ctx, name, cols, src)
			if err != nil {
				s.sendErr(f.id, err)
				return
			}
			mem, err := s.eng.Memory(ctx)
			if err != nil {
				s.sendErr(f.id, err)
				return
			}
			s.send(msgLoaded, f.id, binary.AppendVarint(binary.AppendVarint(nil, n), mem))
		})
	case msgLoadRows, msgLoadEnd:
		s.mu.Lock()
		ch, ok := s.loads[f.id]
		if ok && f.typ == msgLoadEnd {
			delete(s.loads, f.id)
		}
		s.mu.Unlock()
		if !ok {
			return nil // the load already failed; its error is on its way
		}
		if f.typ == msgLoadEnd {
			close(ch)
			return nil
		}
		select {
		case ch <- append([]byte(nil), f.payload...):
		default:
			return fmt.Errorf("%w: more than %d batches in flight for load %d", errFrame, loadWindow, f.id)
		}
	case msgDrop:
		name := d.str()
		if err := d.done(); err != nil {
			return err
		}
		s.start(base, f.id, func(ctx context.Context) {
			if err := s.eng.Drop(ctx, name); err != nil {
				s.sendErr(f.id, err)
				return
			}
			s.send(msgDone, f.id, nil)
		})
	case msgCancel:
		s.mu.Lock()
		cancel := s.reqs[f.id]
		s.mu.Unlock()
		if cancel != nil {
			cancel()
		}
	default:
		return fmt.Errorf("%w: unknown message %d", errFrame, f.typ)
	}
	return nil
}

// wireRows is a load's RowSource in the worker: the batches the daemon
// sends, each acknowledged with a credit once taken.
type wireRows struct {
	ctx    context.Context
	ch     chan []byte
	credit func()
	d      decoder
	left   uint64
}

func (w *wireRows) Next(row []any) error {
	for w.left == 0 {
		if err := w.d.done(); err != nil {
			return err
		}
		select {
		case b, ok := <-w.ch:
			if !ok {
				return io.EOF
			}
			w.credit()
			w.d = decoder{b: b}
			w.left = w.d.uvarint()
			if w.d.err != nil {
				return w.d.err
			}
		case <-w.ctx.Done():
			return w.ctx.Err()
		}
	}
	for i := range row {
		row[i] = w.d.value(0)
	}
	if w.d.err != nil {
		return errors.New("sql worker: a batch of rows is malformed")
	}
	w.left--
	return nil
}
