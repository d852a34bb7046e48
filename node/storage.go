package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/exchange"
	"github.com/nii-uk/nii/node/api"
	"golang.org/x/sys/unix"
)

// The store's upkeep: the free-space floor that keeps badger off a full
// disk, the store check (verify, withdraw, repair) and garbage collection,
// each at start or on a schedule from [store], and on demand through the
// admin API ('nii store verify', 'nii store gc'). docs/operations.md says
// how to run them; docs/storage.md why they are built so.

// StoreConfig is the [store] section.
type StoreConfig struct {
	// MinFree is the free-space floor on the device holding the home:
	// below it the node refuses publishes and pulls, and a node started
	// below it opens its store read-only. A size ("512MiB") or a share of
	// the device ("5%"); the larger of the two if both are given
	// ("512MiB,5%").
	MinFree string `toml:"min_free,omitempty" comment:"free space kept on the device holding the home: publishes and pulls that would go below it are refused, and a node started below it opens read-only (a size like 512MiB, a share like 5%, or both: 512MiB,5%; default 512MiB)"`
	// VerifyInterval is how often the whole store is read and checked
	// (after the check at start); "off" never.
	VerifyInterval string `toml:"verify_interval,omitempty" comment:"how often every stored chunk is re-read and checked against its hash (Go duration; default 168h; off: never)"`
	// GCInterval is how often chunks no version names are collected.
	GCInterval string `toml:"gc_interval,omitempty" comment:"how often chunks no version names are deleted (Go duration; default 24h; off: only after failed publishes and by nii store gc)"`
	// NoStartCheck skips the store check at start.
	NoStartCheck bool `toml:"no_start_check,omitempty" comment:"skip the store check at start (not advised: it is what finds damage after a crash)"`
	// BufferedWrites writes pack files through the page cache only, not
	// their large writes' middles direct (exchange/directio.go).
	BufferedWrites bool `toml:"buffered_writes,omitempty" comment:"write chunk packs through the page cache only, without O_DIRECT (for a file system where direct writes are slow; docs/storage.md)"`
}

// DefaultMinFree is the default free-space floor: above what badger can
// write at once with default options (five 64 MiB memtables, a flush, a
// 16 MiB ingest transaction), with room to spare.
const DefaultMinFree = 512 << 20

// minMinFree is the least floor accepted: a node with a smaller one can
// be killed by SIGBUS before it sees the disk fill.
const minMinFree = 16 << 20

// Default schedules.
const (
	DefaultVerifyInterval = 7 * 24 * time.Hour
	DefaultGCInterval     = 24 * time.Hour
)

// minFree parses MinFree: a byte floor and a share of the device.
func (c StoreConfig) minFree() (bytes uint64, share float64, err error) {
	if c.MinFree == "" {
		return DefaultMinFree, 0, nil
	}
	bad := fmt.Errorf("config: store.min_free %q: want a size of at least 16MiB (e.g. 512MiB), a share of the device (e.g. 5%%), or both (512MiB,5%%)", c.MinFree)
	for _, part := range strings.Split(c.MinFree, ",") {
		part = strings.TrimSpace(part)
		if p, ok := strings.CutSuffix(part, "%"); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
			if err != nil || f <= 0 || f >= 90 || share != 0 {
				return 0, 0, bad
			}
			share = f / 100
			continue
		}
		n, err := humanize.ParseBytes(part)
		if err != nil || n < minMinFree || bytes != 0 {
			return 0, 0, bad
		}
		bytes = n
	}
	if bytes == 0 && share == 0 {
		return 0, 0, bad
	}
	return bytes, share, nil
}

