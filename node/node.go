// Package node composes one nii node: its configuration and home, its
// identity, its badger store, and (as they land) the registry, exchange and
// auth parts, behind a local HTTP API that the nii CLI talks to.
//
// Lifecycle, as in serf and litestream: New validates and loads the key but
// starts nothing; Start opens the store and binds the listeners (so their
// addresses are known when it returns); Run serves until its context ends;
// Close is idempotent and waits for every goroutine the node started.
package node

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/auth"
	"github.com/nii-uk/nii/exchange"
	"github.com/nii-uk/nii/exchange/chunker"
	"github.com/nii-uk/nii/internal/storeopts"
	"github.com/nii-uk/nii/registry"
	"github.com/nii-uk/nii/registry/gossip"
)

// Node is one running nii node.
type Node struct {
	cfg    Config
	log    *slog.Logger
	p2pKey crypto.PrivKey
	key    ed25519.PrivateKey
	id     nii.NodeID

	mu      sync.Mutex
	started bool
	closed  bool

	lock    *os.File
	db      *badger.DB
	store   *exchange.Store
	catalog *registry.Catalog
	peers   *registry.Peers
	host    *exchange.Host
	gossip  *gossip.Gossip

	anchors     *auth.Anchors
	verifier    *auth.Verifier
	revocations *auth.Revocations
	audit       *auth.AuditLog
	problemMu   sync.Mutex // serialises problem reports' count-then-store and close (problems.go)
	credMu      sync.Mutex
	credential  string        // this node's membership credential, if enrolled
	trustMu     sync.Mutex    // serialises trust-anchor edits (config file and memory)
	strangers   strangerLog   // refusals of non-members, logged (members.go)
	needSync    bool          // this node had peers before: learn its own history before publishing (history.go)
	ownKick     chan struct{} // own records learnt from the federation: sign ours again
	chunkMu     sync.Mutex
	chunkReads  map[string]time.Time // allowed chunk reads recorded (see firstChunkRead)

	apiLn     net.Listener
	apiSrv    *http.Server
	apiToken  string
	pages     http.Handler       // the pages for people (web.go), built once
	limits    serverLimits       // the API server's, from [http] (httpserver.go)
	conns     *connLimiter       // the API's listener, at most max_conns open
	apiCancel context.CancelFunc // cancels every API request's context
	requests  sync.WaitGroup     // API handlers running

	exportSock *exportSocket // where the CLI hands over a file to export into (exportsock_linux.go); nil if none

	// views lists the merged views SQL can query (sqltables.go); nil
	// until the merge wiring sets it.
	views MergedViews
	sql   *sqlService // SQL over merged views and tabular datasets (sql.go)

	stdCache standardCache // parsed standards by manifest (standards.go)
	merges   mergeState    // merges run and kept (merge.go)
	mapIndex mappingIndex  // the catalog's mappings, for a dataset's standardised rows (standardised.go)
	watches  watchState    // merged datasets kept current (watch.go)

	followKick                chan struct{}
	pulledBytes               atomic.Int64
	pulledDelta, pulledReused atomic.Int64  // delta-assembled chunks and the bytes they reused (metrics.go)
	transfer                  transferStats // per-provider and throughput figures (transfer.go)
	ops                       opsState      // metrics, rate limit, readiness (ops.go)
	disk                      *diskGuard    // free space on the home's device (storage.go)
	upkeep                    storeUpkeep   // store check and GC (storage.go)

	wg       sync.WaitGroup
	closeCh  chan struct{} // closed when the node stops: background work ends
	stopOnce sync.Once
	startAt  time.Time
}

// New validates cfg and loads the node key from its home. It opens nothing
// else and starts no goroutine.
func New(cfg Config) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p2pKey, key, id, err := loadKey(cfg.Home)
	if err != nil {
		return nil, err
	}
	return &Node{
		cfg:        cfg,
		log:        log.With(slog.String(nii.LogNode, id.Short())),
		p2pKey:     p2pKey,
		key:        key,
		id:         id,
		closeCh:    make(chan struct{}),
		followKick: make(chan struct{}, 1),
		watches:    watchState{kick: make(chan struct{}, 1)},
		ownKick:    make(chan struct{}, 1),
		upkeep:     storeUpkeep{gcKick: make(chan struct{}, 1), repairKick: make(chan struct{}, 1)},
	}, nil
}

