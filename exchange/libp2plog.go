package exchange

import (
	"context"
	"log/slog"
	"os"
	"sync"

	"github.com/libp2p/go-libp2p/gologshim"
	"github.com/nii-uk/nii"
)

// go-libp2p logs through gologshim: one package-level *slog.Logger per
// subsystem ("swarm2", "rcmgr", ...), each of which takes its handler from
// a process-wide default the first time it logs, and writes JSON to stderr
// when none is set. That default is the only hook, and it is global, so
// this package sets it once, at init (before any libp2p logger can have
// logged), to a router that sends each record to the logger of a running
// Host:
//
//   - to the oldest open Host whose logger takes records at that level (in
//     a daemon, the one Host there is; where several nodes share a process,
//     as in tests and 'nii demo', libp2p's records, which say nothing of
//     which node they concern, go to one of them once rather than to all);
//   - tagged component=libp2p and subsystem=<its subsystem>;
//   - from level warn up, or at the levels GOLOG_LOG_LEVEL sets when it is
//     set (libp2p's own variable: "error,swarm2=debug");
//   - with no Host open, to stderr at the level GOLOG_LOG_LEVEL gives
//     (error by default): exactly what libp2p would do without the router.
//
// A Host registers its logger when it is made and withdraws it when it has
// closed; once Close returns, no libp2p record reaches that logger (a
// test's logger may be gone).
var libp2pLogs = &logRouter{}

func init() { gologshim.SetDefaultHandler(libp2pLogs) }

// logRouter is the slog.Handler gologshim's loggers are built on.
type logRouter struct {
	mu    sync.RWMutex
	sinks []*logSink // open Hosts' handlers, oldest first
	// stderr is the handler records go to when no Host is open.
	stderrOnce sync.Once
	stderr     slog.Handler
}

type logSink struct{ h slog.Handler }

// add registers a Host's handler; remove withdraws it. When remove
// returns, no record is being handled by it.
func (r *logRouter) add(h slog.Handler) *logSink {
	s := &logSink{h: h}
	r.mu.Lock()
	r.sinks = append(r.sinks, s)
	r.mu.Unlock()
	return s
}

func (r *logRouter) remove(s *logSink) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, x := range r.sinks {
		if x == s {
			r.sinks = append(r.sinks[:i:i], r.sinks[i+1:]...)
			return
		}
	}
}

// levelFor is the lowest level routed for a libp2p subsystem.
func levelFor(system string, toHost bool) slog.Level {
	if os.Getenv("GOLOG_LOG_LEVEL") != "" || !toHost {
		return gologshim.ConfigFromEnv().LevelForSystem(system)
	}
	return slog.LevelWarn
}

func (r *logRouter) stderrHandler() slog.Handler {
	r.stderrOnce.Do(func() {
		r.stderr = slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})
	})
	return r.stderr
}

// The root handler: gologshim calls WithAttrs on it once per logger, with
// the subsystem as "logger".
func (r *logRouter) Enabled(ctx context.Context, l slog.Level) bool {
	return (&routed{r: r}).Enabled(ctx, l)
}
func (r *logRouter) Handle(ctx context.Context, rec slog.Record) error {
	return (&routed{r: r}).Handle(ctx, rec)
}
func (r *logRouter) WithAttrs(as []slog.Attr) slog.Handler { return (&routed{r: r}).WithAttrs(as) }
func (r *logRouter) WithGroup(name string) slog.Handler    { return (&routed{r: r}).WithGroup(name) }

// routed is a libp2p logger's handler: its subsystem and the attributes
// and groups its logger added, applied to whichever Host's handler takes
// a record.
type routed struct {
	r      *logRouter
	system string
	ops    []func(slog.Handler) slog.Handler
}

// target picks the handler for a record at level l, holding r.mu's read
// lock until done is called.
func (h *routed) target(ctx context.Context, l slog.Level) (slog.Handler, func()) {
	h.r.mu.RLock()
	if l >= levelFor(h.system, true) {
		for _, s := range h.r.sinks {
			if s.h.Enabled(ctx, l) {
				return s.h, h.r.mu.RUnlock
			}
		}
	}
	if len(h.r.sinks) == 0 && l >= levelFor(h.system, false) {
		return h.r.stderrHandler(), h.r.mu.RUnlock
	}
	h.r.mu.RUnlock()
	return nil, func() {}
}

func (h *routed) Enabled(ctx context.Context, l slog.Level) bool {
	t, done := h.target(ctx, l)
	done()
	return t != nil
}

func (h *routed) Handle(ctx context.Context, rec slog.Record) error {
	t, done := h.target(ctx, rec.Level)
	defer done()
	if t == nil {
		return nil
	}
	t = t.WithAttrs([]slog.Attr{slog.String(nii.LogComponent, "libp2p"), slog.String(nii.LogSubsystem, h.system)})
	for _, op := range h.ops {
		t = op(t)
	}
	return t.Handle(ctx, rec)
}

func (h *routed) WithAttrs(as []slog.Attr) slog.Handler {
	out := &routed{r: h.r, system: h.system, ops: h.ops[:len(h.ops):len(h.ops)]}
	var rest []slog.Attr
	for _, a := range as {
		if a.Key == "logger" && out.system == "" && len(out.ops) == 0 {
			out.system = a.Value.String()
			continue
		}
		rest = append(rest, a)
	}
	if len(rest) > 0 {
		out.ops = append(out.ops, func(t slog.Handler) slog.Handler { return t.WithAttrs(rest) })
	}
	return out
}

func (h *routed) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	out := &routed{r: h.r, system: h.system, ops: h.ops[:len(h.ops):len(h.ops)]}
	out.ops = append(out.ops, func(t slog.Handler) slog.Handler { return t.WithGroup(name) })
	return out
}
