package node_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nii-uk/nii"
	"github.com/nii-uk/nii/node"
	"github.com/nii-uk/nii/node/nodetest"
)

// syncBuf is a log sink tests read while nodes write.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// flipInStore flips one bit of the first copy of needle found in the
// store's pack files, or its value-log files (where chunk bodies lived
// before packs), the node closed, and says in which file.
func flipInStore(t *testing.T, home string, needle []byte) string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(home, node.StoreDir, "packs", "*.pack"))
	vlogs, _ := filepath.Glob(filepath.Join(home, node.StoreDir, "*.vlog"))
	files = append(files, vlogs...)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if i := bytes.Index(b, needle); i >= 0 {
			b[i+len(needle)/2] ^= 0x10
			if err := os.WriteFile(f, b, 0o600); err != nil {
				t.Fatal(err)
			}
			return filepath.Base(f)
		}
	}
	t.Fatalf("the chunk bytes are in no pack or value-log file of %s", home)
	return ""
}

func replicaRecord(n *node.Node, ds nii.DatasetID, origin nii.NodeID) (*nii.Advert, bool) {
	for _, e := range n.Catalog().Lookup(ds) {
		if e.Advert.Origin == origin {
			return e.Advert, true
		}
	}
	return nil, false
}

// TestCorruptReplicaFoundWithdrawnAndRepaired flips a bit in a replica's
// stored chunk with the node closed (in a pack file; were it in badger's
// value log, badger would cut the file there on open, and that cut must
// be logged), then checks: serving the damaged version answers
// "missing" for what it cannot verify, logged and counted, so a puller
// stores nothing bad; the store check finds the version, marks it damaged
// in the listing and withdraws the replica advert (seen by another node);
// and once another provider is back the version is re-fetched, verified
// and advertised again.
func TestCorruptReplicaFoundWithdrawnAndRepaired(t *testing.T) {
	logs := &syncBuf{}
	nodes := nodetest.Federation(t, 3, nodetest.Options{Configure: func(i int, cfg *node.Config) {
		if i == 1 {
			cfg.Store.NoStartCheck = true // the damage is found by serving first, then by the check asked for
			cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
		}
	}})
	ctx := context.Background()
	data := randBytes(9, 6<<20)
	ref := publishData(t, nodes[0], "spend", data, nii.AccessOpen)
	waitListed(t, nodes[1], "org0/spend", 1)
	if _, err := nodes[1].Pull(ctx, *ref, node.PullOptions{}); err != nil {
		t.Fatal(err)
	}
	replica := nodes[1].ID()
	nodetest.WaitFor(t, 15*time.Second, "org2 sees org1's replica advert", func() bool {
		a, ok := replicaRecord(nodes[2], ref.Dataset, replica)
		return ok && a.Replica && !a.Withdrawn
	})

	// Damage the replica's copy: a bit in the first third of the file.
	cfg1 := nodes[1].Config()
	nodes[1].Close()
	file := flipInStore(t, cfg1.Home, data[2<<20:2<<20+64])
	n1 := nodetest.Restart(t, cfg1)
	if _, err := n1.Join(nodes[2].GossipAddr()); err != nil {
		t.Fatal(err)
	}
	if strings.HasSuffix(file, ".vlog") && (!strings.Contains(logs.String(), "badger cut a value-log file short") || !strings.Contains(logs.String(), file)) {
		t.Fatalf("badger's cut of %s was not logged:\n%s", file, logs.String())
	}

	// The publisher goes away: org2 can only ask the damaged replica.
	cfg0 := nodes[0].Config()
	nodes[0].Close()
	_, err := nodes[2].Pull(ctx, *ref, node.PullOptions{})
	if err == nil {
		t.Fatal("a pull from the damaged replica alone succeeded")
	}
	if got := n1.CorruptChunksServed(); got == 0 {
		t.Fatalf("serving the damaged version counted no corrupt chunk; the pull said: %v", err)
	}
	if !strings.Contains(logs.String(), "corrupt chunk found while serving") {
		t.Fatal("serving a corrupt chunk was not logged")
	}
	if rep, err := nodes[2].VerifyStore(ctx); err != nil || len(rep.Damaged) != 0 {
		t.Fatalf("the puller's store after the failed pull: %+v, %v", rep, err)
	}
	if _, err := nodes[2].Store().Version(*ref); !errors.Is(err, nii.ErrNotFound) {
		t.Fatalf("the puller holds a version from the damaged replica: %v", err)
	}

	// The check finds it, lists it damaged and withdraws the advert.
	rep, err := n1.VerifyStore(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Damaged) != 1 || rep.Damaged[0].Ref != ref.String() || rep.Damaged[0].Repaired {
		t.Fatalf("store check with no other provider: %+v", rep)
	}
	if d := rep.Damaged[0]; d.Missing+d.Corrupt == 0 && !strings.HasPrefix(d.Reason, "manifest") {
		t.Fatalf("damage without a bad chunk or manifest: %+v", d)
	}
	ds, err := n1.Datasets()
	if err != nil || len(ds) != 1 || len(ds[0].Damaged) != 1 || ds[0].Damaged[0] != 1 || ds[0].Versions[0].Damaged == "" {
		t.Fatalf("datasets after the check: %+v, %v", ds, err)
	}
	nodetest.WaitFor(t, 15*time.Second, "org2 sees org1's replica advert withdrawn", func() bool {
		a, ok := replicaRecord(nodes[2], ref.Dataset, replica)
		return ok && a.Withdrawn
	})

	// The publisher is back: the next check re-fetches the version.
	n0 := nodetest.Restart(t, cfg0)
	if _, err := n0.Join(n1.GossipAddr(), nodes[2].GossipAddr()); err != nil {
		t.Fatal(err)
	}
	nodetest.WaitFor(t, 30*time.Second, "the repair from the restarted publisher", func() bool {
		rep, err := n1.VerifyStore(ctx)
		return err == nil && len(rep.Damaged) == 1 && rep.Damaged[0].Repaired
	})
	rep, err = n1.VerifyStore(ctx)
	if err != nil || len(rep.Damaged) != 0 {
		t.Fatalf("check after the repair: %+v, %v", rep, err)
	}
	if !bytes.Equal(exportAll(t, n1, *ref), data) {
		t.Fatal("the repaired version does not export as published")
	}
	nodetest.WaitFor(t, 15*time.Second, "org2 sees org1 advertise its replica again", func() bool {
		a, ok := replicaRecord(nodes[2], ref.Dataset, replica)
		return ok && a.Replica && !a.Withdrawn
	})
	if ds, _ := n1.Datasets(); len(ds) != 1 || len(ds[0].Damaged) != 0 {
		t.Fatalf("datasets after the repair: %+v", ds)
	}
}