// Log attribute keys: the root package's (nii.LogNode, ...). These names
// remain for code written before the keys moved there.
const (
	// Deprecated: use nii.LogNode.
	LogNode = nii.LogNode
	// Deprecated: use nii.LogDataset.
	LogDataset = nii.LogDataset
	// Deprecated: use nii.LogAddr.
	LogAddr = nii.LogAddr
	// Deprecated: use nii.LogErr.
	LogErr = nii.LogErr
)

// ID returns the node's ID (its libp2p peer ID).
func (n *Node) ID() nii.NodeID { return n.id }

// Config returns the node's configuration.
func (n *Node) Config() Config { return n.cfg }

// Store returns the node's content store (nil before Start).
func (n *Node) Store() *exchange.Store { return n.store }

// ErrInUse is returned by Start when another process runs this home. It is
// of kind nii.ErrConflict.
var ErrInUse = nii.Errorf(nii.ErrConflict, "home is in use")

// Start takes the home's lock, opens the store and binds the local API. On
// error everything it opened is closed again.
func (n *Node) Start(ctx context.Context) (err error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return errors.New("node is closed")
	}
	if n.started {
		return errors.New("node already started")
	}
	defer func() {
		if err != nil {
			n.closeResources()
		}
	}()
	if err := n.takeLock(); err != nil {
		return err
	}
	// The node's badger options (internal/storeopts: sized for the chunk
	// index, manifests and catalog it holds; raised for one open when a
	// killed node's memtable log was written with a larger memtable).
	opts := storeopts.Badger(filepath.Join(n.cfg.Home, StoreDir), n.cfg.LowMemory).WithLogger(badgerLogger{n.log})
	n.disk = newDiskGuard(n.cfg, n.log)
	if full, why := n.disk.startFull(); full {
		// badger writes through memory-mapped files: on a full disk a
		// write is a SIGBUS, not an error, so it must not write at all.
		n.log.Error("starting read-only: "+why.Error(), slog.Uint64("free", n.disk.free.Load()))
		n.disk.readOnly = true
		opts = opts.WithReadOnly(true)
	}
	vlogs := vlogSizes(opts.Dir)
	if n.db, err = badger.Open(opts); err != nil {
		return fmt.Errorf("open store: %w", err)
	}
	n.checkVlogTruncation(vlogs, opts.ValueLogFileSize)
	if n.store, err = exchange.NewStore(n.db, chunker.Default()); err != nil {
		return err
	}
	n.store.SetSpaceCheck(n.disk.check)
	if n.cfg.Store.BufferedWrites {
		n.store.SetBufferedWrites()
	}
	if err := n.startFederation(); err != nil {
		return err
	}
	if !n.cfg.RegistryOnly {
		n.views = mergeViews{n} // the merged views SQL queries (views.go)
	}
	if n.sql, err = newSQLService(n); err != nil {
		return err
	}
	if err := n.startAPI(); err != nil {
		return err
	}
	n.startUpkeep()
	n.started = true
	n.startAt = time.Now()
	n.log.Info("node started", slog.String(nii.LogNodeID, string(n.id)), slog.String(nii.LogOrg, n.cfg.Org),
		slog.String(nii.LogFederation, n.cfg.Federation), slog.String(nii.LogAPIAddr, n.apiLn.Addr().String()),
		slog.String(nii.LogGossipAddr, n.gossip.Addr()), slog.Any(nii.LogP2PAddrs, n.host.Addrs()))
	sec := n.security()
	n.log.Info("federation mode", slog.String("mode", sec.Mode), slog.Int("anchors", sec.Anchors), slog.Bool("gossip_encrypted", sec.GossipEncrypted))
	for _, w := range sec.Warnings {
		n.log.Warn("federation is open: " + w)
	}
	return nil
}

func (n *Node) takeLock() error {
	path := filepath.Join(n.cfg.Home, LockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("lock home: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		b := make([]byte, 32)
		k, _ := f.ReadAt(b, 0)
		f.Close()
		return fmt.Errorf("%w: another nii run (pid %s) is using %s; stop it first", ErrInUse, string(trimSpace(b[:k])), n.cfg.Home)
	}
	f.Truncate(0)
	f.WriteAt([]byte(fmt.Sprintf("%d\n", os.Getpid())), 0)
	n.lock = f
	return nil
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == ' ' || b[len(b)-1] == 0) {
		b = b[:len(b)-1]
	}
	return b
}

// Run starts the node if needed and serves until ctx ends, then closes it.
func (n *Node) Run(ctx context.Context) error {
	n.mu.Lock()
	started := n.started
	n.mu.Unlock()
	if !started {
		if err := n.Start(ctx); err != nil {
			return err
		}
	}
	select {
	case <-ctx.Done():
	case <-n.closeCh:
	}
	return n.Close()
}

