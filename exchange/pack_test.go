package exchange

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/exchange/chunker"
	"github.com/nii-uk/nii/internal/niitest"
	"github.com/nii-uk/nii/internal/storeopts"
)

// TestCorruptPackChunkCaughtOnce flips a byte of a chunk in its pack file
// behind the store's back. The first reader — here the content server
// answering a pull — finds it, answers "missing" (the puller stores
// nothing bad and the pull fails), and drops the chunk's index entry, so
// from then on the chunk is missing rather than served or found "held":
// the store check reports the version as missing a chunk, and publishing
// the same file again stores the chunk afresh and the version reads whole.
func TestCorruptPackChunkCaughtOnce(t *testing.T) {
	s, _ := openStore(t)
	sg := newSigner(t)
	d := nii.DatasetID{Org: "greenwich", Name: "spend"}
	data := randBytes(21, 2<<20)
	rec := publish(t, s, sg, d, data)
	m := mustManifest(t, s, rec)
	victim := m.Chunks[len(m.Chunks)/2].Hash
	flipChunkByte(t, s, victim, 100)
	before, _ := s.Stats()

	pf := NewPipeFetcher(sg.id)
	pf.Serve(sg.id, s, nil)
	dst, _ := openStore(t)
	_, err := Pull(context.Background(), pf, dst, PullRequest{Ref: rec.Ref, Manifest: rec.Manifest, Publisher: sg.id, Providers: []nii.NodeID{sg.id}})
	if err == nil {
		t.Fatal("a pull of a version with a corrupt chunk succeeded")
	}
	if ok, _ := dst.HasChunk(victim); ok {
		t.Fatal("the puller stored the corrupt chunk")
	}
	if _, err := dst.Version(rec.Ref); !errors.Is(err, nii.ErrNotFound) {
		t.Fatalf("a failed pull left a version visible: %v", err)
	}

	// Caught once: the serving store no longer holds it, and counts it gone.
	if ok, err := s.HasChunk(victim); ok || err != nil {
		t.Fatalf("after the serve found it corrupt, HasChunk = %v, %v; want dropped", ok, err)
	}
	if _, err := s.Chunk(victim); !errors.Is(err, nii.ErrNotFound) {
		t.Fatalf("second read of the corrupt chunk: %v, want ErrNotFound", err)
	}
	// An export after it (another reader) is told the chunk was corrupt,
	// not merely missing.
	if _, err := s.WriteTo(context.Background(), rec, io.Discard); !errors.Is(err, nii.ErrCorrupt) || !strings.Contains(err.Error(), "found damaged") {
		t.Fatalf("export after the drop: %v; want corrupt, found damaged", err)
	}
	after, _ := s.Stats()
	if after.Chunks != before.Chunks-1 {
		t.Fatalf("chunks %d after the drop, want %d", after.Chunks, before.Chunks-1)
	}
	rep, err := s.Verify(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Damaged) != 1 || rep.Damaged[0].Missing != 1 {
		t.Fatalf("store check: %+v, want one version missing one chunk", rep.Damaged)
	}

	// Publishing the same file again stores the chunk (not "found held").
	if _, _, err := s.Ingest(context.Background(), bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, s, rec); !bytes.Equal(got, data) {
		t.Fatal("version 1 does not read whole after the chunk was stored again")
	}
	if rep, _ := s.Verify(context.Background()); len(rep.Damaged) != 0 {
		t.Fatalf("store check after re-storing: %+v", rep.Damaged)
	}
}

