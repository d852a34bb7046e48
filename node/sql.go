package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/exchange"
	"github.com/nii-uk/nii/node/api"
	"github.com/nii-uk/nii/query"
)

// SQL over what the node holds (docs/query.md, "In the node"). Two kinds of
// table can be queried:
//
//   - each merged view (MergedViews, sqltables.go), named as its standard:
//     'lga/spend-over-500';
//   - each tabular dataset version the node holds, named 'org/name' (the
//     latest version held) and 'org/name@N'.
//
// Tables are loaded into a SQL worker process (query.Worker) on their
// first use, reloaded when their content changes (a newer version held, a
// merge completed) or after the worker restarted, and dropped least
// recently used first when loaded tables pass three quarters of the
// engine's memory. There are two scopes, each its own worker: "open" holds
// only open datasets and merged views built only from open sources, and
// answers queries without the admin token; "all" holds anything and
// answers the operator's queries when the node holds restricted data (when
// it holds none, the operator's queries go to "open" too, so nothing is
// loaded twice).

// Table kinds, as nii query --tables shows them.
const (
	sqlKindMerged  = "merged"
	sqlKindDataset = "dataset"
)

// sqlTable is one table a query may name.
type sqlTable struct {
	name    string
	kind    string
	open    bool
	key     string // changes exactly when the rows do
	rows    int64  // -1 if not known before loading
	source  string // what the rows are, in words
	columns []query.Column
	notes   []string
	// load returns the columns to load and a source of the rows; the
	// source's Close is called when the load ends.
	load func(ctx context.Context) (*sqlLoad, error)
}

// sqlLoad is a table's columns and rows, ready for query.Worker.Load.
type sqlLoad struct {
	cols  []query.Column
	rows  query.RowSource
	close func()
	// notes says, after the load, what the loader decided (columns typed
	// as text because some cells did not parse, cells past the header).
	notes func() []string
}

// sqlScope is one SQL worker and what is loaded in it.
type sqlScope struct {
	name string
	w    *query.Worker

	mu     sync.Mutex
	loaded map[string]*sqlLoaded
}

type sqlLoaded struct {
	key      string
	gen      int64
	memory   int64
	rows     int64
	lastUsed time.Time
	notes    []string
	loading  chan struct{} // closed when a load in progress ends
	err      error         // the load's error, for those who waited on it
}

type sqlService struct {
	n      *Node
	cfg    query.WorkerConfig
	public bool
	log    *slog.Logger

	// base is cancelled by Close: loads run under it, not under the
	// request that asked for them.
	base   context.Context
	cancel context.CancelFunc

	mu     sync.Mutex
	closed bool
	scopes map[string]*sqlScope
}

// Scope names.
const (
	scopeOpen = "open"
	scopeAll  = "all"
)

func newSQLService(n *Node) (*sqlService, error) {
	cfg, err := n.cfg.Query.worker()
	if err != nil {
		return nil, err
	}
	cfg.Logger = n.log.With(slog.String("part", "sql"))
	base, cancel := context.WithCancel(context.Background())
	return &sqlService{n: n, cfg: cfg, public: !n.cfg.Query.AdminOnly, log: cfg.Logger, scopes: map[string]*sqlScope{},
		base: base, cancel: cancel}, nil
}

// scope returns the named scope, with its worker (which starts its
// process on first use).
func (s *sqlService) scope(name string) (*sqlScope, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, query.ErrClosed
	}
	if sc := s.scopes[name]; sc != nil {
		return sc, nil
	}
	cfg := s.cfg
	cfg.Logger = s.log.With(slog.String("scope", name))
	w, err := query.NewWorker(cfg)
	if err != nil {
		return nil, err
	}
	sc := &sqlScope{name: name, w: w, loaded: map[string]*sqlLoaded{}}
	s.scopes[name] = sc
	return sc, nil
}

// Close stops the workers. Idempotent.
func (s *sqlService) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	scopes := s.scopes
	s.mu.Unlock()
	s.cancel()
	var errs []error
	for _, sc := range scopes {
		errs = append(errs, sc.w.Close())
	}
	return errors.Join(errs...)
}