func parseInterval(key, v string, def time.Duration) (time.Duration, error) {
	switch v {
	case "":
		return def, nil
	case "off", "0":
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < time.Second {
		return 0, fmt.Errorf("config: store.%s %q: want a duration of at least 1s (e.g. %s), or off", key, v, def)
	}
	return d, nil
}

func (c StoreConfig) verifyInterval() (time.Duration, error) {
	return parseInterval("verify_interval", c.VerifyInterval, DefaultVerifyInterval)
}

func (c StoreConfig) gcInterval() (time.Duration, error) {
	return parseInterval("gc_interval", c.GCInterval, DefaultGCInterval)
}

func (c StoreConfig) validate() error {
	if _, _, err := c.minFree(); err != nil {
		return err
	}
	if _, err := c.verifyInterval(); err != nil {
		return err
	}
	_, err := c.gcInterval()
	return err
}

// NoSpaceError refuses a write that would take the device holding the
// home below its floor. It is of kind nii.ErrUnavailable (space may be
// freed, and the write tried again).
type NoSpaceError struct {
	Home        string
	Free, Need  uint64 // bytes free; bytes needed (the write plus the floor)
	Write       uint64 // the write's own bytes
	Floor       uint64
	AtStartFull bool // the node started below the floor: it is read-only
}

func (e *NoSpaceError) Error() string {
	const mb = 1 << 20
	s := fmt.Sprintf("no space left on the device holding %s (%d MB free, %d MB needed: %d MB to write and the %d MB kept free by [store] min_free)",
		e.Home, e.Free/mb, divUp(e.Need, mb), divUp(e.Write, mb), divUp(e.Floor, mb))
	if e.AtStartFull {
		s += "; the node started below that and is read-only until restarted with space freed"
	}
	return s
}

func divUp(a, b uint64) uint64 { return (a + b - 1) / b }

// Is makes a NoSpaceError of kind nii.ErrUnavailable.
func (e *NoSpaceError) Is(target error) bool { return target == nii.ErrUnavailable }

// ErrReadOnly is returned for a change asked of a node whose store is open
// read-only. It is of kind nii.ErrUnavailable.
var ErrReadOnly = nii.Errorf(nii.ErrUnavailable, "the store is open read-only (the disk was full when the node started): free space and restart 'nii run'")

// diskGuard watches the free space on the device holding the store.
type diskGuard struct {
	home, dir   string
	floorBytes  uint64
	floorShare  float64
	readOnly    bool // set at start, before anything reads it
	free, total atomic.Uint64
	refused     atomic.Int64 // writes refused for space
	statErrs    atomic.Int64
	log         *slog.Logger
}

func newDiskGuard(cfg Config, log *slog.Logger) *diskGuard {
	b, s, _ := cfg.Store.minFree() // validated
	return &diskGuard{home: cfg.Home, dir: filepath.Join(cfg.Home, StoreDir), floorBytes: b, floorShare: s, log: log}
}

// stat reads the device's free space (what an unprivileged writer may use)
// and size.
func (g *diskGuard) stat() (free, total uint64, err error) {
	dir := g.dir
	if _, err := os.Stat(dir); err != nil {
		dir = g.home
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		g.statErrs.Add(1)
		return 0, 0, fmt.Errorf("statfs %s: %w", dir, err)
	}
	free, total = st.Bavail*uint64(st.Bsize), st.Blocks*uint64(st.Bsize)
	g.free.Store(free)
	g.total.Store(total)
	return free, total, nil
}

func (g *diskGuard) floor(total uint64) uint64 {
	return max(g.floorBytes, uint64(math.Ceil(g.floorShare*float64(total))))
}

// check refuses a write of need bytes that would leave less than the floor.
// A device whose space cannot be read is not refused (and counted).
func (g *diskGuard) check(need int64) error {
	if g.readOnly {
		return ErrReadOnly
	}
	free, total, err := g.stat()
	if err != nil {
		return nil
	}
	fl := g.floor(total)
	w := uint64(max(need, 0))
	if free >= fl && free-fl >= w {
		return nil
	}
	g.refused.Add(1)
	return &NoSpaceError{Home: g.home, Free: free, Need: w + fl, Write: w, Floor: fl}
}

// low reports whether the device is below its floor now (as last read).
func (g *diskGuard) low() bool {
	total := g.total.Load()
	return total > 0 && g.free.Load() < g.floor(total)
}

// startFull reads the free space before the store opens: below the floor
// the store is opened read-only (badger, writing its logs through
// memory-mapped files, would otherwise die of SIGBUS on a full disk).
func (g *diskGuard) startFull() (bool, error) {
	free, total, err := g.stat()
	if err != nil {
		return false, nil
	}
	fl := g.floor(total)
	if free >= fl {
		return false, nil
	}
	return true, &NoSpaceError{Home: g.home, Free: free, Need: fl, Floor: fl, AtStartFull: true}
}

// diskState is what /readyz, /metrics and 'nii status' say of the disk.
func (n *Node) diskState() api.DiskState {
	g := n.disk
	if g == nil {
		return api.DiskState{}
	}
	free, total, _ := g.stat()
	return api.DiskState{
		Free: free, Total: total, Floor: g.floor(total), ReadOnly: g.readOnly,
		Low: g.readOnly || (total > 0 && free < g.floor(total)), Refused: g.refused.Load(),
	}
}

// writable refuses a change on a read-only node.
func (n *Node) writable() error {
	if n.disk != nil && n.disk.readOnly {
		return ErrReadOnly
	}
	return nil
}

// storeUpkeep is the state of the store check and GC.
type storeUpkeep struct {
	mu         sync.Mutex // one check or collection driven by the node at a time
	gcKick     chan struct{}
	repairKick chan struct{}
	lastVerify *api.StoreVerifyResult
	lastGC     *api.StoreGCResult

	verifies, gcs           atomic.Int64
	truncations             atomic.Int64 // value-log files badger cut short on open
	gcChunks, gcBytes       atomic.Int64
	damagedFound, repaired  atomic.Int64
	withdrawnReplicaAdverts atomic.Int64
}

// kickGC asks the upkeep loop for a collection (after a failed publish or
// pull); kicks while one is pending merge.
func (n *Node) kickGC() {
	select {
	case n.upkeep.gcKick <- struct{}{}:
	default:
	}
}

func (n *Node) kickRepair() {
	select {
	case n.upkeep.repairKick <- struct{}{}:
	default:
	}
}

// startUpkeep starts the loop that checks the store at start and on the
// schedule, collects garbage, and repairs what serving found damaged.
func (n *Node) startUpkeep() {
	if n.cfg.RegistryOnly {
		return
	}
	n.host.OnCorruptChunk(func(c exchange.CorruptChunk) {
		n.store.NoteCorrupt(c.Ref, c.Manifest, c.Hash, c.Err)
		n.kickRepair()
	})
	n.wg.Add(1)
	go n.upkeepLoop()
}

func (n *Node) upkeepLoop() {
	defer n.wg.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n.wg.Add(1)
	go func() { // ends the check or collection running when the node stops
		defer n.wg.Done()
		select {
		case <-n.closeCh:
			cancel()
		case <-ctx.Done():
		}
	}()
	verifyEvery, _ := n.cfg.Store.verifyInterval() // validated
	gcEvery, _ := n.cfg.Store.gcInterval()
	tick := func(d time.Duration) <-chan time.Time {
		if d == 0 {
			return nil
		}
		return time.After(d)
	}
	if !n.cfg.Store.NoStartCheck {
		n.checkStore(ctx, "start")
	}
	verifyAt, gcAt := tick(verifyEvery), tick(gcEvery)
	// A repair that failed (no provider yet) is tried again on this
	// period, while anything stays damaged.
	const repairRetry = time.Minute
	var retry <-chan time.Time
	for {
		if len(n.store.Damaged()) > 0 && retry == nil {
			retry = time.After(repairRetry)
		}
		select {
		case <-n.closeCh:
			return
		case <-verifyAt:
			n.checkStore(ctx, "schedule")
			verifyAt = tick(verifyEvery)
		case <-gcAt:
			n.collect(ctx, "schedule")
			gcAt = tick(gcEvery)
		case <-n.upkeep.gcKick:
			n.collect(ctx, "after a failed write")
		case <-n.upkeep.repairKick:
			n.repairStore(ctx)
		case <-retry:
			retry = nil
			n.repairStore(ctx)
		}
	}
}

// checkStore verifies the store, withdraws this node's replica adverts of
// damaged versions and repairs what it can, logging the outcome.
func (n *Node) checkStore(ctx context.Context, why string) (*api.StoreVerifyResult, error) {
	if n.cfg.RegistryOnly {
		return nil, ErrRegistryOnly
	}
	n.upkeep.mu.Lock()
	defer n.upkeep.mu.Unlock()
	rep, err := n.store.Verify(ctx)
	if err != nil {
		if ctx.Err() == nil {
			n.log.Error("store check failed", slog.String("why", why), slog.String(nii.LogErr, err.Error()))
		}
		return nil, err
	}
	n.upkeep.verifies.Add(1)
	res := &api.StoreVerifyResult{Versions: rep.Versions, Chunks: rep.Chunks, Bytes: rep.Bytes, Took: rep.Took.String(), Damaged: []api.DamagedVersion{}}
	lvl := slog.LevelInfo
	if len(rep.Damaged) > 0 {
		lvl = slog.LevelError
		n.upkeep.damagedFound.Add(int64(len(rep.Damaged)))
	}
	n.log.Log(ctx, lvl, "store checked", slog.String("why", why), slog.Int("versions", rep.Versions),
		slog.Int(nii.LogChunks, rep.Chunks), slog.Int64(nii.LogBytes, rep.Bytes), slog.Int("damaged", len(rep.Damaged)),
		slog.Duration(nii.LogTook, rep.Took))
	for _, d := range rep.Damaged {
		n.log.Error("damaged version", slog.String(nii.LogDataset, d.Ref.String()), slog.Int("missing", d.Missing),
			slog.Int("corrupt", d.Corrupt), slog.String("reason", d.Reason))
	}
	res.Damaged = n.repairLocked(ctx)
	n.upkeep.lastVerify = res
	return res, nil
}

// repairStore repairs what is marked damaged (serving found it, or an
// earlier repair failed).
func (n *Node) repairStore(ctx context.Context) {
	n.upkeep.mu.Lock()
	defer n.upkeep.mu.Unlock()
	n.repairLocked(ctx)
}

// repairLocked withdraws the replica adverts of damaged versions and
// fetches what each lacks from other providers; it returns each damaged
// version's outcome.
func (n *Node) repairLocked(ctx context.Context) []api.DamagedVersion {
	var out []api.DamagedVersion
	for ref, d := range n.store.Damaged() {
		dv := api.DamagedVersion{Ref: ref.String(), Missing: d.Missing, Corrupt: d.Corrupt, Reason: d.Reason}
		replica := ref.Dataset.Org != n.cfg.Org
		if rec, err := n.store.Version(ref); err == nil {
			replica = rec.Publisher != n.id
		}
		if replica {
			dv.AdvertWithdrawn = n.withdrawReplica(ref)
		}
		if n.disk.readOnly {
			dv.RepairError = ErrReadOnly.Error()
			out = append(out, dv)
			continue
		}
		res, err := n.repairVersion(ctx, ref, d)
		if err != nil {
			dv.RepairError = err.Error()
			n.log.Warn("damaged version not repaired yet", slog.String(nii.LogDataset, ref.String()), slog.String(nii.LogErr, err.Error()))
		} else {
			dv.Repaired = true
			n.upkeep.repaired.Add(1)
			n.log.Info("damaged version repaired from the federation", slog.String(nii.LogDataset, ref.String()),
				slog.Int("fetched_chunks", res.FetchedChunks), slog.Int64("fetched_bytes", res.FetchedBytes))
			if replica && n.cfg.Replica.serve() && res.Record != nil {
				n.advertiseReplica(res.Record)
			}
		}
		out = append(out, dv)
	}
	if out == nil {
		out = []api.DamagedVersion{}
	}
	return out
}

// withdrawReplica stops advertising this node as a replica of ref, if it
// does; it reports whether it did.
func (n *Node) withdrawReplica(ref nii.Ref) bool {
	own, ok := n.catalog.Own(ref.Dataset)
	if !ok || !own.Replica || own.Withdrawn || own.Version != ref.Version {
		return false
	}
	_, err := n.announce(nii.Advert{Dataset: ref.Dataset, Replica: true, Withdrawn: true, Meta: nii.Metadata{Publisher: ref.Dataset.Org}})
	if err != nil {
		n.log.Error("withdraw replica advert", slog.String(nii.LogDataset, ref.String()), slog.String(nii.LogErr, err.Error()))
		return false
	}
	n.upkeep.withdrawnReplicaAdverts.Add(1)
	n.log.Warn("replica advert withdrawn: this node's copy is damaged", slog.String(nii.LogDataset, ref.String()))
	return true
}

// repairVersion fetches what a damaged version lacks from the providers
// the catalog lists, other than this node.
func (n *Node) repairVersion(ctx context.Context, ref nii.Ref, d exchange.Damage) (*exchange.PullResult, error) {
	src, err := n.catalog.Sources(ref, n.online)
	if err != nil {
		return nil, err
	}
	req := n.fetchRequest(src)
	if src.Publisher.Advert.Origin == n.id {
		// This node's own version: its replicas can give it back (the
		// manifest is checked against this node's signature).
		req.Publisher = n.id
	}
	var providers []nii.NodeID
	for _, p := range src.Providers {
		if p.Advert.Origin != n.id {
			providers = append(providers, p.Advert.Origin)
		}
	}
	if len(providers) == 0 {
		return nil, fmt.Errorf("%s: %w: no other node serves it", ref, exchange.ErrNoProvider)
	}
	req.Providers = providers
	req.Credential = n.Credential()
	req.Action = nii.ActionSync
	return exchange.Repair(ctx, n.host, n.store, d, req)
}

// VerifyStore runs the store check now ('nii store verify').
func (n *Node) VerifyStore(ctx context.Context) (*api.StoreVerifyResult, error) {
	return n.checkStore(ctx, "asked")
}

// collect runs a garbage collection and logs what it reclaimed.
func (n *Node) collect(ctx context.Context, why string) (*api.StoreGCResult, error) {
	if n.cfg.RegistryOnly {
		return nil, ErrRegistryOnly
	}
	if err := n.writable(); err != nil {
		return nil, err
	}
	n.upkeep.mu.Lock()
	defer n.upkeep.mu.Unlock()
	res, err := n.store.GC(ctx)
	if err != nil {
		if ctx.Err() == nil {
			n.log.Error("garbage collection failed", slog.String("why", why), slog.String(nii.LogErr, err.Error()))
		}
		return nil, err
	}
	n.upkeep.gcs.Add(1)
	n.upkeep.gcChunks.Add(res.Chunks)
	n.upkeep.gcBytes.Add(res.Bytes)
	out := &api.StoreGCResult{
		Versions: res.Versions, KeptChunks: res.Kept, Chunks: res.Chunks, Bytes: res.Bytes, SparedChunks: res.Spared,
		VlogRewrites: res.VlogRewrites, DiskBefore: res.DiskBefore, DiskAfter: res.DiskAfter, Took: res.Took.String(),
	}
	n.upkeep.lastGC = out
	n.log.Info("garbage collected", slog.String("why", why), slog.Int64(nii.LogChunks, res.Chunks), slog.Int64(nii.LogBytes, res.Bytes),
		slog.Int64("spared_chunks", res.Spared), slog.Int("vlog_rewrites", res.VlogRewrites),
		slog.Int64("disk_before", res.DiskBefore), slog.Int64("disk_after", res.DiskAfter), slog.Duration(nii.LogTook, res.Took))
	return out, nil
}

// CollectGarbage runs a garbage collection now ('nii store gc').
func (n *Node) CollectGarbage(ctx context.Context) (*api.StoreGCResult, error) {
	return n.collect(ctx, "asked")
}

// damagedByRef is the store's damaged versions, for listings.
func (n *Node) damagedByRef() map[nii.Ref]exchange.Damage {
	if n.store == nil {
		return nil
	}
	return n.store.Damaged()
}

var errNotStarted = errors.New("node not started")

// The store's admin routes:
//
//	POST /api/v1/store/verify   admin; runs the store check now: api.StoreVerifyResult
//	POST /api/v1/store/gc       admin; collects unreferenced chunks now: api.StoreGCResult
const (
	storeVerifyRoute = "POST /api/v1/store/verify"
)

func (n *Node) storeRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /api/v1/store/verify", n.admin(func(w http.ResponseWriter, r *http.Request) {
		res, err := n.VerifyStore(r.Context())
		if err != nil {
			writeErr(w, err)
			return
		}
		writeJSON(w, http.StatusOK, res)
	}))
	mux.HandleFunc("POST /api/v1/store/gc", n.admin(func(w http.ResponseWriter, r *http.Request) {
		res, err := n.CollectGarbage(r.Context())
		if err != nil {
			writeErr(w, err)
			return
		}
		writeJSON(w, http.StatusOK, res)
	}))
}

// markDamaged sets the damage marks of a listing.
func (n *Node) markDamaged(ds []api.DatasetInfo) {
	dmg := n.damagedByRef()
	if len(dmg) == 0 {
		return
	}
	for i := range ds {
		for j := range ds[i].Versions {
			v := &ds[i].Versions[j]
			ref, err := nii.ParseRef(v.Ref)
			if err != nil {
				continue
			}
			if d, ok := dmg[ref]; ok {
				v.Damaged = d.Reason
				if v.Damaged == "" {
					v.Damaged = "damaged"
				}
				ds[i].Damaged = append(ds[i].Damaged, ref.Version)
			}
		}
	}
}

// CorruptChunksServed returns how many chunks serving found corrupt (and
// answered missing) since start.
func (n *Node) CorruptChunksServed() int64 {
	if n.host == nil {
		return 0
	}
	return n.host.CorruptChunks()
}
