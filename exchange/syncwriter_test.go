package exchange

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/exchange/chunker"
	"github.com/nii-uk/nii/internal/storeopts"
)

func someChunks(seed uint64, n int) []Chunk {
	var cs []Chunk
	for i := range n {
		b := randBytes(seed<<16|uint64(i), 20<<10+i)
		cs = append(cs, Chunk{Hash: nii.HashOf(b), Data: b})
	}
	return cs
}

// TestSyncedWriterIndexesOnlySyncedFrames: a pull's chunks are indexed
// only once their pack is synced. When the sync fails, none of the
// group's chunks is stored (no index entry names frames that may not be
// on the disk), the error reaches close (and a later put), close can be
// called again, and the store's counts and Close are not left waiting.
// Written again with syncs that work, the same chunks are stored and
// read back.
func TestSyncedWriterIndexesOnlySyncedFrames(t *testing.T) {
	s, _ := openStore(t)
	injected := errors.New("injected sync failure")
	s.packs.syncErr = func() error { return injected }
	chunks := someChunks(1, 40)

	w := s.newSyncedWriter()
	if err := w.put(chunks); err != nil {
		t.Fatalf("put (the sync comes later): %v", err)
	}
	// The failure reaches the writer's next put once the sync has run.
	deadline := time.Now().Add(20 * time.Second)
	for i := uint64(0); ; i++ {
		err := w.put(someChunks(100+i, 1))
		if errors.Is(err, injected) {
			break
		}
		if err != nil {
			t.Fatalf("put after a failed sync: %v, want the sync's error", err)
		}
		if time.Now().After(deadline) {
			t.Fatal("the failed sync never reached put")
		}
	}
	if err := w.close(); !errors.Is(err, injected) {
		t.Fatalf("close: %v, want the sync's error", err)
	}
	if err := w.close(); !errors.Is(err, injected) {
		t.Fatalf("second close: %v", err)
	}
	for _, c := range chunks {
		if held, err := s.HasChunk(c.Hash); err != nil || held {
			t.Fatalf("chunk %s indexed though its pack never synced (held %v, %v)", shortHash(c.Hash), held, err)
		}
	}
	if n, _ := s.counts.get(); n != 0 {
		t.Fatalf("%d chunks counted, none stored", n)
	}

	s.packs.syncErr = nil
	w = s.newSyncedWriter()
	if err := w.put(chunks); err != nil {
		t.Fatal(err)
	}
	if err := w.put(chunks[:10]); err != nil { // held by now or queued: stored once
		t.Fatal(err)
	}
	if err := w.close(); err != nil {
		t.Fatal(err)
	}
	for _, c := range chunks {
		b, err := s.Chunk(c.Hash)
		if err != nil || !bytes.Equal(b, c.Data) {
			t.Fatalf("chunk %s after a good write: %v", shortHash(c.Hash), err)
		}
	}
	if n, _ := s.counts.get(); n != int64(len(chunks)) {
		t.Fatalf("%d chunks counted, want %d (each once)", n, len(chunks))
	}
	done := make(chan error, 1)
	go func() { done <- s.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Store.Close waits for a write that never ends")
	}
}