// smallDisk mounts a tmpfs of size MiB under the test's temporary
// directory and returns it. Where mounting is impossible the test is
// skipped with the reason, or, under NII_CI=1, fails.
func smallDisk(t *testing.T, size int) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "disk")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%dm,mode=0700", size), "tmpfs", dir).CombinedOutput()
	if err != nil {
		msg := fmt.Sprintf("cannot mount a %d MiB tmpfs (needs root): %v: %s", size, err, out)
		if os.Getenv("NII_CI") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// zeroReader is n zero-free pseudo-random bytes, of a size the node is not
// told.
func bigReader(seed uint64, n int) io.Reader { return bytes.NewReader(randBytes(seed, n)) }

// TestFullDiskRefusedAndReadOnly puts a node's home on a 96 MiB tmpfs with
// a 24 MiB floor. A publish larger than the space is refused up front with
// the clear error; one whose size the node is not told is refused as its
// chunks near the floor; both leave no version and the node serving what it
// had. Filled below the floor and restarted, the node opens read-only:
// it serves the old version, refuses writes and says so in /readyz.
func TestFullDiskRefusedAndReadOnly(t *testing.T) {
	disk := smallDisk(t, 96)
	cfg := nodetest.Config(disk, "greenwich", nodetest.Options{})
	cfg.Store.MinFree = "24MiB"
	n := nodetest.Start(t, cfg)
	ctx := context.Background()
	small := randBytes(1, 1<<20)
	ref := publishData(t, n, "spend", small, nii.AccessOpen)

	// Known size: refused before a byte is stored.
	_, err := n.Publish(ctx, bigReader(2, 1), node.PublishRequest{Name: "spend", Filename: "big.bin", Size: 200 << 20})
	var ns *node.NoSpaceError
	if !errors.As(err, &ns) || !errors.Is(err, nii.ErrUnavailable) ||
		!strings.Contains(err.Error(), "no space left on the device holding "+cfg.Home+" (") || !strings.Contains(err.Error(), "MB free, ") {
		t.Fatalf("publish of 200 MiB on a 96 MiB disk: %v", err)
	}
	t.Logf("refused up front: %v", err)

	// Unknown size: refused as the chunks near the floor.
	_, err = n.Publish(ctx, bigReader(3, 150<<20), node.PublishRequest{Name: "spend", Filename: "big.bin"})
	if !errors.As(err, &ns) {
		t.Fatalf("publish of 150 MiB of unknown size: %v", err)
	}
	t.Logf("refused while ingesting: %v", err)
	if vs, _ := n.Store().Versions(nil); len(vs) != 1 {
		t.Fatalf("%d versions after the refused publishes, want 1", len(vs))
	}
	if !bytes.Equal(exportAll(t, n, *ref), small) {
		t.Fatal("the earlier version does not export after the refusals")
	}
	// The refused ingest's chunks are reclaimed.
	res, err := n.CollectGarbage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := n.Store().Stats(); st.ChunkBytes != int64(len(small)) {
		t.Fatalf("after GC the store holds %d chunk bytes, want the one version's %d (GC: %+v)", st.ChunkBytes, len(small), res)
	}

	// Fill the disk below the floor and restart: read-only.
	n.Close()
	fill, err := os.Create(filepath.Join(disk, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 64<<10)
	var filled int64
	for {
		k, err := fill.Write(chunk)
		filled += int64(k)
		if err != nil {
			break // ENOSPC: the disk is full
		}
	}
	// Full but for 256 KiB: the daemon still writes its pid, address and
	// token files (a few bytes), as on a real disk filled by something
	// else. At 0 bytes free it fails to start with "write admin token: no
	// space left on device" rather than crashing.
	if err := fill.Truncate(filled - 256<<10); err != nil {
		t.Fatal(err)
	}
	fill.Close()
	n = nodetest.Restart(t, cfg)
	rd := n.Readiness()
	if rd.Ready || !strings.Contains(rd.Checks["disk"], "read-only") {
		t.Fatalf("readiness of a node started on a full disk: %+v", rd)
	}
	if st, err := n.Status(); err != nil || !st.Disk.ReadOnly || !st.Disk.Low {
		t.Fatalf("status on a full disk: %+v, %v", st, err)
	}
	if !bytes.Equal(exportAll(t, n, *ref), small) {
		t.Fatal("the read-only node does not export its version")
	}
	if _, err := n.Publish(ctx, bytes.NewReader(small), node.PublishRequest{Name: "other", Filename: "o.bin"}); !errors.Is(err, nii.ErrUnavailable) {
		t.Fatalf("publish on a read-only node: %v", err)
	}
	if _, err := n.CollectGarbage(ctx); !errors.Is(err, node.ErrReadOnly) {
		t.Fatalf("gc on a read-only node: %v", err)
	}
	if rep, err := n.VerifyStore(ctx); err != nil || len(rep.Damaged) != 0 {
		t.Fatalf("verify on a read-only node: %+v, %v", rep, err)
	}
}