// catalogue lists every table a query with (admin) or without the admin
// token may name, by name.
func (s *sqlService) catalogue(ctx context.Context, admin bool) (map[string]*sqlTable, bool, error) {
	out := map[string]*sqlTable{}
	restricted := false
	if v := s.n.views; v != nil {
		views, err := v.MergedViews(ctx)
		if err != nil {
			return nil, false, fmt.Errorf("sql: list merged views: %w", err)
		}
		for i := range views {
			t := mergedTable(&views[i])
			if t == nil {
				continue
			}
			if !t.open {
				restricted = true
			}
			if t.open || admin {
				out[t.name] = t
			}
		}
	}
	recs, err := s.n.store.Versions(nil)
	if err != nil {
		return nil, false, err
	}
	latest := map[nii.DatasetID]*exchange.VersionRecord{}
	for _, rec := range recs {
		if rec.Meta.Table == nil || len(rec.Meta.Table.Columns) == 0 {
			continue
		}
		if rec.Meta.Access == nii.AccessRestricted {
			restricted = true
			if !admin {
				continue
			}
		}
		t := s.datasetTable(rec, rec.Ref.String())
		if _, taken := out[t.name]; !taken {
			out[t.name] = t
		}
		if l := latest[rec.Ref.Dataset]; l == nil || rec.Ref.Version > l.Ref.Version {
			latest[rec.Ref.Dataset] = rec
		}
	}
	for d, rec := range latest {
		if _, taken := out[d.String()]; taken {
			continue // a merged view has the name
		}
		out[d.String()] = s.datasetTable(rec, d.String())
	}
	return out, restricted, nil
}

// scopeFor picks the worker for a query.
func (s *sqlService) scopeFor(admin, restricted bool) string {
	if admin && restricted {
		return scopeAll
	}
	return scopeOpen
}

// quotedRE finds the quoted strings and identifiers in a query: table
// names hold a slash, so SQL can name them only quoted.
var quotedRE = regexp.MustCompile(`'(?:[^']|'')*'|"(?:[^"]|"")*"`)