// TestSyncedWriterSharesSyncs: a pull's groups share one pack sync until
// syncBytes of them are written or the writer's delay has passed, so a
// fast pull does not pay one fsync (a journal commit, a device flush) per
// small group, and a slow pull's chunks still become durable and indexed
// within the delay, without waiting for the pull to end.
func TestSyncedWriterSharesSyncs(t *testing.T) {
	s, _ := openStore(t)
	var syncs atomic.Int64
	s.packs.syncErr = func() error { syncs.Add(1); return nil }

	// Many small groups, fewer than syncBytes in all, and a delay no run
	// reaches: one sync at close.
	w := s.newSyncedWriterDelay(time.Hour)
	var all []Chunk
	for i := range 50 {
		cs := someChunks(200+uint64(i), 2)
		all = append(all, cs...)
		if err := w.put(cs); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.close(); err != nil {
		t.Fatal(err)
	}
	if n := syncs.Load(); n != 1 {
		t.Fatalf("%d syncs for 50 groups of %d KiB in all, want 1 (each group synced on its own?)", n, sizeOfChunks(all)>>10)
	}
	for _, c := range all {
		if held, err := s.HasChunk(c.Hash); err != nil || !held {
			t.Fatalf("chunk %s not stored after close (held %v, %v)", shortHash(c.Hash), held, err)
		}
	}

	// More than syncBytes: a sync every syncBytes, before close.
	syncs.Store(0)
	w = s.newSyncedWriterDelay(time.Hour)
	big := randBytes(7, nii.MaxChunkSize)
	var written int64
	for i := 0; written < 2*syncBytes+1; i++ {
		b := append([]byte(strconv.Itoa(i)), big...)[:nii.MaxChunkSize]
		if err := w.put([]Chunk{{Hash: nii.HashOf(b), Data: b}}); err != nil {
			t.Fatal(err)
		}
		written += int64(len(b))
	}
	if err := w.close(); err != nil {
		t.Fatal(err)
	}
	if n, most := syncs.Load(), written/syncBytes+1; n < 2 || n > most {
		t.Fatalf("%d syncs for %d MiB, want 2..%d (one per %d MiB)", n, written>>20, most, syncBytes>>20)
	}

	// A slow pull: a lone group is synced and indexed once the delay has
	// passed, while the writer stays open.
	syncs.Store(0)
	w = s.newSyncedWriterDelay(10 * time.Millisecond)
	lone := someChunks(300, 1)[0]
	if err := w.put([]Chunk{lone}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		held, err := s.HasChunk(lone.Hash)
		if err != nil {
			t.Fatal(err)
		}
		if held {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a lone group was never synced while its writer stayed open")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if syncs.Load() != 1 {
		t.Fatalf("%d syncs before the lone group was indexed, want 1", syncs.Load())
	}
	if err := w.close(); err != nil {
		t.Fatal(err)
	}
}

func sizeOfChunks(cs []Chunk) int64 {
	var n int64
	for _, c := range cs {
		n += int64(len(c.Data))
	}
	return n
}

// pullKillChildEnv names the store directory a TestPullKillChild child
// pulls into.
const pullKillChildEnv = "NII_PULL_KILL_CHILD"

// pullKillData is what version v of trial's dataset holds.
func pullKillData(trial, v uint64) []byte { return randBytes(trial<<20|v, 6<<20+int(v%5)<<16) }

func pullKillDataset(trial uint64) nii.DatasetID {
	return nii.DatasetID{Org: "greenwich", Name: "pullkill" + strconv.FormatUint(trial, 10)}
}

// TestKillDuringPull SIGKILLs a process that pulls version after version
// (through the fetch engine and the syncedWriter, from a publisher in the
// same process) at a random instant, again and again on the same store.
// After each kill the store must reopen; every visible version must read
// back byte-identical and pass the store check; every version the child
// recorded as committed must be visible; and a pull of the version the
// kill interrupted completes, fetching only what the store lacks.
func TestKillDuringPull(t *testing.T) {
	trials := 4
	if testing.Short() {
		trials = 2
	}
	dir := t.TempDir()
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 3))
	for trial := range uint64(trials) {
		log := filepath.Join(t.TempDir(), "committed")
		killChild(t, int(trial), "TestPullKillChild", 300+r.IntN(1200), pullKillChildEnv+"="+dir, "NII_PULL_KILL_LOG="+log, "NII_PULL_KILL_TRIAL="+strconv.FormatUint(trial, 10))

		d := pullKillDataset(trial)
		db, s, recs, rep := checkAfterKill(t, int(trial), dir, log, d, func(v uint64) []byte { return pullKillData(trial, v) })
		// The version the kill interrupted: pulled again, it completes and
		// fetches only the chunks the store lacks.
		src, _ := openStore(t)
		sg := newSigner(t)
		next := uint64(len(recs)) + 1
		var rec *VersionRecord
		for v := uint64(1); v <= next; v++ {
			rec = publish(t, src, sg, d, pullKillData(trial, v))
		}
		pf := NewPipeFetcher(sg.id)
		pf.Serve(sg.id, src, nil)
		// The child's publisher was another signer: the resumed version is
		// a new manifest, but most of its chunks are already held.
		res, err := Pull(context.Background(), pf, s, PullRequest{Ref: rec.Ref, Manifest: rec.Manifest, Publisher: sg.id, Providers: []nii.NodeID{sg.id}})
		if err != nil && !errors.Is(err, ErrExists) {
			t.Fatalf("trial %d: pull after the kill: %v", trial, err)
		}
		if err == nil {
			if got := readAll(t, s, res.Record); !bytes.Equal(got, pullKillData(trial, next)) {
				t.Fatalf("trial %d: the resumed pull reads back different", trial)
			}
			t.Logf("trial %d: %d versions visible, %d chunks; the interrupted one resumed with %d held, %d fetched",
				trial, len(recs), rep.Chunks, res.HeldChunks, res.FetchedChunks)
		}
		s.Close()
		db.Close()
	}
}

// TestPullKillChild is the process TestKillDuringPull kills: it is
// skipped unless that test started it.
func TestPullKillChild(t *testing.T) {
	dir := os.Getenv(pullKillChildEnv)
	if dir == "" {
		t.Skip("the child process of TestKillDuringPull")
	}
	trial, _ := strconv.ParseUint(os.Getenv("NII_PULL_KILL_TRIAL"), 10, 64)
	db, err := badger.Open(storeopts.Badger(dir, false).WithLogger(nil)) // the node's options
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewStore(db, chunker.Default())
	if err != nil {
		t.Fatal(err)
	}
	log, err := os.OpenFile(os.Getenv("NII_PULL_KILL_LOG"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	src, _ := openStore(t)
	sg := newSigner(t)
	pf := NewPipeFetcher(sg.id)
	pf.Serve(sg.id, src, nil)
	d := pullKillDataset(trial)
	for v := uint64(1); ; v++ {
		rec := publish(t, src, sg, d, pullKillData(trial, v))
		res, err := Pull(context.Background(), pf, s, PullRequest{Ref: rec.Ref, Manifest: rec.Manifest, Publisher: sg.id, Providers: []nii.NodeID{sg.id}})
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintln(log, res.Record.Ref.Version)
		log.Sync()
	}
}