// Close stops everything the node started and waits for it. It is safe to
// call more than once.
func (n *Node) Close() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil
	}
	n.closed = true
	err := n.closeResources()
	n.log.Info("node stopped")
	return err
}

// closeResources releases whatever Start opened, in reverse order.
func (n *Node) closeResources() error {
	var errs []error
	n.stopOnce.Do(func() { close(n.closeCh) })
	// Stop serving the API first, so no handler is left using the parts
	// closed below; then leave the federation, so peers hear a goodbye
	// rather than suspecting a failure; then stop the libp2p host. The
	// fields stay set until every goroutine of the node has stopped.
	if n.apiSrv != nil {
		n.shutdownAPI()
	} else if n.apiLn != nil {
		n.apiLn.Close()
	}
	if n.exportSock != nil {
		n.exportSock.close() // its exports end before the store closes (n.wg, below)
	}
	if n.sql != nil {
		if err := n.sql.Close(); err != nil {
			errs = append(errs, fmt.Errorf("sql: %w", err))
		}
	}
	if n.gossip != nil {
		if err := n.gossip.Close(); err != nil {
			errs = append(errs, fmt.Errorf("gossip: %w", err))
		}
	}
	if n.host != nil {
		if err := n.host.Close(); err != nil {
			errs = append(errs, fmt.Errorf("p2p: %w", err))
		}
	}
	n.wg.Wait()
	n.apiSrv, n.gossip, n.host = nil, nil, nil
	if n.apiLn != nil {
		os.Remove(filepath.Join(n.cfg.Home, APIFile))
		os.Remove(filepath.Join(n.cfg.Home, TokenFile))
		n.apiLn = nil
	}
	if n.store != nil {
		if err := n.store.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if n.db != nil {
		if err := n.db.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close store: %w", err))
		}
		n.db = nil
	}
	if n.lock != nil {
		n.lock.Close() // releases the flock
		n.lock = nil
	}
	return errors.Join(errs...)
}

func newToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// badgerLogger sends badger's logs to slog: errors and warnings at their
// level, always; its info lines (replays, compactions, value-log GC) at
// info for the few that tell an operator the store changed under them
// (files deleted, rewritten or truncated), at debug otherwise; its debug
// lines not at all.
type badgerLogger struct{ log *slog.Logger }

func (l badgerLogger) emit(level slog.Level, f string, a ...any) {
	msg := strings.TrimRight(fmt.Sprintf(f, a...), "\n")
	l.log.Log(context.Background(), level, "badger: "+msg, slog.String(nii.LogComponent, "badger"))
}

func (l badgerLogger) Errorf(f string, a ...any)   { l.emit(slog.LevelError, f, a...) }
func (l badgerLogger) Warningf(f string, a ...any) { l.emit(slog.LevelWarn, f, a...) }
func (l badgerLogger) Infof(f string, a ...any) {
	level := slog.LevelDebug
	if s := strings.ToLower(f); strings.Contains(s, "truncat") || strings.Contains(s, "deleting") ||
		strings.Contains(s, "removing") || strings.Contains(s, "rewriting") || strings.Contains(s, "corrupt") {
		level = slog.LevelInfo
	}
	l.emit(level, f, a...)
}
func (l badgerLogger) Debugf(f string, a ...any) {}

// vlogSizes returns the size of each value-log file in dir before the
// store opens.
func vlogSizes(dir string) map[string]int64 {
	out := map[string]int64{}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".vlog") {
			if fi, err := e.Info(); err == nil {
				out[e.Name()] = fi.Size()
			}
		}
	}
	return out
}

// checkVlogTruncation warns when badger's open cut a value-log file that
// had been closed cleanly: it does so, silently, at the first entry whose
// checksum fails, dropping every entry after it (docs/storage.md). A file
// left at badger's preallocated size (twice ValueLogFileSize) was being
// written when the node stopped; cutting its unwritten tail is routine.
func (n *Node) checkVlogTruncation(before map[string]int64, vlogFileSize int64) {
	after := vlogSizes(filepath.Join(n.cfg.Home, StoreDir))
	for name, was := range before {
		now, ok := after[name]
		if !ok || now >= was || was == 2*vlogFileSize {
			continue
		}
		n.log.Error("badger cut a value-log file short on open (a checksum failed): values after the cut are lost; the store check will find the versions affected and re-fetch them",
			slog.String(nii.LogComponent, "badger"), slog.String("file", name), slog.Int64("was", was), slog.Int64("now", now))
		n.upkeep.truncations.Add(1)
	}
}