// TestLegacyBadgerBodiesStillRead: a store written by a build that kept
// chunk bodies in badger (a c/ value that is the bytes) reads, exports,
// verifies, collects and repairs-by-republish as before once upgraded.
func TestLegacyBadgerBodiesStillRead(t *testing.T) {
	s, db := openStore(t)
	sg := newSigner(t)
	d := nii.DatasetID{Org: "greenwich", Name: "old"}
	data := randBytes(22, 1<<20)
	// Store the chunks as the old layout did, behind the new writer.
	c, _ := chunker.New(bytes.NewReader(data), s.ChunkParams())
	var refs []nii.ChunkRef
	err := db.Update(func(txn *badger.Txn) error {
		for {
			b, err := c.Next()
			if err != nil {
				return nil
			}
			h := nii.HashOf(b)
			refs = append(refs, nii.ChunkRef{Hash: h, Size: uint32(len(b))})
			if err := txn.Set(chunkKey(h), b); err != nil {
				return err
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	// The upgraded build opens the store (and counts what it finds).
	s, err = NewStore(db, s.ChunkParams())
	if err != nil {
		t.Fatal(err)
	}
	held, _ := s.Stats()
	rec, err := s.Commit(sg.manifest(t, d, 1, refs, int64(len(data))))
	if err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, s, rec); !bytes.Equal(got, data) {
		t.Fatal("a version stored in the old layout does not read back")
	}
	if path, _, _, err := s.ChunkFile(refs[0].Hash); err != nil || path != "" {
		t.Fatalf("ChunkFile of an old-layout chunk: %q, %v; want no file", path, err)
	}
	// A mixed version: new chunks go to packs, the old ones stay.
	data2 := append(bytes.Clone(data), randBytes(23, 256<<10)...)
	rec2 := publish(t, s, sg, d, data2)
	if got := readAll(t, s, rec2); !bytes.Equal(got, data2) {
		t.Fatal("a version mixing both layouts does not read back")
	}
	if rep, err := s.Verify(context.Background()); err != nil || len(rep.Damaged) != 0 {
		t.Fatalf("store check: %v %+v", err, rep)
	}
	// A corrupt old-layout body is caught once too.
	victim := refs[1].Hash
	err = db.Update(func(txn *badger.Txn) error {
		item, err := txn.Get(chunkKey(victim))
		if err != nil {
			return err
		}
		b, _ := item.ValueCopy(nil)
		b[7] ^= 1
		return txn.Set(chunkKey(victim), b)
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Chunk(victim); !errors.Is(err, nii.ErrCorrupt) {
		t.Fatalf("corrupt old-layout chunk: %v, want ErrCorrupt", err)
	}
	if _, err := s.Chunk(victim); !errors.Is(err, nii.ErrNotFound) {
		t.Fatalf("corrupt old-layout chunk read again: %v, want ErrNotFound", err)
	}
	old := map[nii.Hash]bool{}
	for _, c := range refs {
		old[c.Hash] = true
	}
	added := map[nii.Hash]bool{}
	for _, c := range mustManifest(t, s, rec2).Chunks {
		if !old[c.Hash] {
			added[c.Hash] = true
		}
	}
	if st, _ := s.Stats(); held.Chunks != int64(len(old)) || st.Chunks != held.Chunks+int64(len(added))-1 {
		t.Fatalf("counts: %d held at open (want %d), %d now (want %d)", held.Chunks, len(old), st.Chunks, held.Chunks+int64(len(added))-1)
	}
}

// TestPackGCRewritesMostlyDeadPacks: chunks no version names are deleted
// by GC; a pack left mostly dead is rewritten (its live chunks moved, the
// file removed), one left wholly dead removed, and every version still
// reads whole, through the moves, while a reader races them.
func TestPackGCRewritesMostlyDeadPacks(t *testing.T) {
	dir := t.TempDir()
	db := niitest.OpenDB(t, dir)
	defer db.Close()
	p := chunker.Params{Min: 1 << 10, Avg: 4 << 10, Max: 16 << 10}
	s, err := NewStore(db, p)
	if err != nil {
		t.Fatal(err)
	}
	sg := newSigner(t)
	d := nii.DatasetID{Org: "greenwich", Name: "spend"}
	keep := randBytes(31, 1<<20)
	rec := publish(t, s, sg, d, keep)
	// Orphans: ingested and never committed, in the same pack and after.
	for i := range 4 {
		if _, _, err := s.Ingest(context.Background(), bytes.NewReader(randBytes(uint64(40+i), 1<<20))); err != nil {
			t.Fatal(err)
		}
	}
	// Seal the pack: a new store instance writes to a new one.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = NewStore(db, p)
	if err != nil {
		t.Fatal(err)
	}
	before, _ := s.Stats()
	if before.PackFiles != 1 {
		t.Fatalf("%d pack files, want 1", before.PackFiles)
	}
	stop := make(chan struct{})
	readErr := make(chan error, 1)
	out := filepath.Join(t.TempDir(), "export")
	go func() {
		defer close(readErr)
		for {
			select {
			case <-stop:
				return
			default:
			}
			var buf bytes.Buffer
			if _, err := s.WriteTo(context.Background(), rec, &buf); err != nil || !bytes.Equal(buf.Bytes(), keep) {
				readErr <- fmt.Errorf("read during the rewrite: %v (%d bytes)", err, buf.Len())
				return
			}
			// And the durable export's reads (hints, prefetch, index).
			f, err := os.Create(out)
			if err != nil {
				readErr <- err
				return
			}
			_, err = s.WriteDirect(context.Background(), rec, f)
			f.Close()
			if got, _ := os.ReadFile(out); err != nil || !bytes.Equal(got, keep) {
				readErr <- fmt.Errorf("direct export during the rewrite: %v (%d bytes)", err, len(got))
				return
			}
		}
	}()
	res, err := s.GC(context.Background())
	close(stop)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-readErr; err != nil {
		t.Fatal(err)
	}
	if res.Chunks == 0 || res.PacksMoved != 1 || res.PacksRemoved != 1 {
		t.Fatalf("GC: %+v; want orphans deleted and the old pack rewritten and removed", res)
	}
	after, _ := s.Stats()
	if after.PackFiles != 1 || after.PackBytes >= before.PackBytes/3 {
		t.Fatalf("packs %d files %d bytes after, %d bytes before: space not returned", after.PackFiles, after.PackBytes, before.PackBytes)
	}
	if res.PackLive != after.ChunkBytes+int64(after.Chunks)*frameHeader {
		t.Fatalf("GC says %d live pack bytes; the index holds %d chunks of %d bytes", res.PackLive, after.Chunks, after.ChunkBytes)
	}
	if got := readAll(t, s, rec); !bytes.Equal(got, keep) {
		t.Fatal("the kept version does not read back after the rewrite")
	}
	if rep, err := s.Verify(context.Background()); err != nil || len(rep.Damaged) != 0 {
		t.Fatalf("store check after the rewrite: %v %+v", err, rep)
	}
	checkExactCounts(t, s, db)
	// Nothing left to collect: the next GC moves and removes nothing.
	res, err = s.GC(context.Background())
	if err != nil || res.PacksMoved != 0 || res.PacksRemoved != 0 {
		t.Fatalf("second GC: %+v %v", res, err)
	}
}

// killChildEnv names the store directory a TestPackKillChild child writes.
const killChildEnv = "NII_PACK_KILL_CHILD"

// killVersionData is what version v of the kill test's dataset holds.
func killVersionData(v uint64) []byte { return randBytes(1000+v, 2<<20+int(v%7)<<17) }

var killDataset = nii.DatasetID{Org: "greenwich", Name: "kill"}

// checkAfterKill reopens the store in dir after a kill and checks what
// every kill test checks: the store opens; every visible version of d
// reads back byte-identical to data(version); every version the child
// logged (one number per line in log) as committed is visible; and the
// store check finds nothing damaged. The caller closes s, then db.
func checkAfterKill(t *testing.T, trial int, dir, log string, d nii.DatasetID, data func(v uint64) []byte) (*badger.DB, *Store, []*VersionRecord, *VerifyReport) {
	t.Helper()
	db := niitest.OpenDB(t, dir)
	s, err := NewStore(db, chunker.Default())
	if err != nil {
		t.Fatalf("trial %d: store does not reopen: %v", trial, err)
	}
	recs, err := s.Versions(&d)
	if err != nil {
		t.Fatal(err)
	}
	for _, rec := range recs {
		var buf bytes.Buffer
		if _, err := s.WriteTo(context.Background(), rec, &buf); err != nil {
			t.Fatalf("trial %d: %s after the kill: %v", trial, rec.Ref, err)
		}
		if !bytes.Equal(buf.Bytes(), data(rec.Ref.Version)) {
			t.Fatalf("trial %d: %s is not byte-identical after the kill", trial, rec.Ref)
		}
	}
	b, _ := os.ReadFile(log)
	lines := strings.Fields(string(b))
	if len(lines) > 0 {
		last, _ := strconv.ParseUint(lines[len(lines)-1], 10, 64)
		if uint64(len(recs)) < last {
			t.Fatalf("trial %d: the child committed version %d; %d are visible", trial, last, len(recs))
		}
	}
	rep, err := s.Verify(context.Background())
	if err != nil || len(rep.Damaged) != 0 {
		t.Fatalf("trial %d: store check after the kill: %v %+v", trial, err, rep.Damaged)
	}
	return db, s, recs, rep
}

// killChild runs this test binary's test child (a writer that works on a
// store until it is killed) with env added, SIGKILLs it after ms
// milliseconds (the kill instant, chosen by the caller, not a wait for
// state) and fails t if the child failed before the kill.
func killChild(t *testing.T, trial int, child string, ms int, env ...string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+child+"$", "-test.count=1")
	// The child's own t.TempDir directories live under the parent's: a
	// killed child never runs its cleanups, so the parent's removes them.
	cmd.Env = append(append(os.Environ(), "TMPDIR="+t.TempDir()), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Duration(ms) * time.Millisecond)
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	if strings.Contains(out.String(), "FAIL") {
		t.Fatalf("trial %d: the child failed before the kill:\n%s", trial, out.String())
	}
}

// TestKillDuringPackWrites SIGKILLs a process that publishes versions and
// puts chunks (as a pull does) into packs as fast as it can, at a random
// instant, again and again on the same store. After each kill the store
// must reopen; every visible version must read back byte-identical and
// pass the store check (so no index entry names bytes the crash lost);
// every version the child recorded as committed must be visible; and the
// store must take new writes (into a new pack, past the cut one's tail).
func TestKillDuringPackWrites(t *testing.T) {
	trials := 4
	if testing.Short() {
		trials = 2
	}
	dir := t.TempDir()
	log := filepath.Join(t.TempDir(), "committed")
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 2))
	for trial := range trials {
		killChild(t, trial, "TestPackKillChild", 200+r.IntN(800), killChildEnv+"="+dir, "NII_PACK_KILL_LOG="+log)

		db, s, recs, rep := checkAfterKill(t, trial, dir, log, killDataset, killVersionData)
		if _, err := s.GC(context.Background()); err != nil {
			t.Fatalf("trial %d: GC after the kill: %v", trial, err)
		}
		t.Logf("trial %d: %d versions visible, %d chunks", trial, len(recs), rep.Chunks)
		s.Close()
		db.Close()
	}
	// The store still takes and serves new versions.
	db := niitest.OpenDB(t, dir)
	defer db.Close()
	s, err := NewStore(db, chunker.Default())
	if err != nil {
		t.Fatal(err)
	}
	rec := publish(t, s, newSigner(t), nii.DatasetID{Org: "greenwich", Name: "after"}, randBytes(5, 1<<20))
	if got := readAll(t, s, rec); !bytes.Equal(got, randBytes(5, 1<<20)) {
		t.Fatal("a version published after the kills does not read back")
	}
}

// TestPackKillChild is the process TestKillDuringPackWrites kills: it is
// skipped unless that test started it.
func TestPackKillChild(t *testing.T) {
	dir := os.Getenv(killChildEnv)
	if dir == "" {
		t.Skip("the child process of TestKillDuringPackWrites")
	}
	db, err := badger.Open(storeopts.Badger(dir, false).WithLogger(nil)) // the node's options
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewStore(db, chunker.Default())
	if err != nil {
		t.Fatal(err)
	}
	log, err := os.OpenFile(os.Getenv("NII_PACK_KILL_LOG"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	sg := newSigner(t)
	// Chunk puts, as a pull stores what it fetched, beside the publishes.
	go func() {
		for i := uint64(0); ; i++ {
			var batch []Chunk
			for j := range uint64(16) {
				b := randBytes(i<<8|j, 32<<10)
				batch = append(batch, Chunk{Hash: nii.HashOf(b), Data: b})
			}
			if err := s.putChunks(batch); err != nil {
				panic(err)
			}
		}
	}()
	for {
		next, err := s.NextVersion(killDataset)
		if err != nil {
			t.Fatal(err)
		}
		data := killVersionData(next)
		chunks, size, err := s.Ingest(context.Background(), bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		rec, err := s.Commit(sg.manifest(t, killDataset, next, chunks, size))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintln(log, rec.Ref.Version)
		log.Sync()
	}
}