// referenced returns the catalogue's tables that text names, looking
// inside string literals too: query('SELECT * FROM ”org/name”').
func referenced(text string, cat map[string]*sqlTable) []*sqlTable {
	seen := map[string]bool{}
	var out []*sqlTable
	var scan func(text string, depth int)
	scan = func(text string, depth int) {
		for _, q := range quotedRE.FindAllString(text, -1) {
			name := q[1 : len(q)-1]
			if q[0] == '\'' {
				name = strings.ReplaceAll(name, "''", "'")
			} else {
				name = strings.ReplaceAll(name, `""`, `"`)
			}
			if t := cat[name]; t != nil && !seen[name] {
				seen[name] = true
				out = append(out, t)
			}
			if depth < 4 && strings.ContainsAny(name, `'"`) {
				scan(name, depth+1)
			}
		}
	}
	scan(text, 0)
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// errAdminOnly: the operator has turned public SQL off.
var errAdminOnly = nii.Errorf(nii.ErrUnauthorized, "SQL on this node needs the node's admin token: its operator set [query] admin_only = true")

// Query runs one SQL statement over the tables it names, loading them
// first. admin says whether the request carried the admin token.
func (s *sqlService) Query(ctx context.Context, text string, admin bool) (*query.Result, error) {
	if !admin && !s.public {
		return nil, errAdminOnly
	}
	cat, restricted, err := s.catalogue(ctx, admin)
	if err != nil {
		return nil, err
	}
	need := referenced(text, cat)
	if !admin && restricted {
		if err := s.refuseRestricted(ctx, text, cat); err != nil {
			return nil, err
		}
	}
	sc, err := s.scope(s.scopeFor(admin, restricted))
	if err != nil {
		return nil, err
	}
	start, caller := time.Now(), ctx
	for try := 0; ; try++ {
		if err := sc.ensure(ctx, s, need); err != nil {
			return nil, err
		}
		gen := sc.w.Generation()
		res, err := sc.w.Query(ctx, text)
		if err != nil && try == 0 && len(need) > 0 && isNoTable(err) && sc.w.Generation() != gen {
			// The worker was replaced between the load and the query
			// (another query's overrun killed it): load and run again.
			continue
		}
		if err != nil && try == 0 && errors.Is(err, query.ErrWorkerStopped) && ctx.Err() == nil {
			// The worker ended under the query, not for the query's own
			// limits (a crash, another query's overrun): a read-only
			// query is safe to run again, once, on the next worker,
			// within what is left of the one query's time (so that a
			// retry never outlasts the budget a caller was promised).
			lim := sc.w.Limits()
			var cancel context.CancelFunc
			ctx, cancel = context.WithDeadline(ctx, start.Add(lim.Timeout+lim.KillGrace))
			defer cancel()
			s.log.Warn("sql worker stopped under a query (its exit is logged); running the query again on the next worker")
			continue
		}
		if err != nil && try > 0 && ctx.Err() != nil && caller.Err() == nil {
			return nil, fmt.Errorf("%w: the SQL worker stopped under the query and running it again took it past the %s time limit; run it again, or raise [query] timeout in the node's config", query.ErrTimeout, sc.w.Limits().Timeout)
		}
		if err != nil {
			return nil, s.explain(err, cat)
		}
		return res, nil
	}
}

func isNoTable(err error) bool {
	return errors.Is(err, nii.ErrInvalid) && strings.Contains(err.Error(), "Table with name") && strings.Contains(err.Error(), "does not exist")
}

// refuseRestricted says plainly when a query without the admin token names
// a restricted table (catalog metadata, names included, is public; the
// rows are not).
func (s *sqlService) refuseRestricted(ctx context.Context, text string, open map[string]*sqlTable) error {
	all, _, err := s.catalogue(ctx, true)
	if err != nil {
		return err
	}
	for _, t := range referenced(text, all) {
		if open[t.name] == nil {
			return fmt.Errorf("%w: %q is restricted: only the node's operator (with the admin token) can query it", query.ErrRefused, t.name)
		}
	}
	return nil
}

// explain adds what can be queried to a "no such table" error.
func (s *sqlService) explain(err error, cat map[string]*sqlTable) error {
	if !isNoTable(err) {
		return err
	}
	names := make([]string, 0, len(cat))
	for n := range cat {
		names = append(names, "'"+n+"'")
	}
	sort.Strings(names)
	list := "none"
	if len(names) > 0 {
		list = strings.Join(names, ", ")
	}
	msg, _, _ := strings.Cut(err.Error(), "\nloaded tables:")
	return fmt.Errorf("%w\ntables you can query (nii query --tables): %s; quote names, e.g. FROM 'org/name'", &plainError{msg: msg, kind: nii.ErrInvalid}, list)
}

type plainError struct {
	msg  string
	kind error
}

func (e *plainError) Error() string { return e.msg }
func (e *plainError) Unwrap() error { return e.kind }

// Table budget: loaded tables may hold this share of the engine's memory;
// the rest is the queries'.
const sqlTableShareNum, sqlTableShareDen = 3, 4

// ensure loads every table in need that is not loaded at its current key.
func (sc *sqlScope) ensure(ctx context.Context, s *sqlService, need []*sqlTable) error {
	keep := map[string]bool{}
	for _, t := range need {
		keep[t.name] = true
	}
	for _, t := range need {
		if err := sc.ensureOne(ctx, s, t, keep); err != nil {
			return err
		}
	}
	return nil
}

func (sc *sqlScope) ensureOne(ctx context.Context, s *sqlService, t *sqlTable, keep map[string]bool) error {
	for {
		gen := sc.w.Generation()
		sc.mu.Lock()
		e := sc.loaded[t.name]
		if e != nil && e.loading != nil {
			ch := e.loading
			sc.mu.Unlock()
			select {
			case <-ch:
				continue
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if e != nil && e.err == nil && e.key == t.key && e.gen == gen && gen > 0 {
			e.lastUsed = time.Now()
			sc.mu.Unlock()
			return nil
		}
		ch := make(chan struct{})
		ne := &sqlLoaded{key: t.key, loading: ch}
		if e != nil {
			ne.memory = e.memory
		}
		sc.loaded[t.name] = ne
		sc.mu.Unlock()

		err := sc.load(s, t, ne, keep)
		sc.mu.Lock()
		ne.loading = nil
		ne.err = err
		if err != nil {
			delete(sc.loaded, t.name)
		}
		sc.mu.Unlock()
		close(ch)
		if err != nil {
			return err
		}
		return nil
	}
}

// load loads t into the worker, evicting least recently used tables when
// the engine runs out of room.
func (sc *sqlScope) load(s *sqlService, t *sqlTable, e *sqlLoaded, keep map[string]bool) error {
	// Loads are of trusted data and shared: one client giving up does not
	// stop a load others may be waiting for; the node's closing does.
	ctx := s.base

	start := time.Now()
	var rows, mem int64
	var notes []string
	err := sc.loadOnce(ctx, t, &rows, &mem, &notes)
	if errors.Is(err, query.ErrMemory) {
		// Make room: drop every other table this query does not need,
		// least recently used first, and try once more.
		if sc.evict(ctx, keep, t.name, 0) > 0 {
			err = sc.loadOnce(ctx, t, &rows, &mem, &notes)
		}
	}
	if err != nil {
		if errors.Is(err, query.ErrMemory) {
			return fmt.Errorf("%w: table %q (%s) does not fit in the SQL engine's %d MiB of memory, even with every other table unloaded; ask the node's operator to raise [query] memory_limit", query.ErrMemory, t.name, t.source, s.cfg.MemoryLimit>>20)
		}
		return fmt.Errorf("sql: load %q: %w", t.name, err)
	}
	sc.mu.Lock()
	var others int64
	for name, o := range sc.loaded {
		if name != t.name && o.loading == nil {
			others += o.memory
		}
	}
	e.gen = sc.w.Generation()
	e.memory = max(mem-others, 0)
	e.rows = rows
	e.notes = notes
	e.lastUsed = time.Now()
	sc.mu.Unlock()
	s.log.Info("sql table loaded", slog.String("table", t.name), slog.String("scope", sc.name), slog.Int64("rows", rows),
		slog.Int64("memory_mib", e.memory>>20), slog.Duration("took", time.Since(start).Round(time.Millisecond)))
	budget := s.cfg.MemoryLimit * sqlTableShareNum / sqlTableShareDen
	if mem > budget {
		sc.evict(ctx, keep, t.name, mem-budget)
	}
	return nil
}

func (sc *sqlScope) loadOnce(ctx context.Context, t *sqlTable, rows, mem *int64, notes *[]string) error {
	l, err := t.load(ctx)
	if err != nil {
		return err
	}
	defer l.close()
	*rows, *mem, err = sc.w.Load(ctx, t.name, l.cols, l.rows)
	if err == nil && l.notes != nil {
		*notes = l.notes()
	}
	return err
}

// evict drops loaded tables not in keep (nor skip), least recently used
// first, until at least free bytes are freed (0: all of them). It returns
// how many it dropped.
func (sc *sqlScope) evict(ctx context.Context, keep map[string]bool, skip string, free int64) int {
	sc.mu.Lock()
	type cand struct {
		name string
		e    *sqlLoaded
	}
	var cands []cand
	for name, e := range sc.loaded {
		if !keep[name] && name != skip && e.loading == nil {
			cands = append(cands, cand{name, e})
		}
	}
	sc.mu.Unlock()
	sort.Slice(cands, func(i, j int) bool { return cands[i].e.lastUsed.Before(cands[j].e.lastUsed) })
	dropped := 0
	var freed int64
	for _, c := range cands {
		if free > 0 && freed >= free {
			break
		}
		err := sc.w.Drop(ctx, c.name)
		if err != nil && !errors.Is(err, query.ErrNotFound) {
			continue
		}
		sc.mu.Lock()
		if sc.loaded[c.name] == c.e {
			delete(sc.loaded, c.name)
		}
		sc.mu.Unlock()
		freed += c.e.memory
		dropped++
		sc.w.Limits().Logger.Info("sql table unloaded to make room", slog.String("table", c.name), slog.Int64("memory_mib", c.e.memory>>20))
	}
	return dropped
}

// Tables lists what a query with (admin) or without the admin token can
// name, and what is loaded now.
func (s *sqlService) Tables(ctx context.Context, admin bool) ([]api.QueryTable, error) {
	if !admin && !s.public {
		return nil, errAdminOnly
	}
	cat, restricted, err := s.catalogue(ctx, admin)
	if err != nil {
		return nil, err
	}
	var loaded map[string]*sqlLoaded
	s.mu.Lock()
	sc := s.scopes[s.scopeFor(admin, restricted)]
	s.mu.Unlock()
	if sc != nil {
		gen := sc.w.Generation()
		sc.mu.Lock()
		loaded = map[string]*sqlLoaded{}
		for name, e := range sc.loaded {
			if e.loading == nil && e.err == nil && e.gen == gen {
				c := *e
				loaded[name] = &c
			}
		}
		sc.mu.Unlock()
	}
	var workerTables map[string]query.TableInfo
	if sc != nil {
		workerTables = map[string]query.TableInfo{}
		for _, ti := range sc.w.Tables() {
			workerTables[ti.Name] = ti
		}
	}
	out := make([]api.QueryTable, 0, len(cat))
	for _, t := range cat {
		qt := api.QueryTable{Name: t.name, Kind: t.kind, Access: string(nii.AccessOpen), Source: t.source, Notes: t.notes}
		if !t.open {
			qt.Access = string(nii.AccessRestricted)
		}
		if t.rows >= 0 {
			r := t.rows
			qt.Rows = &r
		}
		cols := t.columns
		if e := loaded[t.name]; e != nil && e.key == t.key {
			qt.Loaded = true
			r := e.rows
			qt.Rows = &r
			qt.MemoryBytes = e.memory
			qt.Notes = append(append([]string(nil), t.notes...), e.notes...)
			if ti, ok := workerTables[t.name]; ok {
				cols = ti.Columns
			}
		}
		for _, c := range cols {
			qt.Columns = append(qt.Columns, apiColumn(c))
		}
		out = append(out, qt)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func apiColumn(c query.Column) api.QueryColumn {
	return api.QueryColumn{Name: c.Name, Type: string(c.Type), Scale: c.Scale, SQLType: c.SQLType}
}
